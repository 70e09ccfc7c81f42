"""The native backend's activations, losses and L2 penalty against the NumPy reference.

Every (hidden activation, output activation, loss) combination the spec allows
(``fastnet.spec.HIDDEN_ACTIVATIONS`` x ``OUTPUT_ACTIVATIONS`` x the losses whose
``outputs`` name that output), with and without biases, in float64 and float32,
through ``fastnet.backends.native`` and compared with ``fastnet.backends.reference``
(float64 to 1e-12 relative normwise; float32, computed by the C kernels in float,
against the float64 reference on the same rounded values, to 1e-4).  Then the
elementwise activations against NumPy's own tanh, large batches run on several
threads, huge logits, the L2 penalty against its hand formula, and the code
combinations the compiled module refuses.
"""

import numpy as np
import pytest

import fastnet
from fastnet import _config, _native, spec
from fastnet.backends import Model, Rows, native, reference
from fastnet.layout import ParamLayout

ACTIVATION = {name: entry.code for name, entry in spec.ACTIVATIONS.items()}
LOSS = {name: entry.code for name, entry in spec.LOSSES.items()}
OPTIMIZER = {name: entry.code for name, entry in spec.OPTIMIZERS.items()}
EXACT, ARTICLE = spec.DERIVATIVES["exact"].code, spec.DERIVATIVES["article"].code
ALPHA = spec.hyper_index("alpha")

#: Every (hidden, output, loss) the spec lets a network have.
COMBINATIONS = [(hidden, output, loss) for hidden in spec.HIDDEN_ACTIVATIONS for output in spec.OUTPUT_ACTIVATIONS
                for loss, entry in spec.LOSSES.items() if output in entry.outputs]
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-4}


class Optimizer:
    """What a backend's train_epoch reads of an optimizer (see fastnet.backends)."""

    def __init__(self, code, hyper, n_params, dtype):
        self.code, self.hyper = code, np.asarray(hyper, np.float64)
        self.state = np.zeros((spec.STATE_ROWS, n_params), dtype)
        self.step = np.zeros(1, np.int64)


def assert_normwise(actual, expected, rtol):
    """||actual - expected|| <= rtol ||expected|| (in float64), and the same shape."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    error = np.linalg.norm(actual - expected)
    assert error <= rtol * np.linalg.norm(expected), f"relative normwise error {error / np.linalg.norm(expected):.3g}"


def problem(rng, hidden, output, sizes, n, bias=True, weighted=True, scale=0.7):
    """(model, rows) in float64: a random network of ``hidden`` layers and an ``output`` layer,
    inputs in [-2, 2], targets in the output's range (any non-negative ones for softmax: the
    cross-entropy's delta p s - y must hold for rows that do not sum to one too)."""
    sizes = np.array(sizes, np.int64)
    layout = ParamLayout(sizes, bias)
    n_params = sum(a * b + (b if bias else 0) for a, b in zip(sizes[:-1], sizes[1:]))
    params = rng.normal(0.0, scale, int(n_params))
    codes = np.array([ACTIVATION[hidden]] * (len(sizes) - 2) + [ACTIVATION[output]], np.int64)
    X = rng.uniform(-2.0, 2.0, (n, int(sizes[0])))
    if output == "linear":
        Y = rng.normal(0.0, 1.0, (n, int(sizes[-1])))
    elif output == "softmax":
        Y = rng.dirichlet(np.ones(int(sizes[-1])), n) * rng.choice([1.0, 0.5, 2.0], (n, 1))
    else:
        Y = rng.uniform(0.0, 1.0, (n, int(sizes[-1])))
    w = rng.uniform(0.0, 2.0, n) if weighted else np.empty(0)
    return Model(params, layout, codes, EXACT, None), Rows(X, Y, w)


def with_loss(model, loss, derivative=EXACT):
    return model._replace(loss=LOSS[loss], derivative=derivative)


def cast(model, rows, dtype):
    """The same model and rows in dtype."""
    return (model._replace(params=model.params.astype(dtype)),
            rows._replace(X=rows.X.astype(dtype), Y=rows.Y.astype(dtype),
                          sample_weight=rows.sample_weight.astype(dtype)))


def rounded(model, rows, dtype):
    """The float64 model and rows after rounding to dtype: what the float32 kernels really see."""
    small_model, small_rows = cast(model, rows, dtype)
    return cast(small_model, small_rows, np.float64)


