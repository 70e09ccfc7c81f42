"""The plain NumPy reference backend: written to be read, and the oracle.

Every other backend is tested against these functions.  They follow the
contract in ``fastnet.backends`` (packed parameters, same signatures) but
make whole-batch temporaries freely: clarity first.
"""

import numpy as np

from fastnet._config import SIGMOID_CLAMP
from fastnet.backends import DERIVATIVE_CODES, LOSS_CODES


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


def sigmoid(z):
    """Logistic function ``1/(1+exp(-z))``, stable and warning-free for any z.

    Uses ``e = exp(-min(|z|, SIGMOID_CLAMP))`` so exp never overflows, then
    ``1/(1+e)`` for z >= 0 and ``e/(1+e)`` for z < 0.
    """
    e = np.exp(-np.minimum(np.abs(z), SIGMOID_CLAMP))
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


def loss_value(output, Y, loss):
    """Sum of squared errors, or its mean over all elements for "mse"."""
    sse = float(np.sum((output - Y) ** 2))
    return sse / Y.size if loss == LOSS_CODES["mse"] else sse


def loss_gradient(output, Y, loss):
    """d loss / d output: ``2(a - y)``, divided by ``Y.size`` for "mse"."""
    grad = 2.0 * (output - Y)
    return grad / Y.size if loss == LOSS_CODES["mse"] else grad


def backpropagate(X, Y, weights, biases, derivative, loss):
    """Loss and its gradient, as lists ``(loss, dW, db)`` shaped like the parameters.

    delta_L = dloss/da_L * f'(a_L); dW_l = A_l.T @ delta_{l+1};
    db_l = sum over rows of delta_{l+1}; delta_l = (delta_{l+1} @ W_l.T) * f'(a_l).
    """
    outputs = activations(X, weights, biases)
    inputs = [X] + outputs[:-1]
    delta = loss_gradient(outputs[-1], Y, loss) * sigmoid_derivative(outputs[-1], derivative)
    dW, db = [None] * len(weights), [None] * len(weights)
    for layer in reversed(range(len(weights))):
        dW[layer] = inputs[layer].T @ delta
        db[layer] = delta.sum(axis=0)
        if layer > 0:
            delta = (delta @ weights[layer].T) * sigmoid_derivative(inputs[layer], derivative)
    return loss_value(outputs[-1], Y, loss), dW, (db if biases is not None else None)


def forward(X, params, sizes, has_bias, out):
    """Write every layer's activations into the flat ``out`` (see the contract)."""
    weights, biases = unpack(params, sizes, has_bias)
    offset = 0
    for a in activations(X, weights, biases):
        out[offset:offset + a.size] = a.ravel()
        offset += a.size


def gradient(X, Y, params, sizes, has_bias, derivative, loss, grad):
    """Write d loss / d params into ``grad`` (packed like ``params``); return the loss."""
    weights, biases = unpack(params, sizes, has_bias)
    value, dW, db = backpropagate(X, Y, weights, biases, derivative, loss)
    grad_weights, grad_biases = unpack(grad, sizes, has_bias)
    for layer, dw in enumerate(dW):
        grad_weights[layer][...] = dw
        if has_bias:
            grad_biases[layer][...] = db[layer]
    return value
