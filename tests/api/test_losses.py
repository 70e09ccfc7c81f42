"""Losses: binary cross-entropy and per-row sample weights, on every backend.

Oracles: central finite differences of ``net.evaluate``, the loss formulas
written out from the forward pass (naive.py), hand-computed examples (typed-in
numbers), and equivalences that need no numbers at all (integer weights
equal repeated rows; weights of one equal no weights).
"""

import math

import numpy as np
import pytest

from fastnet import Network

import naive
from conftest import assert_close_normwise, finite_difference_gradient, random_data, random_network

ALL_LOSSES = ["sse", "mse", "bce"]
SHAPES = [[3, 1], [4, 5, 2], [2, 6, 4, 3]]


def flat(gradients):
    """(dW, db) as one vector, for normwise comparisons."""
    dW, db = gradients
    return np.concatenate([g.ravel() for g in dW + (db or [])])


def weighted_finite_differences(net, X, y, sample_weight=None, h=1e-6):
    """Central differences of ``net.evaluate(X, y, sample_weight)`` in every weight and bias (conftest's
    finite_difference_gradient: fresh Networks from the public constructor), flattened in the order of ``flat``."""
    return flat(finite_difference_gradient(net, X, y, h=h, sample_weight=sample_weight))


def assert_gradient_matches(actual, expected, rtol=1e-6):
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=max(rtol * scale, 1e-10))


# =========================================================================================
# Binary cross-entropy
# =========================================================================================


def test_bce_network_reports_its_loss_name(backend):
    net = Network([2, 3, 1], backend=backend, loss="bce", seed=0)
    assert net.loss == "bce"
    assert isinstance(net.evaluate(np.zeros((2, 2)), np.array([[0.0], [1.0]])), float)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("layers", SHAPES, ids=str)
def test_bce_gradient_matches_finite_differences(backend, layers, bias):
    net = random_network(layers, backend, seed=50, bias=bias, loss="bce")
    X, y = random_data(layers, 7, seed=51)
    assert_gradient_matches(flat(net.gradients(X, y)), weighted_finite_differences(net, X, y))


@pytest.mark.parametrize("layers", SHAPES, ids=str)
def test_bce_gradient_matches_finite_differences_with_binary_targets(backend, layers):
    net = random_network(layers, backend, seed=52, loss="bce", scale=2.0)
    X, y = random_data(layers, 9, seed=53)
    y = (y > 0.5).astype(float)
    assert_gradient_matches(flat(net.gradients(X, y)), weighted_finite_differences(net, X, y))


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_weighted_gradient_matches_finite_differences(backend, loss):
    layers = [4, 5, 2]
    net = random_network(layers, backend, seed=54, loss=loss)
    X, y = random_data(layers, 8, seed=55)
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.5, 0.25, 1.0, 7.0])
    assert_gradient_matches(flat(net.gradients(X, y, sample_weight=w)),
                            weighted_finite_differences(net, X, y, sample_weight=w))


@pytest.mark.parametrize("layers", SHAPES, ids=str)
def test_bce_loss_is_the_mean_cross_entropy_of_the_outputs(backend, layers):
    net = random_network(layers, backend, seed=56, loss="bce")
    X, y = random_data(layers, 11, seed=57)
    expected = naive.loss_from_output(net.forward(X), y, "bce")   # mean cross-entropy over all elements
    assert net.evaluate(X, y) == pytest.approx(expected, rel=1e-12)


def test_bce_hand_computed_example(backend):
    """One weight ln 3, no bias: x = 1 gives a = 1/(1 + 1/3) = 3/4, x = 0 gives a = 1/2.

    Targets 1 and 0: loss = (-ln(3/4) - ln(1/2)) / 2 = (ln(4/3) + ln 2) / 2 = 0.4904146265058631.
    Gradient: (1/2) * sum (a - y) x = (1/2) * ((3/4 - 1) * 1 + (1/2 - 0) * 0) = -1/8.
    """
    net = Network([1, 1], backend=backend, loss="bce", bias=False, weights=[[[math.log(3.0)]]])
    X, y = np.array([[1.0], [0.0]]), np.array([[1.0], [0.0]])
    np.testing.assert_allclose(net.forward(X), [[0.75], [0.5]], rtol=1e-15)
    assert net.evaluate(X, y) == pytest.approx(0.4904146265058631, rel=1e-14)
    (dW,), db = net.gradients(X, y)
    assert db is None
    np.testing.assert_allclose(dW, [[-0.125]], rtol=1e-14)


