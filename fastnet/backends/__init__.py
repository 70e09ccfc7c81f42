"""Backends: one module per backend, all with the same functions.

Every backend exposes

    forward(X, params, sizes, has_bias, out) -> None
    gradient(X, Y, params, sizes, has_bias, derivative, loss, grad) -> float

and they agree with ``reference`` (the plain NumPy oracle) to 1e-12 relative.

The packed parameter layout
---------------------------
``sizes`` is an int64 array ``[n_0, n_1, ..., n_L]`` of layer widths.
``params`` is one C-contiguous 1-D float array holding, for each weight
layer ``l = 0 .. L-1`` in order, the weight matrix ``W_l`` of shape
``(n_l, n_{l+1})`` in row-major order, followed by the bias ``b_l`` of
shape ``(n_{l+1},)`` when ``has_bias`` is true.  ``grad`` has the same
layout.  ``Network`` keeps its weights and biases as views into this one
array, so a whole update is a single vector operation.

Arguments
---------
X : (n, n_0) C-contiguous float64, n >= 1.
Y : (n, n_L) C-contiguous float64.
out : 1-D float64 of length ``n * (n_1 + ... + n_L)``; layer ``l``'s
    activations ``A_l`` (shape ``(n, n_l)``, row-major) fill the block that
    starts at ``n * (n_1 + ... + n_{l-1})``.
derivative : DERIVATIVE_CODES value; the sigmoid derivative from an output a
    is ``a*(1-a)`` ("exact") or ``s(a)*(1-s(a))`` ("article").
loss : LOSS_CODES value; "sse" is ``sum((a-y)**2)``, "mse" is that divided
    by ``n * n_L``.

``gradient`` writes dLoss/dparams into ``grad`` and returns the loss.
Backends never validate: ``Network`` has already checked shapes, dtypes,
contiguity and finiteness.

Sigmoid, identically everywhere
-------------------------------
``e = exp(-min(|z|, SIGMOID_CLAMP))``; ``s = 1/(1+e)`` if ``z >= 0`` else
``e/(1+e)``.  The clamp keeps ``e`` a normal double, so no backend ever
overflows or warns, for any finite z.
"""

DERIVATIVE_CODES = {"exact": 0, "article": 1}
LOSS_CODES = {"sse": 0, "mse": 1}
