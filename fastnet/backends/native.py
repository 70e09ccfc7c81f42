"""Native backend: a thin wrapper over the C kernels of ``fastnet._native``.

The kernels (``kernels/network.c``) stream the batch in tiles of
``TILE_ROWS`` rows, keep each tile feature-major so every inner loop
vectorises, use their own vectorisable ``exp`` for the sigmoid, and
allocate their work memory once per call.  Batches of more than
``BLOCK_ROWS`` rows are cut into blocks that run on OpenMP threads, each
into its own partial gradient, added in block order: results are bitwise
identical for any thread count (see ``set_num_threads``).  As in the Numba
backend, one parallel wave takes as many blocks as ``PARTIAL_GRADIENT_BYTES``
of partial gradients allow, so threads are started (and wait for each
other) rarely, and blocks are handed out dynamically, so a thread slowed
down by other processes does not hold the wave up.  The kernels
release the GIL while they run; ``train_epoch`` runs a whole epoch in C.

Arrays pass straight through the buffer protocol: ``Network`` has already
made them C-contiguous, all float64 or all float32 (``sizes``, ``order``,
``step`` int64; ``hyper`` always float64).  X's dtype picks the kernels:
the C code is written once (``kernels/network_impl.h``) and compiled for
double and for float; float32 runs in float32 throughout, except for the
loss sums, the total row weight and the loss normaliser, kept in double.
The float32 sigmoid clamps |z| at ``SIGMOID_CLAMP_FLOAT32`` and uses a
degree-7 exp, as the Numba backend's.  The extension still checks dtypes
(TypeError for a float array whose dtype differs from X's), exact lengths,
codes and the range of every ``order`` entry, raising ValueError/TypeError
rather than ever touching memory outside an array, and MemoryError if its
work memory cannot be allocated.
"""

from fastnet import _native


def forward(X, params, sizes, has_bias, out):
    """Write every layer's activations for X into the flat ``out``.

    X: (n, sizes[0]) float64 or float32; params: packed, X's dtype (see the
    contract in ``fastnet.backends``); sizes: int64 (L+1,); out: X's dtype,
    length ``n * sum(sizes[1:])``, layer l as an (n, sizes[l]) row-major block.
    A_{l+1} = sigmoid(A_l @ W_l + b_l).
    """
    _native.forward(X, params, sizes, has_bias, out)


def gradient(X, Y, row_weight, params, sizes, has_bias, derivative, loss, grad):
    """Write dLoss/dparams into ``grad`` (packed like ``params``); return the loss.

    X: (n, sizes[0]) and Y: (n, sizes[-1]), float64 or float32; row_weight:
    (n,) or empty (all ones); params, grad: packed; every array X's dtype.
    derivative, loss: ``DERIVATIVE_CODES`` /
    ``LOSS_CODES`` values.  With e_i the row's squared error (sse, mse) or
    cross-entropy (bce, logs clamped at -100) and W = sum(w): sse =
    sum w_i e_i; mse, bce = sse / (W n_L).  delta_L = c w_i 2 (a - y) f'(a)
    (sse, mse) or c w_i (a - y) (bce), c = 1 (sse) or 1/(W n_L), 0 when
    W = 0 (zero loss and gradient);
    dW_l = A_l.T @ delta_{l+1}; db_l = delta_{l+1}.sum(axis=0);
    delta_l = (delta_{l+1} @ W_l.T) * f'(A_l).
    """
    return _native.gradient(X, Y, row_weight, params, sizes, has_bias, derivative, loss, grad)


def train_epoch(X, Y, row_weight, order, batch_size, params, sizes, has_bias,
                derivative, loss, optimizer, hyper, state, step, grad):
    """One epoch of mini-batch training in C; update ``params`` in place.

    Batch b holds rows ``order[b*batch_size:(b+1)*batch_size]`` (order:
    int64 (n,), or empty for 0..n-1 read in place).  Each batch: g = its
    gradient as in ``gradient`` (its own W), then with hyper = float64
    [lr, mu, b1, b2, eps] (rounded to X's dtype) and state (2, len(params))
    in X's dtype, like every other float array: "sgd"
    p -= lr g; "momentum" v = mu v + g, p -= lr v; "adam" t += 1 (step:
    int64 (1,)), m = b1 m + (1-b1) g, v = b2 v + (1-b2) g**2,
    p -= lr (m/(1-b1**t)) / (sqrt(v/(1-b2**t)) + eps).  grad is work
    memory.  Returns sum_i w_i e_i over the epoch, each row with the
    parameters its batch saw.
    """
    return _native.train_epoch(X, Y, row_weight, order, batch_size, params, sizes, has_bias,
                               derivative, loss, optimizer, hyper, state, step, grad)


def set_num_threads(n):
    """Use up to ``n >= 1`` threads (default: all cores, ``omp_get_max_threads()``).

    Results do not depend on ``n``.  Without OpenMP, and in a child process
    forked after the kernels were first used (OpenMP's threads do not
    survive ``fork``), the kernels use one thread.
    """
    _native.set_num_threads(n)


def get_num_threads():
    """The number of threads the kernels use."""
    return _native.get_num_threads()
