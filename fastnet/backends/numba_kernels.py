"""Numba backend: fused, tiled @njit kernels.

The batch is streamed in tiles of ``TILE_ROWS`` rows.  Inside a tile every
activation and delta is stored feature-major, shape ``(width, TILE_ROWS)``,
so each inner loop runs over the tile's rows, contiguous in memory, and
LLVM vectorises it whatever the layer widths.  There are no whole-batch
temporaries: work memory is a few tiles, allocated once per call.

This Numba has no SVML, so ``math.exp`` in a loop would stay scalar.  The
sigmoid therefore uses its own exp (``_exp_nonpositive``), written as plain
arithmetic that vectorises.  Nothing compiles at import: kernels compile on
first use, and are cached on disk when ``fastnet._config.NUMBA_CACHE``.
"""

import numpy as np
from numba import njit

from fastnet._config import FASTMATH, FASTMATH_REDUCE, NUMBA_CACHE, SIGMOID_CLAMP, TILE_ROWS
from fastnet.backends import DERIVATIVE_CODES, LOSS_CODES

_ARTICLE = DERIVATIVE_CODES["article"]
_MSE = LOSS_CODES["mse"]

# exp(x) = 2**k * exp(r), k = round(x / ln 2), r = x - k ln 2 (Cody-Waite).
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 with its low 32 mantissa bits zero
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
# Adding 1.5 * 2**52 rounds to an integer held in the low mantissa bits; the
# extra 1023 is the exponent bias, so those bits shifted left by 52 are 2**k.
_ROUND_SHIFT = 6755399441055744.0 + 1023.0


def _kernel(fastmath=FASTMATH, inline="never"):
    """The one njit configuration every kernel here uses."""
    return njit(cache=NUMBA_CACHE, nogil=True, fastmath=set(fastmath), error_model="numpy", inline=inline)


@_kernel(inline="always")
def _exp_reduced(r):
    """exp(r) for |r| <= ln(2)/2: Taylor series to degree 13 (error ~1e-16)."""
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    return p * r + 1.0


@_kernel(inline="always")
def _reciprocal_1_to_2(d):
    """1/d for d in [1, 2], to ~1 ulp, without a double-precision division.

    A float32 division (twice the SIMD throughput of a float64 one) gives
    24 bits; two Newton steps y <- y(2 - dy) square the error twice.
    """
    y = np.float64(np.float32(1.0) / np.float32(d))
    y = y * (2.0 - d * y)
    return y * (2.0 - d * y)


@_kernel(inline="always")
def _exp_neg_abs(z, m, e, scale):
    """e[t] = exp(-min(|z[t]|, SIGMOID_CLAMP)) for t < m, vectorisable.

    z, e, scale: 1-D float64 of length >= m; ``scale`` is scratch.  The
    argument lies in [-708, 0], so 2**k is always a normal double.
    """
    for t in range(m):
        x = -min(abs(z[t]), SIGMOID_CLAMP)
        shifted = x * _LOG2E + _ROUND_SHIFT
        k = shifted - _ROUND_SHIFT
        scale[t] = shifted
        e[t] = _exp_reduced(x - k * _LN2_HI - k * _LN2_LO)
    bits = scale.view(np.int64)
    for t in range(m):
        bits[t] = bits[t] << 52
    for t in range(m):
        e[t] *= scale[t]


@_kernel(inline="always")
def _sigmoid(z, m, out, scratch):
    """out[t] = 1 / (1 + exp(-z[t])) for t < m, stable for any finite z.

    z and out may be the same array.  scratch: (2, >= m) float64.
    """
    e, scale = scratch[0], scratch[1]
    _exp_neg_abs(z, m, e, scale)
    for t in range(m):
        numerator = 1.0 if z[t] >= 0.0 else e[t]
        out[t] = numerator * _reciprocal_1_to_2(1.0 + e[t])


@_kernel(inline="always")
def _times_sigmoid_derivative(delta, a, m, derivative, scratch):
    """delta[t] *= f'(a[t]) for t < m, from the layer output a.

    Exact: f' = a (1 - a).  Article: f' = s(a) (1 - s(a)), s the sigmoid.
    """
    if derivative == _ARTICLE:
        s = scratch[2]
        _sigmoid(a, m, s, scratch)
        for t in range(m):
            delta[t] *= s[t] * (1.0 - s[t])
    else:
        for t in range(m):
            delta[t] *= a[t] * (1.0 - a[t])


