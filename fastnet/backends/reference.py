"""The plain NumPy reference backend: written to be read, and the oracle.

Every other backend is tested against these functions.  They follow the
contract in ``fastnet.backends`` (packed parameters, same signatures) but
make whole-batch temporaries freely: clarity first.
"""

import numpy as np

from fastnet._config import SIGMOID_CLAMP, SIGMOID_CLAMP_FLOAT32
from fastnet.backends import DERIVATIVE_CODES, LOSS_CODES, OPTIMIZER_CODES


def unpack(params, sizes, has_bias):
    """Split a packed parameter vector into views ``(weights, biases)``.

    ``weights[l]`` has shape ``(sizes[l], sizes[l+1])``; ``biases[l]`` shape
    ``(sizes[l+1],)``, or ``biases`` is None when ``has_bias`` is false.
    The views share memory with ``params``.
    """
    weights, biases, offset = [], [] if has_bias else None, 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        fan_in, fan_out = int(fan_in), int(fan_out)
        weights.append(params[offset:offset + fan_in * fan_out].reshape(fan_in, fan_out))
        offset += fan_in * fan_out
        if has_bias:
            biases.append(params[offset:offset + fan_out])
            offset += fan_out
    return weights, biases


def parameter_count(sizes, has_bias):
    """Length of the packed parameter vector for these layer widths.

    Counted with Python integers, so absurd widths give an absurd count
    rather than wrapping around in int64.
    """
    widths = [int(width) for width in sizes]
    return sum(i * o + (o if has_bias else 0) for i, o in zip(widths[:-1], widths[1:]))


def sigmoid(z):
    """Logistic function ``1/(1+exp(-z))``, stable and warning-free for any z.

    Uses ``e = exp(-min(|z|, clamp))`` so exp never overflows (the clamp is
    SIGMOID_CLAMP, or SIGMOID_CLAMP_FLOAT32 for float32), then ``1/(1+e)``
    for z >= 0 and ``e/(1+e)`` for z < 0.  Keeps z's dtype.
    """
    clamp = SIGMOID_CLAMP_FLOAT32 if z.dtype == np.float32 else SIGMOID_CLAMP
    e = np.exp(-np.minimum(np.abs(z), clamp))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_derivative(a, derivative):
    """Derivative of the sigmoid, from the layer's output ``a``.

    ``derivative == DERIVATIVE_CODES["exact"]``: ``a * (1 - a)``, the true
    derivative at the pre-activation.  ``"article"``: ``s(a) * (1 - s(a))``,
    the blog series' convention of applying the sigmoid derivative formula to
    values that already are sigmoid outputs.
    """
    if derivative == DERIVATIVE_CODES["article"]:
        a = sigmoid(a)
    return a * (1.0 - a)


def activations(X, weights, biases):
    """Every layer's output for the batch X: a list, hidden layers to the last."""
    outputs, a = [], X
    for layer, W in enumerate(weights):
        z = a @ W
        if biases is not None:
            z = z + biases[layer]
        a = sigmoid(z)
        outputs.append(a)
    return outputs


def row_errors(output, Y, loss):
    """e_i per row: squared error summed over outputs, or binary cross-entropy.

    Cross-entropy clamps each log at -100 (as torch.nn.BCELoss) so that an
    output of exactly 0 or 1 still gives a finite loss.
    """
    if loss == LOSS_CODES["bce"]:
        with np.errstate(divide="ignore"):
            log_a = np.maximum(np.log(output), -100.0)
            log_not_a = np.maximum(np.log(1.0 - output), -100.0)
        return -(Y * log_a + (1.0 - Y) * log_not_a).sum(axis=1)
    return ((output - Y) ** 2).sum(axis=1)


def weights_or_ones(row_weight, n):
    """The per-row weights, all ones (in row_weight's dtype) when ``row_weight`` is empty."""
    return row_weight if row_weight.size else np.ones(n, row_weight.dtype)


def loss_normaliser(w, n_outputs, loss):
    """c: 1 for "sse", 1 / (sum(w) * n_outputs) for the mean losses (0 when sum(w) is 0)."""
    total = float(w.sum()) * n_outputs
    return 1.0 if loss == LOSS_CODES["sse"] else (1.0 / total if total > 0 else 0.0)


