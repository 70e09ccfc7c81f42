"""Backends: one module per backend, all with the same functions.

Every backend exposes

    forward(X, params, sizes, has_bias, out) -> None
    gradient(X, Y, row_weight, params, sizes, has_bias, derivative, loss, grad) -> float
    train_epoch(X, Y, row_weight, order, batch_size, params, sizes, has_bias,
                derivative, loss, optimizer, hyper, state, step, grad) -> float

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
row_weight : (n,) float64 non-negative per-row weights w_i, or an empty
    array meaning every w_i = 1.
derivative : DERIVATIVE_CODES value; the sigmoid derivative from an output a
    is ``a*(1-a)`` ("exact") or ``s(a)*(1-s(a))`` ("article").
loss : LOSS_CODES value.  With e_i the row's error summed over outputs,
    ``sum_j (a_ij - y_ij)**2`` ("sse", "mse") or
    ``-sum_j [y log a + (1-y) log(1-a)]`` with each log clamped at -100, as
    torch.nn.BCELoss ("bce"), and W = sum_i w_i over the batch:
    "sse" is ``sum_i w_i e_i``; "mse" and "bce" are ``sum_i w_i e_i / (W n_L)``.
    Output delta (d loss / d z_L): "sse"/"mse" ``c w_i 2 (a - y) f'(a)``,
    "bce" ``c w_i (a - y)`` (fused: no division by a(1-a)), where c = 1
    for "sse" and ``1/(W n_L)`` otherwise.

``gradient`` writes dLoss/dparams into ``grad`` and returns the loss.

Training: ``train_epoch`` runs one epoch of mini-batch gradient descent in a
single call.  ``order`` (int64, (n,)) is the order in which rows are
visited, or empty for 0..n-1 (batches are then read in place, no copy).
Batch b holds rows ``order[b*batch_size : (b+1)*batch_size]`` (the last
may be shorter); each batch's gradient is that of its loss as defined above
(its own W), followed by one update of ``params`` in place:
optimizer (OPTIMIZER_CODES) "sgd" ``p -= lr g``; "momentum"
``v = mu v + g; p -= lr v``; "adam" ``t += 1; m = b1 m + (1-b1) g;
v = b2 v + (1-b2) g**2; p -= lr (m/(1-b1**t)) / (sqrt(v/(1-b2**t)) + eps)``.
``hyper`` is float64 ``[lr, mu, b1, b2, eps]``; ``state`` float64
``(2, len(params))`` holds v (row 0) or m and v (rows 0, 1) and persists
across calls; ``step`` is int64 (1,), Adam's t.  ``grad`` is work memory.
Returns the epoch's ``sum_i w_i e_i`` over all rows, each row taken with
the parameters its batch saw; the caller normalises.

Parallelism: rows of a batch are cut into blocks of BLOCK_ROWS (see
fastnet._config); blocks run in parallel and their partial gradients are
added in block order, so results do not depend on the thread count.
Backends never validate: ``Network`` has already checked shapes, dtypes,
contiguity and finiteness.

Sigmoid, identically everywhere
-------------------------------
``e = exp(-min(|z|, SIGMOID_CLAMP))``; ``s = 1/(1+e)`` if ``z >= 0`` else
``e/(1+e)``.  The clamp keeps ``e`` a normal double, so no backend ever
overflows or warns, for any finite z.
"""

DERIVATIVE_CODES = {"exact": 0, "article": 1}
LOSS_CODES = {"sse": 0, "mse": 1, "bce": 2}
OPTIMIZER_CODES = {"sgd": 0, "momentum": 1, "adam": 2}
