"""Backends: how to compute what ``fastnet.spec`` defines.  THE contract, once.

Each backend module ("numpy" -> ``reference``, "numba" -> ``numba_kernels``,
"native" -> ``native``) provides three functions over the small structures
below, and they agree with ``reference`` (the plain NumPy oracle) to 1e-12
relative:

    forward(model, X, out) -> None
    gradient(model, rows, grad) -> float
    train_epoch(model, rows, order, batch_size, optimizer, grad) -> float

Structures
----------
``model`` (:class:`Model`): the packed ``params`` (1-D, C-contiguous, float64
or float32; the layout of ``fastnet.layout.ParamLayout``), that ``layout``,
``activations`` (int64 (L,), the ``fastnet.spec.ACTIVATIONS`` code of each
weight layer), and the ``derivative`` and ``loss`` codes of ``fastnet.spec``.
``rows`` (:class:`Rows`): ``X`` (n, n_0) and ``Y`` (n, n_L), C-contiguous in
params' dtype, n >= 1, and ``sample_weight``: (n,) non-negative w_i in the
same dtype, or an empty array meaning every w_i = 1.
``optimizer``: anything with ``code`` (``fastnet.spec.OPTIMIZERS``), ``hyper``
(float64, the fields of ``fastnet.spec.HYPER_FIELDS``), ``state`` (params'
dtype, (STATE_ROWS, len(params)): velocity in row 0, or Adam's moments in
rows 0 and 1; persists across calls) and ``step`` (int64 (1,), Adam's t).

What each computes
------------------
With layer outputs ``A_0 = X``, ``A_{l+1} = f_l(Z_l)``, ``Z_l = A_l @ W_l + b_l``
(f_l the activation ``activations[l]``), the row error e_i of the loss
(``fastnet.spec.LOSSES``) and W = sum_i w_i:

``forward`` writes the activations of the last layers whose blocks fill the
flat ``out`` (params' dtype): every layer's for a length of
``n * (n_1 + ... + n_L)``, the output layer's alone for ``n * n_L``
(``first_written_layer``).  From the first written layer f, layer l's
(n, n_l) row-major block starts at ``n * (n_f + ... + n_{l-1})``.

``gradient`` returns the UNNORMALISED sums of the batch: ``sum_i w_i e_i``,
and in ``grad`` (packed like params) the gradient of that sum.  Dividing
both by :func:`loss_normaliser` gives the loss and its gradient; a caller
that adds several calls' sums (chunks on several machines) divides once,
exactly as one call over all rows would.  No L2 penalty here: it belongs
to the whole objective, not to a chunk (see ``train_epoch``).  The output
delta is ``w_i 2 (a - y) f'(a)`` for squared errors, ``w_i (a - y)`` for
"bce" after a sigmoid, and ``w_i (p s_i - y)`` for "cross_entropy" after a
softmax (p the softmax of the row, s_i = sum_j y_ij, so ``p - y`` for
targets that sum to one); f' from the layer's output
(``fastnet.spec.Activation.slope``) as ``model.derivative`` says.  For
"cross_entropy" the loss comes from the log-softmax of Z_{L-1}, never
from log(p), so it is finite for any logits.  Then ``dW_l = A_l.T @ delta_{l+1}``,
``db_l = delta_{l+1}.sum(axis=0)``, ``delta_l = (delta_{l+1} @ W_l.T) * f'(A_l)``.

``train_epoch`` runs one epoch of mini-batch descent in a single call,
updating ``model.params`` and the optimizer's state in place.  ``order``
(int64, (m,)) lists the rows to visit, in that order, each in [0, n): a
permutation of all rows for a whole epoch, or a stretch of one for part of
an epoch (no rows are copied to visit them); empty means 0..n-1 in place.
Batch b holds rows ``order[b*batch_size : (b+1)*batch_size]`` (the last may be shorter); its
gradient is normalised by its own ``loss_normaliser`` c, then the L2
penalty's gradient ``alpha r W_l`` (alpha the optimizer's hyper field,
r = :func:`penalty_normaliser`) is added to every weight matrix's (not the
biases'), followed by one update with the rule of
``fastnet.spec.OPTIMIZERS``.  ``grad`` is work memory.  Returns the
epoch's ``sum_i w_i e_i`` (the data term only), each row taken with the
parameters its batch saw; the caller normalises.

Parallelism and checking
------------------------
Rows of a batch are cut into blocks of :func:`block_rows` rows; blocks run
in parallel and their partial gradients are added in block order, so results
do not depend on the thread count.  Backends never
validate: ``Network`` has already checked shapes, dtypes, contiguity and
finiteness.

The sigmoid, identically everywhere: ``e = exp(-min(|z|, clamp))``,
``s = 1/(1+e)`` if ``z >= 0`` else ``e/(1+e)``, with clamp
``SIGMOID_CLAMP`` (float64) or ``SIGMOID_CLAMP_FLOAT32``: ``e`` stays a
normal number, so no backend overflows or warns for any finite z.
"""

import importlib
from typing import NamedTuple

import numpy as np

from fastnet import spec
from fastnet._config import (BLOCK_COUNT_MULTIPLE, BLOCK_ROWS, SPLIT_BLOCKS, SPLIT_MIN_ROWS, SPLIT_ROUNDING,
                             SPLIT_WORK, TILE_ROWS)
