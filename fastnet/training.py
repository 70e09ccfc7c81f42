"""The trainer: the training loop, rollback, callbacks and History.

``fit`` and ``partial_fit`` train a ``Network`` in place (``Network.fit``
calls them): every argument is checked first, each epoch runs as backend
calls on consecutive whole batches (``epoch_slices``) on a copy of the
parameters, and only a finished, finite epoch is applied to the network.
Also here: optimizer settings and state, the row visiting order and the
optional progress bar.
"""

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from fastnet import _validation as check
from fastnet import spec
from fastnet._config import EPOCH_SLICE_WORK

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

    def plot(self, ax=None):
        """Draw training (and validation) loss against the epoch (1, 2, ...); returns the Axes.

        ``ax``: a matplotlib Axes to draw on; None makes a new figure with
        ``matplotlib.pyplot``.  Needs matplotlib (``pip install
        "fastnet-kernels[plot]"``).
        """
        if ax is None:
            try:
                import matplotlib.pyplot as plt
            except ImportError:
                raise ImportError('History.plot needs matplotlib: pip install "fastnet-kernels[plot]"') from None
            ax = plt.subplots()[1]
        epochs = range(1, len(self.loss) + 1)
        ax.plot(epochs, self.loss, marker=".", label="training loss")
        if self.val_loss:
            ax.plot(range(1, len(self.val_loss) + 1), self.val_loss, marker=".", label="validation loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
        return ax


class DivergenceError(FloatingPointError):
    """Training produced NaN or infinity; the network was put back to the last finite epoch."""

    def __init__(self, epoch, loss, lr):
        restored = f"the end of epoch {epoch - 1}" if epoch > 0 else "its state before this fit"
        super().__init__(
            f"training diverged in epoch {epoch}: the loss ({loss}) or a parameter became NaN or "
            f"infinite; the network is back at {restored}; try a smaller learning rate than lr={lr:g}")
        self.epoch = epoch


class Optimizer:
    """An optimizer's settings and its running state (velocity, moments, step count).

    What a backend's ``train_epoch`` reads: ``code`` (fastnet.spec.OPTIMIZERS),
    ``hyper`` (float64, fastnet.spec.HYPER_FIELDS), ``state`` ((STATE_ROWS,
    n_params), the parameters' dtype) and ``step`` (int64 (1,), Adam's t).
    """

    def __init__(self, name, lr, momentum, n_params, dtype=np.float64, *, alpha=0.0, betas=spec.ADAM_BETAS,
                 eps=spec.ADAM_EPS):
        self.name = check.choice(name, "optimizer", spec.OPTIMIZERS)
        self.code = spec.OPTIMIZERS[name].code
        lr = spec.OPTIMIZERS[name].default_lr if lr is None else check.positive_number(lr, "lr")
        beta1, beta2 = check.pair(betas, "betas")
        settings = {"lr": lr, "momentum": check.fraction(momentum, "momentum"),
                    "beta1": check.fraction(beta1, "betas[0]"), "beta2": check.fraction(beta2, "betas[1]"),
                    "eps": check.positive_number(eps, "eps"), "alpha": check.non_negative_number(alpha, "alpha")}
        self.hyper = np.array([settings[field] for field in spec.HYPER_FIELDS])
        self.state = np.zeros((spec.STATE_ROWS, n_params), dtype)
        self.step = np.zeros(1, np.int64)

    def state_dict(self):
        """Name, hyper-parameters, state and step count, as copies."""
        return {"name": self.name, "hyper": self.hyper.copy(), "state": self.state.copy(), "step": self.step.copy()}

    @classmethod
    def from_state_dict(cls, saved, n_params, dtype):
        """An optimizer rebuilt from ``state_dict()`` for ``n_params`` parameters of ``dtype``.

        Raises ValueError naming the field that does not fit.
        """
        hyper = np.asarray(saved["hyper"], dtype=np.float64)
        state, step = np.asarray(saved["state"]), np.asarray(saved["step"])
        if hyper.shape != (len(spec.HYPER_FIELDS),):
            raise ValueError(f"optimizer hyper must have shape ({len(spec.HYPER_FIELDS)},); got {hyper.shape}")
        if state.shape != (spec.STATE_ROWS, n_params):
            raise ValueError(f"optimizer state must have shape {(spec.STATE_ROWS, n_params)}; got {state.shape}")
        if step.shape != (1,) or step.dtype.kind not in "iu" or step[0] < 0:
            raise ValueError("optimizer step must be one non-negative count")
        def field(name):
            return float(hyper[spec.hyper_index(name)])
        optimizer = cls(saved["name"], field("lr"), field("momentum"), n_params, dtype, alpha=field("alpha"),
                        betas=(field("beta1"), field("beta2")), eps=field("eps"))
        optimizer.hyper[...], optimizer.state[...], optimizer.step[...] = hyper, state, step
        return optimizer

    @property
    def lr(self):
        """The learning rate."""
        return float(self.hyper[spec.hyper_index("lr")])

    def for_rows(self, rows):
        """What a backend's ``train_epoch`` reads for ``rows``: this optimizer, or, when
        their weights were divided by ``rows.weight_scale``, a view sharing its state
        and step with alpha divided by the same factor, so the penalty is still
        divided by the caller's total row weight (as scikit-learn's MLP divides it)."""
        alpha = self.hyper[spec.hyper_index("alpha")]
        if rows.weight_scale == 1.0 or alpha == 0.0:
            return self
        hyper = self.hyper.copy()
        hyper[spec.hyper_index("alpha")] = alpha / rows.weight_scale
        return EpochOptimizer(self.code, hyper, self.state, self.step)

    def carry_state_from(self, previous):
        """Take ``previous``'s state and step count (copies) when it is the same
        optimizer, whatever its learning rate or other settings; True if it did."""
        if previous is None or previous.name != self.name or previous.state.shape != self.state.shape:
            return False
        self.state[...], self.step[...] = previous.state, previous.step
        return True

    def snapshot(self):
        """Copies of the mutable state, for rolling back a failed epoch: the step count and
        the state rows this optimizer updates (none for sgd, the velocity for momentum),
        so that a fit does not copy rows it never writes."""
        return self.state[:spec.OPTIMIZERS[self.name].state_rows].copy(), self.step.copy()

    def restore(self, snapshot):
        """Put back a ``snapshot``."""
        state, step = snapshot
        self.state[:state.shape[0]], self.step[...] = state, step


class EpochOptimizer(NamedTuple):
    """An optimizer as a backend reads it, with its own hyper vector and a shared state and step."""

    code: int
    hyper: np.ndarray
    state: np.ndarray
    step: np.ndarray


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
    """A tqdm bar over epochs when wanted, else nothing; it moves within an epoch
    as the epoch's slices complete (see ``epoch_slices``).

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

    def within(self, epoch, fraction):
        """Show ``fraction`` (0..1) of epoch ``epoch`` (counted from 0) done."""
        if self._bar is not None:
            self._bar.update(round(epoch + fraction, 2) - self._bar.n)

    def update(self, history):
        """Show one more epoch completed, with its loss."""
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{history.loss[-1]:.6g}", refresh=False)
            self._bar.update(len(history.loss) - self._bar.n)
            self._bar.n = len(history.loss)  # an int again, so the counter reads 3/3, not 3.0/3
            self._bar.refresh()

    def close(self):
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()


class Interrupts:
    """Ctrl-C in the training loop: seen at once inside an epoch's work (which then
    rolls back), held back while an epoch is being applied and recorded.

    ``held()`` wraps an epoch from start to record: a SIGINT arriving there
    sets a flag, raised as KeyboardInterrupt when the block ends, so the
    parameters, the optimizer's state and the History always describe the
    same completed epochs.  ``allowed()`` wraps the work itself, where
    SIGINT raises at once (also for one held back just before).  Only the
    main thread with Python's own SIGINT handler holds anything back:
    elsewhere both are no-ops.
    """

    def __init__(self):
        self._pending = False
        self._holding = False

    def _hold(self, signum, frame):
        if self._holding:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self):
        """Hold SIGINT back for the block; raise it when the block ends."""
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return
        self._pending, self._holding = False, True
        signal.signal(signal.SIGINT, self._hold)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._holding = False
        if self._pending:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def allowed(self):
        """Let SIGINT raise at once in the block (after one that came while held)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        holding, self._holding = self._holding, False
        try:
            if self._pending:
                self._pending = False
                raise KeyboardInterrupt
            yield
        finally:
            self._holding = holding


