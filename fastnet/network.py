"""Network: validation, parameters and the training loop; picks a backend."""

import contextlib
import functools
import importlib
import json
import threading

import numpy as np

from fastnet import _validation as check
from fastnet import persistence
from fastnet._config import FORWARD_CHUNK_ROWS
from fastnet.backends import DERIVATIVE_CODES, LOSS_CODES
from fastnet.backends.reference import parameter_count, unpack
from fastnet.training import DivergenceError, History, Optimizer, Progress, Stopwatch, visiting_order

#: Backend name -> module under fastnet.backends (imported on first use).
BACKENDS = {"numpy": "reference", "numba": "numba_kernels", "native": "native"}


def load_backend(name):
    """The backend module for ``name`` ("numpy", "numba" or "native")."""
    check.choice(name, "backend", BACKENDS)
    return importlib.import_module(f"fastnet.backends.{BACKENDS[name]}")


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


class _LossName(str):
    """A loss name that can also be called: ``net.loss == "sse"`` and ``net.loss(X, y)``.

    The API asks for both an attribute and a method called ``loss``; a str
    that evaluates the loss when called gives both without a second name.
    """

    def __new__(cls, name, evaluate):
        self = super().__new__(cls, name)
        self._evaluate = evaluate
        return self

    def __call__(self, X, y, sample_weight=None):
        """The network's loss on (X, y), optionally with per-row weights, as a float."""
        return self._evaluate(X, y, sample_weight)


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
    loss : {"mse", "sse", "bce"}
        Mean of squared errors over all elements, their sum, or the mean
        binary cross-entropy of the sigmoid outputs (targets in [0, 1]).
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
    """

    def __init__(self, layers, *, backend="numba", derivative="exact", loss="mse",
                 bias=True, weights=None, biases=None, seed=None, dtype="float64"):
        sizes = check.layer_sizes(layers)
        self.dtype = check.float_dtype(dtype)
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
        self._params = np.zeros(parameter_count(sizes, self._has_bias), self.dtype)
        self._grad = np.empty_like(self._params)
        self._rng = np.random.default_rng(seed)
        self._optimizer = None
        self._lock = threading.RLock()
        self._initialise(weights, biases)

    def _initialise(self, weights, biases):
        """Fill the packed parameters from the given arrays or Glorot-uniform."""
        shapes = [(int(i), int(o)) for i, o in zip(self._sizes[:-1], self._sizes[1:])]
        if weights is not None:
            weights = check.parameter_list(weights, "weights", shapes)
        if biases is not None:
            biases = check.parameter_list(biases, "biases", [(o,) for _, o in shapes])
        if weights is None:
            weights = [self._rng.uniform(-1.0, 1.0, shape) * np.sqrt(6.0 / sum(shape)) for shape in shapes]
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

    def _checked_inputs(self, X, name="X"):
        """X validated and converted once, C-contiguous in the network's dtype."""
        return check.batch(X, name, int(self._sizes[0]), self.dtype)

    def _checked(self, X, y, names=("X", "y")):
        """X and y validated and converted once, C-contiguous in the network's dtype.

        ``names`` are what error messages call them (e.g. X_val, y_val).
        """
        X = self._checked_inputs(X, names[0])
        return X, check.targets(y, X, int(self._sizes[-1]), self.dtype, names)

    def _row_weights(self, sample_weight, n_rows):
        """Validated per-row weights (empty for None).

        For the mean losses, a common factor of the weights cancels, so they
        are divided by their largest: the result is the same, and weights
        as small as 5e-324 or as large as 1e308 neither underflow nor
        overflow their sum.
        """
        weights = check.row_weights(sample_weight, n_rows, self.dtype)
        if weights.size and self.loss_name != "sse":
            weights = weights / weights.max()
        return weights

    def _activations(self, X):
        """Every layer's output for a validated X, as (n, width) arrays."""
        n = X.shape[0]
        out = np.empty(n * int(self._sizes[1:].sum()), self.dtype)
        self._backend.forward(X, self._params, self._sizes, self._has_bias, out)
        blocks, offset = [], 0
        for width in self._sizes[1:]:
            blocks.append(out[offset:offset + n * width].reshape(n, width))
            offset += n * width
        return blocks

    @exclusive
    def activations(self, X):
        """Every layer's output for X, hidden layers first: a list of (n, width)."""
        return self._activations(self._checked_inputs(X))

    @exclusive
    def forward(self, X):
        """The network's output for X: shape (n_samples, n_outputs).  Same as ``predict``.

        Rows go through the network FORWARD_CHUNK_ROWS at a time, so the
        hidden layers take memory for one chunk, not for all of X (which
        may be a memory-mapped file).
        """
        X = self._checked_inputs(X)
        n_outputs = int(self._sizes[-1])
        outputs = np.empty((X.shape[0], n_outputs), self.dtype)
        for first in range(0, X.shape[0], FORWARD_CHUNK_ROWS):
            chunk = X[first:first + FORWARD_CHUNK_ROWS]
            outputs[first:first + chunk.shape[0]] = self._activations(chunk)[-1]
        return outputs

    @exclusive
    def _loss_on(self, X, y, sample_weight=None):
        """The loss of the network on (X, y), as a float.

        Computed by the streaming gradient kernel, so memory stays a few
        tiles whatever the number of rows (the gradient itself is discarded).
        """
        X, y = self._checked(X, y)
        return self._gradient(X, y, self._row_weights(sample_weight, X.shape[0]), np.empty_like(self._params))

    def _gradient(self, X, y, weights, grad=None):
        """Loss, and the packed gradient in ``grad`` (default ``self._grad``), for validated data."""
        return self._backend.gradient(X, y, weights, self._params, self._sizes, self._has_bias,
                                      DERIVATIVE_CODES[self.derivative], LOSS_CODES[self.loss_name],
                                      self._grad if grad is None else grad)

    @exclusive
    def gradients(self, X, y, sample_weight=None):
        """Gradient of the loss: ``(dW, db)``, lists shaped like weights and biases.

        With ``derivative="article"`` this is the blog's convention, not the
        true gradient.  ``db`` is None when the network has no biases.
        ``sample_weight``: optional non-negative weight per row.
        """
        X, y = self._checked(X, y)
        self._gradient(X, y, self._row_weights(sample_weight, X.shape[0]))
        return unpack(self._grad.copy(), self._sizes, self._has_bias)

    # -- training -----------------------------------------------------------

    @exclusive
    def step(self, X, y, lr=1.0, sample_weight=None):
        """One full-batch gradient-descent step, ``W -= lr * dW``; returns the loss before it."""
        lr = check.positive_number(lr, "lr")
        X, y = self._checked(X, y)
        value = self._gradient(X, y, self._row_weights(sample_weight, X.shape[0]))
        self._params -= lr * self._grad
        return value

    @exclusive
    def fit(self, X, y, epochs=1, lr=None, *, batch_size=None, shuffle=True, seed=None,
            optimizer="sgd", momentum=0.9, sample_weight=None, validation_data=None,
            progress=None, callback=None):
        """Train for ``epochs`` passes over (X, y); returns a History.

        lr : learning rate; default 1.0 for "sgd", 0.1 for "momentum", 0.001 for "adam".
        batch_size : rows per update; None is full batch (one step per epoch).
        shuffle, seed : visit rows in a fresh seeded permutation each epoch
            (``seed`` defaults to the network's own generator).
        optimizer : "sgd", "momentum" (heavy ball, ``momentum``) or "adam".
        sample_weight : optional non-negative weight per row.
        validation_data : optional (X_val, y_val), scored after each epoch.
        progress : tqdm bar; None shows it for long runs on a terminal.
        callback : ``callback(epoch, history)`` after each epoch; returning
            False stops training.

        Each epoch runs in one compiled call (numba, native).  An epoch that
        fails leaves the parameters as they were after the previous one.
        """
        epochs = check.count(epochs, "epochs")
        plan = self._plan(X, y, lr, batch_size, shuffle, seed, optimizer, momentum,
                          sample_weight, validation_data, callback)
        return self._train(plan, epochs, progress)

    @exclusive
    def partial_fit(self, X, y, lr=None, *, batch_size=None, shuffle=True, seed=None,
                    optimizer="sgd", momentum=0.9, sample_weight=None):
        """One pass over (X, y), keeping the optimizer's state from earlier calls.

        Arguments as in ``fit``.  The state carries over while the optimizer
        and its settings stay the same; otherwise it starts afresh.
        Returns a History of the one epoch.
        """
        plan = self._plan(X, y, lr, batch_size, shuffle, seed, optimizer, momentum,
                          sample_weight, None, None)
        if self._optimizer is not None and self._optimizer.same_settings(plan["optimizer"]):
            plan["optimizer"] = self._optimizer
        return self._train(plan, 1, progress=False)

    def _plan(self, X, y, lr, batch_size, shuffle, seed, optimizer, momentum,
              sample_weight, validation_data, callback):
        """Validate every training argument at once, before anything changes."""
        batch_size = check.optional_count(batch_size, "batch_size")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable; got {type(callback).__name__}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError(f"validation_data must be a pair (X_val, y_val); got {type(validation_data).__name__}"
                                + (f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else ""))
            validation_data = self._checked(*validation_data, names=("X_val", "y_val"))
        on_disk = check.is_out_of_core(X) or check.is_out_of_core(y)
        X, y = self._checked(X, y)
        return {
            "X": X, "y": y, "on_disk": on_disk,
            "weights": self._row_weights(sample_weight, X.shape[0]),
            "batch_size": X.shape[0] if batch_size is None else batch_size,
            "shuffle": bool(shuffle),
            "rng": self._rng if seed is None else np.random.default_rng(seed),
            "optimizer": Optimizer(optimizer, lr, momentum, self._params.size, self.dtype),
            "validation": validation_data,
            "callback": callback,
        }

    def _train(self, plan, epochs, progress):
        """Run the epochs of a validated plan, recording a History.

        The plan's optimizer becomes the network's once an epoch completes;
        if none does, the previous optimizer (and its state) stays.
        """
        history = History()
        previous_optimizer = self._optimizer
        self._optimizer = plan["optimizer"]
        bar = Progress(progress, epochs, plan["X"].shape[0])
        try:
            for epoch in range(epochs):
                watch = Stopwatch()
                history.loss.append(self._epoch(plan, epoch))
                if plan["validation"] is not None:
                    history.val_loss.append(self._loss_on(*plan["validation"]))
                history.time.append(watch.seconds())
                bar.update(history)
                if plan["callback"] is not None and plan["callback"](epoch, history) is False:
                    break
        except BaseException as error:
            if not history.loss:
                self._optimizer = previous_optimizer
            error.history = history  # what completed, for whoever catches it (Ctrl-C included)
            raise
        finally:
            bar.close()
        return history

    def _epoch(self, plan, epoch):
        """One epoch, applied to the network only once it has completed and stayed finite; its loss.

        On any failure (an exception, Ctrl-C, or divergence) the parameters
        and the optimizer's state stay as they were after the previous epoch.
        """
        X, y, weights, optimizer = plan["X"], plan["y"], plan["weights"], plan["optimizer"]
        order = visiting_order(plan["rng"], X.shape[0], plan["shuffle"], plan["batch_size"], plan["on_disk"])
        params, saved_state = self._params.copy(), optimizer.snapshot()
        try:
            errors = self._backend.train_epoch(
                X, y, weights, order, plan["batch_size"], params, self._sizes, self._has_bias,
                DERIVATIVE_CODES[self.derivative], LOSS_CODES[self.loss_name],
                optimizer.code, optimizer.hyper, optimizer.state, optimizer.step, self._grad)
        except BaseException:
            optimizer.restore(saved_state)
            raise
        loss = errors if self.loss_name == "sse" else errors / ((weights.sum() if weights.size else X.shape[0]) * y.shape[1])
        if not (np.isfinite(loss) and check.all_finite(params)):
            optimizer.restore(saved_state)
            raise DivergenceError(epoch, loss, optimizer.lr)
        self._params[...] = params
        return loss

    # -- saving ---------------------------------------------------------------

    @exclusive
    def save(self, path):
        """Write the network (and its optimizer's state, to resume training) to ``path`` (.npz).

        Atomic: a crash or kill during ``save`` leaves any previous file at
        ``path`` intact.  The file holds plain arrays only.
        """
        persistence.write_atomically(path, persistence.network_arrays(self))

    @classmethod
    def load(cls, path, backend=None):
        """A network read from a file written by ``save``; ``backend`` defaults to the saved one.

        Reads with ``allow_pickle=False``, so no code runs from the file.  A
        missing, truncated, corrupted, tampered or foreign file raises an
        error naming the file and the problem.
        """
        fields = persistence.read_fields(path)
        saved = persistence.network_settings(fields, BACKENDS)
        net = cls(saved["layers"], backend=saved["backend"] if backend is None else backend,
                  derivative=saved["derivative"], loss=saved["loss"], bias=saved["bias"], dtype=saved["dtype"])
        net._params[...] = saved["params"]
        try:
            net._rng.bit_generator.state = json.loads(saved["rng_state"])
        except (ValueError, TypeError, KeyError):
            fields.fail("field 'rng_state' is not a random generator state")
        optimizer = persistence.optimizer_fields(fields, net._params.size, net.dtype)
        if optimizer is not None:
            try:
                net._optimizer = Optimizer.restored(*optimizer)
            except (ValueError, TypeError) as error:
                fields.fail(f"optimizer settings: {error}")
        return net

    predict = forward

    def __repr__(self):
        return (f"Network({self.layers}, backend={self.backend!r}, derivative={self.derivative!r}, "
                f"loss={self.loss_name!r}, bias={self._has_bias}, dtype={self.dtype.name!r})")
