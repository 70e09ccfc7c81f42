"""The plain NumPy reference backend: written to be read, and the oracle.

Every other backend is tested against these functions.  They follow the
contract in ``fastnet.backends`` (the same three functions and structures) but
make whole-batch temporaries freely: clarity first.
"""

import numpy as np

from fastnet import spec
from fastnet._config import SIGMOID_CLAMP, SIGMOID_CLAMP_FLOAT32
from fastnet.backends import checked_first_written_layer, loss_normaliser, penalty_normaliser, weight_total

_ARTICLE = spec.DERIVATIVES["article"].code
_BCE, _CROSS_ENTROPY = spec.LOSSES["bce"].code, spec.LOSSES["cross_entropy"].code
_SGD, _MOMENTUM = spec.OPTIMIZERS["sgd"].code, spec.OPTIMIZERS["momentum"].code


def _clamp(z):
    """SIGMOID_CLAMP, or SIGMOID_CLAMP_FLOAT32 for float32 z: the largest |x| any exp(-|x|) here takes."""
    return SIGMOID_CLAMP_FLOAT32 if z.dtype == np.float32 else SIGMOID_CLAMP


def sigmoid(z):
    """Logistic function ``1/(1+exp(-z))``, stable and warning-free for any z.

    Uses ``e = exp(-min(|z|, clamp))`` so exp never overflows (the clamp is
    SIGMOID_CLAMP, or SIGMOID_CLAMP_FLOAT32 for float32), then ``1/(1+e)``
    for z >= 0 and ``e/(1+e)`` for z < 0.  Keeps z's dtype.
    """
    e = np.exp(-np.minimum(np.abs(z), _clamp(z)))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def tanh(z):
    """tanh(z) as ``sign(z) (-m) / (2 + m)``, ``m = expm1(-min(2 |z|, clamp))``.

    The form every backend computes (the compiled ones with their own
    expm1): no cancellation near 0, exactly +-1 far out.  Keeps z's dtype.
    """
    m = np.expm1(-np.minimum(2.0 * np.abs(z), _clamp(z)))
    return np.copysign(-m / (2.0 + m), z)


def relu(z):
    """max(z, 0)."""
    return np.maximum(z, 0.0)


def linear(z):
    """z itself (a copy)."""
    return z.copy()


def softmax(z):
    """Row-wise ``exp(z_j - max_k z_k) / sum_k exp(z_k - max_k z_k)``, each exp of at
    least -clamp (as the sigmoid's), for z (n, width).  Keeps z's dtype."""
    e = np.exp(-np.minimum(z.max(axis=1, keepdims=True) - z, _clamp(z)))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z):
    """Row-wise ``z_j - lse``, ``lse = max_k z_k + log sum_k exp(z_k - max_k z_k)``:
    finite for any finite z (never log of an underflowed p)."""
    top = z.max(axis=1, keepdims=True)
    e = np.exp(-np.minimum(top - z, _clamp(z)))
    return z - (top + np.log(e.sum(axis=1, keepdims=True)))


def sigmoid_slope(a, derivative):
    """Derivative of the sigmoid, from the layer's output ``a``.

    ``derivative`` "exact" (a code of fastnet.spec.DERIVATIVES): ``a * (1 - a)``, the true
    derivative at the pre-activation.  ``"article"``: ``s(a) * (1 - s(a))``,
    the blog series' convention of applying the sigmoid derivative formula to
    values that already are sigmoid outputs.
    """
    if derivative == _ARTICLE:
        a = sigmoid(a)
    return a * (1.0 - a)


def tanh_slope(a, derivative):
    """1 - a^2, tanh's derivative from its output."""
    return 1.0 - a * a


def relu_slope(a, derivative):
    """1 where the output is positive, else 0 (0 at z = 0, as torch)."""
    return (a > 0).astype(a.dtype)


def linear_slope(a, derivative):
    """1 everywhere."""
    return np.ones_like(a)


def no_slope(a, derivative):
    """Softmax has no elementwise slope: its loss fuses the output delta."""
    raise ValueError("softmax is only differentiated together with cross_entropy")


