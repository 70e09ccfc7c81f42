"""Shared fixtures and helpers for the fastnet test suite (the oracles are in naive.py).

Every backend test is parametrised over all three backends.  A backend that
cannot be imported (e.g. a missing ``fastnet._native``) makes its tests FAIL:
nothing here skips or xfails a backend.

Layout: naive.py (the oracles, independent of fastnet), then
    unit/       self-checks of the oracles (no backend)
    backends/   the backends against the reference, fastnet._native called directly
    api/        Network's public API on every backend: the article, gradients, losses,
                training, float32, data on disk, save/load, validation, safety, quick fuzzing
    slow/       whole modules marked slow (sanitizers, the full fuzz run, one
                interpreter per bad native call, compiled-vs-cached Numba kernels)
fuzzing.py and native_calls.py hold what a fast and a slow module share.
The tiers are markers: ``pytest`` runs ``-m 'not slow'`` (pyproject.toml's
addopts), ``pytest -m slow`` the rest; a slow case of a fast test (e.g. the
NumPy reference on 50,000 rows) is marked where it is.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnet
from fastnet import Network

import naive

@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """Run the tests in parallel processes (pytest-xdist) unless ``-n``/``--numprocesses`` is given.

    Numba compiles each kernel on one core of each process, so on two cores a
    first run (an empty Numba cache) takes 155-250 s instead of about 290 s
    (xdist's default distribution: neighbouring tests, which tend to need
    different kernels, go to different processes).  Turned on here
    rather than in pyproject.toml's addopts so that ``pytest benchmarks/``,
    which does not read this file, keeps pytest-benchmark (off under xdist).
    ``-n 0`` runs everything in one process.
    """
    if (not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput")
            or config.getoption("numprocesses", None) is not None):
        return
    config.option.numprocesses = "auto"
    config.option.maxprocesses = config.option.maxprocesses or 4
    if config.option.dist == "no":
        # Tests marked xdist_group share a process (the Dask tests: one cluster, not one per process).
        config.option.dist = "loadgroup"


#: Every backend; the first is the plain NumPy reference (the oracle).
BACKENDS = ["numpy", "numba", "native"]
REFERENCE = "numpy"
#: The fast backends, each compared against the reference.
FAST_BACKENDS = [name for name in BACKENDS if name != REFERENCE]

DERIVATIVES = ["exact", "article"]
LOSSES = ["sse", "mse"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each backend name in turn."""
    return request.param


def weight_shapes(layers):
    """``[(fan_in, fan_out), ...]`` for the layer widths."""
    return list(zip(layers[:-1], layers[1:]))


def random_parameters(layers, *, seed=0, bias=True, scale=1.0):
    """Weights ~ N(0, scale^2 / fan_in) and biases ~ N(0, (scale/2)^2), from one seeded Generator."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0.0, scale / np.sqrt(fan_in), (fan_in, fan_out))
               for fan_in, fan_out in weight_shapes(layers)]
    biases = [rng.normal(0.0, scale / 2, fan_out) for _, fan_out in weight_shapes(layers)] if bias else None
    return weights, biases


def random_network(layers, backend, *, seed=0, bias=True, derivative="exact", loss="mse", scale=1.0,
                   activation="sigmoid", output=None):
    """A Network with seeded random weights (and biases)."""
    weights, biases = random_parameters(layers, seed=seed, bias=bias, scale=scale)
    return Network(layers, backend=backend, activation=activation, output=output, derivative=derivative,
                   loss=loss, bias=bias, weights=weights, biases=biases)


def random_data(layers, n, *, seed=1):
    """X uniform in [-1, 1] with layers[0] columns; y uniform in [0, 1] with layers[-1] columns."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (n, layers[0])), rng.uniform(0.0, 1.0, (n, layers[-1]))