#: The training loop's one Interrupts.
INTERRUPTS = Interrupts()


class Stopwatch:
    """Seconds since it was made."""

    def __init__(self):
        self._start = time.perf_counter()

    def seconds(self):
        """Elapsed wall-clock seconds."""
        return time.perf_counter() - self._start


@dataclass
class Plan:
    """A fit's arguments, every one validated before anything changes."""

    rows: object
    on_disk: bool
    batch_size: int
    shuffle: bool
    rng: np.random.Generator
    optimizer: Optimizer
    validation: object = None
    callback: object = None


def plan(net, X, y, lr, batch_size, shuffle, seed, optimizer, momentum, sample_weight,
         validation_data=None, callback=None, alpha=0.0, betas=spec.ADAM_BETAS, eps=spec.ADAM_EPS):
    """Check every training argument at once and return the Plan."""
    batch_size = check.optional_count(batch_size, "batch_size")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError(f"validation_data must be a pair (X_val, y_val); got {type(validation_data).__name__}"
                            + (f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else ""))
        validation_data = net._rows(*validation_data, names=("X_val", "y_val"))
    on_disk = check.is_out_of_core(X) or check.is_out_of_core(y)
    rows = net._rows(X, y, sample_weight)
    return Plan(rows=rows, on_disk=on_disk,
                batch_size=rows.X.shape[0] if batch_size is None else batch_size,
                shuffle=bool(shuffle), rng=net._rng if seed is None else check.random_generator(seed),
                optimizer=Optimizer(optimizer, lr, momentum, net._params.size, net.dtype, alpha=alpha, betas=betas,
                                    eps=eps),
                validation=validation_data, callback=callback)


