"""Network: validation, parameters and the training loop; picks a backend."""

import importlib
from dataclasses import dataclass, field

import numpy as np

from fastnet import _validation as check
from fastnet.backends import DERIVATIVE_CODES, LOSS_CODES
from fastnet.backends.reference import loss_value, unpack

#: Backend name -> module under fastnet.backends (imported on first use).
BACKENDS = {"numpy": "reference", "numba": "numba_kernels", "native": "native"}


def load_backend(name):
    """The backend module for ``name`` ("numpy", "numba" or "native")."""
    check.choice(name, "backend", BACKENDS)
    return importlib.import_module(f"fastnet.backends.{BACKENDS[name]}")


def parameter_count(sizes, has_bias):
    """Length of the packed parameter vector for these layer widths."""
    fan_in, fan_out = sizes[:-1], sizes[1:]
    return int(np.sum(fan_in * fan_out) + (np.sum(fan_out) if has_bias else 0))


class _LossName(str):
    """A loss name that can also be called: ``net.loss == "sse"`` and ``net.loss(X, y)``.

    The API asks for both an attribute and a method called ``loss``; a str
    that evaluates the loss when called gives both without a second name.
    """

    def __new__(cls, name, evaluate):
        self = super().__new__(cls, name)
        self._evaluate = evaluate
        return self

    def __call__(self, X, y):
        """The network's loss on (X, y), as a float."""
        return self._evaluate(X, y)


@dataclass
class History:
    """What ``fit`` records: ``loss[i]`` is the training loss before epoch i's update."""

    loss: list = field(default_factory=list)


