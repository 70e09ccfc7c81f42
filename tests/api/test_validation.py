"""Bad input is rejected up front with a message naming the argument; valid array-likes all work.

Rejections are checked on every backend with the backend's kernels replaced
by a guard that fails the test if called, so "before any kernel runs" is
observed, not assumed; the network's parameters must be unchanged afterwards.
"""

import importlib

import numpy as np
import pytest

from fastnet import Network

from conftest import (assert_close_normwise, assert_parameters_equal, parameters_copy, random_data,
                      random_network, random_parameters)

#: Backend name -> its module under fastnet.backends (the layout in DESIGN.md).
BACKEND_MODULES = {"numpy": "reference", "numba": "numba_kernels", "native": "native"}

LAYERS = [3, 4, 2]
N = 5


def name_pattern(name):
    """A regex matching ``name`` as a whole word (so "y" does not match "array")."""
    return rf"(?<![A-Za-z0-9_]){name}(?![A-Za-z0-9_])"


def good_data():
    return random_data(LAYERS, N, seed=21)


@pytest.fixture
def guarded(backend, monkeypatch):
    """A bias network on ``backend`` whose kernels fail the test if they run."""
    net = random_network(LAYERS, backend, seed=20, bias=True)
    module = importlib.import_module(f"fastnet.backends.{BACKEND_MODULES[backend]}")

    def kernel_ran(*args, **kwargs):
        raise AssertionError("a backend kernel ran before the bad input was rejected")

    monkeypatch.setattr(module, "forward", kernel_ran)
    monkeypatch.setattr(module, "gradient", kernel_ran)
    return net


def call(net, method, X, y, lr=0.1, epochs=2):
    """Call one of the network's data-taking methods."""
    if method == "forward":
        return net.forward(X)
    if method == "activations":
        return net.activations(X)
    if method == "evaluate":
        return net.evaluate(X, y)
    if method == "gradients":
        return net.gradients(X, y)
    if method == "step":
        return net.step(X, y, lr=lr)
    if method == "fit":
        return net.fit(X, y, epochs=epochs, lr=lr)
    raise AssertionError(method)


X_METHODS = ["forward", "activations", "evaluate", "gradients", "step", "fit"]
XY_METHODS = ["evaluate", "gradients", "step", "fit"]


def with_value(array, index, value):
    array = np.array(array, dtype=np.float64, copy=True)
    array[index] = value
    return array


def test_guard_catches_kernel_calls(guarded):
    """The guard itself works: valid input reaches the (guarded) kernel."""
    X, y = good_data()
    with pytest.raises(AssertionError, match="kernel ran"):
        guarded.forward(X)
    with pytest.raises(AssertionError, match="kernel ran"):
        guarded.gradients(X, y)


# -- bad X --------------------------------------------------------------------------------

BAD_X = {
    "too-many-columns": (lambda X: np.ones((N, 4)), ValueError),
    "too-few-columns": (lambda X: np.ones((N, 2)), ValueError),
    "zero-rows": (lambda X: np.ones((0, 3)), ValueError),
    "1-D": (lambda X: np.ones(3), ValueError),
    "3-D": (lambda X: np.ones((N, 3, 1)), ValueError),
    "scalar": (lambda X: 1.0, ValueError),
    "nan": (lambda X: with_value(X, (1, 2), np.nan), ValueError),
    "inf": (lambda X: with_value(X, (0, 0), np.inf), ValueError),
    "minus-inf": (lambda X: with_value(X, (4, 1), -np.inf), ValueError),
    "strings": (lambda X: np.full((N, 3), "a"), TypeError),
    "numeric-strings": (lambda X: [["1", "2", "3"]] * N, TypeError),
    "object": (lambda X: X.astype(object), TypeError),
    "complex": (lambda X: X + 0j, TypeError),
    "ragged": (lambda X: [[1.0, 2.0, 3.0], [1.0, 2.0]], ValueError),
    "none": (lambda X: None, TypeError),
}


@pytest.mark.parametrize("method", X_METHODS)
@pytest.mark.parametrize("case", list(BAD_X))
def test_bad_X_is_rejected_before_any_kernel(guarded, case, method):
    make, error = BAD_X[case]
    X, y = good_data()
    before = parameters_copy(guarded)
    with pytest.raises(error, match=name_pattern("X")):
        call(guarded, method, make(X), y)
    assert_parameters_equal(guarded, before)