@_kernel(inline="always")
def _load_tile(X, first_row, m, tile):
    """tile[k, t] = X[first_row + t, k] for t < m: rows to feature-major."""
    for k in range(X.shape[1]):
        column = tile[k]
        for t in range(m):
            column[t] = X[first_row + t, k]


@_kernel(inline="always")
def _dense_sigmoid(a_in, W, b, has_bias, m, a_out, scratch):
    """a_out = sigmoid(W.T @ a_in + b) on one tile, feature-major.

    a_in: (fan_in, T); W: (fan_in, fan_out); b: (fan_out,); a_out: (fan_out, T).
    """
    for j in range(W.shape[1]):
        z = a_out[j]
        start = b[j] if has_bias else 0.0
        for t in range(m):
            z[t] = start
        for k in range(W.shape[0]):
            w, a = W[k, j], a_in[k]
            for t in range(m):
                z[t] += w * a[t]
        _sigmoid(z, m, z, scratch)


@_kernel(inline="always")
def _back_to_inputs(delta, W, a_in, m, derivative, delta_in, scratch):
    """delta_in = (W @ delta) * f'(a_in) on one tile, feature-major.

    delta: (fan_out, T); W: (fan_in, fan_out); a_in, delta_in: (fan_in, T).
    """
    for k in range(W.shape[0]):
        d = delta_in[k]
        for t in range(m):
            d[t] = 0.0
        for j in range(W.shape[1]):
            w, dj = W[k, j], delta[j]
            for t in range(m):
                d[t] += w * dj[t]
        _times_sigmoid_derivative(d, a_in[k], m, derivative, scratch)


@_kernel(FASTMATH_REDUCE)
def _accumulate_weight_gradient(a_in, delta, m, has_bias, dW, db):
    """dW += a_in @ delta.T and db += row sums of delta, over one tile.

    a_in: (fan_in, T); delta: (fan_out, T); dW: (fan_in, fan_out); db: (fan_out,).
    """
    for k in range(dW.shape[0]):
        a = a_in[k]
        for j in range(dW.shape[1]):
            d = delta[j]
            total = 0.0
            for t in range(m):
                total += a[t] * d[t]
            dW[k, j] += total
    if has_bias:
        for j in range(dW.shape[1]):
            d = delta[j]
            total = 0.0
            for t in range(m):
                total += d[t]
            db[j] += total


@_kernel(FASTMATH_REDUCE)
def _output_delta(a_out, Y, first_row, m, scale, delta):
    """delta = scale * (a_out - y) on one tile; return sum((a_out - y)**2).

    a_out, delta: (n_out, T) feature-major; Y: (n, n_out) rows.
    """
    squared = 0.0
    for j in range(a_out.shape[0]):
        a, d = a_out[j], delta[j]
        for t in range(m):
            diff = a[t] - Y[first_row + t, j]
            squared += diff * diff
            d[t] = scale * diff
    return squared


@_kernel()
def _layer_offsets(sizes, has_bias):
    """Start of each layer's W and b in the packed parameter vector."""
    n_weight_layers = sizes.shape[0] - 1
    w_start = np.empty(n_weight_layers, np.int64)
    b_start = np.empty(n_weight_layers, np.int64)
    offset = 0
    for layer in range(n_weight_layers):
        w_start[layer] = offset
        offset += sizes[layer] * sizes[layer + 1]
        b_start[layer] = offset
        if has_bias:
            offset += sizes[layer + 1]
    return w_start, b_start


@_kernel()
def _tile_buffers(sizes):
    """Feature-major work memory for one tile: activations and start offsets.

    Layer l's tile (sizes[l], TILE_ROWS) starts at ``starts[l]`` in ``acts``.
    """
    starts = np.empty(sizes.shape[0], np.int64)
    total = 0
    for layer in range(sizes.shape[0]):
        starts[layer] = total
        total += sizes[layer] * TILE_ROWS
    return np.empty(total, np.float64), starts


@_kernel(inline="always")
def _tile_of(buffer, start, width):
    """The (width, TILE_ROWS) feature-major view that starts at ``start``."""
    return buffer[start:start + width * TILE_ROWS].reshape(width, TILE_ROWS)


