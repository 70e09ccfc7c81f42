"""The C kernels' SIMD variants: every one this CPU runs against the reference, the report, the refusals.

The portable build compiles the kernels once per instruction-set variant
(baseline; on x86-64 also avx2 and avx512) and picks the best one the CPU
runs at import; ``FASTNET_SIMD`` forces one.  Each variant the machine runs
gets the whole of ``tests/backends/test_native_layers.py`` (every layer,
loss and dtype against the NumPy reference, 1e-12 in float64; thread counts
bit for bit) in a fresh interpreter with ``FASTNET_SIMD`` set.  Which
variants the CPU runs is read independently, from the flags of
``/proc/cpuinfo``.
"""

import platform
import re
from pathlib import Path

import pytest

from fastnet import _native
from fastnet.backends import native

from conftest import REPO_ROOT, run_python

#: The instructions each x86-64 variant needs, as /proc/cpuinfo spells them.
NEEDS = {"baseline": set(), "avx2": {"avx2", "fma"},
         "avx512": {"avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl"}}
LAYER_TESTS = REPO_ROOT / "tests" / "backends" / "test_native_layers.py"


def cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    match = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    return set(match.group(1).split()) if match else None


def runnable():
    """The variants compiled in that this CPU runs, as the module says."""
    return [name for name, runs in _native.simd_variants().items() if runs]


def import_with(variant):
    """Run a fresh interpreter with FASTNET_SIMD=variant that prints native.simd()."""
    return run_python(code="from fastnet.backends import native; print(native.simd())",
                      extra_env={"FASTNET_SIMD": variant})


def test_the_build_holds_the_variants_of_its_architecture():
    variants = _native.simd_variants()
    if "native" in variants:  # built with FASTNET_MARCH_NATIVE=ON: one variant, no dispatch
        assert variants == {"native": True}
    elif platform.machine().lower() in ("x86_64", "amd64"):
        assert list(variants) == ["baseline", "avx2", "avx512"]
    else:
        assert variants == {"baseline": True}


def test_the_variants_this_cpu_runs_are_those_its_flags_allow():
    flags = cpu_flags()
    assert flags is not None, "/proc/cpuinfo has no flags line"
    for name, runs in _native.simd_variants().items():
        assert runs == NEEDS.get(name, set()).issubset(flags), name  # "native" and "baseline" need nothing


def test_simd_reports_the_best_variant_the_cpu_runs_by_default():
    result = run_python(code="from fastnet.backends import native; print(native.simd())",
                        extra_env={"FASTNET_SIMD": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == runnable()[-1]
    assert native.simd() == _native.simd() and native.simd() in runnable()
    assert native.simd_variants() == _native.simd_variants()


@pytest.mark.parametrize("variant", runnable())
def test_a_forced_variant_is_the_one_that_runs(variant):
    result = import_with(variant)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == variant


@pytest.mark.parametrize("variant", runnable())
def test_every_variant_this_cpu_runs_matches_the_reference(variant):
    result = run_python("-m", "pytest", str(LAYER_TESTS), "-q", "-n", "0", "-p", "no:cacheprovider",
                        "--rootdir", str(REPO_ROOT), "-c", str(REPO_ROOT / "pyproject.toml"),
                        extra_env={"FASTNET_SIMD": variant}, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) > 100 and "failed" not in result.stdout, result.stdout[-2000:]


def test_an_unknown_variant_is_refused_at_import():
    result = import_with("sse9")
    assert result.returncode != 0
    assert "RuntimeError: FASTNET_SIMD=sse9: no such kernel variant in this build" in result.stderr
    assert ", ".join(_native.simd_variants()) in result.stderr  # the choices, named


def test_a_variant_the_cpu_lacks_is_refused_at_import():
    missing = [name for name, runs in _native.simd_variants().items() if not runs]
    flags = cpu_flags()
    if not missing:  # a CPU with everything: then its flags must say so
        assert flags is None or all(NEEDS.get(name, set()).issubset(flags) for name in _native.simd_variants())
    for name in missing:
        result = import_with(name)
        assert result.returncode != 0
        assert f"RuntimeError: FASTNET_SIMD={name}: the {name} kernels need" in result.stderr
        assert "which this CPU lacks; it runs: " + ", ".join(runnable()) in result.stderr
