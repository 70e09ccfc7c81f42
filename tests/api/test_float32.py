"""float32 networks: float32 end to end, and close to the float64 result."""

import warnings

import numpy as np
import pytest

from conftest import random_data
from fastnet import Network

LAYERS = [5, 7, 3]


def pair(backend, loss="mse", seed=4):
    """The same network in float64 and float32 (float32 weights are the rounded float64 ones)."""
    return (Network(LAYERS, backend=backend, loss=loss, seed=seed),
            Network(LAYERS, backend=backend, loss=loss, seed=seed, dtype="float32"))


@pytest.mark.parametrize("loss", ["sse", "mse", "bce"])
def test_float32_gradients_are_float32_and_close_to_float64(backend, loss):
    X, y = random_data(LAYERS, 3000)
    net64, net32 = pair(backend, loss)
    dW64, db64 = net64.gradients(X, y)
    dW32, db32 = net32.gradients(X, y)
    for got, want in zip(dW32 + db32, dW64 + db64):
        assert got.dtype == np.float32
        # float32 keeps 24 bits; sums over 3000 rows lose a few more.  1e-4 normwise.
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_float32_outputs_and_training_stay_float32(backend):
    X, y = random_data(LAYERS, 500)
    _, net = pair(backend)
    assert all(a.dtype == np.float32 for a in net.activations(X))
    assert net.forward(X).dtype == np.float32
    history = net.fit(X, y, epochs=3, batch_size=32, optimizer="adam", seed=0)
    assert all(w.dtype == np.float32 for w in net.weights + net.biases)
    assert history.loss[-1] < history.loss[0]


def test_float32_training_tracks_float64(backend):
    X, y = random_data(LAYERS, 2000)
    net64, net32 = pair(backend)
    net64.fit(X, y, epochs=3, batch_size=50, lr=0.5, seed=1)
    net32.fit(X, y, epochs=3, batch_size=50, lr=0.5, seed=1)
    for got, want in zip(net32.weights, net64.weights):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_float32_sigmoid_saturates_quietly(backend):
    net = Network([1, 1], backend=backend, weights=[np.ones((1, 1))], biases=[np.zeros(1)], dtype="float32")
    z = np.array([[-1e30], [-1000.0], [-90.0], [0.0], [90.0], [1000.0], [1e30]])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        a = net.forward(z).ravel()
    assert np.isfinite(a).all() and (a >= 0).all() and (a <= 1).all()
    assert a[3] == np.float32(0.5) and (a[4:] == 1).all() and (a[:3] < 1e-30).all()


def test_float32_save_load_round_trip(backend, tmp_path):
    X, _ = random_data(LAYERS, 10)
    _, net = pair(backend)
    net.save(tmp_path / "net.npz")
    loaded = Network.load(tmp_path / "net.npz")
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))


@pytest.mark.parametrize("dtype, error", [("float16", ValueError), ("int64", ValueError), (complex, ValueError),
                                          ("nonsense", TypeError), (object, ValueError)])
def test_other_dtypes_are_rejected(backend, dtype, error):
    with pytest.raises(error, match="dtype"):
        Network(LAYERS, backend=backend, dtype=dtype)