def test_bce_hand_computed_example_with_bias_and_soft_target(backend):
    """w = 0, b = ln 3: a = 3/4 for any x.  Target 0.25 on one row:
    loss = -(0.25 ln 0.75 + 0.75 ln 0.25) = 0.25 ln(4/3) + 0.75 ln 4 = 1.111641288952863;
    d/db = a - y = 0.5, d/dw = (a - y) x = 0.5 * 2 = 1."""
    net = Network([1, 1], backend=backend, loss="bce", weights=[[[0.0]]], biases=[[math.log(3.0)]])
    X, y = np.array([[2.0]]), np.array([[0.25]])
    assert net.evaluate(X, y) == pytest.approx(0.25 * math.log(4 / 3) + 0.75 * math.log(4.0), rel=1e-14)
    assert net.evaluate(X, y) == pytest.approx(1.111641288952863, rel=1e-14)
    (dW,), (db,) = net.gradients(X, y)
    np.testing.assert_allclose(dW, [[1.0]], rtol=1e-14)
    np.testing.assert_allclose(db, [0.5], rtol=1e-14)


def saturated_network(backend):
    """One weight of 1000, no bias: x = 1 gives a = 1 exactly, x = -1 gives a = 0 (or within 1e-300 of it)."""
    return Network([1, 1], backend=backend, loss="bce", bias=False, weights=[[[1000.0]]])


SAT_X = np.array([[1.0], [-1.0], [1.0], [-1.0]])
SAT_Y = np.array([[1.0], [0.0], [0.0], [1.0]])


def test_bce_clamps_each_log_at_minus_100_like_torch(backend):
    """torch.nn.BCELoss clamps log(a) and log(1 - a) at -100.  Rows (a, y):
    (1, 1) -> 0;  (0, 0) -> 0;  (1, 0) -> -log(1 - 1) = -(-100) = 100;  (0, 1) -> -log(0) -> 100.
    Mean over 4 rows: 200 / 4 = 50.  (0 * log(0) must count as 0, not NaN.)"""
    net = saturated_network(backend)
    a = net.forward(SAT_X)
    assert a[0, 0] == 1.0 and a[2, 0] == 1.0
    assert 0.0 <= a[1, 0] < 1e-300 and 0.0 <= a[3, 0] < 1e-300
    assert net.evaluate(SAT_X, SAT_Y) == pytest.approx(50.0, rel=1e-14)
    # each row alone
    for row, expected in enumerate([0.0, 0.0, 100.0, 100.0]):
        assert net.evaluate(SAT_X[row:row + 1], SAT_Y[row:row + 1]) == pytest.approx(expected, abs=1e-12)


def test_bce_saturated_soft_target(backend):
    """a = 1 exactly, y = 0.3: -(0.3 log 1 + 0.7 max(log 0, -100)) = 0.7 * 100 = 70."""
    net = saturated_network(backend)
    assert net.evaluate([[1.0]], [[0.3]]) == pytest.approx(70.0, rel=1e-14)


def test_bce_gradient_at_saturation_is_finite(backend):
    """The fused output delta c (a - y) stays finite where a(1 - a) = 0:
    dW = (1/4) * sum (a - y) x = (1/4) * (0*1 + 0*(-1) + 1*1 + (-1)*(-1)) = 1/2."""
    (dW,), _ = saturated_network(backend).gradients(SAT_X, SAT_Y)
    np.testing.assert_allclose(dW, [[0.5]], rtol=1e-14)