def targets_for(output, loss, n, width, seed):
    """Seeded targets an output layer can be trained on: probability rows (Dirichlet) after a
    softmax, N(0, 3^2) after a linear output (mostly outside [0, 1]), uniform in [0, 1] after a sigmoid."""
    rng = np.random.default_rng(seed)
    if output == "softmax":
        return rng.dirichlet(np.ones(width), n)
    if output == "linear":
        return rng.normal(0.0, 3.0, (n, width))
    return rng.uniform(0.0, 1.0, (n, width))


def parameters_copy(net):
    """Independent copies of a network's weights and biases (biases None without bias)."""
    weights = [np.array(w, copy=True) for w in net.weights]
    biases = None if net.biases is None else [np.array(b, copy=True) for b in net.biases]
    return weights, biases


def assert_parameters_equal(net, expected):
    """The network's weights and biases equal ``expected`` (from ``parameters_copy``) bit for bit."""
    weights, biases = expected
    assert len(net.weights) == len(weights)
    for actual, wanted in zip(net.weights, weights):
        np.testing.assert_array_equal(actual, wanted)
    if biases is None:
        assert net.biases is None
    else:
        for actual, wanted in zip(net.biases, biases):
            np.testing.assert_array_equal(actual, wanted)


def same_network(net, weights, biases):
    """A new Network like ``net`` (layers, backend, activation, output, derivative, loss, bias) with these parameters."""
    return Network(net.layers, backend=net.backend, activation=net.activation, output=net.output,
                   derivative=net.derivative, loss=net.loss, bias=biases is not None, weights=weights,
                   biases=biases)


def finite_difference_gradient(net, X, y, h=1e-6, sample_weight=None):
    """Central differences (naive.central_differences) of ``net.evaluate(X, y)`` in every weight and bias: ``(dW, db)``.

    Each probe builds a fresh Network with one parameter moved by +-h, so the
    result depends only on the public constructor and ``evaluate``.
    """
    weights, biases = parameters_copy(net)
    n_weights = len(weights)

    def probe(params):
        return same_network(net, params[:n_weights], None if biases is None else params[n_weights:]).evaluate(
            X, y, sample_weight=sample_weight)

    grads = naive.central_differences(probe, weights + (biases or []), h=h)
    return grads[:n_weights], (None if biases is None else grads[n_weights:])


#: The network of seeded_training, the determinism tests' run (tests/api/test_safety.py and
#: tests/slow/test_numba_cache.py; also imported by their child interpreters).
DET_LAYERS = [6, 8, 3]


def seeded_training(backend, optimizer="adam"):
    """Seeded initialisation, then shuffled mini-batch training from the network's own generator.

    20,000 rows in batches of 10,000: each batch spans two parallel blocks.
    """
    X, y = random_data(DET_LAYERS, 20_000, seed=12)
    net = Network(DET_LAYERS, backend=backend, seed=2024)
    history = net.fit(X, y, epochs=2, batch_size=10_000, optimizer=optimizer, lr=0.01)
    net.partial_fit(X, y, batch_size=7_000, optimizer=optimizer, lr=0.01)
    net.fit(X[:500], y[:500], epochs=2, batch_size=16, optimizer="momentum")
    return net, history, net.gradients(X, y)


def assert_close_normwise(actual, expected, rtol=1e-12):
    """allclose with an absolute floor of ``rtol * max|expected|`` (tiny entries come from cancellation)."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


#: This folder (conftest.py, naive.py), for subprocesses that import the tests' modules.
TESTS_DIR = str(Path(__file__).resolve().parent)
#: The repository's root (kernels/, scripts/), for tests that read its files.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: The folder holding the imported fastnet package, for subprocesses.
PACKAGE_ROOT = str(Path(fastnet.__file__).resolve().parent.parent)


def run_python(*args, code=None, timeout=300, extra_env=None):
    """Run ``python -c code`` or ``python args...`` in a fresh interpreter that imports this fastnet.

    ``extra_env``: environment variables to set for that interpreter only.
    """
    env = dict(os.environ, **(extra_env or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    command = [sys.executable] + (["-c", code] if code is not None else list(args))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          cwd=PACKAGE_ROOT, env=env)