class Network:
    """A fully connected network of sigmoid layers.

    Parameters
    ----------
    layers : sequence of int
        ``[n_inputs, hidden..., n_outputs]``, at least one weight layer.
    backend : {"numba", "native", "numpy"}
        Fused Numba kernels, the C kernels, or the plain NumPy reference.
    derivative : {"exact", "article"}
        Sigmoid derivative from the output a: ``a(1-a)``, or the blog
        series' ``s(a)(1-s(a))``.
    loss : {"mse", "sse"}
        Mean of squared errors over all elements, or their sum.
    bias : bool
        Whether layers have biases.
    weights, biases : list of arrays, optional
        Initial parameters shaped ``(fan_in, fan_out)`` and ``(fan_out,)``.
        Otherwise weights are Glorot-uniform from ``seed`` and biases zero.
    seed : int, numpy.random.Generator or None
        Seeds the generator used for initialisation.
    """

    def __init__(self, layers, *, backend="numba", derivative="exact", loss="mse",
                 bias=True, weights=None, biases=None, seed=None):
        sizes = check.layer_sizes(layers)
        self._backend = load_backend(backend)
        self.backend = backend
        self.derivative = check.choice(derivative, "derivative", DERIVATIVE_CODES)
        self.loss_name = check.choice(loss, "loss", LOSS_CODES)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be True or False; got {type(bias).__name__}")
        if biases is not None and not bias:
            raise ValueError("biases were given but bias=False; pass bias=True or drop biases")
        self._sizes = sizes
        self._has_bias = bool(bias)
        self._params = np.zeros(parameter_count(sizes, self._has_bias))
        self._grad = np.empty_like(self._params)
        self._initialise(weights, biases, seed)

    def _initialise(self, weights, biases, seed):
        """Fill the packed parameters from the given arrays or Glorot-uniform."""
        shapes = [(int(i), int(o)) for i, o in zip(self._sizes[:-1], self._sizes[1:])]
        if weights is not None:
            weights = check.parameter_list(weights, "weights", shapes)
        if biases is not None:
            biases = check.parameter_list(biases, "biases", [(o,) for _, o in shapes])
        if weights is None:
            rng = np.random.default_rng(seed)
            weights = [rng.uniform(-1.0, 1.0, shape) * np.sqrt(6.0 / sum(shape)) for shape in shapes]
        own_weights, own_biases = unpack(self._params, self._sizes, self._has_bias)
        for target, source in zip(own_weights, weights):
            target[...] = source
        for target, source in zip(own_biases or [], biases or []):
            target[...] = source

    @classmethod
    def article(cls, backend="numba"):
        """The network of the blog's worked example, with its starting weights."""
        from fastnet import article
        return cls(article.LAYERS, backend=backend, derivative="article", loss="sse",
                   bias=False, weights=[article.W1, article.W2])

    # -- parameters ---------------------------------------------------------

    @property
    def layers(self):
        """Layer widths, ``[n_inputs, hidden..., n_outputs]``."""
        return [int(width) for width in self._sizes]

    @property
    def weights(self):
        """Weight matrices ``(fan_in, fan_out)``: views into the network's parameters."""
        return unpack(self._params, self._sizes, self._has_bias)[0]

    @property
    def biases(self):
        """Bias vectors ``(fan_out,)`` as views, or None when bias=False."""
        return unpack(self._params, self._sizes, self._has_bias)[1]

    @property
    def loss(self):
        """The loss: equal to its name ("mse" or "sse"); ``net.loss(X, y)`` evaluates it."""
        return _LossName(self.loss_name, self._loss_on)

    # -- evaluation ---------------------------------------------------------

    def _checked_inputs(self, X):
        """X validated and converted once, as C-contiguous float64."""
        return check.batch(X, "X", int(self._sizes[0]))

    def _checked(self, X, y):
        """X and y validated and converted once, as C-contiguous float64."""
        X = self._checked_inputs(X)
        return X, check.targets(y, X, int(self._sizes[-1]))

    def _activations(self, X):
        """Every layer's output for a validated X, as (n, width) arrays."""
        n = X.shape[0]
        out = np.empty(n * int(self._sizes[1:].sum()))
        self._backend.forward(X, self._params, self._sizes, self._has_bias, out)
        blocks, offset = [], 0
        for width in self._sizes[1:]:
            blocks.append(out[offset:offset + n * width].reshape(n, width))
            offset += n * width
        return blocks

    def activations(self, X):
        """Every layer's output for X, hidden layers first: a list of (n, width)."""
        return self._activations(self._checked_inputs(X))

    def forward(self, X):
        """The network's output for X: shape (n_samples, n_outputs)."""
        return self.activations(X)[-1]

    def _loss_on(self, X, y):
        """The loss ("sse" or "mse") of the network on (X, y), as a float."""
        X, y = self._checked(X, y)
        return loss_value(self._activations(X)[-1], y, LOSS_CODES[self.loss_name])

    def _gradient(self, X, y):
        """Loss and packed gradient (in ``self._grad``) for validated data."""
        return self._backend.gradient(X, y, self._params, self._sizes, self._has_bias,
                                      DERIVATIVE_CODES[self.derivative],
                                      LOSS_CODES[self.loss_name], self._grad)

    def gradients(self, X, y):
        """Gradient of the loss: ``(dW, db)``, lists shaped like weights and biases.

        With ``derivative="article"`` this is the blog's convention, not the
        true gradient.  ``db`` is None when the network has no biases.
        """
        X, y = self._checked(X, y)
        self._gradient(X, y)
        return unpack(self._grad.copy(), self._sizes, self._has_bias)

    # -- training -----------------------------------------------------------

    def _step(self, X, y, lr):
        """One gradient-descent step on validated data; the loss before it."""
        value = self._gradient(X, y)
        self._params -= lr * self._grad
        return value

    def step(self, X, y, lr=1.0):
        """One full-batch gradient-descent step, ``W -= lr * dW``; returns the loss before it."""
        lr = check.positive_number(lr, "lr")
        X, y = self._checked(X, y)
        return self._step(X, y, lr)

    def fit(self, X, y, epochs=1, lr=1.0):
        """Full-batch gradient descent for ``epochs`` steps; returns a History."""
        epochs = check.count(epochs, "epochs")
        lr = check.positive_number(lr, "lr")
        X, y = self._checked(X, y)
        history = History()
        for _ in range(epochs):
            history.loss.append(self._step(X, y, lr))
        return history

    def __repr__(self):
        return (f"Network({self.layers}, backend={self.backend!r}, derivative={self.derivative!r}, "
                f"loss={self.loss_name!r}, bias={self._has_bias})")