# -- bad y --------------------------------------------------------------------------------

BAD_Y = {
    "fewer-rows": (lambda y: np.ones((N - 1, 2)), ValueError),
    "more-rows": (lambda y: np.ones((N + 1, 2)), ValueError),
    "too-many-columns": (lambda y: np.ones((N, 3)), ValueError),
    "too-few-columns": (lambda y: np.ones((N, 1)), ValueError),
    "1-D-for-two-outputs": (lambda y: np.ones(N), ValueError),
    "zero-rows": (lambda y: np.ones((0, 2)), ValueError),
    "nan": (lambda y: with_value(y, (2, 1), np.nan), ValueError),
    "inf": (lambda y: with_value(y, (0, 0), np.inf), ValueError),
    "strings": (lambda y: np.full((N, 2), "b"), TypeError),
    "object": (lambda y: y.astype(object), TypeError),
    "complex": (lambda y: y + 1j, TypeError),
    "ragged": (lambda y: [[1.0, 0.0]] * (N - 1) + [[1.0]], ValueError),
    "none": (lambda y: None, TypeError),
}


@pytest.mark.parametrize("method", XY_METHODS)
@pytest.mark.parametrize("case", list(BAD_Y))
def test_bad_y_is_rejected_before_any_kernel(guarded, case, method):
    make, error = BAD_Y[case]
    X, y = good_data()
    before = parameters_copy(guarded)
    with pytest.raises(error, match=name_pattern("y")):
        call(guarded, method, X, make(y))
    assert_parameters_equal(guarded, before)


@pytest.mark.parametrize("method", XY_METHODS)
def test_missing_y_with_two_rows_of_X_is_rejected(guarded, method):
    """y=None must not be mistaken for "no y": with two rows, X must not be split into (X, y)."""
    X, _ = good_data()
    before = parameters_copy(guarded)
    with pytest.raises(TypeError, match=name_pattern("y")):
        call(guarded, method, X[:2], None)
    assert_parameters_equal(guarded, before)


# -- bad lr and epochs ----------------------------------------------------------------------

BAD_LR = [(0, ValueError), (0.0, ValueError), (-0.5, ValueError), (np.nan, ValueError),
          (np.inf, ValueError), (-np.inf, ValueError), ("0.1", TypeError), (None, TypeError),
          (0.1 + 0j, TypeError)]


# lr=None is fit's documented default (the optimizer's own rate), so only step rejects it.
BAD_LR_CALLS = [(method, lr, error) for method in ("step", "fit") for lr, error in BAD_LR
                if not (method == "fit" and lr is None)]


@pytest.mark.parametrize("method, lr, error", BAD_LR_CALLS,
                         ids=[f"{m}-{lr!r}" for m, lr, _ in BAD_LR_CALLS])
def test_bad_lr_is_rejected(guarded, method, lr, error):
    X, y = good_data()
    before = parameters_copy(guarded)
    with pytest.raises(error, match=name_pattern("lr")):
        call(guarded, method, X, y, lr=lr)
    assert_parameters_equal(guarded, before)


BAD_EPOCHS = [(-1, ValueError), (-10, ValueError), (1.5, TypeError), (2.0, TypeError),
              ("3", TypeError), (None, TypeError)]


@pytest.mark.parametrize("epochs, error", BAD_EPOCHS, ids=[repr(v) for v, _ in BAD_EPOCHS])
def test_bad_epochs_are_rejected(guarded, epochs, error):
    X, y = good_data()
    before = parameters_copy(guarded)
    with pytest.raises(error, match=name_pattern("epochs")):
        guarded.fit(X, y, epochs=epochs, lr=0.1)
    assert_parameters_equal(guarded, before)


# -- bad constructor arguments --------------------------------------------------------------

W0, W1 = random_parameters(LAYERS, seed=30, bias=False)[0]