def forward_both(model, X, dtype):
    """(native's flat activations in dtype, the reference's in float64 on the same rounded values)."""
    n = X.shape[0]
    out = np.full(n * int(model.layout.sizes[1:].sum()), np.nan, dtype)
    expected = np.empty(out.size)
    small_model, small_rows = cast(model, Rows(X, X[:, :1], np.empty(0)), dtype)
    native.forward(small_model, small_rows.X, out)
    ref_model, ref_rows = rounded(model, Rows(X, X[:, :1], np.empty(0)), dtype)
    reference.forward(ref_model, ref_rows.X, expected)
    return out, expected


def gradient_both(model, rows, dtype):
    """((native's errors, grad in dtype), (the reference's errors, grad)) on the same rounded values."""
    small_model, small_rows = cast(model, rows, dtype)
    grad = np.full(model.params.size, np.nan, dtype)
    value = native.gradient(small_model, small_rows, grad)
    ref_model, ref_rows = rounded(model, rows, dtype)
    expected = np.empty(model.params.size)
    expected_value = reference.gradient(ref_model, ref_rows, expected)
    return (value, grad), (expected_value, expected)


# -- every combination the spec allows ------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("hidden, output, loss", COMBINATIONS)
def test_native_forward_and_gradient_match_the_reference(hidden, output, loss, bias, dtype):
    rng = np.random.default_rng([len(hidden), len(output), len(loss), bias])
    model, rows = problem(rng, hidden, output, [5, 9, 7, 4], 700, bias)
    model = with_loss(model, loss)
    out, expected_out = forward_both(model, rows.X, dtype)
    assert out.dtype == dtype
    assert_normwise(out, expected_out, TOLERANCE[dtype])
    if output == "softmax":
        last = out[-700 * 4:].reshape(700, 4).astype(np.float64)
        np.testing.assert_allclose(last.sum(axis=1), 1.0, rtol=0, atol=10 * np.finfo(dtype).eps)
    (value, grad), (expected_value, expected_grad) = gradient_both(model, rows, dtype)
    assert grad.dtype == dtype and isinstance(value, float)
    assert_normwise(grad, expected_grad, TOLERANCE[dtype])
    assert value == pytest.approx(expected_value, rel=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["sse", "mse", "bce"])
