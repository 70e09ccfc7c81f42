"""pytest-benchmark suite: full-batch gradients and training epochs per backend.

    pytest benchmarks/ --benchmark-group-by=param:case

Not part of the default test run.  Every benchmark calls its function once
before timing, so Numba's compilation never lands in a timed round.
For ratios measured side by side, see ``benchmarks/compare.py``.
"""

import numpy as np
import pytest

from fastnet import Network

BACKENDS = ["numpy", "numba", "native"]

#: case name -> (layers, rows, bias, derivative, loss)
GRADIENT_CASES = {
    "article-10k": ([4, 1, 1], 10_000, False, "article", "sse"),
    "article-1M": ([4, 1, 1], 1_000_000, False, "article", "sse"),
    "64x128x1-100k": ([64, 128, 1], 100_000, True, "exact", "mse"),
}


def _data(layers, rows, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((rows, layers[0])), rng.random((rows, layers[-1]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(GRADIENT_CASES))
def test_full_batch_gradient(benchmark, backend, case):
    layers, rows, bias, derivative, loss = GRADIENT_CASES[case]
    X, y = _data(layers, rows)
    net = Network(layers, backend=backend, bias=bias, derivative=derivative, loss=loss, seed=0)
    expected = Network(layers, backend="numpy", bias=bias, derivative=derivative, loss=loss, seed=0).gradients(X, y)
    dW, _ = benchmark.pedantic(net.gradients, args=(X, y), rounds=5, warmup_rounds=1)
    np.testing.assert_allclose(dW[0], expected[0][0], rtol=1e-9, atol=1e-12 * np.abs(expected[0][0]).max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_minibatch_epoch(benchmark, backend):
    X, y = _data([4, 8, 1], 100_000)
    net = Network([4, 8, 1], backend=backend, seed=0)
    history = benchmark.pedantic(net.fit, args=(X, y), kwargs={"batch_size": 32, "lr": 0.1, "seed": 0},
                                 rounds=3, warmup_rounds=1)
    assert np.isfinite(history.loss[0])
