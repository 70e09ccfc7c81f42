"""The compiled module fastnet._native, called directly.

Its functions are ``forward(X, params, sizes, has_bias, out)`` and
``gradient(X, Y, params, sizes, has_bias, derivative, loss, grad) -> float``
with the packed layout of fastnet.backends.  Called with wrong buffers they
must raise ValueError/TypeError, never crash: each such call runs in a fresh
interpreter, so a segfault fails its test instead of killing pytest.  (The
module may read X and Y as flat buffers, so only element counts, dtypes and
contiguity are required to be checked here, not the number of dimensions.)
"""

import re
import textwrap

import numpy as np
import pytest

from fastnet.backends import DERIVATIVE_CODES, LOSS_CODES

from conftest import run_python

# The article's example (ARTICLE.md), packed: W1 (4x1) then W2 (1x1), no biases.
X = np.array([[0.4, 0.8, 0.4, 0.3],
              [1.0, 0.2, 0.4, 0.3],
              [0.3, 0.4, 0.5, 0.4]])
Y = np.array([[1.0], [0.85], [0.4]])
PARAMS = np.array([0.25, 1.0, 0.25, 1.0, 0.5])
SIZES = np.array([4, 1, 1], dtype=np.int64)

# Printed in ARTICLE.md: neuron1output, then output.
ARTICLE_ACTIVATIONS = np.array([0.78583498, 0.70056714, 0.73105858,
                                0.59698483, 0.58668634, 0.59037826])
# Gradient = -(article's d_W): W1 - new W1, then -d_W2.
ARTICLE_GRADIENT = np.array([0.25 - 0.2684694, 1.0 - 1.01472558, 0.25 - 0.25851005,
                             1.0 - 1.00614301, -0.16591155])
SSE_BEFORE = 0.40301517 ** 2 + 0.26331366 ** 2 + 0.19037826 ** 2


def test_native_module_imports():
    import fastnet._native as native
    assert callable(native.forward)
    assert callable(native.gradient)


