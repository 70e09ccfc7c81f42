"""The Numba kernels run as plain Python with NUMBA_DISABLE_JIT=1 (how their code's coverage is
measured) and still reproduce the article and the finite differences."""

import pytest

from conftest import TESTS_DIR, run_python

pytestmark = pytest.mark.slow


def test_numba_backed_tests_pass_with_the_jit_disabled():
    result = run_python("-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-k", "numba",
                        f"{TESTS_DIR}/api/test_article.py", f"{TESTS_DIR}/api/test_gradients.py",
                        extra_env={"NUMBA_DISABLE_JIT": "1"}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
