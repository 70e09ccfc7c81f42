"""fastnet: fast, exact sigmoid neural networks on the CPU.

``Network(layers, backend="numba")`` is the whole public surface; the
backends ("numpy", "numba", "native") load on first use, so importing
fastnet compiles nothing.  ``NetworkClassifier`` and ``NetworkRegressor``
(scikit-learn estimators, ``fastnet.estimators``) load on first use too,
so importing fastnet never imports scikit-learn.
"""

from importlib.metadata import PackageNotFoundError, version

from fastnet.backends import BACKENDS as _BACKEND_MODULES
from fastnet.network import Network
from fastnet.training import DivergenceError, History

#: The backend names ``Network(backend=...)`` takes; the first is the NumPy reference.
BACKENDS = tuple(_BACKEND_MODULES)

try:  # the version lives in pyproject.toml only
    __version__ = version("fastnet-kernels")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Network", "History", "DivergenceError", "BACKENDS", "set_num_threads", "get_num_threads",
           "__version__"]


#: Names served by ``__getattr__`` from ``fastnet.estimators`` on first use.
_ESTIMATORS = ("NetworkClassifier", "NetworkRegressor")


def __getattr__(name):
    """``fastnet.NetworkClassifier`` / ``NetworkRegressor``: imports scikit-learn only when asked
    (an ImportError naming the ``sklearn`` extra without it)."""
    if name in _ESTIMATORS:
        from fastnet import estimators
        return getattr(estimators, name)
    raise AttributeError(f"module 'fastnet' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_ESTIMATORS))


def set_num_threads(n: int) -> None:
    """Use up to ``n`` threads in the numba and native kernels.

    Results are bitwise identical whatever ``n`` is; only speed changes.
    ``n`` may not exceed the number of cores Numba saw at start-up.  The
    native kernels' count is process-wide; Numba's applies to the calling
    thread (threads started later use ``NUMBA_NUM_THREADS``, all cores by
    default), so set it in the thread that trains, or set that variable.
    """
    from fastnet import _validation as check
    from fastnet.backends import native
    import numba

    n = check.count(n, "n", minimum=1)
    if n > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"n must be at most {numba.config.NUMBA_NUM_THREADS} (the cores available); got {n}")
    numba.set_num_threads(n)
    native.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the kernels may use (see ``set_num_threads``)."""
    import numba

    return numba.get_num_threads()
