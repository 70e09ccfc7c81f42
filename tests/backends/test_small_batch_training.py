"""Mini-batch training of softmax classifiers on small batches (scikit-learn's digits shape):
the fast backends' epochs against the NumPy reference, in float64 and float32.

The shapes and batch sizes are picked to run every branch of the tile kernels
a small-batch step uses: inputs taken into the tile eight at a time with and
without a remainder, output layers whose width is not a multiple of four next
to at least 16 inputs (register blocks for the first rows, plain loops for the
rest), tiles whose length leaves a tail of two vectors of rows (float64 at 200
rows, float32 at 40) or one, and partial last batches.  The widest inputs (300,
a last batch of two rows) gather rows of more than a kilobyte.
"""

import numpy as np
import pytest

from fastnet import Network

from conftest import FAST_BACKENDS, REFERENCE, assert_close_normwise, random_parameters

#: (layers, batch size, rows): the last batch of each epoch is partial.
SHAPES = [([64, 100, 10], 200, 617), ([13, 20, 6], 43, 146), ([21, 36, 10], 40, 157), ([300, 20, 10], 64, 130)]


def classifier(layers, backend, dtype="float64"):
    """A sigmoid network with a softmax output and cross-entropy, with seeded random parameters."""
    weights, biases = random_parameters(layers, seed=sum(layers))
    return Network(layers, backend=backend, activation="sigmoid", output="softmax", loss="cross_entropy",
                   weights=weights, biases=biases, dtype=dtype)


def one_hot_data(layers, n):
    """X standard normal (n, layers[0]); one-hot targets of random classes (n, layers[-1])."""
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, layers[0]))
    return X, np.eye(layers[-1])[rng.integers(0, layers[-1], n)]


def train(net, X, Y, batch_size, epochs):
    """``epochs`` shuffled epochs of Adam with an L2 penalty; the History's per-epoch losses."""
    history = net.fit(X, Y, epochs=epochs, lr=1e-2, batch_size=batch_size, optimizer="adam", alpha=1e-4, seed=7)
    return np.asarray(history.loss)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("layers, batch_size, n", SHAPES, ids=lambda value: str(value))
def test_small_batch_adam_epochs_agree_with_reference(backend, layers, batch_size, n):
    """Three epochs: every loss and every parameter within 1e-12 of the reference's."""
    X, Y = one_hot_data(layers, n)
    reference, net = classifier(layers, REFERENCE), classifier(layers, backend)
    expected_losses, losses = train(reference, X, Y, batch_size, 3), train(net, X, Y, batch_size, 3)
    assert losses.shape == (3,)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-12)
    for actual, expected in zip(net.weights + net.biases, reference.weights + reference.biases):
        assert_close_normwise(actual, expected)
    # Training moved the parameters: the comparison is not of two untouched copies.
    assert not np.allclose(net.weights[0], classifier(layers, REFERENCE).weights[0])


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("layers, batch_size, n", SHAPES, ids=lambda value: str(value))
def test_small_batch_adam_epoch_in_float32_follows_reference(backend, layers, batch_size, n):
    """One float32 epoch: float32 parameters within float32 rounding of the float64 reference's."""
    X, Y = one_hot_data(layers, n)
    reference, net = classifier(layers, REFERENCE), classifier(layers, backend, "float32")
    expected_loss = train(reference, X, Y, batch_size, 1)
    loss = train(net, X.astype(np.float32), Y.astype(np.float32), batch_size, 1)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-4)
    for actual, expected in zip(net.weights + net.biases, reference.weights + reference.biases):
        assert actual.dtype == np.float32
        assert_close_normwise(actual, expected, rtol=1e-4)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_sigmoid_layer_over_a_wide_range_agrees_with_reference(backend):
    """203 rows of pre-activations from -800 to 800 (saturated at both ends, a tile that is not
    a whole number of vectors): the sigmoid layer's outputs match the reference's."""
    layers = [1, 3, 2]
    weights = [np.array([[1.0, -1.0, 0.25]]), np.ones((3, 2))]
    biases = [np.zeros(3), np.zeros(2)]
    X = np.linspace(-800.0, 800.0, 203)[:, None]
    nets = [Network(layers, backend=name, weights=weights, biases=biases) for name in (REFERENCE, backend)]
    expected, actual = (net.activations(X)[0] for net in nets)
    assert actual.shape == (203, 3)
    assert actual[0, 0] == 0.0 or actual[0, 0] < 1e-300
    assert actual[-1, 0] == 1.0
    assert_close_normwise(actual, expected, rtol=1e-13)
