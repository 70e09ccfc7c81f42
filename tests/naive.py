"""The one set of oracles for the fastnet tests: plain NumPy, written to be read, independent of fastnet.

Nothing here imports fastnet: every expected value a test computes comes
from the formulas below, from the article's printed numbers (typed in from
ARTICLE.md), or from hand arithmetic in the test itself.  Tests that need
fastnet's public API around an oracle (e.g. finite differences of
``Network.evaluate``) wrap these functions in conftest.py.

Conventions (DESIGN.md): batches are rows, weights are ``(fan_in, fan_out)``
so a layer is ``sigmoid(A @ W + b)``; activation derivatives are written with
the layer's OUTPUT ``a``.

Contents
    the article       X, Y, W1, W2 and every number part 8 prints
    sigmoid           the textbook logistic function and both derivative conventions
    other layers      tanh, relu, identity, softmax and log-softmax, each slope from the output
    forward, loss     activations of a network, the sse / mse / bce / cross_entropy losses (with row
                      weights), the L2 penalty
    gradient          backpropagation written out, and the article's own d_W formulas
    finite differences central differences of any loss over a list of parameter arrays
    training          the optimizers' update formulas and a hand-written mini-batch loop
    input conversion  the documented rules for valid input (np.asarray, real dtypes, finite, shapes)
"""

import math

import numpy as np

# =========================================================================================
# The article (ARTICLE.md): the network of part 9's code and the values part 8 prints
# =========================================================================================

#: Scores / 100 for Alejandra, Bob and Alice: money, relationships, sandwiches, baseline.
X = np.array([[0.4, 0.8, 0.4, 0.3],
              [1.0, 0.2, 0.4, 0.3],
              [0.3, 0.4, 0.5, 0.4]])
#: The targets y*.
Y = np.array([[1.0], [0.85], [0.4]])
W1 = np.array([[0.25], [1.0], [0.25], [1.0]])      # shape (4, 1)
W2 = np.array([[0.5]])                              # shape (1, 1)
#: Four inputs, one hidden sigmoid neuron, one sigmoid output; no biases.
LAYERS = [4, 1, 1]

# Printed in part 8, to 8 decimals.
NEURON1OUTPUT = np.array([[0.78583498], [0.70056714], [0.73105858]])
OUTPUT = np.array([[0.59698483], [0.58668634], [0.59037826]])
ERROR = np.array([[0.40301517], [0.26331366], [-0.19037826]])            # y* - output
DOUBLED_ERROR = np.array([[0.80603034], [0.52662731], [-0.38075651]])    # 2(y* - output)
SIGMOID_OF_OUTPUT = np.array([[0.64496618], [0.64260448], [0.64345193]])
ONE_MINUS_SIGMOID_OF_OUTPUT = np.array([[0.35503382], [0.35739552], [0.35654807]])
ARTICLE_SLOPE_AT_OUTPUT = np.array([[0.22898481], [0.22966396], [0.22942154]])
OUTPUT_DELTA = np.array([[0.1845687], [0.12094732], [-0.08735375]])
D_W2 = np.array([[0.16591155]])
NEW_W2 = np.array([[0.66591155]])
NEW_W1 = np.array([[0.2684694], [1.01472558], [0.25851005], [1.00614301]])

#: The SSE before the step, by hand from the printed errors y* - output.
SSE_BEFORE = 0.40301517 ** 2 + 0.26331366 ** 2 + 0.19037826 ** 2

#: Printed to 8 decimals, so agreement to 1e-8 is all the article allows.
ATOL = 1e-8

#: The article adds d_W; a gradient is its negative: W1 - new W1 and -d_W2.
ARTICLE_GRADIENT_W1 = W1 - NEW_W1
ARTICLE_GRADIENT_W2 = -D_W2

#: Every number of KEY_NUMBERS appears in part 8 exactly as written here.
KEY_NUMBERS = ["0.78583498", "0.70056714", "0.73105858",   # neuron1output
               "0.59698483", "0.58668634", "0.59037826",   # output
               "0.22898481", "0.1845687",                   # article slope, output delta
               "0.16591155", "0.66591155",                  # d_W2, new W2
               "0.2684694", "1.01472558", "0.25851005", "1.00614301"]  # new W1


