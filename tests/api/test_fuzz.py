"""Any input to any public method gives the reference's answer or a clean error: the quick tier.

The property and its strategies are in tests/fuzzing.py (its docstring says
what is drawn and what must hold).  Here it runs on QUICK_EXAMPLES drawn
cases (and every case found so far) per backend and method;
tests/slow/test_fuzz_full.py runs it on MAX_EXAMPLES.  The dedicated tests
below are cases the property found, and a check of the child-process harness.
"""

import textwrap

import numpy as np
import pytest

from fastnet import Network

from conftest import run_python
from fuzzing import METHODS, QUICK_EXAMPLES, check_property

@pytest.mark.parametrize("method", METHODS)
def test_any_input_gives_the_reference_result_or_a_clean_error_quick(backend, method):
    """The property on a few examples (and every FOUND case); the slow tier runs many more."""
    check_property(backend, method, QUICK_EXAMPLES)


#: Found by the property above: weights whose total underflows (subnormal) or overflows.
EXTREME_WEIGHT_SCALES = [5e-324, 1e308]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("scale", EXTREME_WEIGHT_SCALES)
@pytest.mark.parametrize("method", ["evaluate", "fit"])
def test_sample_weight_scale_does_not_change_a_mean_loss(backend, method, scale, loss="mse"):
    """mse and bce are weighted means: sum w_i e_i / (W n_L), unchanged when every weight is
    multiplied by the same positive number.  Equal tiny (even subnormal) or huge weights are
    valid (non-negative with a positive sum), so they must give the unweighted result, or be
    refused with a ValueError naming sample_weight - never NaN, inf, a silent 0 or a
    DivergenceError blaming the learning rate.
    """
    rng = np.random.default_rng(3)
    X, y = rng.uniform(-1, 1, (4, 2)), rng.uniform(0, 1, (4, 1))

    def run(weights):
        net = Network([2, 3, 1], backend=backend, loss=loss, seed=5)
        if method == "evaluate":
            return np.array(net.evaluate(X, y, sample_weight=weights))
        net.fit(X, y, epochs=2, lr=0.5, batch_size=2, shuffle=False, sample_weight=weights)
        return np.concatenate([p.ravel() for p in net.weights + net.biases])

    expected = run(np.ones(4))
    try:
        actual = run(np.full(4, scale))
    except ValueError as error:
        assert "sample_weight" in str(error), f"the error does not name sample_weight: {error}"
        return
    scale_of_expected = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale_of_expected,
                               err_msg=f"sample_weight = {scale} for every row")


def test_child_runner_reports_a_crash_with_its_input():
    """The subprocess harness itself: a case that kills the interpreter is named in the failure."""
    code = textwrap.dedent("""
        import os, signal
        print("CASE {'X': 'the crashing input'}", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    """)
    result = run_python(code=code, timeout=60)
    assert result.returncode < 0
    assert "the crashing input" in result.stdout
