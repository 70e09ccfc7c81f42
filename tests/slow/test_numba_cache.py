"""Numba kernels compiled in the process and the same kernels loaded from Numba's on-disk cache agree.

Slow: each run is a fresh interpreter with a private, initially empty
NUMBA_CACHE_DIR, so the first one compiles every kernel it uses.
"""

import textwrap

import pytest

from fastnet import Network

from conftest import TESTS_DIR, assert_parameters_equal, parameters_copy, run_python

pytestmark = pytest.mark.slow


def test_freshly_compiled_and_cache_loaded_numba_kernels_train_identically(tmp_path):
    """A first run (kernels compiled in the process), a second (kernels loaded from the
    on-disk cache) and one that compiles the gradient kernel before the training one
    give the same network bit for bit, in float64 and float32.

    Regression: with LLVM's ``contract`` flag a kernel compiled in the process and
    the same kernel from the cache rounded differently (fastnet._config.FASTMATH).
    """
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        sys.path.insert(0, {TESTS_DIR!r})
        from fastnet import Network
        from conftest import seeded_training, random_data, DET_LAYERS
        if sys.argv[2] == "gradient first":
            X, y = random_data(DET_LAYERS, 100, seed=1)
            Network(DET_LAYERS, backend="numba", seed=1).gradients(X, y)
        seeded_training("numba")[0].save(sys.argv[1] + "-float64.npz")
        X, y = random_data(DET_LAYERS, 3_000, seed=4)
        net = Network(DET_LAYERS, backend="numba", seed=7, dtype="float32", loss="bce")
        net.fit(X, y, epochs=2, batch_size=16, optimizer="adam", lr=0.01)
        net.save(sys.argv[1] + "-float32.npz")
    """)
    private_cache = {"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    runs = ["compiled", "from cache", "gradient first"]
    for run in runs:
        result = run_python("-c", code, str(tmp_path / run), run, timeout=900, extra_env=private_cache)
        assert result.returncode == 0, result.stdout + result.stderr
    for dtype in ("float64", "float32"):
        first = Network.load(tmp_path / f"compiled-{dtype}.npz")
        for run in runs[1:]:
            assert_parameters_equal(Network.load(tmp_path / f"{run}-{dtype}.npz"), parameters_copy(first))