BAD_WEIGHTS = {
    "one-too-few": (lambda: [W0], ValueError),
    "one-too-many": (lambda: [W0, W1, np.ones((2, 2))], ValueError),
    "transposed": (lambda: [W0.T, W1], ValueError),
    "wrong-second-shape": (lambda: [W0, np.ones((4, 3))], ValueError),
    "flat-vector": (lambda: [W0.ravel(), W1], ValueError),
    "array-not-list": (lambda: np.ones((3, 4)), (TypeError, ValueError)),
    "not-a-sequence": (lambda: 3.0, TypeError),
    "nan": (lambda: [with_value(W0, (0, 1), np.nan), W1], ValueError),
    "inf": (lambda: [W0, with_value(W1, (3, 0), np.inf)], ValueError),
    "strings": (lambda: [np.full((3, 4), "w"), W1], TypeError),
    "object": (lambda: [W0.astype(object), W1], TypeError),
    "complex": (lambda: [W0, W1 + 0j], TypeError),
    "ragged": (lambda: [[[1.0, 2.0, 3.0, 4.0]] * 2 + [[1.0]], W1], ValueError),
}


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_bad_weights_are_rejected(backend, case):
    make, error = BAD_WEIGHTS[case]
    with pytest.raises(error, match=name_pattern("weights")):
        Network(LAYERS, backend=backend, weights=make())


B0, B1 = np.zeros(4), np.zeros(2)

BAD_BIASES = {
    "one-too-few": (lambda: [B0], ValueError),
    "one-too-many": (lambda: [B0, B1, B1], ValueError),
    "wrong-shape": (lambda: [B0, np.zeros(3)], ValueError),
    "column-shaped": (lambda: [B0.reshape(4, 1), B1], ValueError),
    "nan": (lambda: [B0, with_value(B1, 1, np.nan)], ValueError),
    "inf": (lambda: [with_value(B0, 0, -np.inf), B1], ValueError),
    "complex": (lambda: [B0 + 0j, B1], TypeError),
    "strings": (lambda: [B0, np.array(["a", "b"])], TypeError),
}


@pytest.mark.parametrize("case", list(BAD_BIASES))
def test_bad_biases_are_rejected(backend, case):
    make, error = BAD_BIASES[case]
    with pytest.raises(error, match=name_pattern("biases")):
        Network(LAYERS, backend=backend, bias=True, weights=[W0, W1], biases=make())


def test_biases_with_bias_false_are_rejected(backend):
    with pytest.raises(ValueError, match="bias"):
        Network(LAYERS, backend=backend, bias=False, weights=[W0, W1], biases=[B0, B1])


@pytest.mark.parametrize("bias", ["yes", 1, None])
def test_non_bool_bias_is_rejected(backend, bias):
    with pytest.raises(TypeError, match=name_pattern("bias")):
        Network(LAYERS, backend=backend, bias=bias)


BAD_NAMES = [
    ("derivative", "approx", ValueError), ("derivative", "Exact", ValueError),
    ("derivative", 1, TypeError), ("derivative", None, TypeError),
    ("loss", "mae", ValueError), ("loss", "MSE", ValueError), ("loss", "", ValueError),
    ("loss", 0, TypeError),
]


@pytest.mark.parametrize("argument, value, error", BAD_NAMES,
                         ids=[f"{a}={v!r}" for a, v, _ in BAD_NAMES])
def test_unknown_derivative_or_loss_is_rejected(backend, argument, value, error):
    with pytest.raises(error, match=name_pattern(argument)):
        Network(LAYERS, backend=backend, **{argument: value})


BAD_BACKENDS = [("torch", ValueError), ("NumPy", ValueError), ("numba ", ValueError), ("", ValueError),
                ("reference", ValueError), (None, TypeError), (3, TypeError), (["numpy"], TypeError)]


@pytest.mark.parametrize("value, error", BAD_BACKENDS, ids=[repr(v) for v, _ in BAD_BACKENDS])
def test_unknown_backend_is_rejected(value, error):
    with pytest.raises(error, match=name_pattern("backend")):
        Network(LAYERS, backend=value)


BAD_LAYERS = [([], ValueError), ([3], ValueError), ([3, 0], ValueError), ([3, -2, 1], ValueError),
              ([0, 2], ValueError), ([3.5, 1], TypeError), ([3, 1.0], TypeError), ([3, "1"], TypeError),
              ([3, True], TypeError), ("abc", TypeError), (None, TypeError), (3, TypeError)]


