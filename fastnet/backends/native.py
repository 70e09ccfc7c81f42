"""Native backend: a thin wrapper over the C kernels of ``fastnet._native``.

The kernels (``kernels/network.c``) stream the batch in tiles of
``TILE_ROWS`` rows, keep each tile feature-major so every inner loop
vectorises, use their own vectorisable ``exp`` for the sigmoid, and
allocate their work memory once per call.  They release the GIL while they
run.  Arrays pass straight through the buffer protocol: ``Network`` has
already made them C-contiguous float64 (``sizes`` int64).  The extension
still checks dtypes and exact lengths, raising ValueError rather than ever
touching memory outside an array, and MemoryError if its work memory cannot
be allocated.
"""

from fastnet import _native


def forward(X, params, sizes, has_bias, out):
    """Write every layer's activations for X into the flat ``out``.

    X: (n, sizes[0]) float64; params: packed float64 (see the contract in
    ``fastnet.backends``); sizes: int64 (L+1,); out: float64 of length
    ``n * sum(sizes[1:])``, layer l as an (n, sizes[l]) row-major block.
    A_{l+1} = sigmoid(A_l @ W_l + b_l).
    """
    _native.forward(X, params, sizes, has_bias, out)


def gradient(X, Y, params, sizes, has_bias, derivative, loss, grad):
    """Write dLoss/dparams into ``grad`` (packed like ``params``); return the loss.

    X: (n, sizes[0]) and Y: (n, sizes[-1]) float64; derivative and loss are
    ``DERIVATIVE_CODES`` / ``LOSS_CODES`` values.  delta_L = dLoss/dA_L *
    f'(A_L); dW_l = A_l.T @ delta_{l+1}; db_l = delta_{l+1}.sum(axis=0);
    delta_l = (delta_{l+1} @ W_l.T) * f'(A_l).
    """
    return _native.gradient(X, Y, params, sizes, has_bias, derivative, loss, grad)
