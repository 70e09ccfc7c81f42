"""Self-checks of the oracles in naive.py, against the article's printed numbers and each other.

These use no backend: if one fails, the oracle is wrong, not fastnet.
"""

import numpy as np
import pytest

import naive
from conftest import random_data, random_parameters

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
