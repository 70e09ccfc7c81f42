"""Gradients against independent oracles, and what step() and fit() do with them."""

import numpy as np
import pytest

from fastnet import History

import naive
from conftest import (LOSSES, finite_difference_gradient, parameters_copy, random_data,
                      random_network, same_network)

SHAPES = [[3, 1], [4, 5, 2], [2, 6, 4, 3], [5, 3, 3, 3, 1]]


def assert_gradient_close(actual, expected, rtol=1e-6):
    """Entrywise rtol, with an absolute floor relative to the largest entry (FD noise ~1e-10)."""
    scale = max(float(np.abs(e).max()) for e in expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=rtol, atol=max(rtol * scale, 1e-10))


# -- exact derivative: central finite differences of net.evaluate ----------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("layers", SHAPES, ids=str)
def test_exact_gradient_matches_finite_differences(backend, layers, bias, loss):
    net = random_network(layers, backend, seed=11, bias=bias, derivative="exact", loss=loss)
    X, y = random_data(layers, 7, seed=12)
    dW, db = net.gradients(X, y)
    fd_W, fd_b = finite_difference_gradient(net, X, y)
    assert_gradient_close(dW, fd_W)
    if bias:
        assert_gradient_close(db, fd_b)
    else:
        assert db is None


def test_gradients_are_shaped_like_the_parameters(backend):
    layers = [4, 5, 2]
    net = random_network(layers, backend, bias=True)
    X, y = random_data(layers, 3)
    dW, db = net.gradients(X, y)
    assert [g.shape for g in dW] == [(4, 5), (5, 2)]
    assert [g.shape for g in db] == [(5,), (2,)]
    assert all(g.dtype == np.float64 for g in dW + db)


def test_gradients_do_not_change_the_parameters(backend):
    layers = [4, 5, 2]
    net = random_network(layers, backend, bias=True)
    X, y = random_data(layers, 9)
    before = parameters_copy(net)
    net.gradients(X, y)
    for a, b in zip(net.weights + net.biases, before[0] + before[1]):
        np.testing.assert_array_equal(a, b)


def test_returned_gradients_are_not_overwritten_by_the_next_call(backend):
    layers = [3, 4, 2]
    net = random_network(layers, backend, bias=True)
    X, y = random_data(layers, 5, seed=1)
    X2, y2 = random_data(layers, 5, seed=2)
    first, _ = net.gradients(X, y)
    kept = [g.copy() for g in first]
    net.gradients(X2, y2)
    for g, k in zip(first, kept):
        np.testing.assert_array_equal(g, k)


def test_mse_gradient_is_sse_gradient_over_the_element_count(backend):
    layers = [3, 4, 2]
    X, y = random_data(layers, 6)
    sse = random_network(layers, backend, loss="sse").gradients(X, y)[0]
    mse = random_network(layers, backend, loss="mse").gradients(X, y)[0]
    for s, m in zip(sse, mse):
        np.testing.assert_allclose(m, s / (6 * 2), rtol=1e-13, atol=1e-17)


# -- article derivative: the ARTICLE.md formulas by hand -----------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("layers", [[4, 1, 1], [3, 5, 2]], ids=str)
def test_article_gradient_matches_the_article_formula(backend, layers, bias, loss):
    net = random_network(layers, backend, seed=5, bias=bias, derivative="article", loss=loss)
    X, y = random_data(layers, 8, seed=6)
    (W1, W2), biases = parameters_copy(net)
    b1, b2 = biases if bias else (None, None)
    expected_W, expected_b = naive.article_formula_gradient(X, y, W1, W2, b1, b2, loss)
    dW, db = net.gradients(X, y)
    assert_gradient_close(dW, expected_W, rtol=1e-12)
    if bias:
        assert_gradient_close(db, expected_b, rtol=1e-12)
    else:
        assert db is None


def test_article_gradient_is_not_the_true_gradient(backend):
    layers = [3, 5, 2]
    net = random_network(layers, backend, derivative="article", loss="sse")
    X, y = random_data(layers, 8)
    fd_W, _ = finite_difference_gradient(net, X, y)
    dW, _ = net.gradients(X, y)
    assert max(np.abs(a - e).max() for a, e in zip(dW, fd_W)) > 1e-4