from fastnet.layout import ParamLayout

#: Backend name -> module under fastnet.backends (imported on first use).
BACKENDS = {"numpy": "reference", "numba": "numba_kernels", "native": "native"}


class Model(NamedTuple):
    """What a backend reads of a network: packed parameters, their layout, and codes."""

    params: np.ndarray
    layout: ParamLayout
    activations: np.ndarray
    derivative: int
    loss: int


class Rows(NamedTuple):
    """A batch: inputs X (n, n_0), targets Y (n, n_L), per-row weights (n,) or empty for ones.

    ``weight_scale``: what the caller's weights were divided by to give
    ``sample_weight`` (``Network`` divides them by their largest for the
    mean losses, which leaves those losses unchanged).  Backends do not read
    it; whoever sets the L2 penalty does (see ``Optimizer.for_rows`` in
    ``fastnet.training``), since the penalty is divided by the caller's W.
    """

    X: np.ndarray
    Y: np.ndarray
    sample_weight: np.ndarray
    weight_scale: float = 1.0


def load(name):
    """The backend module called ``name`` (a key of BACKENDS); the caller has validated it."""
    return importlib.import_module(f"fastnet.backends.{BACKENDS[name]}")


def block_rows(n_rows, layout):
    """Rows per block of a batch of ``n_rows`` rows of a network of ``layout``
    (a ParamLayout), for its forward pass, its gradient and its training step.

    For a batch of more than BLOCK_ROWS rows, the fewest whole tiles
    (TILE_ROWS) per block that cut it into at most B blocks, B the number
    of BLOCK_ROWS blocks it needs rounded up to a multiple of
    BLOCK_COUNT_MULTIPLE.  For a smaller batch, BLOCK_ROWS (one block:
    serial) when its work ``n_rows * layout.count`` is below SPLIT_WORK;
    otherwise ``ceil(n_rows / SPLIT_BLOCKS)`` rounded up to a multiple of
    SPLIT_ROUNDING, at least SPLIT_MIN_ROWS (fastnet._config).  A function
    of the batch's rows and the network's shape only, so that the sums, and
    every result, never depend on the number of threads.
    """
    if n_rows > BLOCK_ROWS:
        blocks = _round_up(-(-n_rows // BLOCK_ROWS), BLOCK_COUNT_MULTIPLE)
        return _round_up(-(-n_rows // blocks), TILE_ROWS)
    if n_rows * layout.count < SPLIT_WORK:
        return BLOCK_ROWS
    share = -(-n_rows // SPLIT_BLOCKS)
    return min(BLOCK_ROWS, max(SPLIT_MIN_ROWS, _round_up(share, SPLIT_ROUNDING)))


def _round_up(count, multiple):
    """The least multiple of ``multiple`` that is at least ``count`` (both positive ints)."""
    return -(-count // multiple) * multiple


def first_written_layer(sizes, n_rows, out_length):
    """The first layer f >= 1 whose activations ``forward`` writes into an ``out`` of
    ``out_length`` items for ``n_rows`` rows: layers f .. L, the last ones whose
    (n_rows, sizes[l]) blocks fill it exactly; 0 when no such layers do.

    ``sizes``: the layout's int64 widths [n_0, ..., n_L].
    """
    layer, held = sizes.shape[0] - 1, n_rows * sizes[sizes.shape[0] - 1]
    while held < out_length and layer > 1:
        layer -= 1
        held += n_rows * sizes[layer]
    return layer if held == out_length else 0


def checked_first_written_layer(sizes, n_rows, out):
    """``first_written_layer`` for ``out``, or the ValueError saying which lengths it may have."""
    first = first_written_layer(sizes, n_rows, out.shape[0])
    if not first:
        every, last = n_rows * int(sizes[1:].sum()), n_rows * int(sizes[-1])
        raise ValueError(f"out must have the length of the last layers' activations: {every} for every layer, "
                         f"{last} for the output layer alone, or a sum of the last ones; got {out.shape[0]}")
    return first


def weight_total(sample_weight, n_rows):
    """W = sum_i w_i as a Python float (n_rows when ``sample_weight`` is empty)."""
    return float(sample_weight.sum(dtype=np.float64)) if sample_weight.size else float(n_rows)


def loss_normaliser(loss, total_weight, n_outputs):
    """c, the factor that turns unnormalised sums into the loss: 1 for losses that are
    sums, ``1 / W`` for the mean losses and ``1 / (W n_L)`` for the ``per_output``
    ones, and 0 when that denominator is 0 (a batch of zero total weight then has
    zero loss and gradient).  ``loss`` is a code."""
    entry = _LOSS_BY_CODE[loss]
    if not entry.mean:
        return 1.0
    total = total_weight * (n_outputs if entry.per_output else 1)
    return 1.0 / total if total > 0 else 0.0


def penalty_normaliser(loss, total_weight):
    """r, the factor of the L2 penalty ``alpha/2 sum W^2``: ``1 / W`` for the mean
    losses (as scikit-learn's MLP divides by the batch's rows), 1 for "sse", 0 for
    a batch of zero total weight.  ``loss`` is a code."""
    if not _LOSS_BY_CODE[loss].mean:
        return 1.0
    return 1.0 / total_weight if total_weight > 0 else 0.0


_LOSS_BY_CODE = {entry.code: entry for entry in spec.LOSSES.values()}
