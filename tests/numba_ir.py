"""The optimised LLVM IR of a Numba kernel, for the tests that read what LLVM made of it."""

import numba
import numpy as np

from fastnet.backends import numba_kernels as kernels


def fresh_llvm(kernel, kind, dtype):
    """The optimised LLVM IR of ``kernel`` compiled now for its call signature in ``dtype``,
    with its own options but without the disk cache (whose code cannot be inspected)."""
    options = {key: value for key, value in kernel.targetoptions.items() if key != "nopython"}
    fresh = numba.njit(**options)(kernel.py_func)
    signature = kernels._signature(kind, numba.from_dtype(np.dtype(dtype)))[1]
    fresh.compile(signature)
    return fresh.inspect_llvm(signature)
