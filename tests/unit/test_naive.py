"""Self-checks of the oracles in naive.py, against the article's printed numbers and each other.

These use no backend: if one fails, the oracle is wrong, not fastnet.
"""

import numpy as np
import pytest

import naive
from conftest import random_data, random_parameters, targets_for

X, Y, W1, W2 = naive.X, naive.Y, naive.W1, naive.W2
NEURON1OUTPUT, SSE_BEFORE, ATOL = naive.NEURON1OUTPUT, naive.SSE_BEFORE, naive.ATOL


def test_hand_calculation_agrees_with_the_article():
    """Sanity check of the article helpers against the printed numbers."""
    np.testing.assert_allclose(naive.sigmoid(X @ W1), NEURON1OUTPUT, atol=ATOL)
    assert naive.article_sse(W1, W2) == pytest.approx(SSE_BEFORE, abs=1e-7)


def test_hand_model_matches_finite_differences():
    """Self-check of the oracle: naive's gradient is that of its own loss (sse, mse, bce, weighted)."""
    layers = [3, 4, 2]
    weights, biases = random_parameters(layers, seed=1)
    X, y = random_data(layers, 6, seed=2)
    w = np.array([1.0, 0.5, 2.0, 0.0, 3.0, 1.5])
    for loss in ["sse", "mse", "bce"]:
        _, _, dW, db = naive.loss_and_gradient(weights, biases, X, y, loss, w)
        numeric = naive.central_differences(
            lambda params: naive.loss_and_gradient(params[:2], params[2:], X, y, loss, w)[0], weights + biases)
        for g, fd in zip(dW + db, numeric):
            for index in np.ndindex(g.shape):
                assert g[index] == pytest.approx(fd[index], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("loss", ["sse", "mse"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_backpropagation_with_the_article_derivative_is_the_article_formula(bias, loss):
    """naive.loss_and_gradient(derivative="article") and the article's d_W formulas, written separately, agree."""
    layers = [3, 5, 2]
    weights, biases = random_parameters(layers, seed=3, bias=bias)
    X_, y_ = random_data(layers, 8, seed=4)
    _, _, dW, db = naive.loss_and_gradient(weights, biases, X_, y_, loss, derivative="article")
    (b1, b2) = biases if bias else (None, None)
    expected_W, expected_b = naive.article_formula_gradient(X_, y_, weights[0], weights[1], b1, b2, loss)
    for got, want in zip(dW + (db or []), expected_W + (expected_b if bias else [])):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-16)
    assert (db is None) == (not bias)


def test_the_article_formula_gives_the_printed_update():
    """On the article's network, the d_W formulas give the printed d_W2 and new W1 (as minus a gradient)."""
    (dW1, dW2), _ = naive.article_formula_gradient(X, Y, W1, W2, None, None, "sse")
    np.testing.assert_allclose(dW2, naive.ARTICLE_GRADIENT_W2, rtol=0, atol=ATOL)
    np.testing.assert_allclose(dW1, naive.ARTICLE_GRADIENT_W1, rtol=0, atol=ATOL)
    loss, _, _, _ = naive.loss_and_gradient([W1, W2], None, X, Y, "sse", derivative="article")
    assert loss == pytest.approx(SSE_BEFORE, abs=1e-7)


def test_one_full_batch_step_of_the_training_loop_is_minus_the_gradient():
    """naive.train: one full-batch sgd epoch moves every parameter by -lr times naive's gradient."""
    layers = [3, 4, 2]
    weights, biases = random_parameters(layers, seed=5)
    X_, y_ = random_data(layers, 9, seed=6)
    _, _, dW, db = naive.loss_and_gradient(weights, biases, X_, y_, "mse")
    new_w, new_b, losses, _ = naive.train(weights, biases, X_, y_, loss="mse", epochs=1, lr=0.5)
    for new, old, grad in zip(new_w + new_b, weights + biases, dW + db):
        np.testing.assert_allclose(new, old - 0.5 * grad, rtol=1e-15, atol=1e-16)
    assert losses == [pytest.approx(naive.loss(weights, biases, X_, y_, "mse"), rel=1e-14)]


# -- the other layers, cross-entropy and the L2 penalty -------------------------------------

LAYER_COMBINATIONS = naive.LAYER_COMBINATIONS


def test_tanh_relu_and_identity_by_their_definitions():
    z = np.array([[-3.0, -0.5, 0.0, 0.25, 4.0]])
    np.testing.assert_allclose(naive.tanh(z), 2.0 * naive.sigmoid(2.0 * z) - 1.0, rtol=1e-14, atol=1e-16)
    np.testing.assert_array_equal(naive.relu(z), [[0.0, 0.0, 0.0, 0.25, 4.0]])
    np.testing.assert_array_equal(naive.identity(z), z)
    a = naive.tanh(z)
    np.testing.assert_allclose(naive.SLOPES["tanh"](a), 1.0 / np.cosh(z) ** 2, rtol=1e-13)
    np.testing.assert_array_equal(naive.SLOPES["relu"](naive.relu(z)), [[0.0, 0.0, 0.0, 1.0, 1.0]])


def test_softmax_rows_sum_to_one_and_log_softmax_is_its_log():
    z = np.random.default_rng(3).normal(0.0, 4.0, (20, 5))
    p = naive.softmax(z)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-15)
    assert (p > 0).all()
    np.testing.assert_allclose(naive.log_softmax(z), np.log(p), rtol=1e-13, atol=1e-14)
    # by hand for one row: exp(z) / sum exp(z) without any shift
    row = np.array([[0.1, -0.7, 1.3]])
    np.testing.assert_allclose(naive.softmax(row), np.exp(row) / np.exp(row).sum(), rtol=1e-15)
    # shifting every logit of a row by a constant changes nothing
    np.testing.assert_allclose(naive.softmax(z + 1000.0), p, rtol=1e-13)


def test_log_softmax_is_finite_and_exact_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [3e4, 3e4 - 1.0, -5.0]])
    out = naive.log_softmax(z)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0], [0.0, -1e4, -2e4], rtol=1e-15, atol=1e-300)
    # log(1 + e^-1) by hand for the tie-like second row; z - lse of two numbers near 3e4 keeps
    # only about 3e4 * 2^-52 = 7e-12 absolute
    np.testing.assert_allclose(out[1, :2], [-np.log1p(np.exp(-1.0)), -1.0 - np.log1p(np.exp(-1.0))],
                               rtol=0, atol=2e-11)