def test_native_article_derivative_matches_the_reference(loss, dtype):
    model, rows = problem(np.random.default_rng(4), "sigmoid", "sigmoid", [4, 6, 3], 300)
    (value, grad), (expected_value, expected_grad) = gradient_both(with_loss(model, loss, ARTICLE), rows, dtype)
    assert_normwise(grad, expected_grad, TOLERANCE[dtype])
    assert value == pytest.approx(expected_value, rel=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hidden, output, loss", COMBINATIONS)
def test_native_one_layer_networks_match_the_reference(hidden, output, loss, dtype):
    """No hidden layer: the output layer reads X straight away (and its delta reaches no activation)."""
    model, rows = problem(np.random.default_rng(9), hidden, output, [3, 5], 260, bias=True)
    (value, grad), (expected_value, expected_grad) = gradient_both(with_loss(model, loss), rows, dtype)
    assert_normwise(grad, expected_grad, TOLERANCE[dtype])
    assert value == pytest.approx(expected_value, rel=TOLERANCE[dtype])


# -- the elementwise activations against independent formulas -----------------------------------

def one_unit(code, z):
    """f(z) for each z through a network of one input and one unit of activation ``code``
    (weight 1, bias 0): the kernels' own elementwise f."""
    dtype = z.dtype
    out = np.full(z.size, np.nan, dtype)
    _native.forward(z.reshape(-1, 1), np.array([1.0, 0.0], dtype), np.array([1, 1], np.int64),
                    np.array([code], np.int64), True, _config.BLOCK_ROWS, out)
    return out


def test_native_tanh_is_accurate_to_a_few_ulp_in_float64():
    z = np.concatenate([np.linspace(-25.0, 25.0, 200001), np.geomspace(1e-300, 1e-3, 2000),
                        -np.geomspace(1e-300, 1e-3, 2000), [400.0, -400.0, 1e300, -1e300, 354.0, 355.0]])
    got = one_unit(ACTIVATION["tanh"], z)
    exact = np.tanh(z)
    assert (np.abs(got - exact) <= 4 * np.spacing(np.abs(exact))).all()
    assert (got[np.abs(z) > 20] == np.sign(z[np.abs(z) > 20])).all()


def test_native_tanh_is_accurate_in_float32():
    z = np.concatenate([np.linspace(-12.0, 12.0, 100001), np.geomspace(1e-38, 1e-3, 500),
                        -np.geomspace(1e-38, 1e-3, 500), [44.0, -44.0, 1e30, -1e30]]).astype(np.float32)
    got = one_unit(ACTIVATION["tanh"], z)
    exact = np.tanh(z.astype(np.float64))
    assert got.dtype == np.float32
    assert (np.abs(got - exact) <= 4 * np.spacing(np.abs(exact).astype(np.float32))).all()
    assert (got[np.abs(z) > 10] == np.sign(z[np.abs(z) > 10])).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_native_relu_and_linear_are_exact(dtype):
    z = np.random.default_rng(2).normal(0.0, 3.0, 1001).astype(dtype)
    np.testing.assert_array_equal(one_unit(ACTIVATION["relu"], z), np.where(z > 0, z, 0))
    np.testing.assert_array_equal(one_unit(ACTIVATION["linear"], z), z)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_native_softmax_of_the_output_layer_is_the_textbook_formula(dtype):
    """p = exp(z - max z) / sum exp(z - max z) row by row, with the identity as weights."""
    z = np.random.default_rng(6).normal(0.0, 4.0, (300, 5))
    params = np.eye(5).ravel()
    out = np.empty(z.size, dtype)
    _native.forward(z.astype(dtype), params.astype(dtype), np.array([5, 5], np.int64),
                    np.array([ACTIVATION["softmax"]], np.int64), False, _config.BLOCK_ROWS, out)
    z = z.astype(dtype).astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out.reshape(300, 5), e / e.sum(axis=1, keepdims=True),
                               rtol=8 * np.finfo(dtype).eps, atol=0)


# -- many rows: parallel blocks, any thread count ----------------------------------------------

PARALLEL = [("tanh", "softmax", "cross_entropy"), ("relu", "linear", "mse"), ("tanh", "sigmoid", "bce"),
            ("relu", "softmax", "cross_entropy"), ("sigmoid", "linear", "sse")]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hidden, output, loss", PARALLEL)
def test_native_blocks_on_two_threads_give_the_bits_of_one(hidden, output, loss, dtype):
    n = 2 * _config.BLOCK_ROWS + 300
    model, rows = problem(np.random.default_rng(13), hidden, output, [6, 10, 4], n)
    model = with_loss(model, loss)
    small_model, small_rows = cast(model, rows, dtype)
    order = np.random.default_rng(14).permutation(n).astype(np.int64)
    hyper = np.array([0.01, 0.9, 0.9, 0.999, 1e-8, 0.1])
    before = fastnet.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            fastnet.set_num_threads(threads)
            grad = np.empty(model.params.size, dtype)
            value = native.gradient(small_model, small_rows, grad)
            out = np.empty(n * 14, dtype)
            native.forward(small_model, small_rows.X, out)
            params = small_model.params.copy()
            optimizer = Optimizer(OPTIMIZER["adam"], hyper, params.size, dtype)
            errors = native.train_epoch(small_model._replace(params=params), small_rows, order, n - 1000,
                                        optimizer, np.empty_like(params))
            runs.append((value, grad, out, errors, params, optimizer.state))
    finally:
        fastnet.set_num_threads(before)
    for got, want in zip(runs[1], runs[0]):
        np.testing.assert_array_equal(got, want)
    ref_model, ref_rows = rounded(model, rows, dtype)
    expected = np.empty(model.params.size)
    expected_value = reference.gradient(ref_model, ref_rows, expected)
    assert_normwise(runs[0][1], expected, TOLERANCE[dtype])
    assert runs[0][0] == pytest.approx(expected_value, rel=TOLERANCE[dtype])


# -- training: optimizers, sample weights, an order, the L2 penalty -------------------------------

