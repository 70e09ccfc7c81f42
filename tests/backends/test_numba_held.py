"""exp's constants held from LLVM (``_held``): the value comes back bit for bit, and the
loops that evaluate exp's series still vectorise with the held constants in them."""

import re

import numba
import numpy as np
import pytest

from fastnet.backends import numba_kernels as kernels

from numba_ir import fresh_llvm

#: Values whose bits a copy could get wrong: signed zeros, the extremes, a subnormal, NaN.
SPECIAL = [0.0, -0.0, 1.0, -2.5, 1e-310, np.finfo(np.float64).max, np.inf, -np.inf, np.nan]


@numba.njit
def _held_copy(values, out):
    """out[i] = _held(values[i])."""
    for i in range(values.shape[0]):
        out[i] = kernels._held(values[i])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_held_value_is_the_value_bit_for_bit(dtype):
    """The empty statement hands back its register: every bit pattern survives, NaN included."""
    with np.errstate(over="ignore"):
        values = np.array(SPECIAL, dtype)
    out = np.empty_like(values)
    _held_copy(values, out)
    np.testing.assert_array_equal(out.view(f"u{values.itemsize}"), values.view(f"u{values.itemsize}"))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_without_an_asm_constraint_for_the_cpu_a_held_value_is_passed_through(dtype, monkeypatch):
    """Where no constraint is known (neither x86-64 nor aarch64) ``_held`` emits no statement
    and hands the value on as it is: the same bits."""
    monkeypatch.setattr(kernels, "_HELD_CONSTRAINT", None)
    passed_through = numba.njit(cache=False)(_held_copy.py_func)  # compiled now, with the constraint gone
    with np.errstate(over="ignore"):
        values = np.array(SPECIAL, dtype)
    out = np.empty_like(values)
    passed_through(values, out)
    assert "asm" not in passed_through.inspect_llvm(passed_through.signatures[0])
    np.testing.assert_array_equal(out.view(f"u{values.itemsize}"), values.view(f"u{values.itemsize}"))


#: The tile kernels whose loops evaluate exp's series (kind, kernel).
SERIES_KERNELS = [(kernels._CALL_ACTIVATION, kernels._sigmoid_tile), (kernels._CALL_ACTIVATION, kernels._tanh_tile),
                  (kernels._CALL_ACTIVATION, kernels._softmax_tile),
                  (kernels._CALL_SLOPE, kernels._sigmoid_article_slope)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind, kernel", SERIES_KERNELS, ids=lambda value: getattr(value, "__name__", str(value)))
def test_loops_with_held_constants_still_vectorise(kind, kernel, dtype):
    """Held constants are loop-invariant statements that touch no memory, so LLVM hoists
    them out of the loops: were one left inside, the loop could not vectorise, and the
    optimised code would hold no vector fused multiply-add.  The statements are there."""
    code = fresh_llvm(kernel, kind, dtype)
    bits = 64 if dtype == np.float64 else 32
    assert re.search(rf"@llvm\.fma\.v\d+f{bits}\(", code), f"{kernel.__name__} ({dtype.__name__}) did not vectorise"
    assert 'asm "", "=x,0"' in code


def test_kernels_compile_their_held_constants_for_the_precision_they_run_in():
    """A float32 kernel holds float32 constants (no float64 held value promotes its loop)."""
    code = fresh_llvm(kernels._sigmoid_tile, kernels._CALL_ACTIVATION, np.float32)
    held = re.findall(r'call (\w+) asm "", "=x,0"', code)
    assert held and set(held) == {"float"}
