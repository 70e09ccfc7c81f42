"""The opt-in build: FASTNET_MARCH_NATIVE=ON has one variant, "native", and refuses any other.

The sources are built with ``-Ccmake.define.FASTNET_MARCH_NATIVE=ON`` into a
temporary folder (never the installed package), then imported from there in
fresh interpreters.  Slow: a whole extra build of the kernels.
"""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

CHECK = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
sys.path.insert(0, sys.argv[1])
from fastnet import _native
from fastnet.backends import native
assert _native.__file__.startswith(sys.argv[1]), _native.__file__
print(native.simd(), sorted(native.simd_variants().items()))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder holding fastnet with its kernels built for this machine only."""
    work = tmp_path_factory.mktemp("march-native")
    source = work / "src"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        "build", ".git", "__pycache__", "*.so", ".pytest_cache", "tests", "benchmarks"))
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                             "--disable-pip-version-check", "--target", str(work / "site"),
                             "-C", "cmake.define.FASTNET_MARCH_NATIVE=ON", "-C", f"build-dir={work / 'build'}",
                             str(source)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return str(work / "site")


def run_check(site, simd):
    env = dict(os.environ, FASTNET_SIMD=simd)
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-c", CHECK, site], capture_output=True, text=True, timeout=120,
                          env=env, cwd=site)


def test_the_march_native_build_runs_its_one_variant(site):
    for simd in ("", "native"):
        result = run_check(site, simd)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[0] == "native"
        assert "[('native', True)]" in result.stdout


@pytest.mark.parametrize("simd", ["baseline", "avx2", "avx512"])
def test_the_march_native_build_refuses_the_portable_variants(site, simd):
    result = run_check(site, simd)
    assert result.returncode != 0
    assert f"RuntimeError: FASTNET_SIMD={simd}: no such kernel variant in this build; expected one of: native" \
        in result.stderr