#: Activation code (fastnet.spec.ACTIVATIONS) -> (f(Z), f' from the output a and the derivative code).
ACTIVATION_FUNCTIONS = {
    spec.ACTIVATIONS["sigmoid"].code: (sigmoid, sigmoid_slope),
    spec.ACTIVATIONS["tanh"].code: (tanh, tanh_slope),
    spec.ACTIVATIONS["relu"].code: (relu, relu_slope),
    spec.ACTIVATIONS["linear"].code: (linear, linear_slope),
    spec.ACTIVATIONS["softmax"].code: (softmax, no_slope),
}


def activate(z, code):
    """f(z) for the activation ``code``."""
    return ACTIVATION_FUNCTIONS[code][0](z)


def slope(a, code, derivative):
    """f' of the activation ``code``, from its output ``a``, as ``derivative`` says."""
    return ACTIVATION_FUNCTIONS[code][1](a, derivative)


def pre_activations_and_outputs(X, weights, biases, codes):
    """(Z, A): every weight layer's pre-activations Z_l = A_l @ W_l + b_l and outputs
    A_{l+1} = f_l(Z_l), as lists from the first layer to the last.
    ``codes[l]`` is weight layer l's activation code."""
    pre, outputs, a = [], [], X
    for layer, W in enumerate(weights):
        z = a @ W
        if biases is not None:
            z = z + biases[layer]
        a = activate(z, codes[layer])
        pre.append(z)
        outputs.append(a)
    return pre, outputs


def activations(X, weights, biases, codes):
    """Every layer's output for the batch X: a list, hidden layers to the last."""
    return pre_activations_and_outputs(X, weights, biases, codes)[1]


def row_errors(output, Y, loss, logits=None):
    """e_i per row: squared error summed over outputs, binary cross-entropy, or
    cross-entropy from the output layer's pre-activations ``logits``.

    Binary cross-entropy takes each log as at least spec.BCE_LOG_FLOOR (as
    torch.nn.BCELoss), so an output of exactly 0 or 1 still gives a finite loss.
    """
    if loss == _CROSS_ENTROPY:
        return -(Y * log_softmax(logits)).sum(axis=1)
    if loss == _BCE:
        with np.errstate(divide="ignore"):
            log_a = np.maximum(np.log(output), spec.BCE_LOG_FLOOR)
            log_not_a = np.maximum(np.log(1.0 - output), spec.BCE_LOG_FLOOR)
        return -(Y * log_a + (1.0 - Y) * log_not_a).sum(axis=1)
    return ((output - Y) ** 2).sum(axis=1)


def weights_or_ones(sample_weight, n):
    """The per-row weights, all ones (in sample_weight's dtype) when ``sample_weight`` is empty."""
    return sample_weight if sample_weight.size else np.ones(n, sample_weight.dtype)


def output_delta(output, Y, sample_weight, loss, code, derivative):
    """d (sum_i w_i e_i) / d z at the output layer, whose activation is ``code``.

    Squared errors: ``w_i 2 (a - y) f'(a)``.  Binary cross-entropy after a
    sigmoid: ``w_i (a - y)``.  Cross-entropy after a softmax:
    ``w_i (p s_i - y)``, s_i = sum_j y_ij.  The output activation's
    derivative has cancelled against the loss's in both cross-entropies.
    """
    w = weights_or_ones(sample_weight, Y.shape[0])[:, None]
    if loss == _CROSS_ENTROPY:
        return w * (output * Y.sum(axis=1, keepdims=True) - Y)
    if loss == _BCE:
        return w * (output - Y)
    return w * 2.0 * (output - Y) * slope(output, code, derivative)