def train_both(model, rows, order, batch_size, optimizer, hyper, dtype):
    """One epoch by native (in dtype) and by the reference (float64, same rounded values):
    ((errors, params, state, step), ...) for each."""
    results = []
    for backend, (m, r) in ((native, cast(model, rows, dtype)), (reference, rounded(model, rows, dtype))):
        params = m.params.copy()
        opt = Optimizer(OPTIMIZER[optimizer], hyper, params.size, params.dtype)
        errors = backend.train_epoch(m._replace(params=params), r, order, batch_size, opt, np.empty_like(params))
        results.append((errors, params, opt.state, opt.step))
    return results


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER))
@pytest.mark.parametrize("hidden, output, loss", COMBINATIONS)
def test_native_train_epoch_with_l2_matches_the_reference(hidden, output, loss, optimizer, dtype):
    n = 900
    model, rows = problem(np.random.default_rng(21), hidden, output, [5, 8, 3], n)
    model = with_loss(model, loss)
    # the first batch has zero total weight: no data gradient and, with r = 0, no penalty
    # for the mean losses either (sse's r = 1 still decays it)
    rows = rows._replace(sample_weight=np.where(np.arange(n) < 64, 0.0, rows.sample_weight))
    order = np.random.default_rng(22).permutation(n).astype(np.int64)
    order = np.r_[np.sort(order[order < 64]), order[order >= 64]]
    lr = {"sgd": 0.5, "momentum": 0.05, "adam": 0.01}[optimizer] / (640 if loss == "sse" else 1)
    hyper = np.array([lr, 0.9, 0.9, 0.999, 1e-8, 0.3])
    (errors, params, state, step), (expected_errors, expected_params, expected_state, expected_step) = train_both(
        model, rows, order, 64, optimizer, hyper, dtype)
    assert params.dtype == state.dtype == dtype
    rtol = {np.float64: 1e-11, np.float32: 1e-4}[dtype]
    assert_normwise(params, expected_params, rtol)
    assert errors == pytest.approx(expected_errors, rel=rtol)
    assert step[0] == expected_step[0]
    without = train_both(model, rows, order, 64, optimizer, np.r_[hyper[:ALPHA], 0.0], dtype)[0]
    assert not np.allclose(without[1], params, rtol=1e-3, atol=0), "alpha changed nothing"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", ["sse", "mse", "cross_entropy"])
def test_native_penalty_is_alpha_r_times_the_weights_and_spares_the_biases(loss, dtype):
    """One SGD batch with lr = 1: alpha > 0 moves each weight by -alpha r W more than alpha = 0 does,
    r = 1 / W for the mean losses, 1 for sse; biases move the same."""
    output = "softmax" if loss == "cross_entropy" else "linear"
    model, rows = problem(np.random.default_rng(31), "tanh", output, [4, 6, 3], 50, bias=True)
    model, rows = cast(with_loss(model, loss), rows, dtype)
    alpha, total_weight = 0.25, float(rows.sample_weight.astype(np.float64).sum())
    r = 1.0 if loss == "sse" else 1.0 / total_weight
    moved = {}
    for a in (0.0, alpha):
        params = model.params.copy()
        native.train_epoch(model._replace(params=params), rows, np.empty(0, np.int64), 50,
                           Optimizer(OPTIMIZER["sgd"], [1.0, 0.9, 0.9, 0.999, 1e-8, a], params.size, dtype),
                           np.empty_like(params))
        moved[a] = params.astype(np.float64)
    start_weights, _ = model.layout.unpack(model.params.astype(np.float64))
    plain_weights, plain_biases = model.layout.unpack(moved[0.0])
    got_weights, got_biases = model.layout.unpack(moved[alpha])
    for got, plain, start in zip(got_weights, plain_weights, start_weights):
        want = plain - alpha * r * start
        np.testing.assert_allclose(got, want, rtol=0, atol=8 * np.finfo(dtype).eps * (1 + np.abs(want).max()))
        assert not np.allclose(got, plain, rtol=1e-3, atol=0)
    for got, plain in zip(got_biases, plain_biases):
        np.testing.assert_array_equal(got, plain)