@_kernel(inline="always")
def _forward_tile(X, first_row, m, params, sizes, has_bias, w_start, b_start, acts, starts, scratch):
    """Run one tile of rows through every layer, filling ``acts``."""
    _load_tile(X, first_row, m, _tile_of(acts, starts[0], sizes[0]))
    for layer in range(sizes.shape[0] - 1):
        fan_in, fan_out = sizes[layer], sizes[layer + 1]
        W = params[w_start[layer]:w_start[layer] + fan_in * fan_out].reshape(fan_in, fan_out)
        b = params[b_start[layer]:b_start[layer] + fan_out]
        _dense_sigmoid(_tile_of(acts, starts[layer], fan_in), W, b, has_bias, m,
                       _tile_of(acts, starts[layer + 1], fan_out), scratch)


@_kernel()
def forward(X, params, sizes, has_bias, out):
    """Every layer's activations for X, written row-major into the flat ``out``.

    X: (n, sizes[0]) float64; params: packed float64; sizes: int64 (L+1,);
    out: float64 (n * sum(sizes[1:]),), layer l as an (n, sizes[l]) block.
    A_{l+1} = sigmoid(A_l @ W_l + b_l).
    """
    n = X.shape[0]
    w_start, b_start = _layer_offsets(sizes, has_bias)
    acts, starts = _tile_buffers(sizes)
    scratch = np.empty((3, TILE_ROWS), np.float64)
    for first_row in range(0, n, TILE_ROWS):
        m = min(TILE_ROWS, n - first_row)
        _forward_tile(X, first_row, m, params, sizes, has_bias, w_start, b_start, acts, starts, scratch)
        block = 0
        for layer in range(1, sizes.shape[0]):
            width = sizes[layer]
            tile = _tile_of(acts, starts[layer], width)
            for t in range(m):
                for j in range(width):
                    out[block + (first_row + t) * width + j] = tile[j, t]
            block += n * width


@_kernel()
def gradient(X, Y, params, sizes, has_bias, derivative, loss, grad):
    """Fused full-batch loss and gradient; writes d loss / d params into ``grad``.

    X: (n, sizes[0]) float64; Y: (n, sizes[-1]) float64; params, grad:
    packed float64 (see fastnet.backends).  Per tile of rows: forward pass,
    delta_L = dloss/da * f'(a_L), then for each layer from the last
    dW_l += A_l.T @ delta_{l+1}, db_l += sum(delta_{l+1}) and
    delta_l = (delta_{l+1} @ W_l.T) * f'(A_l).  Returns the loss (sse or mse).
    """
    n, n_layers = X.shape[0], sizes.shape[0]
    w_start, b_start = _layer_offsets(sizes, has_bias)
    acts, starts = _tile_buffers(sizes)
    widest = np.max(sizes[1:])
    deltas = np.empty((2, widest * TILE_ROWS), np.float64)
    scratch = np.empty((3, TILE_ROWS), np.float64)
    grad[:] = 0.0
    loss_scale = 2.0 / (n * sizes[-1]) if loss == _MSE else 2.0
    squared = 0.0
    for first_row in range(0, n, TILE_ROWS):
        current = 0  # which half of ``deltas`` holds the current delta
        m = min(TILE_ROWS, n - first_row)
        _forward_tile(X, first_row, m, params, sizes, has_bias, w_start, b_start, acts, starts, scratch)
        delta = _tile_of(deltas[current], 0, sizes[-1])
        a_out = _tile_of(acts, starts[n_layers - 1], sizes[-1])
        squared += _output_delta(a_out, Y, first_row, m, loss_scale, delta)
        for j in range(sizes[-1]):
            _times_sigmoid_derivative(delta[j], a_out[j], m, derivative, scratch)
        for layer in range(n_layers - 2, -1, -1):
            fan_in, fan_out = sizes[layer], sizes[layer + 1]
            W = params[w_start[layer]:w_start[layer] + fan_in * fan_out].reshape(fan_in, fan_out)
            dW = grad[w_start[layer]:w_start[layer] + fan_in * fan_out].reshape(fan_in, fan_out)
            db = grad[b_start[layer]:b_start[layer] + fan_out]
            a_in = _tile_of(acts, starts[layer], fan_in)
            _accumulate_weight_gradient(a_in, delta, m, has_bias, dW, db)
            if layer > 0:
                current = 1 - current
                delta_in = _tile_of(deltas[current], 0, fan_in)
                _back_to_inputs(delta, W, a_in, m, derivative, delta_in, scratch)
                delta = delta_in
    return squared / (n * sizes[-1]) if loss == _MSE else squared