def backpropagate(X, Y, sample_weight, weights, biases, codes, derivative, loss):
    """The unnormalised sums ``(sum_i w_i e_i, dW, db)``, dW and db lists shaped like the parameters.

    delta_L from ``output_delta``; dW_l = A_l.T @ delta_{l+1};
    db_l = sum over rows of delta_{l+1}; delta_l = (delta_{l+1} @ W_l.T) * f'(a_l).
    """
    pre, outputs = pre_activations_and_outputs(X, weights, biases, codes)
    inputs = [X] + outputs[:-1]
    delta = output_delta(outputs[-1], Y, sample_weight, loss, codes[-1], derivative)
    dW, db = [None] * len(weights), [None] * len(weights)
    for layer in reversed(range(len(weights))):
        dW[layer] = inputs[layer].T @ delta
        db[layer] = delta.sum(axis=0)
        if layer > 0:
            delta = (delta @ weights[layer].T) * slope(inputs[layer], codes[layer - 1], derivative)
    w = weights_or_ones(sample_weight, Y.shape[0])
    errors = float(np.sum(w * row_errors(outputs[-1], Y, loss, pre[-1])))
    return errors, dW, (db if biases is not None else None)


def forward(model, X, out):
    """Write the activations of the last layers that fill the flat ``out`` (see the contract)."""
    first = checked_first_written_layer(model.layout.sizes, X.shape[0], out)
    weights, biases = model.layout.unpack(model.params)
    offset = 0
    for a in activations(X, weights, biases, model.activations)[first - 1:]:
        out[offset:offset + a.size] = a.ravel()
        offset += a.size


def gradient(model, rows, grad):
    """Write the gradient of sum_i w_i e_i into ``grad`` (packed like params); return that sum."""
    weights, biases = model.layout.unpack(model.params)
    errors, dW, db = backpropagate(rows.X, rows.Y, rows.sample_weight, weights, biases,
                                   model.activations, model.derivative, model.loss)
    grad_weights, grad_biases = model.layout.unpack(grad)
    for layer, dw in enumerate(dW):
        grad_weights[layer][...] = dw
        if model.layout.has_bias:
            grad_biases[layer][...] = db[layer]
    return errors


def add_penalty(grad, params, layout, coefficient):
    """grad += coefficient * W_l for every weight matrix (biases untouched), in place:
    the L2 penalty's gradient, coefficient = alpha r."""
    if coefficient == 0.0:
        return
    grad_weights, _ = layout.unpack(grad)
    for target, weights in zip(grad_weights, layout.unpack(params)[0]):
        target += grad.dtype.type(coefficient) * weights


def update(params, grad, optimizer):
    """One optimizer step on ``params`` in place (rules in fastnet.spec.OPTIMIZERS)."""
    # Python floats are weak scalars: the arithmetic keeps params' dtype.
    lr, momentum, beta1, beta2, eps, _ = (float(value) for value in optimizer.hyper)
    state, step = optimizer.state, optimizer.step
    if optimizer.code == _SGD:
        params -= lr * grad
    elif optimizer.code == _MOMENTUM:
        state[0] = momentum * state[0] + grad
        params -= lr * state[0]
    else:
        step[0] += 1
        state[0] = beta1 * state[0] + (1.0 - beta1) * grad
        state[1] = beta2 * state[1] + (1.0 - beta2) * grad * grad
        lr_t, eps_t = (params.dtype.type(value) for value in spec.adam_scalars(lr, beta1, beta2, eps, int(step[0])))
        params -= lr_t * (state[0] / (np.sqrt(state[1]) + eps_t))


def train_epoch(model, rows, order, batch_size, optimizer, grad):
    """One epoch of mini-batch descent, batch by batch; returns sum_i w_i e_i."""
    n_outputs = rows.Y.shape[1]
    visit = order if order.size else np.arange(rows.X.shape[0])
    n = visit.size
    alpha = float(optimizer.hyper[spec.hyper_index("alpha")])
    total = 0.0
    for first in range(0, n, batch_size):
        batch = visit[first:first + batch_size]
        w = rows.sample_weight[batch] if rows.sample_weight.size else rows.sample_weight
        batch_rows = type(rows)(rows.X[batch], rows.Y[batch], w)
        total += gradient(model, batch_rows, grad)
        batch_weight = weight_total(w, batch.size)
        grad *= loss_normaliser(model.loss, batch_weight, n_outputs)
        add_penalty(grad, model.params, model.layout, alpha * penalty_normaliser(model.loss, batch_weight))
        update(model.params, grad, optimizer)
    return total
