"""scikit-learn estimators over ``fastnet.Network``: NetworkClassifier and NetworkRegressor.

They take scikit-learn's MLP parameter names (``MLPClassifier``,
``MLPRegressor``) wherever the meaning is the same, expose the same fitted
attributes, and train with ``Network.fit``: one validated call for the
whole fit, with scikit-learn's stopping rules in its per-epoch callback.
Only Network's public API is used.

scikit-learn is an optional dependency (``pip install "fastnet-kernels[sklearn]"``);
``import fastnet`` never imports this module.

Losses and their scale
----------------------
The network minimises fastnet's loss (``fastnet.spec.LOSSES``), which is a
constant ``k`` times the objective scikit-learn's MLP follows:

=====================  ==================  ====================================
estimator              fastnet loss        k = fastnet / MLP's (n_L outputs)
=====================  ==================  ====================================
classifier, binary     "bce", 1 sigmoid    1
classifier, multilabel "bce", n_L sigmoid  1 / n_L (fastnet: mean over labels)
classifier, multiclass "cross_entropy"     1
regressor              "mse", linear       2 / n_L (MLP: half the squared error)
=====================  ==================  ====================================

So that the updates are MLP's, the estimator passes the network
``alpha * k``, and divides sgd's learning rate by ``k`` or multiplies
Adam's ``epsilon`` by ``k`` (Adam is otherwise invariant to the scale of
the loss).  ``loss_`` and ``loss_curve_`` are on fastnet's scale: the
epoch's training loss as ``Network.fit`` reports it (each batch measured
before its update) plus the L2 term ``alpha k / 2 * sum W^2`` taken once
per batch with that batch's normaliser (MLP's convention), using the
weights the epoch started from.  For full-batch training that is exactly
the objective at those weights.  ``tol`` applies to that ``loss_``.
"""

import math
import numbers
import warnings
from types import SimpleNamespace

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as error:  # validate_data is new in scikit-learn 1.6
    raise ImportError('fastnet.NetworkClassifier and fastnet.NetworkRegressor need scikit-learn >= 1.6: '
                      'pip install "fastnet-kernels[sklearn]"') from error

import numpy as np

from fastnet import BACKENDS, Network

__all__ = ["NetworkClassifier", "NetworkRegressor"]

