"""The C kernels under AddressSanitizer and UBSan: scripts/sanitize.sh must report nothing.

The script builds the kernels with FASTNET_SANITIZE=ON in a temporary folder
(never touching the working tree or the installed package) and runs forward,
gradient and train_epoch on random networks, the public API end to end, and
calls with wrong arguments, with gcc's libasan and libubsan preloaded.
Slow: a whole extra build of the kernels.
"""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

SCRIPT = REPO_ROOT / "scripts" / "sanitize.sh"


def test_native_kernels_are_clean_under_address_and_undefined_behaviour_sanitizers():
    env = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, (f"scripts/sanitize.sh failed (exit status {result.returncode})\n"
                                    f"{result.stdout[-5000:]}\n{result.stderr[-20000:]}")
    assert "no sanitizer reports" in result.stderr