def test_bce_with_huge_weights_in_a_deep_network_is_finite(backend):
    layers = [3, 4, 2]
    net = random_network(layers, backend, seed=58, loss="bce", scale=1e4)
    X, y = random_data(layers, 10, seed=59)
    y = (y > 0.5).astype(float)
    a = net.forward(X)
    assert ((a == 0.0) | (a == 1.0) | (a < 1e-300)).mean() > 0.5     # most outputs are saturated
    value = net.evaluate(X, y)
    assert math.isfinite(value) and 0.0 <= value <= 100.0 * 2 / 2
    dW, db = net.gradients(X, y)
    assert all(np.isfinite(g).all() for g in dW + db)
    history = net.fit(X, y, epochs=2, lr=0.1)
    assert all(math.isfinite(v) for v in history.loss)
    assert all(np.isfinite(p).all() for p in net.weights + net.biases)


def test_bce_full_batch_fit_first_loss_is_the_loss_before(backend):
    layers = [4, 5, 2]
    net = random_network(layers, backend, seed=60, loss="bce")
    X, y = random_data(layers, 12, seed=61)
    expected = naive.loss_from_output(net.forward(X), y, "bce")
    history = net.fit(X, y, epochs=2, lr=1.0)
    assert history.loss[0] == pytest.approx(expected, rel=1e-12)
    assert history.loss[1] < history.loss[0]


# =========================================================================================
# Sample weights
# =========================================================================================

SW_LAYERS = [4, 5, 2]
SW_ROWS = 7
INTEGER_WEIGHTS = np.array([0, 1, 2, 3, 1, 2, 1])


def sw_data(seed=62):
    return random_data(SW_LAYERS, SW_ROWS, seed=seed)


def assert_same_training(a, b, history_a, history_b, rtol=1e-13):
    for p, q in zip(a.weights + a.biases, b.weights + b.biases):
        assert_close_normwise(p, q, rtol=rtol)
    np.testing.assert_allclose(history_a.loss, history_b.loss, rtol=rtol)


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_weighted_loss_is_the_hand_formula(backend, loss):
    net = random_network(SW_LAYERS, backend, seed=63, loss=loss)
    X, y = sw_data()
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.5, 0.25, 1.0])
    assert net.evaluate(X, y, sample_weight=w) == pytest.approx(naive.loss_from_output(net.forward(X), y, loss, w), rel=1e-12)


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_weights_of_one_equal_no_weights_for_loss_and_gradients(backend, loss):
    net = random_network(SW_LAYERS, backend, seed=64, loss=loss)
    X, y = sw_data()
    ones = np.ones(SW_ROWS)
    assert net.evaluate(X, y, sample_weight=ones) == pytest.approx(net.evaluate(X, y), rel=1e-14)
    assert_close_normwise(flat(net.gradients(X, y, sample_weight=ones)), flat(net.gradients(X, y)), rtol=1e-14)


FIT_SETTINGS = {
    "full-batch-sgd": dict(epochs=3, lr=0.5),
    "minibatch-momentum": dict(epochs=2, lr=0.1, batch_size=3, seed=5, optimizer="momentum"),
    "minibatch-adam": dict(epochs=2, lr=0.01, batch_size=2, seed=6, optimizer="adam"),
}


