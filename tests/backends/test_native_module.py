"""The compiled module fastnet._native, called directly.

Its functions compute what the backend contract of fastnet.backends says:
``forward(X, params, sizes, activations, has_bias, block_rows, out)``,
``gradient(X, Y, row_weight, params, sizes, activations, has_bias, derivative, loss, block_rows, grad)
-> float`` (the unnormalised sums) and ``train_epoch(X, Y, row_weight, order, batch_size, params, sizes,
activations, has_bias, derivative, loss, optimizer, hyper, state, step, block_rows, grad) -> float``, for
float64 or float32 arrays (X's dtype, shared by every float array but hyper).
Called with wrong buffers they must raise ValueError/TypeError, never crash:
each such call runs in a fresh interpreter, so a segfault fails its test
instead of killing pytest.  (The module may read X and Y as flat buffers, so
only element counts, dtypes and contiguity are required to be checked here,
not the number of dimensions.)
"""

import json
import re
import textwrap
import warnings

import numpy as np
import pytest

from fastnet import _config, spec
from fastnet.backends import Model, Rows
from fastnet.layout import ParamLayout

import naive
from conftest import REPO_ROOT, run_python
from native_calls import BAD_CALLS, MIXED, PRELUDE

#: Rows per block for the direct calls: a batch of up to this many rows is one block.
BLOCK_ROWS = _config.BLOCK_ROWS

# The article's example (ARTICLE.md, typed in once in naive.py), packed: W1 (4x1) then W2 (1x1), no biases.
X, Y = naive.X.copy(), naive.Y.copy()
PARAMS = np.concatenate([naive.W1.ravel(), naive.W2.ravel()])
SIZES = np.array(naive.LAYERS, dtype=np.int64)
NO_WEIGHTS = np.empty(0)
IN_PLACE = np.empty(0, np.int64)
HYPER = np.array([0.1, 0.9, 0.9, 0.999, 1e-8, 0.0])  # fastnet.spec.HYPER_FIELDS: lr, mu, b1, b2, eps, alpha
ONE_UNIT = np.array([1, 1], np.int64)  # one input, one sigmoid output: out = sigmoid(X)

# Printed in ARTICLE.md: neuron1output, then output.
ARTICLE_ACTIVATIONS = np.concatenate([naive.NEURON1OUTPUT.ravel(), naive.OUTPUT.ravel()])
# Gradient = -(article's d_W): W1 - new W1, then -d_W2.
ARTICLE_GRADIENT = np.concatenate([naive.ARTICLE_GRADIENT_W1.ravel(), naive.ARTICLE_GRADIENT_W2.ravel()])
SSE_BEFORE = naive.SSE_BEFORE

EXACT, ARTICLE = spec.DERIVATIVES["exact"].code, spec.DERIVATIVES["article"].code
SSE, MSE, BCE = spec.LOSSES["sse"].code, spec.LOSSES["mse"].code, spec.LOSSES["bce"].code
OPTIMIZER_CODES = {name: entry.code for name, entry in spec.OPTIMIZERS.items()}


def sigmoids(sizes):
    """The activation codes of a network of sigmoid layers with these widths."""
    return np.full(len(sizes) - 1, spec.ACTIVATIONS["sigmoid"].code, np.int64)


class Optimizer:
    """What a backend's train_epoch reads of an optimizer (see fastnet.backends)."""

    def __init__(self, code, state, step):
        self.code, self.hyper, self.state, self.step = code, HYPER, state, step


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
          backend=None, step=0, block_rows=BLOCK_ROWS):
    """One train_epoch on copies, from a fresh state and Adam's t = step: (errors, params, state, step).

    ``backend``: a backend module (fastnet.backends) to run instead of the compiled module itself
    (which gets ``block_rows``; a backend chooses its own).
    """
    params = params.copy()
    state, step = np.zeros((2, params.size), params.dtype), np.full(1, step, np.int64)
    if backend is None:
        errors = native().train_epoch(X_, Y_, w, order, batch_size, params, sizes, sigmoids(sizes), has_bias,
                                      derivative, loss, optimizer, HYPER, state, step, block_rows,
                                      np.empty_like(params))
    else:
        model = Model(params, ParamLayout(sizes, has_bias), sigmoids(sizes), derivative, loss)
        errors = backend.train_epoch(model, Rows(X_, Y_, w), order, batch_size, Optimizer(optimizer, state, step),
                                     np.empty_like(params))
    return errors, params, state, step


# -- float64: the article's values --------------------------------------------------------

def test_native_module_imports():
    module = native()
    for name in ("forward", "gradient", "train_epoch", "set_num_threads", "get_num_threads"):
        assert callable(getattr(module, name))