def fit(net, X, y, epochs=1, lr=None, *, batch_size=None, shuffle=True, seed=None, optimizer="sgd",
        momentum=0.9, alpha=0.0, betas=spec.ADAM_BETAS, eps=spec.ADAM_EPS, sample_weight=None,
        validation_data=None, progress=None, callback=None):
    """Train ``net`` in place for ``epochs`` passes; returns a History (arguments: ``Network.fit``)."""
    epochs = check.count(epochs, "epochs")
    settings = plan(net, X, y, lr, batch_size, shuffle, seed, optimizer, momentum, sample_weight,
                    validation_data, callback, alpha, betas, eps)
    return train(net, settings, epochs, progress)


def partial_fit(net, X, y, lr=None, *, batch_size=None, shuffle=True, seed=None, optimizer="sgd",
                momentum=0.9, alpha=0.0, betas=spec.ADAM_BETAS, eps=spec.ADAM_EPS, sample_weight=None):
    """One pass over (X, y) continuing ``net``'s optimizer state (moments, velocity, step)
    while the optimizer is the same one; new settings (lr, alpha...) apply from this pass."""
    settings = plan(net, X, y, lr, batch_size, shuffle, seed, optimizer, momentum, sample_weight,
                    alpha=alpha, betas=betas, eps=eps)
    settings.optimizer.carry_state_from(net._optimizer)
    return train(net, settings, 1, progress=False)