#: The hidden activations, by the names scikit-learn uses and fastnet's own.
_ACTIVATIONS = {"logistic": "sigmoid", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu"}
_SOLVERS = ("adam", "sgd")
#: Rows per batch with ``batch_size="auto"`` (at most; MLP's value).
_AUTO_BATCH_ROWS = 200
#: Seeds drawn from ``random_state`` lie in [0, _SEED_BOUND).
_SEED_BOUND = np.iinfo(np.int32).max


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter of the wrong type or value, found at fit.

    Both a ValueError and a TypeError, as scikit-learn's own, so code that
    catches either keeps working.
    """


class _KeepStateOnError:
    """Put the estimator's attributes back as they were if the block raises.

    scikit-learn's ``validate_data`` records ``n_features_in_`` before the
    data is known to be good; a failed fit must leave a fitted estimator as
    it was (and an unfitted one unfitted).
    """

    def __init__(self, estimator):
        self._estimator = estimator

    def __enter__(self):
        self._saved = dict(self._estimator.__dict__)

    def __exit__(self, kind, value, traceback):
        if kind is not None:
            self._estimator.__dict__.clear()
            self._estimator.__dict__.update(self._saved)
        return False


def _is_bool(value):
    """True for Python's and numpy's bools (which are Integral, yet never a count or a size)."""
    return isinstance(value, (bool, np.bool_))


class _BaseNetwork(BaseEstimator):
    """What NetworkClassifier and NetworkRegressor share: parameters, fitting, forward pass."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=1e-4,
                 batch_size="auto", learning_rate_init=1e-3, max_iter=200, shuffle=True, random_state=None,
                 tol=1e-4, verbose=False, warm_start=False, momentum=0.9, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 backend="numba", dtype="float64"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype

    # -- parameters -----------------------------------------------------------

    def _invalid(self, name, expected, value):
        return InvalidParameterError(f"The {name!r} parameter of {type(self).__name__} must be {expected}. "
                                     f"Got {value!r} instead.")

    def _real(self, name, low, high, closed):
        """Parameter ``name`` as a float in the interval (low, high) with the ``closed`` ends."""
        value = getattr(self, name)
        left, right = closed in ("left", "both"), closed in ("right", "both")
        interval = f"{'[' if left else '('}{low}, {high}{']' if right else ')'}"
        if _is_bool(value) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise self._invalid(name, f"a float in the range {interval}", value)
        if value < low or (value == low and not left) or value > high or (value == high and not right):
            raise self._invalid(name, f"a float in the range {interval}", value)
        return float(value)

    def _int(self, name, low):
        value = getattr(self, name)
        if _is_bool(value) or not isinstance(value, numbers.Integral) or value < low:
            raise self._invalid(name, f"an int in the range [{low}, inf)", value)
        return int(value)

    def _bool(self, name):
        value = getattr(self, name)
        if not _is_bool(value):
            raise self._invalid(name, "an instance of 'bool'", value)
        return bool(value)

    def _option(self, name, options):
        value = getattr(self, name)
        if not isinstance(value, str) or value not in options:
            raise self._invalid(name, f"a str among {sorted(options)}", value)
        return value

    def _settings(self):
        """Every constructor parameter checked, as fit uses it; InvalidParameterError names the first bad one."""
        s = SimpleNamespace()
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not _is_bool(sizes):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise self._invalid("hidden_layer_sizes", "an int >= 1 or a sequence of them", sizes) from None
        if any(_is_bool(width) or not isinstance(width, numbers.Integral) or width < 1 for width in sizes):
            raise self._invalid("hidden_layer_sizes", "an int >= 1 or a sequence of them",
                                self.hidden_layer_sizes)
        s.hidden = [int(width) for width in sizes]
        s.activation = _ACTIVATIONS[self._option("activation", _ACTIVATIONS)]
        s.solver = self._option("solver", _SOLVERS)
        s.alpha = self._real("alpha", 0, math.inf, "left")
        if isinstance(self.batch_size, str):
            s.batch_size = self._option("batch_size", ("auto",))
        else:
            s.batch_size = self._int("batch_size", 1)
        s.learning_rate_init = self._real("learning_rate_init", 0, math.inf, "neither")
        s.max_iter = self._int("max_iter", 1)
        s.shuffle = self._bool("shuffle")
        if not (self.random_state is None or isinstance(self.random_state, np.random.RandomState)
                or (isinstance(self.random_state, numbers.Integral) and not _is_bool(self.random_state)
                    and 0 <= self.random_state < 2**32)):
            raise self._invalid("random_state", "None, an int in [0, 2**32) or a numpy RandomState",
                                self.random_state)
        s.tol = self._real("tol", 0, math.inf, "left")
        if not (_is_bool(self.verbose) or isinstance(self.verbose, numbers.Integral)):
            raise self._invalid("verbose", "a bool or an int", self.verbose)
        s.verbose = bool(self.verbose)
        s.warm_start = self._bool("warm_start")
        s.momentum = self._real("momentum", 0, 1, "both")
        s.early_stopping = self._bool("early_stopping")
        s.validation_fraction = self._real("validation_fraction", 0, 1, "neither")
        s.beta_1 = self._real("beta_1", 0, 1, "left")
        s.beta_2 = self._real("beta_2", 0, 1, "left")
        s.epsilon = self._real("epsilon", 0, math.inf, "neither")
        if self.n_iter_no_change == np.inf:
            s.n_iter_no_change = math.inf
        else:
            s.n_iter_no_change = self._int("n_iter_no_change", 1)
        s.backend = self._option("backend", BACKENDS)
        try:
            s.dtype = np.dtype(self.dtype)
        except TypeError:
            s.dtype = None
        if s.dtype not in (np.float64, np.float32):
            raise self._invalid("dtype", "'float64' or 'float32'", self.dtype)
        # fastnet's optimizer: sgd with momentum is heavy-ball momentum (MLP's nesterovs_momentum=False).
        s.optimizer = "adam" if s.solver == "adam" else ("momentum" if s.momentum > 0 else "sgd")
        return s

    # -- the pieces subclasses fill in ------------------------------------------

    def _targets(self, y, first_pass, incremental):
        """(y, Y): validated y as labels or values, and as the network's targets (n, n_outputs).

        Leaves what predict needs (a label binarizer, y's ndim) in
        ``_pending_targets``, which becomes ``_fitted_targets`` when the fit succeeds.
        """
        raise NotImplementedError

    def _output_and_loss(self):
        """(output activation, loss, out_activation_) for the network, from ``_pending_targets``."""
        raise NotImplementedError

    def _validation_score(self, net, X_val, y_val, sample_weight_val):
        """The early-stopping score (higher is better) of ``net``, the network being trained:
        accuracy for the classifier, R^2 for the regressor, as MLP's."""
        raise NotImplementedError

    def _stratify(self, y):
        """Labels to stratify the early-stopping split by, or None."""
        return None

    # -- fitting ----------------------------------------------------------------

    def _sample_weight(self, sample_weight, n_rows):
        """``sample_weight`` as (n_rows,) float64, finite, >= 0 with a positive sum; None stays None."""
        if sample_weight is None:
            return None
        try:
            weights = np.asarray(sample_weight, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"sample_weight must be an array of real numbers: {error}") from None
        if weights.ndim == 0:
            weights = np.full(n_rows, float(weights))
        if weights.shape != (n_rows,):
            raise ValueError(f"sample_weight must have shape ({n_rows},), one weight per row of X; "
                             f"got {weights.shape}")
        if not np.isfinite(weights).all():
            raise ValueError("sample_weight must be finite; it holds NaN or infinity")
        if (weights < 0).any():
            raise ValueError(f"sample_weight must be >= 0; got negative values (the least is {weights.min():g})")
        if not weights.sum() > 0:
            raise ValueError("sample_weight must not be all zero: the sum of the weights is zero")
        return weights

    def _split(self, X, Y, y, sample_weight, s, rng):
        """The early-stopping split: (X, Y, weights) to train on, then (X_val, y_val, weights_val)."""
        n_rows = X.shape[0]
        stratify = self._stratify(y)
        arrays = [X, Y, y] + ([] if sample_weight is None else [sample_weight])
        try:
            parts = train_test_split(*arrays, test_size=s.validation_fraction, stratify=stratify,
                                     random_state=rng.randint(_SEED_BOUND))
        except ValueError as error:
            raise ValueError(f"early_stopping=True cannot hold out validation_fraction={s.validation_fraction} "
                             f"of {n_rows} rows{' stratified by class' if stratify is not None else ''}: "
                             f"{error}") from None
        X_train, X_val, Y_train, _, _, y_val = parts[:6]
        w_train, w_val = (parts[6], parts[7]) if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2 or X_train.shape[0] < 1:
            raise ValueError(f"The validation set is too small: validation_fraction={s.validation_fraction} of "
                             f"{n_rows} rows leaves {X_val.shape[0]} for validation (at least 2 are needed). "
                             "Increase 'validation_fraction' or the size of your dataset.")
        return (X_train, Y_train, w_train), (X_val, y_val, w_val)

    def _initial_weights(self, layers, activation, rng):
        """Glorot-uniform weights and biases as MLP draws them: bound sqrt(f / (fan_in + fan_out)),
        f = 2 for logistic layers and 6 otherwise, biases from the same interval."""
        factor = 2.0 if activation == "sigmoid" else 6.0
        weights, biases = [], []
        for fan_in, fan_out in zip(layers[:-1], layers[1:]):
            bound = math.sqrt(factor / (fan_in + fan_out))
            weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
            biases.append(rng.uniform(-bound, bound, fan_out))
        return weights, biases

    def _network(self, s, n_features, n_outputs, first_pass, rng):
        """A fresh network, or (warm start, partial_fit) a copy of ``network_`` to continue from."""
        layers = [n_features, *s.hidden, n_outputs]
        output, loss, _ = self._output_and_loss()
        if not first_pass:
            net = self.network_
            if (net.layers, net.activation, net.dtype) != (layers, s.activation, s.dtype):
                raise ValueError(f"cannot continue training network_ (layers {net.layers}, activation "
                                 f"{net.activation!r}, dtype {net.dtype.name}) as layers {layers}, activation "
                                 f"{s.activation!r}, dtype {s.dtype.name}: hidden_layer_sizes, activation, dtype "
                                 "and the number of outputs must stay the same; use warm_start=False to start over")
            # A copy: a fit that fails leaves network_ as it was.
            return Network.from_state(net.state(), backend=s.backend)
        weights, biases = self._initial_weights(layers, s.activation, np.random.default_rng(rng.randint(_SEED_BOUND)))
        return Network(layers, backend=s.backend, activation=s.activation, output=output, loss=loss,
                       weights=weights, biases=biases, seed=rng.randint(_SEED_BOUND), dtype=s.dtype.name)

    def _loss_scale(self, loss, n_outputs):
        """k: fastnet's loss over MLP's objective (see the module's docstring)."""
        return {"bce": 1.0 / n_outputs, "cross_entropy": 1.0, "mse": 2.0 / n_outputs}[loss]

    def _fit(self, X, y, sample_weight, incremental):
        """fit (incremental=False) or partial_fit (True): every check first, then one Network call.

        Returns True when a fit ran ``max_iter`` epochs without meeting the stopping rule.
        """
        s = self._settings()
        if incremental and s.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "network_") or (not s.warm_start and not incremental)
        X, y = validate_data(self, X, y, reset=first_pass, dtype=s.dtype, multi_output=True,
                             y_numeric=not isinstance(self, ClassifierMixin))
        y, Y = self._targets(y, first_pass, incremental)
        Y = Y.astype(s.dtype, copy=False)
        sample_weight = self._sample_weight(sample_weight, X.shape[0])
        if first_pass:
            self._random_state = check_random_state(self.random_state)
        rng = self._random_state
        if s.early_stopping:
            (X, Y, sample_weight), validation = self._split(X, Y, y, sample_weight, s, rng)
        else:
            validation = None
        n_rows = X.shape[0]
        if s.batch_size == "auto":
            batch_size = min(_AUTO_BATCH_ROWS, n_rows)
        else:
            if s.batch_size > n_rows:
                warnings.warn(f"Got batch_size={s.batch_size} larger than the {n_rows} training rows; "
                              "it is clipped to that", UserWarning)
            batch_size = min(s.batch_size, n_rows)
        net = self._network(s, X.shape[1], Y.shape[1], first_pass, rng)

        # The network's hyper-parameters on its loss's scale (see the module's docstring).
        k = self._loss_scale(net.loss, Y.shape[1])
        alpha = s.alpha * k
        lr = s.learning_rate_init if s.optimizer == "adam" else s.learning_rate_init / k
        eps = s.epsilon * k
        total_weight = n_rows if sample_weight is None else float(sample_weight.sum())
        n_batches = -(-n_rows // batch_size)
        monitor = _Monitor(self, net, s, first_pass, validation, penalty=alpha * n_batches / (2 * total_weight))

        arguments = dict(batch_size=batch_size, shuffle=s.shuffle, seed=rng.randint(_SEED_BOUND),
                         optimizer=s.optimizer, momentum=s.momentum, alpha=alpha, betas=(s.beta_1, s.beta_2),
                         eps=eps, sample_weight=sample_weight)
        if incremental:
            history = net.partial_fit(X, Y, lr, **arguments)
            monitor(0, history)
        else:
            net.fit(X, Y, s.max_iter, lr, progress=False, callback=monitor, **arguments)
        monitor.finish()

        # Only now, with training done, does the estimator change.
        _, _, self.out_activation_ = self._output_and_loss()
        self.network_ = net
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(net.layers)
        self.n_iter_ = monitor.epochs
        self.t_ = (getattr(self, "t_", 0) if not first_pass else 0) + n_rows * monitor.epochs
        self.loss_ = monitor.losses[-1]
        self.loss_curve_ = monitor.losses
        self.best_loss_ = monitor.best_loss
        self.validation_scores_ = monitor.scores
        self.best_validation_score_ = monitor.best_score
        self._no_improvement_count = monitor.no_improvement
        self._best_parameters = monitor.best_parameters
        self._fitted_targets = self._pending_targets
        del self._pending_targets
        return not incremental and not monitor.stopped and monitor.epochs == s.max_iter

    def fit(self, X, y, sample_weight=None):
        """Fit the network to X (n_samples, n_features) and y; returns self.

        Starts from fresh weights drawn from ``random_state`` unless
        ``warm_start`` (then continues from ``network_``, with a new
        optimizer).  Runs up to ``max_iter`` epochs, stopping as MLP does
        (module docstring; ``tol``, ``n_iter_no_change``, ``early_stopping``).
        ``sample_weight``: optional non-negative weight per row.

        Bad parameters or data raise ValueError or TypeError before any
        training, and a loss that becomes NaN or infinite raises
        ``fastnet.DivergenceError``; either way the estimator stays as it was.
        """
        with _KeepStateOnError(self):
            unconverged = self._fit(X, y, sample_weight, incremental=False)
        if unconverged:  # after the fit is kept, so that a warnings filter "error" keeps it too
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning)
        return self

    # -- prediction -------------------------------------------------------------

    def _forward(self, X):
        """The network's outputs (n, n_outputs) for X, validated against the fitted features."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self.network_.dtype)
        return self.network_.forward(X)

    @property
    def coefs_(self):
        """Weight matrices ``(fan_in, fan_out)``, one per layer: views into ``network_``'s parameters."""
        return self.network_.weights

    @property
    def intercepts_(self):
        """Bias vectors ``(fan_out,)``, one per layer: views into ``network_``'s parameters."""
        return self.network_.biases

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