def test_native_forward_gives_the_article_activations():
    import fastnet._native as native
    out = np.full(6, np.nan)
    X_before, params_before = X.copy(), PARAMS.copy()
    native.forward(X, PARAMS, SIZES, False, out)
    np.testing.assert_allclose(out, ARTICLE_ACTIVATIONS, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(PARAMS, params_before)


def test_native_gradient_gives_the_article_step():
    import fastnet._native as native
    grad = np.full(5, np.nan)
    value = native.gradient(X, Y, PARAMS, SIZES, False, DERIVATIVE_CODES["article"], LOSS_CODES["sse"], grad)
    assert value == pytest.approx(SSE_BEFORE, abs=1e-7)
    np.testing.assert_allclose(grad, ARTICLE_GRADIENT, rtol=0, atol=1e-8)


def test_native_gradient_mse_is_sse_over_the_element_count():
    import fastnet._native as native
    sse_grad, mse_grad = np.empty(5), np.empty(5)
    sse = native.gradient(X, Y, PARAMS, SIZES, False, DERIVATIVE_CODES["exact"], LOSS_CODES["sse"], sse_grad)
    mse = native.gradient(X, Y, PARAMS, SIZES, False, DERIVATIVE_CODES["exact"], LOSS_CODES["mse"], mse_grad)
    assert mse == pytest.approx(sse / 3, rel=1e-14)
    np.testing.assert_allclose(mse_grad, sse_grad / 3, rtol=1e-14)


# -- wrong arguments, each in its own interpreter -----------------------------------------

PRELUDE = textwrap.dedent("""
    import numpy as np
    import fastnet._native as native
    X = np.array([[0.4, 0.8, 0.4, 0.3], [1.0, 0.2, 0.4, 0.3], [0.3, 0.4, 0.5, 0.4]])
    Y = np.array([[1.0], [0.85], [0.4]])
    params = np.array([0.25, 1.0, 0.25, 1.0, 0.5])
    sizes = np.array([4, 1, 1], dtype=np.int64)
    out = np.empty(6)
    grad = np.empty(5)

    def forward(X=X, params=params, sizes=sizes, has_bias=False, out=out):
        return native.forward(X, params, sizes, has_bias, out)

    def gradient(X=X, Y=Y, params=params, sizes=sizes, has_bias=False, derivative=1, loss=0, grad=grad):
        return native.gradient(X, Y, params, sizes, has_bias, derivative, loss, grad)

    def readonly(a):
        a = a.copy()
        a.flags.writeable = False
        return a
""")

#: (id, call, regex the error message must match: the argument's name).
BAD_CALLS = [
    # forward
    ("forward-out-too-short", "forward(out=np.empty(5))", r"\bout\b"),
    ("forward-out-too-long", "forward(out=np.empty(7))", r"\bout\b"),
    ("forward-out-empty", "forward(out=np.empty(0))", r"\bout\b"),
    ("forward-out-float32", "forward(out=np.empty(6, np.float32))", r"\bout\b"),
    ("forward-out-int64", "forward(out=np.empty(6, np.int64))", r"\bout\b"),
    ("forward-out-strided", "forward(out=np.empty(12)[::2])", r"\bout\b"),
    ("forward-out-read-only", "forward(out=readonly(out))", r"\bout\b|read-?only|writ"),
    ("forward-params-too-short", "forward(params=params[:4].copy())", r"\bparams\b"),
    ("forward-params-too-long", "forward(params=np.append(params, 1.0))", r"\bparams\b"),
    ("forward-params-for-bias", "forward(has_bias=True)", r"\bparams\b"),
    ("forward-params-float32", "forward(params=params.astype(np.float32))", r"\bparams\b"),
    ("forward-sizes-float64", "forward(sizes=sizes.astype(np.float64))", r"\bsizes\b"),
    ("forward-sizes-int32", "forward(sizes=sizes.astype(np.int32))", r"\bsizes\b"),
    ("forward-sizes-one-layer", "forward(sizes=np.array([4], dtype=np.int64))", r"\bsizes\b"),
    ("forward-sizes-negative", "forward(sizes=np.array([4, -1, 1], dtype=np.int64))", r"\bsizes\b"),
    ("forward-sizes-huge", "forward(sizes=np.array([4, 2**40, 1], dtype=np.int64))", r"\bsizes\b|\bparams\b"),
    # 4*2**62 + 2**62*4 + 4*1 wraps to 4 in 64-bit arithmetic: a 4-element params must not pass
    ("forward-sizes-overflow", "forward(sizes=np.array([4, 2**62, 4, 1], dtype=np.int64), params=np.ones(4))",
     r"\bsizes\b|\bparams\b|\bout\b"),
    ("forward-X-wrong-columns", "forward(X=np.ones((3, 5)))", r"\bX\b"),
    ("forward-X-float32", "forward(X=X.astype(np.float32))", r"\bX\b"),
    ("forward-X-int64", "forward(X=np.ones((3, 4), dtype=np.int64))", r"\bX\b"),
    ("forward-X-fortran", "forward(X=np.asfortranarray(np.ones((3, 4))))", r"\bX\b"),
    ("forward-X-no-rows", "forward(X=np.empty((0, 4)))", r"\bX\b|\bout\b"),
    ("forward-X-not-an-array", "forward(X=None)", r"\bX\b"),
    # gradient
    ("gradient-grad-too-short", "gradient(grad=np.empty(4))", r"\bgrad\b"),
    ("gradient-grad-too-long", "gradient(grad=np.empty(6))", r"\bgrad\b"),
    ("gradient-grad-float32", "gradient(grad=np.empty(5, np.float32))", r"\bgrad\b"),
    ("gradient-grad-read-only", "gradient(grad=readonly(grad))", r"\bgrad\b|read-?only|writ"),
    ("gradient-params-too-short", "gradient(params=params[:3].copy())", r"\bparams\b"),
    ("gradient-params-for-bias", "gradient(has_bias=True)", r"\bparams\b"),
    ("gradient-Y-fewer-rows", "gradient(Y=Y[:2].copy())", r"\bY\b"),
    ("gradient-Y-more-rows", "gradient(Y=np.ones((4, 1)))", r"\bY\b"),
    ("gradient-Y-wrong-columns", "gradient(Y=np.ones((3, 2)))", r"\bY\b"),
    ("gradient-Y-float32", "gradient(Y=Y.astype(np.float32))", r"\bY\b"),
    ("gradient-X-wrong-columns", "gradient(X=np.ones((3, 3)))", r"\bX\b"),
    ("gradient-X-int64", "gradient(X=np.ones((3, 4), dtype=np.int64))", r"\bX\b"),
    ("gradient-sizes-float64", "gradient(sizes=sizes.astype(np.float64))", r"\bsizes\b"),
    ("gradient-derivative-unknown", "gradient(derivative=7)", r"\bderivative\b"),
    ("gradient-loss-unknown", "gradient(loss=9)", r"\bloss\b"),
]


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
    message = result.stdout.split("\n", 1)[1]
    assert re.search(pattern, message), f"message does not name the argument: {message!r}"


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