# =========================================================================================
# The sigmoid and its derivative, in both conventions
# =========================================================================================


def sigmoid(z):
    """The textbook logistic function, for hand calculations on moderate z."""
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_derivative_exact(a):
    """The true derivative of the sigmoid at its input, written with its output ``a``: a (1 - a)."""
    return a * (1 - a)


def sigmoid_derivative_article(a):
    """The article's ``sigmoid_derivative`` applied to an output ``a``: s(a) (1 - s(a)), with s the sigmoid."""
    return sigmoid(a) * (1 - sigmoid(a))


#: derivative name -> function of the layer's output.
DERIVATIVES = {"exact": sigmoid_derivative_exact, "article": sigmoid_derivative_article}


# =========================================================================================
# The other layers: tanh, relu, identity, softmax
# =========================================================================================


def tanh(z):
    """The hyperbolic tangent (NumPy's)."""
    return np.tanh(z)


def relu(z):
    """max(z, 0)."""
    return np.where(z > 0, z, 0.0)


def identity(z):
    """z (a copy): the linear output layer."""
    return np.array(z, dtype=np.float64, copy=True)


def softmax(z):
    """Row-wise exp(z_j - m) / sum_k exp(z_k - m), m the row's largest z (so no exp overflows)."""
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z):
    """Row-wise z_j - log sum_k exp(z_k), the log-sum-exp by np.logaddexp.reduce: finite for any finite z."""
    return z - np.logaddexp.reduce(z, axis=1, keepdims=True)


#: Every (hidden activation, output, loss) issue 9 allows: bce after a sigmoid, cross_entropy after
#: a softmax, sse/mse after a sigmoid or a linear output; hidden layers sigmoid, tanh or relu.
LAYER_COMBINATIONS = [(activation, output, loss)
                      for activation in ["sigmoid", "tanh", "relu"]
                      for output, losses in [("sigmoid", ["sse", "mse", "bce"]), ("linear", ["sse", "mse"]),
                                             ("softmax", ["cross_entropy"])]
                      for loss in losses]

#: Activation name -> f(z).
ACTIVATIONS = {"sigmoid": sigmoid, "tanh": tanh, "relu": relu, "linear": identity, "softmax": softmax}

#: Activation name -> its derivative written with its output a (exact convention); softmax has
#: none of its own (cross-entropy fuses the output delta).
SLOPES = {"sigmoid": sigmoid_derivative_exact,
          "tanh": lambda a: 1.0 - a * a,
          "relu": lambda a: (a > 0).astype(np.float64),
          "linear": lambda a: np.ones_like(a)}


def slope_function(name, derivative="exact"):
    """f' from the output for activation ``name``; "article" exists for the sigmoid only."""
    if derivative == "article":
        if name != "sigmoid":
            raise ValueError("the article's derivative is defined for sigmoid layers only")
        return sigmoid_derivative_article
    return SLOPES[name]


# =========================================================================================
# Forward pass and losses
# =========================================================================================


def layer_functions(n_layers, activation="sigmoid", output="sigmoid"):
    """The activation name of each weight layer: ``activation`` for the hidden ones, ``output`` last."""
    return [activation] * (n_layers - 1) + [output]


def pre_activations_and_activations(weights, biases, X, activation="sigmoid", output="sigmoid"):
    """``(zs, acts)``: every layer's pre-activation z = a @ W + b, and ``[X, a_1, ..., a_L]``."""
    zs, acts = [], [X]
    for layer, (W, name) in enumerate(zip(weights, layer_functions(len(weights), activation, output))):
        z = acts[-1] @ W + (biases[layer] if biases is not None else 0.0)
        zs.append(z)
        acts.append(ACTIVATIONS[name](z))
    return zs, acts


def activations(weights, biases, X, activation="sigmoid", output="sigmoid"):
    """``[X, a_1, ..., a_L]``: the input, then every layer's output ``f(a @ W + b)`` (sigmoid by default)."""
    return pre_activations_and_activations(weights, biases, X, activation, output)[1]


def forward(weights, biases, X, activation="sigmoid", output="sigmoid"):
    """The network's output."""
    return activations(weights, biases, X, activation, output)[-1]


