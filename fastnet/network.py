"""Network: a model.  Parameters, forward pass, loss, gradients, saving; picks a backend.

Training loops live in ``fastnet.training``; ``Network.fit`` hands over to it.
"""

import functools
import json
import threading
from os import PathLike

import numpy as np
from numpy.typing import ArrayLike

from fastnet import _validation as check
from fastnet import persistence, spec, training
from fastnet._config import FORWARD_CHUNK_ROWS
from fastnet.backends import BACKENDS, Model, Rows, load, loss_normaliser, weight_total
from fastnet.layout import ParamLayout


def exclusive(method):
    """Run ``method`` holding the network's lock; a second thread gets a clear error.

    Kernels release the GIL, so without this two threads could interleave
    updates of one network's parameters.  Two networks never share a lock.
    The lock is re-entrant, so fit may score validation data and a callback
    may evaluate or save the network it is training.
    """
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(f"this Network is already in use by another thread ({method.__name__} "
                               "was called while another call was running); use one Network per thread")
        try:
            return method(self, *args, **kwargs)
        finally:
            self._lock.release()
    return guarded


class Network:
    """A fully connected network: hidden layers of one activation, then an output layer.

    Parameters
    ----------
    layers : sequence of int
        ``[n_inputs, hidden..., n_outputs]``, at least one weight layer.
    backend : {"numba", "native", "numpy"}
        Fused Numba kernels, the C kernels, or the plain NumPy reference.
    activation : {"sigmoid", "tanh", "relu"}
        The hidden layers' activation (the article's sigmoid by default).
    output : {"sigmoid", "linear", "softmax"} or None
        The output layer's activation; None is "sigmoid".  Targets must lie
        in [0, 1] after a sigmoid or softmax; a linear output takes any.
    derivative : {"exact", "article"}
        Sigmoid derivative from the output a: ``a(1-a)``, or the blog
        series' ``s(a)(1-s(a))`` (sigmoid layers only).
    loss : {"mse", "sse", "bce", "cross_entropy"} or None
        Mean of squared errors over all elements, their sum, the mean
        binary cross-entropy of sigmoid outputs, or the mean over rows of
        the cross-entropy ``-sum_j y_j log p_j`` of a softmax output.  None
        is "cross_entropy" after a softmax and "mse" otherwise.
    bias : bool
        Whether layers have biases.
    weights, biases : list of arrays, optional
        Initial parameters shaped ``(fan_in, fan_out)`` and ``(fan_out,)``.
        Otherwise weights are Glorot-uniform from ``seed`` and biases zero.
    seed : int, numpy.random.Generator or None
        Seeds the one generator used for initialisation and, unless ``fit``
        is given its own seed, for shuffling.
    dtype : "float64" or "float32"
        Precision of parameters, activations and gradients, end to end;
        inputs are converted to it once.

    A Network pickles and deep-copies (layers, settings, parameters, the
    generator and the optimizer's state); the backend is re-attached by name.
    """

    def __init__(self, layers: "list[int] | tuple[int, ...]", *, backend: str = "numba", activation: str = "sigmoid",
                 output: "str | None" = None, derivative: str = "exact", loss: "str | None" = None, bias: bool = True,
                 weights: "list[ArrayLike] | None" = None, biases: "list[ArrayLike] | None" = None, seed=None,
                 dtype: str = "float64"):
        sizes = check.layer_sizes(layers)
        self.dtype = check.float_dtype(dtype)
        self.backend = check.choice(backend, "backend", BACKENDS)
        self.activation = check.choice(activation, "activation", spec.HIDDEN_ACTIVATIONS)
        self.output = "sigmoid" if output is None else check.choice(output, "output", spec.OUTPUT_ACTIVATIONS)
        self.derivative = check.choice(derivative, "derivative", spec.DERIVATIVES)
        self.loss = spec.default_loss(self.output) if loss is None else check.choice(loss, "loss", spec.LOSSES)
        check.layer_kinds(self.activation, self.output, self.loss, self.derivative, sizes)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be True or False; got {type(bias).__name__}")
        if biases is not None and not bias:
            raise ValueError("biases were given but bias=False; pass bias=True or drop biases")
        self.layout = ParamLayout(sizes, bool(bias))
        # The kernels take one activation code per weight layer: hidden ones, then the output.
        self._activation_codes = np.full(len(sizes) - 1, spec.ACTIVATIONS[self.activation].code, np.int64)
        self._activation_codes[-1] = spec.ACTIVATIONS[self.output].code
        self._backend = load(self.backend)
        self._lock = threading.RLock()
        self._params = np.zeros(self.layout.count, self.dtype)
        self._grad = np.empty_like(self._params)
        self._rng = check.random_generator(seed)
        self._optimizer = None
        self._initialise(weights, biases)

    def _initialise(self, weights, biases):
        """Fill the packed parameters from the given arrays or Glorot-uniform."""
        shapes = self.layout.weight_shapes
        if weights is not None:
            weights = check.parameter_list(weights, "weights", shapes)
        if biases is not None:
            biases = check.parameter_list(biases, "biases", [(o,) for _, o in shapes])
        if weights is None:
            weights = [self._rng.uniform(-1.0, 1.0, shape) * np.sqrt(6.0 / sum(shape)) for shape in shapes]
        own_weights, own_biases = self.layout.unpack(self._params)
        for target, source in zip(own_weights, weights):
            target[...] = source
        for target, source in zip(own_biases or [], biases or []):
            target[...] = source

    @classmethod
    def article(cls, backend: str = "numba") -> "Network":
        """The network of the blog's worked example, with its starting weights
        (``fastnet.article.network``)."""
        from fastnet import article
        return article.network(backend)

    # -- parameters ---------------------------------------------------------

    @property
    def layers(self) -> list:
        """Layer widths, ``[n_inputs, hidden..., n_outputs]``."""
        return self.layout.layers

    @property
    def weights(self) -> list:
        """Weight matrices ``(fan_in, fan_out)``: views into the network's parameters."""
        return self.layout.unpack(self._params)[0]

    @property
    def biases(self):
        """Bias vectors ``(fan_out,)`` as views, or None when bias=False."""
        return self.layout.unpack(self._params)[1]

    def _model(self, params=None):
        """What the backend reads: ``params`` (default the network's own) with layout and codes."""
        return Model(self._params if params is None else params, self.layout, self._activation_codes,
                     spec.DERIVATIVES[self.derivative].code, spec.LOSSES[self.loss].code)

    # -- checking inputs ----------------------------------------------------

    def _checked_inputs(self, X, name="X"):
        """X validated and converted once, C-contiguous in the network's dtype."""
        return check.batch(X, name, self.layout.n_inputs, self.dtype)

    def _rows(self, X, y, sample_weight=None, names=("X", "y")):
        """(X, y, sample_weight) validated and converted once, as backend ``Rows``.

        ``names`` are what error messages call X and y (e.g. X_val, y_val).
        For the mean losses, a common factor of the weights cancels, so they
        are divided by their largest: the result is the same, and weights
        as small as 5e-324 or as large as 1e308 neither underflow nor
        overflow their sum.  The divisor is kept as ``weight_scale`` for the
        L2 penalty, which is divided by the original total weight.
        """
        X = self._checked_inputs(X, names[0])
        y = check.targets(y, X, self.layout.n_outputs, self.output, self.loss, self.dtype, names)
        weights, scale = check.row_weights(sample_weight, X.shape[0], self.dtype), 1.0
        if weights.size and spec.LOSSES[self.loss].mean:
            scale = float(weights.max())
            weights = weights / weights.dtype.type(scale)
        return Rows(X, y, weights, scale)

    def _normaliser(self, rows):
        """c of ``fastnet.backends.loss_normaliser`` for these rows."""
        return loss_normaliser(spec.LOSSES[self.loss].code, weight_total(rows.sample_weight, rows.X.shape[0]),
                               rows.Y.shape[1])

    # -- evaluation ---------------------------------------------------------

    def _activations(self, X):
        """Every layer's output for a validated X, as (n, width) arrays."""
        n = X.shape[0]
        out = np.empty(n * int(self.layout.sizes[1:].sum()), self.dtype)
        self._backend.forward(self._model(), X, out)
        blocks, offset = [], 0
        for width in self.layout.layers[1:]:
            blocks.append(out[offset:offset + n * width].reshape(n, width))
            offset += n * width
        return blocks

    @exclusive
    def activations(self, X: ArrayLike) -> list:
        """Every layer's output for X, hidden layers first: a list of (n, width)."""
        return self._activations(self._checked_inputs(X))

    @exclusive
    def forward(self, X: ArrayLike) -> np.ndarray:
        """The network's output for X: shape (n_samples, n_outputs).  Same as ``predict``.

        The backend writes the output layer alone, straight into the result;
        rows go to it FORWARD_CHUNK_ROWS at a time, so that the NumPy
        reference's hidden layers take memory for one chunk, not for all of
        X (which may be a memory-mapped file).  The compiled backends hold
        a few tiles of each hidden layer per thread, whatever the rows.
        """
        X = self._checked_inputs(X)
        outputs = np.empty((X.shape[0], self.layout.n_outputs), self.dtype)
        model = self._model()
        for first in range(0, X.shape[0], FORWARD_CHUNK_ROWS):
            chunk = X[first:first + FORWARD_CHUNK_ROWS]
            self._backend.forward(model, chunk, outputs[first:first + chunk.shape[0]].reshape(-1))
        return outputs

    predict = forward

    def _gradient(self, rows, grad):
        """The loss on validated ``rows``, with its packed gradient written into ``grad``.

        The backend returns unnormalised sums; both are divided here, once.
        """
        errors = self._backend.gradient(self._model(), rows, grad)
        c = self._normaliser(rows)
        grad *= c
        return c * errors

    def _loss(self, rows):
        """The loss on validated ``rows``, as a float, by the streaming gradient kernel
        (memory stays a few tiles whatever the number of rows; the gradient is discarded)."""
        return self._gradient(rows, np.empty_like(self._params))

    @exclusive
    def evaluate(self, X: ArrayLike, y: ArrayLike, sample_weight: "ArrayLike | None" = None) -> float:
        """The network's loss on (X, y), optionally with per-row weights, as a float."""
        return self._loss(self._rows(X, y, sample_weight))

    @exclusive
    def gradients(self, X: ArrayLike, y: ArrayLike, sample_weight: "ArrayLike | None" = None) -> tuple:
        """Gradient of the loss: ``(dW, db)``, lists shaped like weights and biases.

        With ``derivative="article"`` this is the blog's convention, not the
        true gradient.  ``db`` is None when the network has no biases.
        ``sample_weight``: optional non-negative weight per row.
        """
        self._gradient(self._rows(X, y, sample_weight), self._grad)
        return self.layout.unpack(self._grad.copy())

    # -- training -----------------------------------------------------------

    @exclusive
    def step(self, X: ArrayLike, y: ArrayLike, lr: float = 1.0, sample_weight: "ArrayLike | None" = None) -> float:
        """One full-batch gradient-descent step, ``W -= lr * dW``; returns the loss before it."""
        lr = check.positive_number(lr, "lr")
        value = self._gradient(self._rows(X, y, sample_weight), self._grad)
        self._params -= lr * self._grad
        return value

    @exclusive
    def fit(self, X: ArrayLike, y: ArrayLike, epochs: int = 1, lr: "float | None" = None, *,
            batch_size: "int | None" = None, shuffle: bool = True, seed=None, optimizer: str = "sgd",
            momentum: float = 0.9, alpha: float = 0.0, betas: tuple = spec.ADAM_BETAS, eps: float = spec.ADAM_EPS,
            sample_weight: "ArrayLike | None" = None, validation_data=None,
            progress: "bool | None" = None, callback=None) -> training.History:
        """Train for ``epochs`` passes over (X, y); returns a History.

        lr : learning rate; default 1.0 for "sgd", 0.1 for "momentum", 0.001 for "adam".
        batch_size : rows per update; None is full batch (one step per epoch).
        shuffle, seed : visit rows in a fresh seeded permutation each epoch
            (``seed`` defaults to the network's own generator).
        optimizer : "sgd", "momentum" (heavy ball, ``momentum``) or "adam"
            (``betas`` and ``eps`` as torch.optim.Adam's).
        alpha : L2 penalty ``alpha/2 sum W^2`` on the weights (not the
            biases), divided by each batch's total row weight for the mean
            losses, as scikit-learn's MLP; its gradient is added in the
            kernel before each update.  History's losses are the data term.
        sample_weight : optional non-negative weight per row.
        validation_data : optional (X_val, y_val), scored after each epoch.
        progress : tqdm bar; None shows it for long runs on a terminal.
        callback : ``callback(epoch, history)`` after each epoch; returning
            False stops training.

        Each epoch runs in compiled calls (numba, native) of whole batches,
        a fraction of a second each, so the bar moves within an epoch; the
        parameters come out as from one call.  An epoch that fails leaves
        the parameters as they were after the previous one.
        """
        return training.fit(self, X, y, epochs, lr, batch_size=batch_size, shuffle=shuffle, seed=seed,
                            optimizer=optimizer, momentum=momentum, alpha=alpha, betas=betas, eps=eps,
                            sample_weight=sample_weight,
                            validation_data=validation_data, progress=progress, callback=callback)

    @exclusive
    def partial_fit(self, X: ArrayLike, y: ArrayLike, lr: "float | None" = None, *,
                    batch_size: "int | None" = None, shuffle: bool = True, seed=None, optimizer: str = "sgd",
                    momentum: float = 0.9, alpha: float = 0.0, betas: tuple = spec.ADAM_BETAS,
                    eps: float = spec.ADAM_EPS, sample_weight: "ArrayLike | None" = None) -> training.History:
        """One pass over (X, y), keeping the optimizer's state from earlier calls.

        Arguments as in ``fit``.  The state (velocity, Adam's moments and
        step count) carries over while the optimizer is the same one, even
        if lr or other settings change (they apply from this pass); another
        optimizer starts afresh.  Returns a History of the one epoch.
        """
        return training.partial_fit(self, X, y, lr, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                    optimizer=optimizer, momentum=momentum, alpha=alpha, betas=betas, eps=eps,
                                    sample_weight=sample_weight)

    # -- state, pickling and files -------------------------------------------

    def state(self) -> dict:
        """Everything that defines the network, as plain values and array copies:
        layers, settings, parameters, the generator's state and the optimizer's
        (None before any training).  ``Network.from_state`` rebuilds it."""
        return {
            "layers": self.layers, "backend": self.backend, "activation": self.activation,
            "output": self.output, "derivative": self.derivative, "loss": self.loss, "bias": self.layout.has_bias, "dtype": self.dtype.name,
            "params": self._params.copy(),
            "rng_state": json.dumps(self._rng.bit_generator.state),
            "optimizer": None if self._optimizer is None else self._optimizer.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict, backend=None) -> "Network":
        """A network rebuilt from ``state()`` (``backend`` overrides the saved one).

        Raises ValueError or TypeError naming the field that does not fit.
        """
        net = cls(state["layers"], backend=state["backend"] if backend is None else backend,
                  activation=state.get("activation", "sigmoid"), output=state.get("output", "sigmoid"),
                  derivative=state["derivative"], loss=state["loss"], bias=state["bias"], dtype=state["dtype"])
        net._restore(state)
        return net

    def _restore(self, state):
        """Parameters, generator and optimizer from ``state`` into this (matching) network."""
        params = np.asarray(state["params"])
        if params.shape != self._params.shape:
            raise ValueError(f"params must have shape {self._params.shape} for layers {self.layers}; "
                             f"got {params.shape}")
        self._params[...] = params
        try:
            self._rng.bit_generator.state = json.loads(state["rng_state"])
        except (ValueError, TypeError, KeyError):
            raise ValueError("rng_state is not a random generator state") from None
        optimizer = state["optimizer"]
        self._optimizer = None if optimizer is None else training.Optimizer.from_state_dict(
            optimizer, self._params.size, self.dtype)

    def __getstate__(self):
        return self.state()

    def __setstate__(self, state):
        # Backend module and lock are not state: a fresh network re-attaches them by name.
        fresh = Network.from_state(state)
        self.__dict__.update(fresh.__dict__)

    @exclusive
    def save(self, path: "str | PathLike") -> None:
        """Write the network (and its optimizer's state, to resume training) to ``path`` (.npz).

        Atomic: a crash or kill during ``save`` leaves any previous file at
        ``path`` intact.  The file holds plain arrays only.
        """
        persistence.save(path, self.state())

    @classmethod
    def load(cls, path: "str | PathLike", backend=None) -> "Network":
        """A network read from a file written by ``save``; ``backend`` defaults to the saved one.

        Reads with ``allow_pickle=False``, so no code runs from the file.  A
        missing, truncated, corrupted, tampered or foreign file raises an
        error naming the file and the problem.
        """
        if backend is not None:
            check.choice(backend, "backend", BACKENDS)
        state = persistence.load(path, BACKENDS)
        try:
            return cls.from_state(state, backend)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: not a valid fastnet network file: {error}") from None

    def __repr__(self):
        return (f"Network({self.layers}, backend={self.backend!r}, activation={self.activation!r}, "
                f"output={self.output!r}, derivative={self.derivative!r}, "
                f"loss={self.loss!r}, bias={self.layout.has_bias}, dtype={self.dtype.name!r})")
