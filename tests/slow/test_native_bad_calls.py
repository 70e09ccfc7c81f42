"""fastnet._native refuses wrong arguments without crashing: each bad call in an interpreter of its own.

Slow (one child interpreter per call of tests/native_calls.py's BAD_CALLS);
tests/backends/test_native_module.py makes the same checks with every call
in one interpreter.
"""

import re
import textwrap

import pytest

from conftest import run_python
from native_calls import BAD_CALLS, MIXED, PRELUDE

pytestmark = pytest.mark.slow


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
