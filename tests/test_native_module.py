"""The compiled module fastnet._native, called directly.

Its functions follow the backend contract of fastnet.backends:
``forward(X, params, sizes, has_bias, out)``,
``gradient(X, Y, row_weight, params, sizes, has_bias, derivative, loss, grad) -> float`` and
``train_epoch(X, Y, row_weight, order, batch_size, params, sizes, has_bias,
derivative, loss, optimizer, hyper, state, step, grad) -> float``, for float64
or float32 arrays (X's dtype, shared by every float array but hyper).
Called with wrong buffers they must raise ValueError/TypeError, never crash:
each such call runs in a fresh interpreter, so a segfault fails its test
instead of killing pytest.  (The module may read X and Y as flat buffers, so
only element counts, dtypes and contiguity are required to be checked here,
not the number of dimensions.)
"""

import re
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from fastnet import _config
from fastnet.backends import DERIVATIVE_CODES, LOSS_CODES, OPTIMIZER_CODES

import naive
from conftest import TESTS_DIR, run_python

# The article's example (ARTICLE.md, typed in once in naive.py), packed: W1 (4x1) then W2 (1x1), no biases.
X, Y = naive.X.copy(), naive.Y.copy()
PARAMS = np.concatenate([naive.W1.ravel(), naive.W2.ravel()])
SIZES = np.array(naive.LAYERS, dtype=np.int64)
NO_WEIGHTS = np.empty(0)
IN_PLACE = np.empty(0, np.int64)
HYPER = np.array([0.1, 0.9, 0.9, 0.999, 1e-8])  # lr, mu, b1, b2, eps

# Printed in ARTICLE.md: neuron1output, then output.
ARTICLE_ACTIVATIONS = np.concatenate([naive.NEURON1OUTPUT.ravel(), naive.OUTPUT.ravel()])
# Gradient = -(article's d_W): W1 - new W1, then -d_W2.
ARTICLE_GRADIENT = np.concatenate([naive.ARTICLE_GRADIENT_W1.ravel(), naive.ARTICLE_GRADIENT_W2.ravel()])
SSE_BEFORE = naive.SSE_BEFORE

EXACT, ARTICLE = DERIVATIVE_CODES["exact"], DERIVATIVE_CODES["article"]
SSE, MSE, BCE = LOSS_CODES["sse"], LOSS_CODES["mse"], LOSS_CODES["bce"]


def native():
    import fastnet._native as module
    return module


def random_problem(rng, sizes, n, dtype=np.float64, bias=True, weighted=False):
    """(sizes, params, X, Y, row_weight) for a random network, in dtype."""
    sizes = np.array(sizes, dtype=np.int64)
    n_params = int(sum(a * b + (b if bias else 0) for a, b in zip(sizes[:-1], sizes[1:])))
    params = rng.normal(0.0, 1.0, n_params)
    X_ = rng.uniform(-2.0, 2.0, (n, int(sizes[0])))
    Y_ = rng.uniform(0.0, 1.0, (n, int(sizes[-1])))
    w = rng.uniform(0.0, 2.0, n) if weighted else np.empty(0)
    return (sizes,) + tuple(a.astype(dtype) for a in (params, X_, Y_, w))


def normwise(actual, expected):
    """||actual - expected|| / ||expected||, in float64."""
    expected = np.asarray(expected, np.float64)
    return np.linalg.norm(np.asarray(actual, np.float64) - expected) / np.linalg.norm(expected)


def train(X_, Y_, w, order, batch_size, params, sizes, has_bias, derivative, loss, optimizer,
          module=None, step=0):
    """One train_epoch on copies, from a fresh state and Adam's t = step: (errors, params, state, step)."""
    module = module or native()
    params = params.copy()
    state, step = np.zeros((2, params.size), params.dtype), np.full(1, step, np.int64)
    errors = module.train_epoch(X_, Y_, w, order, batch_size, params, sizes, has_bias, derivative, loss,
                                optimizer, HYPER, state, step, np.empty_like(params))
    return errors, params, state, step


# -- float64: the article's values --------------------------------------------------------

def test_native_module_imports():
    module = native()
    for name in ("forward", "gradient", "train_epoch", "set_num_threads", "get_num_threads"):
        assert callable(getattr(module, name))