# -- huge logits ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hidden", ["tanh", "relu", "sigmoid"])
def test_native_cross_entropy_of_huge_logits_is_finite_and_exact(hidden, dtype):
    """Weights times 1e3 put the logits near 1e3 to 1e4: exp(z) overflows and p underflows to 0,
    but the loss comes from the log-softmax of z, as the reference's."""
    model, rows = problem(np.random.default_rng(41), hidden, "softmax", [4, 6, 5], 500, scale=1.0)
    model = with_loss(model._replace(params=model.params * 1e3), "cross_entropy")
    (value, grad), (expected_value, expected_grad) = gradient_both(model, rows, dtype)
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert expected_value > 1e3  # really huge: log(p) of an underflowed p would be -inf
    assert value == pytest.approx(expected_value, rel=TOLERANCE[dtype])
    assert_normwise(grad, expected_grad, TOLERANCE[dtype])
    out, expected_out = forward_both(model, rows.X, dtype)
    assert np.isfinite(out).all()
    assert_normwise(out, expected_out, TOLERANCE[dtype])
    hyper = [0.001, 0.9, 0.9, 0.999, 1e-8, 0.01]
    got, want = train_both(model, rows, np.empty(0, np.int64), 128, "adam", hyper, dtype)
    assert np.isfinite(got[0]) and got[0] == pytest.approx(want[0], rel=TOLERANCE[dtype])
    assert_normwise(got[1], want[1], TOLERANCE[dtype])


# -- code combinations the module refuses ---------------------------------------------------------

def defined(codes, loss):
    """Does the C module define this network: softmax only last, cross_entropy exactly after a softmax,
    bce only after a sigmoid (written from fastnet.spec, independently of module.c)."""
    *hidden, last = codes
    if ACTIVATION["softmax"] in hidden:
        return False
    if (loss == LOSS["cross_entropy"]) != (last == ACTIVATION["softmax"]):
        return False
    return loss != LOSS["bce"] or last == ACTIVATION["sigmoid"]


ALL_CODES = [(hidden, last, loss) for hidden in range(len(spec.ACTIVATIONS)) for last in range(len(spec.ACTIVATIONS))
             for loss in range(len(spec.LOSSES))]


@pytest.mark.parametrize("hidden, last, loss", ALL_CODES)
def test_native_accepts_exactly_the_defined_code_combinations(hidden, last, loss):
    codes = np.array([hidden, last], np.int64)
    sizes, n = np.array([3, 4, 2], np.int64), 5
    rng = np.random.default_rng(0)
    X, Y, params = rng.uniform(size=(n, 3)), rng.uniform(size=(n, 2)), rng.normal(size=26)
    grad, out = np.full(26, np.nan), np.empty(n * 6)
    hyper = np.array([0.1, 0.9, 0.9, 0.999, 1e-8, 0.1])

    def calls():
        yield lambda: _native.forward(X, params, sizes, codes, True, _config.BLOCK_ROWS, out)
        yield lambda: _native.gradient(X, Y, np.empty(0), params, sizes, codes, True, EXACT, loss, _config.BLOCK_ROWS,
                                       grad)
        yield lambda: _native.train_epoch(X, Y, np.empty(0), np.empty(0, np.int64), 2, params.copy(), sizes, codes,
                                          True, EXACT, loss, OPTIMIZER["adam"], hyper, np.zeros((2, 26)),
                                          np.zeros(1, np.int64), _config.BLOCK_ROWS, np.empty(26))

    forward, *with_loss_calls = calls()
    if hidden == ACTIVATION["softmax"]:
        with pytest.raises(ValueError, match=r"activations\[0\].*softmax.*last layer"):
            forward()
    else:
        forward()
        assert np.isfinite(out).all()
    for call in with_loss_calls:
        if defined(codes, loss):
            assert np.isfinite(call())
        else:
            with pytest.raises(ValueError, match=r"activations|loss"):
                call()
            assert np.isnan(grad).all()  # refused before anything was written


def test_native_refuses_hyper_without_alpha():
    sizes, codes = np.array([2, 2], np.int64), np.array([ACTIVATION["sigmoid"]], np.int64)
    with pytest.raises(ValueError, match=r"hyper has 5 elements, expected 6"):
        _native.train_epoch(np.ones((3, 2)), np.ones((3, 2)) / 2, np.empty(0), np.empty(0, np.int64), 2,
                            np.zeros(6), sizes, codes, True, EXACT, LOSS["mse"], OPTIMIZER["sgd"],
                            np.array([0.1, 0.9, 0.9, 0.999, 1e-8]), np.zeros((2, 6)), np.zeros(1, np.int64),
                            _config.BLOCK_ROWS, np.empty(6))
