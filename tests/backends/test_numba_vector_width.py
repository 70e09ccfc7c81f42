"""The kernels' plain loops vectorise at the CPU's full vector width (``_full_width_loops``):
on Intel's AVX-512 CPUs LLVM's own tuning would give them 32-byte vectors."""

import re

import numpy as np
import pytest

from fastnet.backends import numba_kernels as kernels

from numba_ir import fresh_llvm

#: (kind, kernel): tile kernels whose loops LLVM vectorises itself (no explicit vectors).
PLAIN_LOOP_KERNELS = [(kernels._CALL_ACTIVATION, kernels._sigmoid_tile),
                      (kernels._CALL_SLOPE, kernels._sigmoid_article_slope),
                      (kernels._CALL_SLOPE, kernels._tanh_slope)]


def _widest_vector_bytes(code, dtype):
    """Bytes in the widest vector of ``dtype`` items that the IR computes with."""
    name = "double" if dtype == np.float64 else "float"
    lanes = [int(found) for found in re.findall(rf"<(\d+) x {name}>", code)]
    assert lanes, f"no {name} vectors in the code"
    return max(lanes) * np.dtype(dtype).itemsize


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind, kernel", PLAIN_LOOP_KERNELS, ids=lambda value: getattr(value, "__name__", str(value)))
def test_plain_loops_use_the_whole_vector_register(kind, kernel, dtype):
    """The attribute is set exactly on CPUs with 64-byte vectors, and the loops then use
    them; elsewhere the loops use the CPU's 32- or 16-byte vectors as before."""
    code = fresh_llvm(kernel, kind, dtype)
    marked = '"prefer-vector-width"="512"' in code
    assert marked == (kernels.VECTOR_BYTES == 64)
    assert _widest_vector_bytes(code, dtype) == kernels.VECTOR_BYTES


def test_without_the_attribute_llvm_keeps_its_own_choice(monkeypatch):
    """With the attribute withheld, LLVM picks the width by its own tuning for the host CPU:
    32 bytes on Intel's AVX-512 server CPUs (which is why the attribute is there), the
    whole register on AMD's Zen 4 and on CPUs without AVX-512. Either way never wider than
    the register, and never narrower than 32 bytes where the CPU has AVX."""
    monkeypatch.setattr(kernels, "_FULL_WIDTH_ATTRIBUTE", None)
    code = fresh_llvm(kernels._sigmoid_tile, kernels._CALL_ACTIVATION, np.float64)
    assert "prefer-vector-width" not in code
    assert _widest_vector_bytes(code, np.float64) in {min(kernels.VECTOR_BYTES, 32), kernels.VECTOR_BYTES}