#: The issue's binary cross-entropy takes each log as at least -100, as torch.nn.BCELoss does,
#: so a saturated output of exactly 0 or 1 gives a finite loss.
BCE_LOG_FLOOR = -100.0


def row_errors(output, y, loss, logits=None):
    """Each row's error summed over the outputs: squared error (sse, mse), binary cross-entropy (bce,
    each log at least BCE_LOG_FLOOR),
    or -sum_j y_j log softmax(z)_j from the output layer's pre-activations ``logits`` (cross_entropy)."""
    if loss == "cross_entropy":
        return -(y * log_softmax(logits)).sum(axis=1)
    if loss == "bce":
        with np.errstate(divide="ignore"):
            log_a = np.maximum(np.log(output), BCE_LOG_FLOOR)
            log_not_a = np.maximum(np.log(1 - output), BCE_LOG_FLOOR)
        return -(y * log_a + (1 - y) * log_not_a).sum(axis=1)
    return ((output - y) ** 2).sum(axis=1)


def loss_normaliser(loss, y, w):
    """The factor c of the loss c * sum_i w_i e_i: 1 for sse, 1 / (sum(w) * n_outputs) for mse and bce
    (a mean over elements), 1 / sum(w) for cross_entropy (a mean over rows)."""
    if loss == "sse":
        return 1.0
    if loss == "cross_entropy":
        return 1.0 / w.sum()
    return 1.0 / (w.sum() * y.shape[1])


def loss_from_output(output, y, loss, w=None, logits=None):
    """The loss from the network's outputs (and, for cross_entropy, its output pre-activations):
    c * sum_i w_i e_i with c of ``loss_normaliser``."""
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    total = float(np.sum(w * row_errors(output, y, loss, logits)))
    return total * loss_normaliser(loss, y, w)


def loss(weights, biases, X, y, loss_name, w=None, activation="sigmoid", output="sigmoid"):
    """The loss of a network with these parameters on (X, y), row weights ``w``."""
    zs, acts = pre_activations_and_activations(weights, biases, X, activation, output)
    return loss_from_output(acts[-1], y, loss_name, w, zs[-1])


def penalty_normaliser(loss, w):
    """r of the L2 penalty alpha/2 * r * sum W^2: 1 for sse, 1 / sum(w) for the mean losses."""
    return 1.0 if loss == "sse" else 1.0 / float(np.sum(w))


def l2_penalty(weights, alpha, r):
    """alpha/2 * r * sum of every weight squared (biases are not penalised)."""
    return 0.5 * alpha * r * sum(float(np.sum(W * W)) for W in weights)


def penalised_loss(weights, biases, X, y, loss_name, alpha, w=None, activation="sigmoid", output="sigmoid"):
    """The objective an alpha > 0 step descends: loss + alpha/2 * r * sum W^2."""
    w_all = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    return (loss(weights, biases, X, y, loss_name, w_all, activation, output)
            + l2_penalty(weights, alpha, penalty_normaliser(loss_name, w_all)))


def article_sse(w1, w2):
    """The article's cost sum((y* - output)^2) for first- and second-layer weights w1, w2 on its data."""
    output = sigmoid(sigmoid(X @ w1) @ w2)
    return float(np.sum((Y - output) ** 2))


# =========================================================================================
# Gradients
# =========================================================================================