def test_native_forward_gives_the_article_activations():
    out = np.full(6, np.nan)
    X_before, params_before = X.copy(), PARAMS.copy()
    native().forward(X, PARAMS, SIZES, sigmoids(SIZES), False, BLOCK_ROWS, out)
    np.testing.assert_allclose(out, ARTICLE_ACTIVATIONS, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(PARAMS, params_before)


def test_native_gradient_gives_the_article_step():
    grad = np.full(5, np.nan)
    value = native().gradient(X, Y, NO_WEIGHTS, PARAMS, SIZES, sigmoids(SIZES), False, ARTICLE, SSE, BLOCK_ROWS, grad)
    assert value == pytest.approx(SSE_BEFORE, abs=1e-7)
    np.testing.assert_allclose(grad, ARTICLE_GRADIENT, rtol=0, atol=1e-8)


def test_native_gradient_of_mse_is_unnormalised_like_sse():
    """The module returns sums (the contract); mse's division by W n_L is the caller's."""
    sse_grad, mse_grad = np.empty(5), np.empty(5)
    sse = native().gradient(X, Y, NO_WEIGHTS, PARAMS, SIZES, sigmoids(SIZES), False, EXACT, SSE, BLOCK_ROWS, sse_grad)
    mse = native().gradient(X, Y, NO_WEIGHTS, PARAMS, SIZES, sigmoids(SIZES), False, EXACT, MSE, BLOCK_ROWS, mse_grad)
    assert mse == sse
    np.testing.assert_array_equal(mse_grad, sse_grad)


@pytest.mark.parametrize("loss", [SSE, MSE, BCE])
def test_native_integer_row_weights_repeat_rows(loss):
    """w = [2, 1, 0] is the batch with row 0 twice, row 1 once and no row 2."""
    weighted, repeated = np.empty(5), np.empty(5)
    a = native().gradient(X, Y, np.array([2.0, 1.0, 0.0]), PARAMS, SIZES, sigmoids(SIZES), False, EXACT, loss,
                          BLOCK_ROWS, weighted)
    b = native().gradient(X[[0, 0, 1]].copy(), Y[[0, 0, 1]].copy(), NO_WEIGHTS, PARAMS, SIZES, sigmoids(SIZES), False, EXACT,
                          loss, BLOCK_ROWS, repeated)
    assert a == pytest.approx(b, rel=1e-14)
    np.testing.assert_allclose(weighted, repeated, rtol=1e-13, atol=1e-16)


def test_native_train_epoch_one_full_batch_is_one_sgd_step():
    grad = np.empty(5)
    native().gradient(X, Y, NO_WEIGHTS, PARAMS, SIZES, sigmoids(SIZES), False, ARTICLE, SSE, BLOCK_ROWS, grad)
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


def test_native_train_epoch_visits_only_the_rows_of_a_shorter_order():
    """An order of fewer (and repeated) rows trains on exactly those rows, as on a copy of them in place."""
    order = np.array([2, 0, 2], np.int64)
    weights = np.array([1.0, 2.0, 0.5])
    for optimizer in OPTIMIZER_CODES.values():
        visited = train(X, Y, weights, order[:2], 1, PARAMS, SIZES, False, EXACT, MSE, optimizer)
        copied = train(X[order[:2]].copy(), Y[order[:2]].copy(), weights[order[:2]].copy(), IN_PLACE, 1, PARAMS,
                       SIZES, False, EXACT, MSE, optimizer)
        for got, want in zip(visited, copied):
            np.testing.assert_array_equal(got, want)
        repeated = train(X, Y, weights, order, 2, PARAMS, SIZES, False, EXACT, MSE, optimizer)
        copied = train(X[order].copy(), Y[order].copy(), weights[order].copy(), IN_PLACE, 2, PARAMS, SIZES, False,
                       EXACT, MSE, optimizer)
        for got, want in zip(repeated, copied):
            np.testing.assert_array_equal(got, want)


# -- zero-weight batches -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", [SSE, MSE, BCE])
def test_native_zero_weight_batch_has_zero_loss_and_gradient(dtype, loss):
    grad = np.full(5, np.nan, dtype)
    value = native().gradient(X.astype(dtype), Y.astype(dtype), np.zeros(3, dtype), PARAMS.astype(dtype), SIZES, sigmoids(SIZES),
                              False, EXACT, loss, BLOCK_ROWS, grad)
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
    native().forward(X.astype(np.float32), PARAMS.astype(np.float32), SIZES, sigmoids(SIZES), False, BLOCK_ROWS, out)
    np.testing.assert_allclose(out, ARTICLE_ACTIVATIONS, rtol=0, atol=1e-6)


def test_native_float32_gradient_matches_the_article():
    grad = np.full(5, np.nan, np.float32)
    value = native().gradient(X.astype(np.float32), Y.astype(np.float32), np.empty(0, np.float32),
                              PARAMS.astype(np.float32), SIZES, sigmoids(SIZES), False, ARTICLE, SSE, BLOCK_ROWS, grad)
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
    value64 = native().gradient(X_, Y_, w, params, sizes, sigmoids(sizes), bias, derivative, loss, BLOCK_ROWS,
                                grad64)
    value32 = native().gradient(f(X_), f(Y_), f(w), f(params), sizes, sigmoids(sizes), bias, derivative, loss,
                                BLOCK_ROWS, grad32)
    assert normwise(grad32, grad64) < 1e-4
    assert value32 == pytest.approx(value64, rel=1e-4)
    out64 = np.empty(n * int(sizes[1:].sum()))
    out32 = np.full(out64.size, np.nan, np.float32)
    native().forward(X_, params, sizes, sigmoids(sizes), bias, BLOCK_ROWS, out64)
    native().forward(f(X_), f(params), sizes, sigmoids(sizes), bias, BLOCK_ROWS, out32)
    np.testing.assert_allclose(out32, out64, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sizes, n, bias, weighted, derivative, loss", CASES_32)
def test_native_float32_agrees_with_numba_float32(sizes, n, bias, weighted, derivative, loss):
    from fastnet.backends import numba_kernels
    rng = np.random.default_rng(n + 1)
    sizes, params, X_, Y_, w = random_problem(rng, sizes, n, np.float32, bias, weighted)
    ours, theirs = np.empty(params.size, np.float32), np.empty(params.size, np.float32)
    value = native().gradient(X_, Y_, w, params, sizes, sigmoids(sizes), bias, derivative, loss, BLOCK_ROWS, ours)
    model = Model(params, ParamLayout(sizes, bias), sigmoids(sizes), derivative, loss)
    expected = numba_kernels.gradient(model, Rows(X_, Y_, w), theirs)
    assert normwise(ours, theirs) < 1e-5
    assert value == pytest.approx(expected, rel=1e-5)
    order = rng.permutation(n).astype(np.int64)
    for optimizer in OPTIMIZER_CODES.values():
        lr_safe_batch = 32 if loss != SSE else 4
        got = train(X_, Y_, w, order, lr_safe_batch, params, sizes, bias, derivative, loss, optimizer)
        want = train(X_, Y_, w, order, lr_safe_batch, params, sizes, bias, derivative, loss, optimizer,
                     backend=numba_kernels)
        assert got[1].dtype == got[2].dtype == np.float32
        assert normwise(got[1], want[1]) < 1e-5
        assert got[0] == pytest.approx(want[0], rel=1e-5)


def test_native_float32_sigmoid_saturates_quietly():
    z = np.array([[-1e30], [-1000.0], [-90.0], [-87.0], [0.0], [87.0], [90.0], [1000.0], [1e30]], np.float32)
    out = np.full(z.size, np.nan, np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        native().forward(z, np.array([1.0, 0.0], np.float32), ONE_UNIT, sigmoids(ONE_UNIT), True, BLOCK_ROWS, out)
    assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
    assert out[4] == np.float32(0.5) and (out[5:] == 1).all()
    assert (out[:4] > 0).all() and (out[:4] < 1e-30).all()


def test_native_float32_sigmoid_is_accurate():
    z = np.linspace(-80.0, 80.0, 100001).astype(np.float32)
    out = np.empty(z.size, np.float32)
    native().forward(z[:, None], np.array([1.0, 0.0], np.float32), ONE_UNIT, sigmoids(ONE_UNIT), True, BLOCK_ROWS,
                     out)
    exact = naive.sigmoid(z.astype(np.float64))
    assert (np.abs(out - exact) <= 3 * np.spacing(exact.astype(np.float32))).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, block_rows", [(3 * BLOCK_ROWS + 77, BLOCK_ROWS), (300, 64)],
                         ids=["big-blocks", "a-batch-split-into-small-blocks"])
def test_native_results_do_not_depend_on_the_thread_count(dtype, n, block_rows):
    rng = np.random.default_rng(11)
    sizes, params, X_, Y_, w = random_problem(rng, [6, 9, 3], n, dtype, weighted=True)
    order = rng.permutation(n).astype(np.int64)
    module, before = native(), native().get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            module.set_num_threads(threads)
            grad = np.empty(params.size, dtype)
            value = module.gradient(X_, Y_, w, params, sizes, sigmoids(sizes), True, EXACT, BCE, block_rows, grad)
            out = np.empty(n * 12, dtype)
            module.forward(X_, params, sizes, sigmoids(sizes), True, block_rows, out)
            epoch = train(X_, Y_, w, order, n - 100, params, sizes, True, ARTICLE, MSE, OPTIMIZER_CODES["adam"],
                          block_rows=block_rows)
            results.append((grad, value, out) + epoch)
    finally:
        module.set_num_threads(before)
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_native_finite_range_finds_every_nan_and_infinity(dtype, bad):
    """One bad item anywhere: first, last, inside a parallel chunk, at a chunk edge."""
    n = 3 * 2**16 + 4  # several chunks of fn_finite_range and a partial one
    values = np.random.default_rng(3).normal(scale=1e30, size=n).astype(dtype)
    assert native().finite_range(values) is not None
    for where in (0, 1, 2**16 - 1, 2**16, n // 2, n - 1):
        spoiled = values.copy()
        spoiled[where] = bad
        assert native().finite_range(spoiled) is None, where
        assert native().finite_range(spoiled.reshape(-1, 4)[: where // 4 + 1]) is None, where


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_native_finite_range_is_numpys_min_and_max(dtype):
    """The extremes anywhere (first, last, at a chunk edge), in arrays of any length, as numpy finds them."""
    rng = np.random.default_rng(4)
    for n in (1, 7, 2**16 - 1, 2**16, 3 * 2**16 + 5):
        values = rng.normal(size=n).astype(dtype)
        for where_low, where_high in ((0, n - 1), (n - 1, 0), (n // 2, min(2**16, n - 1))):
            spoiled = values.copy()
            spoiled[where_low], spoiled[where_high] = -1e6 if n > 1 else 5.0, 1e6 if n > 1 else 5.0
            assert native().finite_range(spoiled) == (float(spoiled.min()), float(spoiled.max())), (n, where_low)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_native_finite_range_accepts_extremes_and_empty_arrays(dtype):
    info = np.finfo(dtype)
    extremes = np.array([info.max, -info.max, info.tiny, info.smallest_subnormal, -0.0, 0.0], dtype)
    assert native().finite_range(extremes) == (float(-info.max), float(info.max))
    assert native().finite_range(np.empty((0, 4), dtype)) == (np.inf, -np.inf)


@pytest.mark.parametrize("threads", [1, 2])
def test_native_finite_range_answers_the_same_on_any_thread_count(threads):
    module, before = native(), native().get_num_threads()
    values = np.ones(5 * 2**16)
    values[3 * 2**16 + 1] = -2.0
    try:
        module.set_num_threads(threads)
        assert module.finite_range(values) == (-2.0, 1.0)
        values[-1] = np.nan
        assert module.finite_range(values) is None
    finally:
        module.set_num_threads(before)


# -- wrong arguments (the calls are in tests/native_calls.py) -------------------------------

def test_bad_call_ids_are_unique():
    ids = [case[0] for case in BAD_CALLS]
    assert len(ids) == len(set(ids))


def test_native_rejects_bad_arguments_in_one_interpreter():
    """Every bad call of BAD_CALLS, one after the other in a single child interpreter.

    The same checks as tests/slow/test_native_bad_calls.py (which gives each call an
    interpreter of its own): each raises ValueError/TypeError naming its argument,
    a mixed dtype raises TypeError, and none crashes (a crash names the last call started).
    """
    calls = [(case_id, call) for case_id, call, _ in BAD_CALLS]
    code = PRELUDE + textwrap.dedent(f"""
        import json
        for case_id, call in {calls!r}:
            print("CASE", case_id, flush=True)
            try:
                exec(call)
            except (ValueError, TypeError) as error:
                print("RESULT", json.dumps([case_id, "RAISED " + type(error).__name__, str(error)]), flush=True)
            else:
                print("RESULT", json.dumps([case_id, "NO ERROR", ""]), flush=True)
        print("DONE", flush=True)
    """)
    result = run_python(code=code, timeout=300)
    started = [line for line in result.stdout.splitlines() if line.startswith("CASE ")]
    assert result.returncode == 0 and result.stdout.rstrip().endswith("DONE"), (
        f"interpreter died (return code {result.returncode}) on {started[-1] if started else 'the prelude'}\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    outcomes = {case_id: (kind, message) for case_id, kind, message in
                (json.loads(line[len("RESULT "):]) for line in result.stdout.splitlines()
                 if line.startswith("RESULT "))}
    assert sorted(outcomes) == sorted(case[0] for case in BAD_CALLS)
    for case_id, call, pattern in BAD_CALLS:
        kind, message = outcomes[case_id]
        assert kind.startswith("RAISED"), f"{call} raised no ValueError/TypeError: {kind}"
        assert re.search(pattern, message), f"{case_id}: message does not name the argument: {message!r}"
        if re.search(MIXED, message):
            assert kind == "RAISED TypeError", f"{case_id}: a mixed dtype must raise TypeError: {kind} {message}"


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