class _Monitor:
    """Network.fit's callback: records losses and validation scores, applies MLP's stopping rules.

    Without early stopping, an epoch counts as no improvement when its
    ``loss_`` exceeds the best so far minus ``tol``; with it, when its
    validation score is below the best so far plus ``tol``, and the
    parameters of the best score are kept to be restored at the end.
    More than ``n_iter_no_change`` such epochs in a row stop training
    (returning False to Network.fit).
    """

    def __init__(self, estimator, net, s, first_pass, validation, penalty):
        self.estimator, self.net, self.s, self.validation, self.penalty = estimator, net, s, validation, penalty
        keep = not first_pass
        self.losses = list(estimator.loss_curve_) if keep else []
        if s.early_stopping:
            self.scores = list(estimator.validation_scores_ or []) if keep else []
            previous = estimator.best_validation_score_ if keep else None
            self.best_score = -np.inf if previous is None else previous
            self.best_loss = None
        else:
            self.scores, self.best_score = None, None
            previous = estimator.best_loss_ if keep else None
            self.best_loss = np.inf if previous is None else previous
        self.no_improvement = estimator._no_improvement_count if keep else 0
        # MLP's rule on a warm start: the best epoch so far may be one of an earlier fit.
        self.best_parameters = estimator._best_parameters if keep and s.early_stopping else None
        self.epochs = 0
        self.stopped = False
        self.squares = self._squares()

    def _squares(self):
        """sum W^2 over the network's weight matrices, now."""
        return sum(float(np.vdot(weight, weight)) for weight in self.net.weights)

    def __call__(self, epoch, history):
        # The penalty with the weights the epoch started from, as its data loss is measured before
        # each update: for full-batch training this is exactly the objective at those weights.
        loss = float(history.loss[-1]) + self.penalty * self.squares
        self.squares = self._squares()
        self.losses.append(loss)
        self.epochs += 1
        s = self.s
        if s.verbose:
            print(f"Iteration {len(self.losses)}, loss = {loss:.8f}")
        if self.validation is not None:
            score = self.estimator._validation_score(self.net, *self.validation)
            self.scores.append(score)
            if s.verbose:
                print(f"Validation score: {score:f}")
            self.no_improvement = self.no_improvement + 1 if score < self.best_score + s.tol else 0
            if score > self.best_score:
                self.best_score = score
                self.best_parameters = ([w.copy() for w in self.net.weights], [b.copy() for b in self.net.biases])
        else:
            self.no_improvement = self.no_improvement + 1 if loss > self.best_loss - s.tol else 0
            self.best_loss = min(self.best_loss, loss)
        if self.no_improvement > s.n_iter_no_change:
            self.stopped = True
            if s.verbose:
                what = "Validation score" if self.validation is not None else "Training loss"
                print(f"{what} did not improve more than tol={s.tol:f} for {s.n_iter_no_change} consecutive "
                      "epochs. Stopping.")
            return False
        return True

    def finish(self):
        """After training: put back the parameters of the best validation score (early stopping)."""
        if self.best_parameters is not None:
            for targets, sources in zip((self.net.weights, self.net.biases), self.best_parameters):
                for target, source in zip(targets, sources):
                    target[...] = source


