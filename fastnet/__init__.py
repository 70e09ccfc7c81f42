"""fastnet: fast, exact sigmoid neural networks on the CPU.

``Network(layers, backend="numba")`` is the whole public surface; the
backends ("numpy", "numba", "native") load on first use, so importing
fastnet compiles nothing.
"""

from fastnet.network import Network
from fastnet.training import DivergenceError, History

__version__ = "0.1.0"
__all__ = ["Network", "History", "DivergenceError", "set_num_threads", "get_num_threads", "__version__"]


def set_num_threads(n):
    """Use up to ``n`` threads in the numba and native kernels.

    Results are bitwise identical whatever ``n`` is; only speed changes.
    ``n`` may not exceed the number of cores Numba saw at start-up.
    """
    from fastnet import _validation as check
    from fastnet.backends import native
    import numba

    n = check.count(n, "n", minimum=1)
    if n > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"n must be at most {numba.config.NUMBA_NUM_THREADS} (the cores available); got {n}")
    numba.set_num_threads(n)
    native.set_num_threads(n)


def get_num_threads():
    """The number of threads the kernels may use (see ``set_num_threads``)."""
    import numba

    return numba.get_num_threads()