def loss_value(output, Y, row_weight, loss):
    """The loss: c * sum_i w_i e_i (see the contract in fastnet.backends)."""
    w = weights_or_ones(row_weight, Y.shape[0])
    return float(loss_normaliser(w, Y.shape[1], loss) * np.sum(w * row_errors(output, Y, loss)))


def output_delta(output, Y, row_weight, loss, derivative):
    """d loss / d z at the output layer.

    Squared errors: ``c w_i 2 (a - y) f'(a)``.  Cross-entropy: ``c w_i (a - y)``,
    the sigmoid's derivative having cancelled against the loss's.
    """
    w = weights_or_ones(row_weight, Y.shape[0])[:, None]
    c = loss_normaliser(w, Y.shape[1], loss)
    if loss == LOSS_CODES["bce"]:
        return c * w * (output - Y)
    return c * w * 2.0 * (output - Y) * sigmoid_derivative(output, derivative)


def backpropagate(X, Y, row_weight, weights, biases, derivative, loss):
    """Loss and its gradient, as ``(loss, dW, db)`` with lists shaped like the parameters.

    delta_L from ``output_delta``; dW_l = A_l.T @ delta_{l+1};
    db_l = sum over rows of delta_{l+1}; delta_l = (delta_{l+1} @ W_l.T) * f'(a_l).
    """
    outputs = activations(X, weights, biases)
    inputs = [X] + outputs[:-1]
    delta = output_delta(outputs[-1], Y, row_weight, loss, derivative)
    dW, db = [None] * len(weights), [None] * len(weights)
    for layer in reversed(range(len(weights))):
        dW[layer] = inputs[layer].T @ delta
        db[layer] = delta.sum(axis=0)
        if layer > 0:
            delta = (delta @ weights[layer].T) * sigmoid_derivative(inputs[layer], derivative)
    value = loss_value(outputs[-1], Y, row_weight, loss)
    return value, dW, (db if biases is not None else None)


def forward(X, params, sizes, has_bias, out):
    """Write every layer's activations into the flat ``out`` (see the contract)."""
    weights, biases = unpack(params, sizes, has_bias)
    offset = 0
    for a in activations(X, weights, biases):
        out[offset:offset + a.size] = a.ravel()
        offset += a.size


def gradient(X, Y, row_weight, params, sizes, has_bias, derivative, loss, grad):
    """Write d loss / d params into ``grad`` (packed like ``params``); return the loss."""
    weights, biases = unpack(params, sizes, has_bias)
    value, dW, db = backpropagate(X, Y, row_weight, weights, biases, derivative, loss)
    grad_weights, grad_biases = unpack(grad, sizes, has_bias)
    for layer, dw in enumerate(dW):
        grad_weights[layer][...] = dw
        if has_bias:
            grad_biases[layer][...] = db[layer]
    return value


def update(params, grad, optimizer, hyper, state, step):
    """One optimizer step on ``params`` in place (formulas in fastnet.backends)."""
    lr, momentum, beta1, beta2, eps = (float(value) for value in hyper)  # weak scalars: keep params' dtype
    if optimizer == OPTIMIZER_CODES["sgd"]:
        params -= lr * grad
    elif optimizer == OPTIMIZER_CODES["momentum"]:
        state[0] = momentum * state[0] + grad
        params -= lr * state[0]
    else:
        step[0] += 1
        state[0] = beta1 * state[0] + (1.0 - beta1) * grad
        state[1] = beta2 * state[1] + (1.0 - beta2) * grad * grad
        m_hat = state[0] / (1.0 - beta1 ** int(step[0]))
        v_hat = state[1] / (1.0 - beta2 ** int(step[0]))
        params -= lr * m_hat / (np.sqrt(v_hat) + eps)


def train_epoch(X, Y, row_weight, order, batch_size, params, sizes, has_bias,
                derivative, loss, optimizer, hyper, state, step, grad):
    """One epoch of mini-batch descent, batch by batch; returns sum_i w_i e_i."""
    n = X.shape[0]
    rows = order if order.size else np.arange(n)
    total = 0.0
    for first in range(0, n, batch_size):
        batch = rows[first:first + batch_size]
        w = row_weight[batch] if row_weight.size else row_weight
        value = gradient(X[batch], Y[batch], w, params, sizes, has_bias, derivative, loss, grad)
        c = loss_normaliser(weights_or_ones(w, batch.size), Y.shape[1], loss)
        total += value / c if c > 0 else 0.0
        update(params, grad, optimizer, hyper, state, step)
    return total