@pytest.mark.parametrize("settings", list(FIT_SETTINGS))
@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_weights_of_one_equal_no_weights_for_fit(backend, loss, settings):
    X, y = sw_data()
    kwargs = FIT_SETTINGS[settings]
    weighted = random_network(SW_LAYERS, backend, seed=65, loss=loss)
    plain = random_network(SW_LAYERS, backend, seed=65, loss=loss)
    h_weighted = weighted.fit(X, y, sample_weight=np.ones(SW_ROWS), **kwargs)
    h_plain = plain.fit(X, y, **kwargs)
    assert_same_training(weighted, plain, h_weighted, h_plain, rtol=1e-14)


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_integer_weights_equal_repeated_rows_for_loss_and_gradients(backend, loss):
    """Weight k on a row counts it k times; weight 0 drops it."""
    net = random_network(SW_LAYERS, backend, seed=66, loss=loss)
    X, y = sw_data()
    X_rep, y_rep = np.repeat(X, INTEGER_WEIGHTS, axis=0), np.repeat(y, INTEGER_WEIGHTS, axis=0)
    assert net.evaluate(X, y, sample_weight=INTEGER_WEIGHTS) == pytest.approx(net.evaluate(X_rep, y_rep), rel=1e-13)
    assert_close_normwise(flat(net.gradients(X, y, sample_weight=INTEGER_WEIGHTS)),
                          flat(net.gradients(X_rep, y_rep)), rtol=1e-13)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_integer_weights_equal_repeated_rows_for_full_batch_fit(backend, loss, optimizer):
    X, y = sw_data()
    X_rep, y_rep = np.repeat(X, INTEGER_WEIGHTS, axis=0), np.repeat(y, INTEGER_WEIGHTS, axis=0)
    lr = {"sgd": 0.5, "momentum": 0.1, "adam": 0.01}[optimizer] * (0.1 if loss == "sse" else 1.0)
    weighted = random_network(SW_LAYERS, backend, seed=67, loss=loss)
    repeated = random_network(SW_LAYERS, backend, seed=67, loss=loss)
    h_weighted = weighted.fit(X, y, epochs=4, lr=lr, optimizer=optimizer, sample_weight=INTEGER_WEIGHTS)
    h_repeated = repeated.fit(X_rep, y_rep, epochs=4, lr=lr, optimizer=optimizer)
    assert_same_training(weighted, repeated, h_weighted, h_repeated, rtol=1e-12)
    assert h_weighted.loss[-1] < h_weighted.loss[0]


@pytest.mark.parametrize("factor", [3.0, 1e-3, 1e6])
@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_mean_losses_do_not_depend_on_the_scale_of_the_weights(backend, loss, factor):
    net = random_network(SW_LAYERS, backend, seed=68, loss=loss)
    X, y = sw_data()
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.5, 0.25, 1.0])
    assert net.evaluate(X, y, sample_weight=factor * w) == pytest.approx(net.evaluate(X, y, sample_weight=w), rel=1e-13)
    assert_close_normwise(flat(net.gradients(X, y, sample_weight=factor * w)),
                          flat(net.gradients(X, y, sample_weight=w)), rtol=1e-13)


def test_sse_scales_with_the_weights(backend):
    net = random_network(SW_LAYERS, backend, seed=69, loss="sse")
    X, y = sw_data()
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.5, 0.25, 1.0])
    assert net.evaluate(X, y, sample_weight=3 * w) == pytest.approx(3 * net.evaluate(X, y, sample_weight=w), rel=1e-13)
    assert_close_normwise(flat(net.gradients(X, y, sample_weight=3 * w)),
                          3 * flat(net.gradients(X, y, sample_weight=w)), rtol=1e-13)


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_zero_weight_rows_do_not_matter(backend, loss):
    net = random_network(SW_LAYERS, backend, seed=70, loss=loss)
    X, y = sw_data()
    w = np.array([1.0, 0.0, 2.0, 0.0, 1.0, 1.0, 0.5])
    y_other = y.copy()
    y_other[[1, 3]] = 1.0 - y_other[[1, 3]]
    assert net.evaluate(X, y_other, sample_weight=w) == pytest.approx(net.evaluate(X, y, sample_weight=w), rel=1e-14)
    assert_close_normwise(flat(net.gradients(X, y_other, sample_weight=w)),
                          flat(net.gradients(X, y, sample_weight=w)), rtol=1e-14)


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_step_with_weights_moves_by_minus_lr_times_the_weighted_gradient(backend, loss):
    net = random_network(SW_LAYERS, backend, seed=71, loss=loss)
    X, y = sw_data()
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.5, 0.25, 1.0])
    before = np.concatenate([p.ravel() for p in net.weights + net.biases])
    gradient = flat(net.gradients(X, y, sample_weight=w))
    expected_loss = net.evaluate(X, y, sample_weight=w)
    assert net.step(X, y, lr=0.3, sample_weight=w) == pytest.approx(expected_loss, rel=1e-14)
    after = np.concatenate([p.ravel() for p in net.weights + net.biases])
    assert_close_normwise(after, before - 0.3 * gradient, rtol=1e-14)