@pytest.mark.parametrize("layers, error", BAD_LAYERS, ids=[repr(v) for v, _ in BAD_LAYERS])
def test_bad_layers_are_rejected(backend, layers, error):
    with pytest.raises(error, match=name_pattern("layers")):
        Network(layers, backend=backend)


@pytest.mark.parametrize("layers", [(3, 4, 1), np.array([3, 4, 1]), [np.int64(3), 4, np.int32(1)]],
                         ids=["tuple", "ndarray", "numpy-ints"])
def test_layer_sequences_of_ints_are_accepted(backend, layers):
    net = Network(layers, backend=backend, seed=0)
    assert net.layers == [3, 4, 1]
    assert all(type(width) is int for width in net.layers)
    assert net.forward(np.zeros((2, 3))).shape == (2, 1)


# -- valid array-likes give the same result as C-contiguous float64 --------------------------

VALID_LAYERS = [3, 4, 1]


def canonical_data():
    rng = np.random.default_rng(40)
    return rng.uniform(-1.0, 1.0, (6, 3)), rng.uniform(0.0, 1.0, (6, 1))


def read_only(array):
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


def variant_inputs():
    """(variant X, variant y, the same values as C-contiguous float64 X and y)."""
    X, y = canonical_data()
    rng = np.random.default_rng(41)
    X_int, y_int = rng.integers(-3, 4, (6, 3)), rng.integers(0, 2, (6, 1))
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    X_bool, y_bool = X > 0, y > 0.5
    tall, wide = rng.uniform(-1, 1, (12, 3)), rng.uniform(-1, 1, (6, 6))
    tall_y = rng.uniform(0, 1, (12, 2))
    c = np.ascontiguousarray
    return {
        "nested-lists": (X.tolist(), y.tolist(), X, y),
        "tuples": (tuple(map(tuple, X)), tuple(map(tuple, y)), X, y),
        "int64": (X_int, y_int, X_int.astype(float), y_int.astype(float)),
        "int32-uint8": (X_int.astype(np.int32), y_int.astype(np.uint8), X_int.astype(float), y_int.astype(float)),
        "float32": (X32, y32, X32.astype(np.float64), y32.astype(np.float64)),
        "bool": (X_bool, y_bool, X_bool.astype(float), y_bool.astype(float)),
        "fortran-order": (np.asfortranarray(X), np.asfortranarray(y), X, y),
        "transposed-view": (c(X.T).T, y, X, y),
        "row-strided": (tall[::2], tall_y[::2, :1], c(tall[::2]), c(tall_y[::2, :1])),
        "column-strided": (wide[:, ::2], tall_y[:6, 1:], c(wide[:, ::2]), c(tall_y[:6, 1:])),
        "reversed-columns": (X[:, ::-1], y, c(X[:, ::-1]), y),
        "reversed-rows": (X[::-1], y[::-1], c(X[::-1]), c(y[::-1])),
        "read-only": (read_only(X), read_only(y), X, y),
        "1-D-y": (X, y.ravel(), X, y),
        "1-D-y-list": (X, y.ravel().tolist(), X, y),
    }


VARIANTS = variant_inputs()


def outcomes(backend, X, y):
    """Everything the public API computes from (X, y), each on a fresh identical network."""
    def fresh():
        return random_network(VALID_LAYERS, backend, seed=42, bias=True, loss="sse")

    net = fresh()
    dW, db = net.gradients(X, y)
    stepped, fitted = fresh(), fresh()
    step_loss = stepped.step(X, y, lr=0.5)
    history = fitted.fit(X, y, epochs=2, lr=0.5)
    return {"forward": net.forward(X), **{f"activation{i}": a for i, a in enumerate(net.activations(X))},
            "loss": net.evaluate(X, y), **{f"dW{i}": g for i, g in enumerate(dW)},
            **{f"db{i}": g for i, g in enumerate(db)}, "step loss": step_loss,
            **{f"stepped W{i}": w for i, w in enumerate(stepped.weights)},
            "fit loss": history.loss, **{f"fitted W{i}": w for i, w in enumerate(fitted.weights)}}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_array_likes_give_the_same_results_as_float64(backend, variant):
    X, y, X_expected, y_expected = VARIANTS[variant]
    X_before, y_before = np.array(X, copy=True), np.array(y, copy=True)
    expected = outcomes(backend, np.ascontiguousarray(X_expected, dtype=np.float64),
                        np.ascontiguousarray(y_expected, dtype=np.float64))
    actual = outcomes(backend, X, y)
    assert actual.keys() == expected.keys()
    for key in expected:
        assert np.shape(actual[key]) == np.shape(expected[key]), key
        assert_close_normwise(actual[key], expected[key], rtol=1e-14)
    # the caller's arrays are never written to
    np.testing.assert_array_equal(np.asarray(X), X_before)
    np.testing.assert_array_equal(np.asarray(y), y_before)