def test_native_forward_gives_the_article_activations():
    out = np.full(6, np.nan)
    X_before, params_before = X.copy(), PARAMS.copy()
    native().forward(X, PARAMS, SIZES, False, out)
    np.testing.assert_allclose(out, ARTICLE_ACTIVATIONS, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(PARAMS, params_before)


def test_native_gradient_gives_the_article_step():
    grad = np.full(5, np.nan)
    value = native().gradient(X, Y, NO_WEIGHTS, PARAMS, SIZES, False, ARTICLE, SSE, grad)
    assert value == pytest.approx(SSE_BEFORE, abs=1e-7)
    np.testing.assert_allclose(grad, ARTICLE_GRADIENT, rtol=0, atol=1e-8)


def test_native_gradient_mse_is_sse_over_the_element_count():
    sse_grad, mse_grad = np.empty(5), np.empty(5)
    sse = native().gradient(X, Y, NO_WEIGHTS, PARAMS, SIZES, False, EXACT, SSE, sse_grad)
    mse = native().gradient(X, Y, NO_WEIGHTS, PARAMS, SIZES, False, EXACT, MSE, mse_grad)
    assert mse == pytest.approx(sse / 3, rel=1e-14)
    np.testing.assert_allclose(mse_grad, sse_grad / 3, rtol=1e-14)


@pytest.mark.parametrize("loss", [SSE, MSE, BCE])
def test_native_integer_row_weights_repeat_rows(loss):
    """w = [2, 1, 0] is the batch with row 0 twice, row 1 once and no row 2."""
    weighted, repeated = np.empty(5), np.empty(5)
    a = native().gradient(X, Y, np.array([2.0, 1.0, 0.0]), PARAMS, SIZES, False, EXACT, loss, weighted)
    b = native().gradient(X[[0, 0, 1]].copy(), Y[[0, 0, 1]].copy(), NO_WEIGHTS, PARAMS, SIZES, False, EXACT,
                          loss, repeated)
    assert a == pytest.approx(b, rel=1e-14)
    np.testing.assert_allclose(weighted, repeated, rtol=1e-13, atol=1e-16)


def test_native_train_epoch_one_full_batch_is_one_sgd_step():
    grad = np.empty(5)
    native().gradient(X, Y, NO_WEIGHTS, PARAMS, SIZES, False, ARTICLE, SSE, grad)
    errors, params, _, step = train(X, Y, NO_WEIGHTS, IN_PLACE, 3, PARAMS, SIZES, False, ARTICLE, SSE,
                                    OPTIMIZER_CODES["sgd"])
    assert errors == pytest.approx(SSE_BEFORE, abs=1e-7)
    np.testing.assert_allclose(params, PARAMS - HYPER[0] * grad, rtol=1e-15, atol=1e-16)
    assert step[0] == 0


def test_native_train_epoch_follows_order():
    """Visiting rows in reverse is the same as training on the reversed rows in place."""
    order = np.array([2, 1, 0], np.int64)
    for optimizer in OPTIMIZER_CODES.values():
        shuffled = train(X, Y, np.array([1.0, 2.0, 0.5]), order, 2, PARAMS, SIZES, False, EXACT, MSE, optimizer)
        in_place = train(X[::-1].copy(), Y[::-1].copy(), np.array([0.5, 2.0, 1.0]), IN_PLACE, 2, PARAMS, SIZES,
                         False, EXACT, MSE, optimizer)
        for got, want in zip(shuffled, in_place):
            np.testing.assert_array_equal(got, want)
        assert not np.array_equal(shuffled[1], PARAMS)


# -- zero-weight batches -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", [SSE, MSE, BCE])
def test_native_zero_weight_batch_has_zero_loss_and_gradient(dtype, loss):
    grad = np.full(5, np.nan, dtype)
    value = native().gradient(X.astype(dtype), Y.astype(dtype), np.zeros(3, dtype), PARAMS.astype(dtype), SIZES,
                              False, EXACT, loss, grad)
    assert value == 0.0
    np.testing.assert_array_equal(grad, np.zeros(5, dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_CODES.values()))
@pytest.mark.parametrize("loss", [MSE, BCE])
def test_native_zero_weight_batches_leave_training_untouched(dtype, optimizer, loss):
    """Batches 0 and 1 have zero total weight: from a fresh state they move nothing (Adam only counts
    them), so the epoch is batch 2 trained alone, from Adam's t = 2."""
    rng = np.random.default_rng(5)
    sizes, params, X_, Y_, _ = random_problem(rng, [3, 4, 2], 12, dtype)
    w = np.r_[np.zeros(8), rng.uniform(0.5, 1.5, 4)].astype(dtype)
    epoch = train(X_, Y_, w, IN_PLACE, 4, params, sizes, True, EXACT, loss, optimizer)
    adam = optimizer == OPTIMIZER_CODES["adam"]
    alone = train(X_[8:].copy(), Y_[8:].copy(), w[8:].copy(), IN_PLACE, 4, params, sizes, True, EXACT, loss,
                  optimizer, step=2 if adam else 0)
    assert np.isfinite(epoch[0]) and np.isfinite(epoch[1]).all()
    assert not np.array_equal(epoch[1], params)
    for got, want in zip(epoch, alone):
        np.testing.assert_array_equal(got, want)


def test_native_all_zero_weights_epoch_moves_nothing():
    for optimizer in OPTIMIZER_CODES.values():
        errors, params, state, _ = train(X, Y, np.zeros(3), IN_PLACE, 2, PARAMS, SIZES, False, EXACT, MSE, optimizer)
        assert errors == 0.0
        np.testing.assert_array_equal(params, PARAMS)
        np.testing.assert_array_equal(state, 0.0)


# -- float32 ----------------------------------------------------------------------------------------

def test_native_float32_forward_stays_float32_and_matches_the_article():
    out = np.full(6, np.nan, np.float32)
    native().forward(X.astype(np.float32), PARAMS.astype(np.float32), SIZES, False, out)
    np.testing.assert_allclose(out, ARTICLE_ACTIVATIONS, rtol=0, atol=1e-6)


def test_native_float32_gradient_matches_the_article():
    grad = np.full(5, np.nan, np.float32)
    value = native().gradient(X.astype(np.float32), Y.astype(np.float32), np.empty(0, np.float32),
                              PARAMS.astype(np.float32), SIZES, False, ARTICLE, SSE, grad)
    assert isinstance(value, float)
    assert value == pytest.approx(SSE_BEFORE, rel=1e-6)
    np.testing.assert_allclose(grad, ARTICLE_GRADIENT, rtol=0, atol=1e-6)


CASES_32 = [([5, 7, 3], 3000, True, False, EXACT, MSE), ([4, 1, 1], 9000, False, True, ARTICLE, SSE),
            ([6, 16, 8, 2], 20000, True, True, EXACT, BCE), ([3, 2], 1, True, False, ARTICLE, MSE),
            ([9, 5, 1], 257, True, True, ARTICLE, BCE), ([2, 3, 4], 700, False, False, EXACT, SSE)]


@pytest.mark.parametrize("sizes, n, bias, weighted, derivative, loss", CASES_32)
def test_native_float32_gradient_is_close_to_float64(sizes, n, bias, weighted, derivative, loss):
    rng = np.random.default_rng(n)
    sizes, params, X_, Y_, w = random_problem(rng, sizes, n, np.float64, bias, weighted)
    f = lambda a: a.astype(np.float32)
    grad64, grad32 = np.empty(params.size), np.full(params.size, np.nan, np.float32)
    value64 = native().gradient(X_, Y_, w, params, sizes, bias, derivative, loss, grad64)
    value32 = native().gradient(f(X_), f(Y_), f(w), f(params), sizes, bias, derivative, loss, grad32)
    assert normwise(grad32, grad64) < 1e-4
    assert value32 == pytest.approx(value64, rel=1e-4)
    out64 = np.empty(n * int(sizes[1:].sum()))
    out32 = np.full(out64.size, np.nan, np.float32)
    native().forward(X_, params, sizes, bias, out64)
    native().forward(f(X_), f(params), sizes, bias, out32)
    np.testing.assert_allclose(out32, out64, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sizes, n, bias, weighted, derivative, loss", CASES_32)
def test_native_float32_agrees_with_numba_float32(sizes, n, bias, weighted, derivative, loss):
    from fastnet.backends import numba_kernels
    rng = np.random.default_rng(n + 1)
    sizes, params, X_, Y_, w = random_problem(rng, sizes, n, np.float32, bias, weighted)
    ours, theirs = np.empty(params.size, np.float32), np.empty(params.size, np.float32)
    value = native().gradient(X_, Y_, w, params, sizes, bias, derivative, loss, ours)
    expected = numba_kernels.gradient(X_, Y_, w, params, sizes, bias, derivative, loss, theirs)
    assert normwise(ours, theirs) < 1e-5
    assert value == pytest.approx(expected, rel=1e-5)
    order = rng.permutation(n).astype(np.int64)
    for optimizer in OPTIMIZER_CODES.values():
        lr_safe_batch = 32 if loss != SSE else 4
        got = train(X_, Y_, w, order, lr_safe_batch, params, sizes, bias, derivative, loss, optimizer)
        want = train(X_, Y_, w, order, lr_safe_batch, params, sizes, bias, derivative, loss, optimizer,
                     module=numba_kernels)
        assert got[1].dtype == got[2].dtype == np.float32
        assert normwise(got[1], want[1]) < 1e-5
        assert got[0] == pytest.approx(want[0], rel=1e-5)


def test_native_float32_sigmoid_saturates_quietly():
    z = np.array([[-1e30], [-1000.0], [-90.0], [-87.0], [0.0], [87.0], [90.0], [1000.0], [1e30]], np.float32)
    out = np.full(z.size, np.nan, np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        native().forward(z, np.array([1.0, 0.0], np.float32), np.array([1, 1], np.int64), True, out)
    assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
    assert out[4] == np.float32(0.5) and (out[5:] == 1).all()
    assert (out[:4] > 0).all() and (out[:4] < 1e-30).all()


def test_native_float32_sigmoid_is_accurate():
    z = np.linspace(-80.0, 80.0, 100001).astype(np.float32)
    out = np.empty(z.size, np.float32)
    native().forward(z[:, None], np.array([1.0, 0.0], np.float32), np.array([1, 1], np.int64), True, out)
    exact = naive.sigmoid(z.astype(np.float64))
    assert (np.abs(out - exact) <= 3 * np.spacing(exact.astype(np.float32))).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_native_results_do_not_depend_on_the_thread_count(dtype):
    rng = np.random.default_rng(11)
    n = 3 * _config.BLOCK_ROWS + 77
    sizes, params, X_, Y_, w = random_problem(rng, [6, 9, 3], n, dtype, weighted=True)
    order = rng.permutation(n).astype(np.int64)
    module, before = native(), native().get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            module.set_num_threads(threads)
            grad = np.empty(params.size, dtype)
            value = module.gradient(X_, Y_, w, params, sizes, True, EXACT, BCE, grad)
            out = np.empty(n * 12, dtype)
            module.forward(X_, params, sizes, True, out)
            epoch = train(X_, Y_, w, order, n - 100, params, sizes, True, ARTICLE, MSE, OPTIMIZER_CODES["adam"])
            results.append((grad, value, out) + epoch)
    finally:
        module.set_num_threads(before)
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_native_all_finite_finds_every_nan_and_infinity(dtype, bad):
    """One bad item anywhere: first, last, inside a parallel chunk, at a chunk edge."""
    n = 3 * 2**16 + 4  # several chunks of fn_all_finite and a partial one
    values = np.random.default_rng(3).normal(scale=1e30, size=n).astype(dtype)
    assert native().all_finite(values)
    for where in (0, 1, 2**16 - 1, 2**16, n // 2, n - 1):
        spoiled = values.copy()
        spoiled[where] = bad
        assert not native().all_finite(spoiled), where
        assert not native().all_finite(spoiled.reshape(-1, 4)[: where // 4 + 1]), where


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_native_all_finite_accepts_extremes_and_empty_arrays(dtype):
    info = np.finfo(dtype)
    extremes = np.array([info.max, -info.max, info.tiny, info.smallest_subnormal, -0.0, 0.0], dtype)
    assert native().all_finite(extremes)
    assert native().all_finite(np.empty((0, 4), dtype))


@pytest.mark.parametrize("threads", [1, 2])
def test_native_all_finite_answers_the_same_on_any_thread_count(threads):
    module, before = native(), native().get_num_threads()
    values = np.ones(5 * 2**16)
    values[-1] = np.nan
    try:
        module.set_num_threads(threads)
        assert not module.all_finite(values) and module.all_finite(values[:-1])
    finally:
        module.set_num_threads(before)


def test_native_constants_match_the_config():
    header = (Path(__file__).resolve().parent.parent / "kernels" / "network.h").read_text()

    def defined(name):
        return eval(re.search(rf"#define {name} (.+)", header).group(1).rstrip("f").replace("FN_", ""),
                    {"TILE_ROWS": _config.TILE_ROWS})

    assert defined("FN_TILE_ROWS") == _config.TILE_ROWS
    assert defined("FN_BLOCK_ROWS") == _config.BLOCK_ROWS
    assert defined("FN_PARTIAL_GRADIENT_BYTES") == _config.PARTIAL_GRADIENT_BYTES
    assert defined("FN_SIGMOID_CLAMP") == _config.SIGMOID_CLAMP
    assert defined("FN_SIGMOID_CLAMP_FLOAT32") == _config.SIGMOID_CLAMP_FLOAT32


# -- wrong arguments, each in its own interpreter -----------------------------------------

PRELUDE = textwrap.dedent(f"""
    import sys
    import numpy as np
    import fastnet._native as native
    sys.path.insert(0, {TESTS_DIR!r})
    import naive
    f32 = np.float32
    X, Y = naive.X, naive.Y
    params = np.concatenate([naive.W1.ravel(), naive.W2.ravel()])
    sizes = np.array([4, 1, 1], dtype=np.int64)
    none = np.empty(0)
    out = np.empty(6)
    grad = np.empty(5)
    hyper = np.array([0.1, 0.9, 0.9, 0.999, 1e-8])
    X32, Y32, params32, none32 = X.astype(f32), Y.astype(f32), params.astype(f32), none.astype(f32)

    def forward(X=X, params=params, sizes=sizes, has_bias=False, out=out):
        return native.forward(X, params, sizes, has_bias, out)

    def gradient(X=X, Y=Y, row_weight=none, params=params, sizes=sizes, has_bias=False, derivative=1, loss=0,
                 grad=grad):
        return native.gradient(X, Y, row_weight, params, sizes, has_bias, derivative, loss, grad)

    def train(X=X, Y=Y, row_weight=none, order=np.array([2, 0, 1], np.int64), batch_size=2, params=None,
              sizes=sizes, has_bias=False, derivative=0, loss=1, optimizer=2, hyper=hyper, state=None,
              step=None, grad=None):
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        params = params if params is not None else globals()["params"].astype(dtype)
        state = state if state is not None else np.zeros((2, 5), dtype)
        step = step if step is not None else np.zeros(1, np.int64)
        grad = grad if grad is not None else np.empty(5, dtype)
        return native.train_epoch(X, Y, row_weight, order, batch_size, params, sizes, has_bias, derivative, loss,
                                  optimizer, hyper, state, step, grad)

    def forward32(**changes):
        return forward(**dict(dict(X=X32, params=params32, out=np.empty(6, f32)), **changes))

    def gradient32(**changes):
        return gradient(**dict(dict(X=X32, Y=Y32, row_weight=none32, params=params32, grad=np.empty(5, f32)),
                               **changes))

    def train32(**changes):
        return train(**dict(dict(X=X32, Y=Y32, row_weight=none32), **changes))

    def readonly(a):
        a = a.copy()
        a.flags.writeable = False
        return a
""")

#: A float array of the other dtype than X's: the message must say so.
MIXED = r"must be (float32|float64) like X; got (float64|float32)"

#: (id, call, regex the error message must match: the argument's name).
BAD_CALLS = [
    # all_finite
    ("all-finite-int64", "native.all_finite(np.arange(4))", r"\bx\b.*float64 or float32"),
    ("all-finite-list", "native.all_finite([1.0, 2.0])", r"\bx\b.*buffer"),
    ("all-finite-strided", "native.all_finite(X[:, ::2])", r"\bx\b.*C-contiguous"),
    # forward
    ("forward-out-too-short", "forward(out=np.empty(5))", r"\bout\b"),
    ("forward-out-too-long", "forward(out=np.empty(7))", r"\bout\b"),
    ("forward-out-empty", "forward(out=np.empty(0))", r"\bout\b"),
    ("forward-out-float32", "forward(out=np.empty(6, np.float32))", r"^out " + MIXED),
    ("forward-out-int64", "forward(out=np.empty(6, np.int64))", r"\bout\b"),
    ("forward-out-strided", "forward(out=np.empty(12)[::2])", r"\bout\b"),
    ("forward-out-read-only", "forward(out=readonly(out))", r"\bout\b|read-?only|writ"),
    ("forward-params-too-short", "forward(params=params[:4].copy())", r"\bparams\b"),
    ("forward-params-too-long", "forward(params=np.append(params, 1.0))", r"\bparams\b"),
    ("forward-params-for-bias", "forward(has_bias=True)", r"\bparams\b"),
    ("forward-params-float32", "forward(params=params.astype(np.float32))", r"^params " + MIXED),
    ("forward-sizes-float64", "forward(sizes=sizes.astype(np.float64))", r"\bsizes\b"),
    ("forward-sizes-int32", "forward(sizes=sizes.astype(np.int32))", r"\bsizes\b"),
    ("forward-sizes-one-layer", "forward(sizes=np.array([4], dtype=np.int64))", r"\bsizes\b"),
    ("forward-sizes-negative", "forward(sizes=np.array([4, -1, 1], dtype=np.int64))", r"\bsizes\b"),
    ("forward-sizes-huge", "forward(sizes=np.array([4, 2**40, 1], dtype=np.int64))", r"\bsizes\b|\bparams\b"),
    # 4*2**62 + 2**62*4 + 4*1 wraps to 4 in 64-bit arithmetic: a 4-element params must not pass
    ("forward-sizes-overflow", "forward(sizes=np.array([4, 2**62, 4, 1], dtype=np.int64), params=np.ones(4))",
     r"\bsizes\b|\bparams\b|\bout\b"),
    ("forward-X-wrong-columns", "forward(X=np.ones((3, 5)))", r"\bX\b"),
    ("forward-X-float32", "forward(X=X.astype(np.float32))", r"^params " + MIXED),
    ("forward-X-float16", "forward(X=X.astype(np.float16))", r"\bX\b"),
    ("forward-X-int64", "forward(X=np.ones((3, 4), dtype=np.int64))", r"\bX\b"),
    ("forward-X-fortran", "forward(X=np.asfortranarray(np.ones((3, 4))))", r"\bX\b"),
    ("forward-X-no-rows", "forward(X=np.empty((0, 4)))", r"\bX\b|\bout\b"),
    ("forward-X-not-an-array", "forward(X=None)", r"\bX\b"),
    # gradient
    ("gradient-grad-too-short", "gradient(grad=np.empty(4))", r"\bgrad\b"),
    ("gradient-grad-too-long", "gradient(grad=np.empty(6))", r"\bgrad\b"),
    ("gradient-grad-float32", "gradient(grad=np.empty(5, np.float32))", r"^grad " + MIXED),
    ("gradient-grad-read-only", "gradient(grad=readonly(grad))", r"\bgrad\b|read-?only|writ"),
    ("gradient-params-too-short", "gradient(params=params[:3].copy())", r"\bparams\b"),
    ("gradient-params-for-bias", "gradient(has_bias=True)", r"\bparams\b"),
    ("gradient-params-float32", "gradient(params=params32)", r"^params " + MIXED),
    ("gradient-Y-fewer-rows", "gradient(Y=Y[:2].copy())", r"\bY\b"),
    ("gradient-Y-more-rows", "gradient(Y=np.ones((4, 1)))", r"\bY\b"),
    ("gradient-Y-wrong-columns", "gradient(Y=np.ones((3, 2)))", r"\bY\b"),
    ("gradient-Y-float32", "gradient(Y=Y.astype(np.float32))", r"^Y " + MIXED),
    ("gradient-X-wrong-columns", "gradient(X=np.ones((3, 3)))", r"\bX\b"),
    ("gradient-X-int64", "gradient(X=np.ones((3, 4), dtype=np.int64))", r"\bX\b"),
    ("gradient-X-float32", "gradient(X=X32)", r"^Y " + MIXED),
    ("gradient-row-weight-too-short", "gradient(row_weight=np.ones(2))", r"\brow_weight\b"),
    ("gradient-row-weight-too-long", "gradient(row_weight=np.ones(4))", r"\brow_weight\b"),
    ("gradient-row-weight-2d", "gradient(row_weight=np.ones((3, 2)))", r"\brow_weight\b"),
    ("gradient-row-weight-int64", "gradient(row_weight=np.ones(3, np.int64))", r"\brow_weight\b"),
    ("gradient-row-weight-float32", "gradient(row_weight=np.ones(3, np.float32))", r"^row_weight " + MIXED),
    ("gradient-row-weight-empty-float32", "gradient(row_weight=none32)", r"^row_weight " + MIXED),
    ("gradient-sizes-float64", "gradient(sizes=sizes.astype(np.float64))", r"\bsizes\b"),
    ("gradient-derivative-unknown", "gradient(derivative=7)", r"\bderivative\b"),
    ("gradient-loss-unknown", "gradient(loss=9)", r"\bloss\b"),
    ("gradient-loss-negative", "gradient(loss=-1)", r"\bloss\b"),
    # float32 buffers of the wrong length
    ("forward32-out-too-short", "forward32(out=np.empty(5, f32))", r"\bout\b"),
    ("forward32-out-too-long", "forward32(out=np.empty(7, f32))", r"\bout\b"),
    ("forward32-params-too-long", "forward32(params=np.ones(6, f32))", r"\bparams\b"),
    ("forward32-X-wrong-columns", "forward32(X=np.ones((3, 5), f32))", r"\bX\b"),
    ("forward32-out-float64", "forward32(out=np.empty(6))", r"^out " + MIXED),
    ("gradient32-grad-too-short", "gradient32(grad=np.empty(4, f32))", r"\bgrad\b"),
    ("gradient32-params-too-short", "gradient32(params=np.ones(4, f32))", r"\bparams\b"),
    ("gradient32-params-for-bias", "gradient32(has_bias=True)", r"\bparams\b"),
    ("gradient32-Y-fewer-rows", "gradient32(Y=np.ones((2, 1), f32))", r"\bY\b"),
    ("gradient32-row-weight-too-short", "gradient32(row_weight=np.ones(2, f32))", r"\brow_weight\b"),
    ("gradient32-row-weight-empty-float64", "gradient32(row_weight=none)", r"^row_weight " + MIXED),
    ("gradient32-grad-float64", "gradient32(grad=np.empty(5))", r"^grad " + MIXED),
    ("train32-state-too-short", "train32(state=np.zeros((2, 4), f32))", r"\bstate\b"),
    ("train32-state-one-row", "train32(state=np.zeros((1, 5), f32))", r"\bstate\b"),
    ("train32-params-too-long", "train32(params=np.ones(6, f32))", r"\bparams\b"),
    ("train32-grad-too-short", "train32(grad=np.empty(4, f32))", r"\bgrad\b"),
    ("train32-row-weight-too-long", "train32(row_weight=np.ones(4, f32))", r"\brow_weight\b"),
    ("train32-state-float64", "train32(state=np.zeros((2, 5)))", r"^state " + MIXED),
    ("train32-params-float64", "train32(params=params.copy())", r"^params " + MIXED),
    ("train32-hyper-float32", "train32(hyper=hyper.astype(f32))", r"\bhyper\b.*float64"),
    # train_epoch
    ("train-order-entry-too-large", "train(order=np.array([2, 3, 1], np.int64))", r"\border\b"),
    ("train-order-entry-huge", "train(order=np.array([0, 2**62, 1], np.int64))", r"\border\b"),
    ("train-order-entry-negative", "train(order=np.array([0, -1, 1], np.int64))", r"\border\b"),
    ("train-order-too-short", "train(order=np.array([0, 1], np.int64))", r"\border\b"),
    ("train-order-too-long", "train(order=np.array([0, 1, 2, 0], np.int64))", r"\border\b"),
    ("train-order-float64", "train(order=np.array([0.0, 1.0, 2.0]))", r"\border\b"),
    ("train-order-int32", "train(order=np.array([0, 1, 2], np.int32))", r"\border\b"),
    ("train-order-strided", "train(order=np.repeat(np.arange(3, dtype=np.int64), 2)[::2])", r"\border\b"),
    ("train-batch-size-zero", "train(batch_size=0)", r"\bbatch_size\b"),
    ("train-batch-size-negative", "train(batch_size=-2)", r"\bbatch_size\b"),
    ("train-batch-size-float", "train(batch_size=2.5)", r"\bbatch_size\b"),
    ("train-optimizer-unknown", "train(optimizer=3)", r"\boptimizer\b"),
    ("train-optimizer-negative", "train(optimizer=-1)", r"\boptimizer\b"),
    ("train-derivative-unknown", "train(derivative=2)", r"\bderivative\b"),
    ("train-loss-unknown", "train(loss=3)", r"\bloss\b"),
    ("train-hyper-too-short", "train(hyper=hyper[:4].copy())", r"\bhyper\b"),
    ("train-hyper-too-long", "train(hyper=np.append(hyper, 0.0))", r"\bhyper\b"),
    ("train-state-too-short", "train(state=np.zeros((2, 4)))", r"\bstate\b"),
    ("train-state-one-row", "train(state=np.zeros(5))", r"\bstate\b"),
    ("train-state-read-only", "train(state=readonly(np.zeros((2, 5))))", r"\bstate\b|read-?only|writ"),
    ("train-state-float32", "train(state=np.zeros((2, 5), f32))", r"^state " + MIXED),
    ("train-step-too-long", "train(step=np.zeros(2, np.int64))", r"\bstep\b"),
    ("train-step-empty", "train(step=np.zeros(0, np.int64))", r"\bstep\b"),
    ("train-step-float64", "train(step=np.zeros(1))", r"\bstep\b"),
    ("train-step-read-only", "train(step=readonly(np.zeros(1, np.int64)))", r"\bstep\b|read-?only|writ"),
    ("train-params-read-only", "train(params=readonly(params))", r"\bparams\b|read-?only|writ"),
    ("train-params-too-short", "train(params=params[:4].copy())", r"\bparams\b"),
    ("train-params-for-bias", "train(has_bias=True)", r"\bparams\b"),
    ("train-grad-too-long", "train(grad=np.empty(6))", r"\bgrad\b"),
    ("train-grad-read-only", "train(grad=readonly(grad))", r"\bgrad\b|read-?only|writ"),
    ("train-Y-fewer-rows", "train(Y=Y[:2].copy())", r"\bY\b"),
    ("train-row-weight-too-short", "train(row_weight=np.ones(2))", r"\brow_weight\b"),
    ("train-X-float32", "train(X=X32, params=params.copy(), state=np.zeros((2, 5)), grad=np.empty(5))",
     r"^Y " + MIXED),
    ("train-row-weight-float32", "train(row_weight=np.ones(3, f32))", r"^row_weight " + MIXED),
    ("train-grad-float32", "train(grad=np.empty(5, f32))", r"^grad " + MIXED),
    ("train-X-no-rows", "train(X=np.empty((0, 4)), Y=np.empty((0, 1)), order=np.empty(0, np.int64))",
     r"\bX\b"),
]


def test_bad_call_ids_are_unique():
    ids = [case[0] for case in BAD_CALLS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("call, pattern", [case[1:] for case in BAD_CALLS], ids=[case[0] for case in BAD_CALLS])
def test_native_rejects_bad_arguments_without_crashing(call, pattern):
    code = PRELUDE + textwrap.dedent(f"""
        try:
            {call}
        except (ValueError, TypeError) as error:
            print("RAISED", type(error).__name__)
            print(error)
        else:
            print("NO ERROR")
    """)
    result = run_python(code=code, timeout=120)
    assert result.returncode == 0, (f"interpreter died (return code {result.returncode}) on {call}\n"
                                    f"{result.stdout}\n{result.stderr}")
    assert result.stdout.startswith("RAISED"), f"{call} raised no ValueError/TypeError: {result.stdout}"
    kind, message = result.stdout.split("\n", 1)
    assert re.search(pattern, message), f"message does not name the argument: {message!r}"
    if re.search(MIXED, message):
        assert kind == "RAISED TypeError", f"a mixed dtype must raise TypeError: {result.stdout}"


def test_the_prelude_calls_succeed():
    """The bad calls above each change one argument of calls that work."""
    code = PRELUDE + textwrap.dedent("""
        print(forward(), gradient() > 0, train() > 0, forward32(), gradient32() > 0, train32() > 0)
    """)
    result = run_python(code=code, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "True", "True", "None", "True", "True"]


def test_native_bad_call_leaves_out_untouched_for_a_wrong_size():
    """A rejected call must not have written anything into the buffers it was given."""
    code = PRELUDE + textwrap.dedent("""
        short = np.full(5, 7.0)
        try:
            forward(out=short)
        except (ValueError, TypeError):
            pass
        print("UNTOUCHED" if (short == 7.0).all() else "WRITTEN")
    """)
    result = run_python(code=code, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "UNTOUCHED"


@pytest.mark.parametrize("change", ["order=np.array([0, 1, 3], np.int64)", "hyper=hyper[:4].copy()",
                                    "optimizer=5", "step=np.zeros(2, np.int64)", "row_weight=np.ones(3, f32)"])
def test_native_rejected_train_epoch_touches_nothing(change):
    """A bad last check (order's last entry, hyper, ...) still leaves params, state and step as they were."""
    code = PRELUDE + textwrap.dedent(f"""
        p, s, t, g = params.copy(), np.full((2, 5), 0.5), np.full(1, 4, np.int64), np.full(5, 7.0)
        arguments = dict(params=p, state=s, step=t, grad=g)
        arguments.update(dict({change}))
        try:
            train(**arguments)
        except (ValueError, TypeError):
            pass
        same = (p == params).all() and (s == 0.5).all() and (t == 4).all() and (g == 7.0).all()
        print("UNTOUCHED" if same else "WRITTEN")
    """)
    result = run_python(code=code, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "UNTOUCHED"