def train(net, settings, epochs, progress, run=None, score=None):
    """Run the epochs of a validated Plan on ``net``, recording a History.

    The plan's optimizer becomes the network's once an epoch completes;
    if none does, the previous optimizer (and its state) stays.  ``run``
    (default ``run_epoch``) trains one epoch and ``score`` (default the
    network's loss on validated rows) scores ``settings.validation``: the
    hooks through which ``fastnet.dask`` trains on data held elsewhere.
    """
    run = run_epoch if run is None else run
    score = net._loss if score is None else score
    history = History()
    previous_optimizer = net._optimizer
    net._optimizer = settings.optimizer
    bar = Progress(progress, epochs, settings.rows.X.shape[0])
    try:
        for epoch in range(epochs):
            watch = Stopwatch()
            with INTERRUPTS.held():  # the epoch's parameters, state and loss are applied together
                history.loss.append(run(net, settings, epoch, lambda done, epoch=epoch: bar.within(epoch, done)))
            if settings.validation is not None:
                history.val_loss.append(score(settings.validation))
            history.time.append(watch.seconds())
            bar.update(history)
            if settings.callback is not None and settings.callback(epoch, history) is False:
                break
    except BaseException as error:
        if not history.loss:
            net._optimizer = previous_optimizer
        error.history = history  # what completed, for whoever catches it (Ctrl-C included)
        raise
    finally:
        bar.close()
    return history


def epoch_slices(n_rows, batch_size, n_params):
    """(first, last) ranges of the visiting order that cut an epoch into backend
    calls of about EPOCH_SLICE_WORK multiply-adds each, every one a whole number
    of batches.

    A batch never straddles two calls and the optimizer's state carries from
    one call to the next, so the parameters come out bitwise as from one
    call; only the epoch's loss, a sum of the calls' sums, may differ from
    one call's running sum in the last bits.
    """
    batches = EPOCH_SLICE_WORK // (n_params * (3 * batch_size + 8))
    rows = batch_size * max(1, batches)
    return [(first, min(first + rows, n_rows)) for first in range(0, n_rows, rows)]


def epoch_part(rows, order, first, last):
    """What a backend call visits for positions first..last-1 of the epoch: (rows, order).
    A stretch of the visiting order over all rows (nothing is copied), or, for an
    epoch in place (empty order), a view of those rows."""
    if order.size:
        return rows, order[first:last]
    weights = rows.sample_weight
    return rows._replace(X=rows.X[first:last], Y=rows.Y[first:last],
                         sample_weight=weights[first:last] if weights.size else weights), order


def run_epoch(net, settings, epoch, done=None):
    """One epoch, applied to ``net`` as ``guarded_epoch`` says; its loss.

    The epoch runs as backend calls on consecutive slices of the visiting
    order (``epoch_slices``), each slice's batches exactly those of one
    call over the whole order; ``done(fraction)``, when given, is called
    after each.
    """
    rows, optimizer = settings.rows, settings.optimizer
    n_rows = rows.X.shape[0]
    order = visiting_order(settings.rng, n_rows, settings.shuffle, settings.batch_size, settings.on_disk)

    def work(params):
        model = net._model(params)
        epoch_optimizer = optimizer.for_rows(rows)  # shares the state and step, so they carry across calls
        errors = 0.0
        for first, last in epoch_slices(n_rows, settings.batch_size, params.size):
            part, visit = epoch_part(rows, order, first, last)
            errors += net._backend.train_epoch(model, part, visit, settings.batch_size, epoch_optimizer, net._grad)
            if done is not None:
                done(last / n_rows)
        return errors * net._normaliser(rows)
    return guarded_epoch(net, optimizer, epoch, work)


def guarded_epoch(net, optimizer, epoch, work):
    """``work(params)`` on a copy of ``net``'s parameters, applied to ``net`` only once it
    has completed and stayed finite; returns the loss ``work`` returned.

    ``work`` updates the copy and ``optimizer``'s state in place.  On any
    failure (an exception, Ctrl-C, or divergence: DivergenceError) the
    parameters and the optimizer's state stay as they were after the
    previous epoch.
    """
    params, saved_state = net._params.copy(), optimizer.snapshot()
    try:
        with INTERRUPTS.allowed():
            loss = work(params)
    except BaseException:
        optimizer.restore(saved_state)
        raise
    if not (np.isfinite(loss) and check.all_finite(params)):
        optimizer.restore(saved_state)
        raise DivergenceError(epoch, loss, optimizer.lr)
    net._params[...] = params
    return loss