# -- step ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.1, 1.0, 3.5])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_step_moves_parameters_by_minus_lr_times_gradient(backend, bias, lr):
    layers = [4, 6, 3]
    net = random_network(layers, backend, seed=2, bias=bias)
    X, y = random_data(layers, 10, seed=3)
    weights, biases = parameters_copy(net)
    dW, db = net.gradients(X, y)
    loss_before = net.evaluate(X, y)

    returned = net.step(X, y, lr=lr)

    assert returned == pytest.approx(loss_before, rel=1e-14)
    for new, old, grad in zip(net.weights, weights, dW):
        np.testing.assert_allclose(new, old - lr * grad, rtol=1e-15, atol=1e-16)
    if bias:
        for new, old, grad in zip(net.biases, biases, db):
            np.testing.assert_allclose(new, old - lr * grad, rtol=1e-15, atol=1e-16)


def test_step_returns_the_loss_before_the_step(backend):
    layers = [3, 4, 1]
    net = random_network(layers, backend, loss="sse")
    X, y = random_data(layers, 12)
    expected = naive.loss_from_output(net.forward(X), y, "sse")   # SSE by hand from the forward pass
    returned = net.step(X, y, lr=1.0)
    assert isinstance(returned, float)
    assert returned == pytest.approx(expected, rel=1e-13)
    assert net.evaluate(X, y) != pytest.approx(expected, rel=1e-13)


def test_loss_is_sse_or_mse_of_the_forward_pass(backend):
    layers = [3, 4, 2]
    X, y = random_data(layers, 12)
    for loss, divisor in [("sse", 1), ("mse", 12 * 2)]:
        net = random_network(layers, backend, loss=loss)
        assert net.loss == loss
        value = net.evaluate(X, y)
        assert isinstance(value, float)
        assert value == pytest.approx(np.sum((net.forward(X) - y) ** 2) / divisor, rel=1e-13)


# -- fit ----------------------------------------------------------------------------------


def learnable_problem(n=40, seed=0):
    """y = 0.9 where x0 + x1 > 0, else 0.1: linearly separable, reachable by a sigmoid."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, 2))
    y = np.where(X.sum(axis=1, keepdims=True) > 0, 0.9, 0.1)
    return X, y


@pytest.mark.parametrize("derivative", ["exact", "article"])
def test_fit_loss_decreases_on_a_learnable_problem(backend, derivative):
    X, y = learnable_problem()
    net = random_network([2, 3, 1], backend, seed=4, derivative=derivative, loss="mse")
    history = net.fit(X, y, epochs=300, lr=2.0)
    assert isinstance(history, History)
    assert len(history.loss) == 300
    losses = np.array(history.loss)
    assert np.all(np.diff(losses) < 0), "loss went up during full-batch descent with a small step"
    assert losses[-1] < 0.5 * losses[0]
    assert net.evaluate(X, y) < losses[-1]


def test_fit_history_starts_with_the_initial_loss(backend):
    X, y = learnable_problem()
    net = random_network([2, 3, 1], backend, seed=4)
    initial = net.evaluate(X, y)
    history = net.fit(X, y, epochs=3, lr=1.0)
    assert history.loss[0] == pytest.approx(initial, rel=1e-14)


def test_fit_equals_repeated_steps(backend):
    X, y = learnable_problem()
    fitted = random_network([2, 3, 1], backend, seed=8, bias=True)
    stepped = same_network(fitted, *parameters_copy(fitted))
    history = fitted.fit(X, y, epochs=5, lr=0.7)
    losses = [stepped.step(X, y, lr=0.7) for _ in range(5)]
    np.testing.assert_allclose(history.loss, losses, rtol=1e-14)
    for a, b in zip(fitted.weights + fitted.biases, stepped.weights + stepped.biases):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


def test_fit_zero_epochs_changes_nothing(backend):
    X, y = learnable_problem()
    net = random_network([2, 3, 1], backend, seed=4)
    before = parameters_copy(net)
    history = net.fit(X, y, epochs=0)
    assert history.loss == []
    for a, b in zip(net.weights + net.biases, before[0] + before[1]):
        np.testing.assert_array_equal(a, b)
