"""Any input to any public method gives the reference's answer or a clean error, on many examples.

The slow tier's run of the property in tests/fuzzing.py: MAX_EXAMPLES drawn
cases per backend and method (tests/api/test_fuzz.py runs a few in the fast
tier).  FASTNET_FUZZ_SEED=random explores new cases.
"""

import pytest

from fuzzing import MAX_EXAMPLES, METHODS, check_property

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", METHODS)
def test_any_input_gives_the_reference_result_or_a_clean_error(backend, method):
    check_property(backend, method, MAX_EXAMPLES)