def test_cross_entropy_of_one_hot_targets_is_minus_the_log_of_the_true_class():
    z = np.random.default_rng(4).normal(size=(6, 4))
    labels = np.array([0, 3, 1, 1, 2, 0])
    y = np.eye(4)[labels]
    expected = -np.log(naive.softmax(z)[np.arange(6), labels])
    np.testing.assert_allclose(naive.row_errors(None, y, "cross_entropy", logits=z), expected, rtol=1e-13)
    # a mean over rows, not over the 24 elements
    assert naive.loss_from_output(None, y, "cross_entropy", logits=z) == pytest.approx(expected.mean(), rel=1e-13)


@pytest.mark.parametrize("activation, output, loss", LAYER_COMBINATIONS)
def test_hand_model_of_every_layer_combination_matches_finite_differences(activation, output, loss):
    layers = [3, 4, 3]
    weights, biases = random_parameters(layers, seed=5)
    X, _ = random_data(layers, 6, seed=6)
    y = targets_for(output, loss, 6, 3, seed=7)
    w = np.array([1.0, 0.5, 2.0, 0.0, 3.0, 1.5])
    value, _, dW, db = naive.loss_and_gradient(weights, biases, X, y, loss, w, activation=activation, output=output)
    assert value == pytest.approx(naive.loss(weights, biases, X, y, loss, w, activation, output), rel=1e-14)
    numeric = naive.central_differences(
        lambda params: naive.loss(params[:2], params[2:], X, y, loss, w, activation, output), weights + biases)
    for g, fd in zip(dW + db, numeric):
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_cross_entropy_gradient_with_targets_that_do_not_sum_to_one():
    """The fused delta p * sum(y) - y is the true gradient for any non-negative targets."""
    layers = [2, 3, 4]
    weights, biases = random_parameters(layers, seed=8)
    X, _ = random_data(layers, 5, seed=9)
    y = np.random.default_rng(10).uniform(0.0, 1.0, (5, 4))
    _, _, dW, db = naive.loss_and_gradient(weights, biases, X, y, "cross_entropy", activation="tanh",
                                           output="softmax")
    numeric = naive.central_differences(
        lambda p: naive.loss(p[:2], p[2:], X, y, "cross_entropy", None, "tanh", "softmax"), weights + biases)
    for g, fd in zip(dW + db, numeric):
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss", ["sse", "mse", "cross_entropy"])
def test_one_training_step_with_alpha_descends_the_penalised_objective(loss):
    """train's alpha step is -lr times the finite-difference gradient of loss + alpha/2 r sum W^2."""
    output = "softmax" if loss == "cross_entropy" else "linear"
    layers = [3, 4, 2]
    weights, biases = random_parameters(layers, seed=11)
    X, _ = random_data(layers, 7, seed=12)
    y = targets_for(output, loss, 7, 2, seed=13)
    w = np.random.default_rng(14).uniform(0.5, 2.0, 7)
    lr, alpha = 0.1, 0.7
    new_w, new_b, _, _ = naive.train(weights, biases, X, y, loss=loss, epochs=1, lr=lr, sample_weight=w,
                                     activation="relu", output=output, alpha=alpha)
    numeric = naive.central_differences(
        lambda p: naive.penalised_loss(p[:2], p[2:], X, y, loss, alpha, w, "relu", output), weights + biases)
    for new, old, fd in zip(new_w + new_b, weights + biases, numeric):
        np.testing.assert_allclose((old - new) / lr, fd, rtol=1e-6, atol=1e-9)
    assert naive.penalty_normaliser(loss, w) == (1.0 if loss == "sse" else pytest.approx(1.0 / w.sum()))