class NetworkClassifier(ClassifierMixin, _BaseNetwork):
    """A fastnet network as a scikit-learn classifier, a drop-in for ``MLPClassifier``.

    Two classes: one sigmoid output with loss "bce"; more: a softmax
    output with "cross_entropy" on one-hot targets; a multilabel indicator
    y: one sigmoid output per label with "bce".  Labels may be any type
    scikit-learn accepts (ints, strings...).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Widths of the hidden layers.
    activation : {"logistic", "sigmoid", "tanh", "relu"}, default="relu"
        The hidden layers' activation ("logistic" and "sigmoid" are the same).
    solver : {"adam", "sgd"}, default="adam"
        "sgd" with ``momentum`` > 0 is heavy-ball momentum (fastnet's "momentum").
    alpha : float >= 0, default=1e-4
        L2 penalty ``alpha / 2 * sum W^2``, per batch divided by its total row weight.
    batch_size : int or "auto", default="auto"
        Rows per update; "auto" is ``min(200, n_samples)``.
    learning_rate_init : float > 0, default=1e-3
    max_iter : int >= 1, default=200
        Epochs at most.
    shuffle : bool, default=True
        Visit rows in a fresh seeded order each epoch.
    random_state : None, int or numpy.random.RandomState
        Seeds initial weights, shuffling and the early-stopping split.
    tol, n_iter_no_change : stopping rule, as MLPClassifier's (on ``loss_``,
        or on the validation accuracy with ``early_stopping``).
    verbose : bool, default=False
        Print the loss (and validation score) after each epoch.
    warm_start : bool, default=False
        ``fit`` continues from ``network_`` instead of starting afresh.
    momentum : float in [0, 1], default=0.9
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the rows, stop on
        its accuracy, and restore the parameters of its best epoch.
    validation_fraction : float in (0, 1), default=0.1
    beta_1, beta_2, epsilon : Adam's constants.
    backend : {"numba", "native", "numpy"}, default="numba"
    dtype : "float64" or "float32", default="float64"

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_ (DataFrame input), n_outputs_,
    n_layers_, out_activation_ ("logistic" or "softmax"), coefs_, intercepts_
    (views into ``network_``), loss_, loss_curve_, best_loss_ (see the module
    docstring for their scale), validation_scores_, best_validation_score_,
    n_iter_ (epochs of the last fit), t_ (rows seen in training), network_
    (the fitted ``fastnet.Network``).
    """

    def _targets(self, y, first_pass, incremental):
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first_pass and not incremental:
            binarizer = LabelBinarizer().fit(y)
            if len(binarizer.classes_) < 2:
                raise ValueError(f"y has only one class ({binarizer.classes_[0]!r}); a classifier needs at "
                                 "least 2 classes in y")
        else:
            binarizer = self._pending_binarizer if first_pass else self._binarizer
            multilabel = type_of_target(y).startswith("multilabel")
            if binarizer.y_type_.startswith("multilabel") != multilabel:
                raise ValueError(f"y is {type_of_target(y)} but the classifier was fitted on "
                                 f"{binarizer.y_type_} targets")
            labels = unique_labels(y)
            unseen = np.setdiff1d(labels, binarizer.classes_)
            if unseen.size:
                raise ValueError(f"y has classes not in classes_ {list(binarizer.classes_)}: {list(unseen)}")
            if self.warm_start and not incremental and set(labels) != set(binarizer.classes_):
                raise ValueError("warm_start can only be used where y has the same classes as in the previous "
                                 f"call to fit; previously {list(binarizer.classes_)}, y has {list(labels)}")
        self._pending_targets = binarizer
        return y, binarizer.transform(y)

    def _output_and_loss(self):
        binarizer = self._pending_targets
        if binarizer.y_type_ == "multiclass":
            return "softmax", "cross_entropy", "softmax"
        return "sigmoid", "bce", "logistic"

    def _stratify(self, y):
        return None if y.ndim == 2 else y

    def _validation_score(self, net, X_val, y_val, sample_weight_val):
        return accuracy_score(y_val, self._labels(net.forward(X_val), self._pending_targets),
                              sample_weight=sample_weight_val)

    @staticmethod
    def _labels(outputs, binarizer):
        """Class labels (or the label indicator matrix) from the network's outputs."""
        if outputs.shape[1] == 1:
            outputs = outputs.ravel()
        return binarizer.inverse_transform(outputs)

    @property
    def classes_(self):
        """The class labels, in the order of ``predict_proba``'s columns (the labels' indices for
        multilabel y)."""
        return self._binarizer.classes_

    @property
    def _binarizer(self):
        try:
            return self._fitted_targets
        except AttributeError:
            raise AttributeError("classes_ is set by fit or partial_fit") from None

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), keeping the optimizer's state (Adam's moments) from earlier calls.

        ``classes``: every label of the whole stream, required on the first
        call (labels outside it are a ValueError then and later).
        """
        with _KeepStateOnError(self):
            first_call = not hasattr(self, "network_")
            if first_call:
                if classes is None:
                    raise ValueError("classes must be passed on the first call to partial_fit")
                binarizer = LabelBinarizer()
                y_type = type_of_target(y)
                if y_type.startswith("multilabel"):
                    binarizer.fit(y)
                else:
                    classes = np.asarray(classes)
                    check_classification_targets(classes)
                    binarizer.fit(unique_labels(classes))
                    if len(binarizer.classes_) < 2:
                        raise ValueError(f"classes must hold at least 2 labels; got {list(binarizer.classes_)}")
                self._pending_binarizer = binarizer
            elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
                raise ValueError(f"classes={list(classes)} is not the same as on the first call to partial_fit, "
                                 f"{list(self.classes_)}")
            self._fit(X, y, sample_weight, incremental=True)
            self.__dict__.pop("_pending_binarizer", None)
            return self

    def predict(self, X):
        """Class labels for X: (n_samples,), or the label indicator matrix for multilabel y."""
        return self._labels(self._forward(X), self._binarizer)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in ``classes_`` order; for multilabel
        y each label's probability."""
        outputs = self._forward(X)
        if outputs.shape[1] == 1:
            return np.hstack([1 - outputs, outputs])
        return outputs

    def predict_log_proba(self, X):
        """The log of ``predict_proba``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class NetworkRegressor(RegressorMixin, _BaseNetwork):
    """A fastnet network as a scikit-learn regressor, a drop-in for ``MLPRegressor``.

    A linear output layer with loss "mse"; y may be 1-D or 2-D
    (n_samples, n_targets), and ``predict`` returns the same shape.
    Parameters and attributes as NetworkClassifier's (without
    ``classes_``; ``out_activation_`` is "identity"; early stopping scores
    R^2 on an unstratified hold-out).
    """

    def _targets(self, y, first_pass, incremental):
        self._pending_targets = y.ndim
        return y, y.reshape(y.shape[0], -1)

    def _output_and_loss(self):
        return "linear", "mse", "identity"

    def _validation_score(self, net, X_val, y_val, sample_weight_val):
        return r2_score(y_val, net.forward(X_val).reshape(y_val.shape), sample_weight=sample_weight_val)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), keeping the optimizer's state (Adam's moments) from earlier calls."""
        with _KeepStateOnError(self):
            self._fit(X, y, sample_weight, incremental=True)
        return self

    def predict(self, X):
        """Predicted targets: (n_samples,) if y was 1-D in fit, else (n_samples, n_targets)."""
        outputs = self._forward(X)
        return outputs.ravel() if self._fitted_targets == 1 else outputs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