def loss_and_gradient(weights, biases, X, y, loss, w=None, derivative="exact", activation="sigmoid",
                      output="sigmoid"):
    """``(loss, sum_i w_i e_i, dW, db)`` of a network, backpropagation written out.

    e_i is the row's squared error (sse, mse), binary cross-entropy (bce)
    or softmax cross-entropy (cross_entropy), summed over outputs; "sse" is
    sum w_i e_i, "mse"/"bce" divide by sum(w) * n_outputs, "cross_entropy"
    by sum(w).  Output deltas, by hand from d e_i / d z:
    bce after a sigmoid c w (a - y); cross_entropy after a softmax
    c w (p sum_j y_j - y) (d/dz_j of -sum_k y_k (z_k - lse) is p_j sum_k y_k - y_j);
    squared errors c w 2 (a - y) f'(a).  Hidden layers multiply by their f'
    from the output; ``derivative`` "article" (sigmoid layers only) uses
    s(a) (1 - s(a)).  ``db`` is None without biases.
    """
    if loss == "bce" and derivative != "exact":
        raise ValueError("this oracle has bce with the exact derivative only")
    names = layer_functions(len(weights), activation, output)
    w = np.ones(X.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    zs, acts = pre_activations_and_activations(weights, biases, X, activation, output)
    a = acts[-1]
    weighted_errors = float(np.sum(w * row_errors(a, y, loss, zs[-1])))
    c = loss_normaliser(loss, y, w)
    if loss == "cross_entropy":
        delta = c * w[:, None] * (a * y.sum(axis=1, keepdims=True) - y)
    elif loss == "bce":
        delta = c * w[:, None] * (a - y)
    else:
        delta = c * w[:, None] * 2.0 * (a - y) * slope_function(output, derivative)(a)
    dW, db = [None] * len(weights), [None] * len(weights)
    for layer in reversed(range(len(weights))):
        dW[layer] = acts[layer].T @ delta
        db[layer] = delta.sum(axis=0)
        if layer > 0:
            delta = (delta @ weights[layer].T) * slope_function(names[layer - 1], derivative)(acts[layer])
    return c * weighted_errors, weighted_errors, dW, (db if biases is not None else None)


def article_formula_gradient(X, y, W1, W2, b1, b2, loss):
    """ARTICLE.md's d_W formulas for a two-layer network, with the sign of a gradient and optional biases.

    sd(a) = sigmoid(a) * (1 - sigmoid(a)) applied to outputs a;
    delta2 = dloss/doutput * sd(output); dW2 = hidden.T @ delta2;
    delta1 = (delta2 @ W2.T) * sd(hidden); dW1 = X.T @ delta1.
    Returns ``([dW1, dW2], [db1, db2])`` (the bias parts are the deltas' column sums).
    """
    sd = sigmoid_derivative_article
    hidden = sigmoid(X @ W1 + (b1 if b1 is not None else 0.0))
    output = sigmoid(hidden @ W2 + (b2 if b2 is not None else 0.0))
    dloss = 2 * (output - y) / (y.size if loss == "mse" else 1)
    delta2 = dloss * sd(output)
    delta1 = (delta2 @ W2.T) * sd(hidden)
    return [X.T @ delta1, hidden.T @ delta2], [delta1.sum(axis=0), delta2.sum(axis=0)]


# =========================================================================================
# Central finite differences
# =========================================================================================


def central_differences(f, params, h=1e-6):
    """``[df/dp for p in params]`` by central differences: (f(p + h) - f(p - h)) / 2h, entry by entry.

    ``f`` takes a list of arrays shaped like ``params`` and returns a number;
    each probe gets fresh copies with exactly one entry moved, so ``f`` may
    keep or change what it is given.
    """
    params = [np.array(p, dtype=np.float64, copy=True) for p in params]

    def probe(which, index, delta):
        moved = [p.copy() for p in params]
        moved[which][index] += delta
        return f(moved)

    grads = []
    for which, p in enumerate(params):
        g = np.empty_like(p)
        for index in np.ndindex(p.shape):
            g[index] = (probe(which, index, h) - probe(which, index, -h)) / (2 * h)
        grads.append(g)
    return grads


# =========================================================================================
# Training: the optimizers and a mini-batch loop
# =========================================================================================

#: fit's documented default learning rates, typed in from the issue.
DEFAULT_LR = {"sgd": 1.0, "momentum": 0.1, "adam": 0.001}
#: Adam's constants, typed in from the issue (torch.optim.Adam's defaults).
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


class Optimizer:
    """The update formulas of the issue, on a list of parameter arrays (changed in place).

    sgd: p -= lr g.  momentum: v = mu v + g; p -= lr v.
    adam: t += 1; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
          p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
    """

    def __init__(self, name, lr, momentum, params, betas=(BETA1, BETA2), eps=EPS):
        self.name, self.lr, self.mu = name, lr, momentum
        self.beta1, self.beta2, self.eps = betas[0], betas[1], eps
        self.v = [np.zeros_like(p) for p in params]
        self.m = [np.zeros_like(p) for p in params]
        self.t = 0

    def update(self, params, grads):
        if self.name == "adam":
            self.t += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.name == "sgd":
                p -= self.lr * g
            elif self.name == "momentum":
                self.v[i] = self.mu * self.v[i] + g
                p -= self.lr * self.v[i]
            else:
                b1, b2 = self.beta1, self.beta2
                self.m[i] = b1 * self.m[i] + (1 - b1) * g
                self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
                m_hat = self.m[i] / (1 - b1 ** self.t)
                v_hat = self.v[i] / (1 - b2 ** self.t)
                p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def train(weights, biases, X, y, *, loss, epochs, lr=None, batch_size=None, shuffle=True, seed=None,
          optimizer="sgd", momentum=0.9, sample_weight=None, hand_optimizer=None, activation="sigmoid",
          output="sigmoid", alpha=0.0, betas=(BETA1, BETA2), eps=EPS):
    """Mini-batch training written out step by step; returns ``(weights, biases, losses, optimizer)``.

    The visiting order of each epoch is ``rng.permutation(n)`` from one
    ``np.random.default_rng(seed)`` (one draw per epoch), except that
    full-batch epochs (batch_size None or >= n) and shuffle=False visit
    rows in order without drawing.  Each batch's gradient uses its own
    weights' normaliser, plus the L2 penalty's gradient alpha * r * W on
    every weight matrix (r = 1 for sse, 1 / the batch's sum of row
    weights otherwise; biases unpenalised); the epoch's loss is
    sum_i w_i e_i (each row with the parameters its batch saw), normalised
    over the whole epoch, without the penalty.  ``hand_optimizer``
    continues an earlier run's optimizer (its state and settings).
    """
    weights = [np.array(p, dtype=np.float64, copy=True) for p in weights]
    biases = None if biases is None else [np.array(p, dtype=np.float64, copy=True) for p in biases]
    params = weights + (biases or [])
    n = X.shape[0]
    size = n if batch_size is None else batch_size
    rng = np.random.default_rng(seed)
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    opt = hand_optimizer or Optimizer(optimizer, lr, momentum, params, betas, eps)
    w_all = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(n) if (shuffle and size < n) else np.arange(n)
        total = 0.0
        for first in range(0, n, size):
            rows = order[first:first + size]
            _, errors, dW, db = loss_and_gradient(weights, biases, X[rows], y[rows], loss, w_all[rows],
                                                  activation=activation, output=output)
            r = penalty_normaliser(loss, w_all[rows])
            dW = [g + alpha * r * W for g, W in zip(dW, weights)]
            total += errors
            opt.update(params, dW + (db or []))
        losses.append(total * loss_normaliser(loss, y, w_all))
    return weights, biases, losses, opt


# =========================================================================================
# Input conversion: the documented rules for what a method accepts
# =========================================================================================


class Invalid(Exception):
    """The input breaks a documented rule: the call must raise ValueError or TypeError."""


def converted(value, columns, vector=False):
    """``value`` after the documented conversion, or Invalid.

    np.asarray, real numbers only (bool, int, float), C-contiguous float64,
    finite; a batch is 2-D (rows >= 1, ``columns`` columns; 1-D allowed for
    one column); a vector is 1-D.
    """
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise Invalid("not rectangular") from None
    if array.dtype.kind not in "biuf":
        raise Invalid(f"dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise Invalid("not finite")
    if vector:
        if array.ndim != 1:
            raise Invalid(f"shape {array.shape}")
        return array
    if array.ndim == 1 and columns == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] != columns:
        raise Invalid(f"shape {array.shape}")
    return array


def valid_number(value, allow_none=True):
    """A real, finite, positive number (a learning rate), or None if ``allow_none``; else Invalid."""
    if value is None and allow_none:
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise Invalid(f"not a real number: {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise Invalid(f"not finite and > 0: {value!r}")
    return value


def valid_count(value, minimum, allow_none):
    """A Python int >= ``minimum`` (never a bool), or None if ``allow_none``; else Invalid."""
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"not an int: {value!r}")
    if value < minimum:
        raise Invalid(f"below {minimum}: {value!r}")
    return value
