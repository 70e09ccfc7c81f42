"""fastnet: fast, exact sigmoid neural networks on the CPU.

``Network(layers, backend="numba")`` is the whole public surface; the
backends ("numpy", "numba", "native") load on first use, so importing
fastnet compiles nothing.
"""

from fastnet.network import History, Network

__version__ = "0.1.0"
__all__ = ["Network", "History", "__version__"]