def test_1d_y_for_one_output_gives_two_d_forward(backend):
    X, y = canonical_data()
    net = random_network(VALID_LAYERS, backend)
    assert net.forward(X).shape == (6, 1)
    assert net.evaluate(X, y.ravel()) == pytest.approx(net.evaluate(X, y), rel=1e-15)


WEIGHT_VARIANTS = {
    "nested-lists": lambda w: [a.tolist() for a in w],
    "tuple-of-arrays": lambda w: tuple(w),
    "float32": lambda w: [a.astype(np.float32) for a in w],
    "fortran-order": lambda w: [np.asfortranarray(a) for a in w],
    "read-only": lambda w: [read_only(a) for a in w],
    "int": lambda w: [np.round(3 * a).astype(np.int64) for a in w],
    "strided": lambda w: [np.repeat(a, 2, axis=1)[:, ::2] for a in w],
}


@pytest.mark.parametrize("variant", list(WEIGHT_VARIANTS))
def test_weight_array_likes_give_the_same_network(backend, variant):
    weights, biases = random_parameters(VALID_LAYERS, seed=43)
    given = WEIGHT_VARIANTS[variant](weights)
    given_biases = WEIGHT_VARIANTS[variant](biases) if variant != "strided" else biases
    expected_w = [np.asarray(a, dtype=np.float64) for a in given]
    expected_b = [np.asarray(b, dtype=np.float64) for b in given_biases]
    net = Network(VALID_LAYERS, backend=backend, weights=given, biases=given_biases)
    reference = Network(VALID_LAYERS, backend=backend, weights=[np.ascontiguousarray(a) for a in expected_w],
                        biases=[np.ascontiguousarray(b) for b in expected_b])
    for actual, wanted in zip(net.weights + net.biases, expected_w + expected_b):
        assert actual.dtype == np.float64
        np.testing.assert_array_equal(actual, wanted)
    X, y = canonical_data()
    np.testing.assert_array_equal(net.forward(X), reference.forward(X))
    net.step(X, y, lr=0.5)      # training works (read-only inputs are copied, not written)


def test_network_copies_the_weights_it_is_given(backend):
    weights, biases = random_parameters(VALID_LAYERS, seed=44)
    kept = [a.copy() for a in weights + biases]
    net = Network(VALID_LAYERS, backend=backend, weights=weights, biases=biases)
    X, y = canonical_data()
    net.fit(X, y, epochs=3, lr=1.0)
    for original, copy in zip(weights + biases, kept):
        np.testing.assert_array_equal(original, copy)
    assert not np.array_equal(net.weights[0], weights[0])


@pytest.mark.parametrize("lr, same_as", [(1, 1.0), (np.float32(0.5), 0.5), (np.int64(2), 2.0)],
                         ids=["int", "float32", "numpy-int"])
def test_lr_accepts_real_number_types(backend, lr, same_as):
    X, y = canonical_data()
    a, b = (random_network(VALID_LAYERS, backend, seed=45) for _ in range(2))
    assert a.step(X, y, lr=lr) == b.step(X, y, lr=same_as)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)


def test_epochs_accepts_numpy_ints(backend):
    X, y = canonical_data()
    history = random_network(VALID_LAYERS, backend).fit(X, y, epochs=np.int64(3), lr=0.5)
    assert len(history.loss) == 3
