"""Pieces of the training loop that are not the network itself.

History, optimizer settings and state, the row visiting order, and the
optional progress bar.  Kept apart from ``network.py`` so that file stays
about the network.
"""

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from fastnet import _validation as check
from fastnet.backends import OPTIMIZER_CODES

#: Learning rate when ``lr`` is not given: the article's 1.0 for plain SGD,
#: smaller where the optimizer accumulates steps.
DEFAULT_LR = {"sgd": 1.0, "momentum": 0.1, "adam": 0.001}

#: Adam's standard constants (Kingma & Ba; torch.optim.Adam's defaults).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

#: Show a progress bar on its own when a fit is expected to take longer than this.
LONG_RUN_ROWS = 5_000_000


@dataclass
class History:
    """What ``fit`` records, one entry per completed epoch.

    ``loss[i]``: training loss of epoch i, each batch measured before its
    update (for full-batch training, the loss before the step).
    ``val_loss[i]``: loss on ``validation_data`` after epoch i (empty without it).
    ``time[i]``: wall-clock seconds of epoch i.
    """

    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    time: list = field(default_factory=list)


class DivergenceError(FloatingPointError):
    """Training produced NaN or infinity; the network was put back to the last finite epoch."""

    def __init__(self, epoch, loss, lr):
        restored = f"the end of epoch {epoch - 1}" if epoch > 0 else "its state before this fit"
        super().__init__(
            f"training diverged in epoch {epoch}: the loss ({loss}) or a parameter became NaN or "
            f"infinite; the network is back at {restored}; try a smaller learning rate than lr={lr:g}")
        self.epoch = epoch


class Optimizer:
    """An optimizer's settings and its running state (velocity, moments, step count)."""

    def __init__(self, name, lr, momentum, n_params, dtype=np.float64):
        self.name = check.choice(name, "optimizer", OPTIMIZER_CODES)
        self.code = OPTIMIZER_CODES[name]
        lr = DEFAULT_LR[name] if lr is None else check.positive_number(lr, "lr")
        momentum = check.fraction(momentum, "momentum")
        self.hyper = np.array([lr, momentum, ADAM_BETAS[0], ADAM_BETAS[1], ADAM_EPS])
        self.state = np.zeros((2, n_params), dtype)
        self.step = np.zeros(1, np.int64)

    @classmethod
    def restored(cls, name, hyper, state, step):
        """An optimizer rebuilt from saved settings and state (see fastnet.persistence)."""
        optimizer = cls(name, float(hyper[0]), float(hyper[1]), state.shape[1], state.dtype)
        optimizer.hyper[...], optimizer.state[...], optimizer.step[...] = hyper, state, step
        return optimizer

    @property
    def lr(self):
        """The learning rate."""
        return float(self.hyper[0])

    def same_settings(self, other):
        """True when ``other`` has this optimizer's name and hyper-parameters."""
        return self.name == other.name and np.array_equal(self.hyper, other.hyper)

    def snapshot(self):
        """Copies of the mutable state, for rolling back a failed epoch."""
        return self.state.copy(), self.step.copy()

    def restore(self, snapshot):
        """Put back a ``snapshot``."""
        self.state[...], self.step[...] = snapshot


#: Rows shuffled together when the data is on disk: the blocks are visited in
#: a random order and rows are permuted only within a block, so reads stay
#: sequential within a block (8 MB of 4 float64 features).
DISK_BLOCK_ROWS = 262_144


def visiting_order(rng, n_rows, shuffle, batch_size, on_disk=False):
    """Row order for one epoch: a seeded permutation, or empty for 0..n-1.

    Full-batch epochs never shuffle: the order of rows does not change a
    full-batch gradient, and reading in place avoids a gather.  Data on
    disk is shuffled block-wise (see DISK_BLOCK_ROWS), never row by row
    across the whole file.
    """
    if not shuffle or batch_size >= n_rows:
        return np.empty(0, np.int64)
    if not on_disk or n_rows <= DISK_BLOCK_ROWS:
        return rng.permutation(n_rows).astype(np.int64, copy=False)
    starts = rng.permutation(np.arange(0, n_rows, DISK_BLOCK_ROWS))
    return np.concatenate([start + rng.permutation(min(DISK_BLOCK_ROWS, n_rows - start))
                           for start in starts]).astype(np.int64, copy=False)


class Progress:
    """A tqdm bar over epochs when wanted, else nothing.

    ``wanted``: True/False force it; None shows it when stdout is a terminal
    and the run is long (epochs * rows >= LONG_RUN_ROWS) and tqdm is installed.
    """

    def __init__(self, wanted, epochs, n_rows):
        forced = wanted is True
        if wanted is None:
            wanted = sys.stdout.isatty() and epochs * n_rows >= LONG_RUN_ROWS
        self._bar = None
        if wanted:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                if forced:
                    raise ImportError("progress=True needs tqdm: pip install tqdm") from None
                return
            self._bar = tqdm(total=epochs, unit="epoch")

    def update(self, history):
        """Advance by one epoch, showing the latest loss."""
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{history.loss[-1]:.6g}")
            self._bar.update(1)

    def close(self):
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()


class Stopwatch:
    """Seconds since it was made."""

    def __init__(self):
        self._start = time.perf_counter()

    def seconds(self):
        """Elapsed wall-clock seconds."""
        return time.perf_counter() - self._start
