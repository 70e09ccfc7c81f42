"""The worked example of ARTICLE.md, reproduced on every backend.

All expected numbers below are typed in from ARTICLE.md (printed to 8
decimals; once, in naive.py), or follow from them by hand arithmetic; none
are read back from fastnet.
"""

import warnings

import numpy as np
import pytest

import fastnet.article
from fastnet import History, Network

import naive
from conftest import run_python

# -- the example and its printed values: ARTICLE.md, typed in once in naive.py ----------

X, Y, W1, W2 = naive.X, naive.Y, naive.W1, naive.W2
NEURON1OUTPUT, OUTPUT, NEW_W1, NEW_W2 = naive.NEURON1OUTPUT, naive.OUTPUT, naive.NEW_W1, naive.NEW_W2
SSE_BEFORE, ATOL = naive.SSE_BEFORE, naive.ATOL


def hand_sse_gradient(w1, w2, h=1e-6):
    """Central finite differences of the article's cost (naive.article_sse) in every entry of W1 and W2."""
    return naive.central_differences(lambda params: naive.article_sse(*params), [w1, w2], h=h)


# -- the data in fastnet.article -----------------------------------------------------


def test_article_module_holds_the_articles_data():
    np.testing.assert_array_equal(fastnet.article.X, X)
    np.testing.assert_array_equal(fastnet.article.Y, Y)
    np.testing.assert_array_equal(fastnet.article.W1, W1)
    np.testing.assert_array_equal(fastnet.article.W2, W2)
    assert list(fastnet.article.LAYERS) == [4, 1, 1]


# -- Network.article on every backend -----------------------------------------------


def test_article_network_configuration(backend):
    net = Network.article(backend=backend)
    assert net.layers == [4, 1, 1]
    assert net.backend == backend
    assert net.derivative == "article"
    assert net.loss == "sse"
    assert net.biases is None
    np.testing.assert_array_equal(net.weights[0], W1)
    np.testing.assert_array_equal(net.weights[1], W2)


def test_forward_gives_the_printed_output(backend):
    output = Network.article(backend=backend).forward(X)
    assert output.shape == (3, 1)
    np.testing.assert_allclose(output, OUTPUT, rtol=0, atol=ATOL)


def test_activations_give_neuron1output_and_output(backend):
    hidden, output = Network.article(backend=backend).activations(X)
    np.testing.assert_allclose(hidden, NEURON1OUTPUT, rtol=0, atol=ATOL)
    np.testing.assert_allclose(output, OUTPUT, rtol=0, atol=ATOL)


def test_loss_is_the_sum_of_squared_errors(backend):
    assert Network.article(backend=backend).evaluate(X, Y) == pytest.approx(SSE_BEFORE, abs=1e-7)


def test_one_step_gives_the_printed_new_weights(backend):
    net = Network.article(backend=backend)
    before = net.step(X, Y, lr=1)
    assert before == pytest.approx(SSE_BEFORE, abs=1e-7)
    np.testing.assert_allclose(net.weights[1], NEW_W2, rtol=0, atol=ATOL)
    np.testing.assert_allclose(net.weights[0], NEW_W1, rtol=0, atol=ATOL)


def test_article_gradient_is_minus_the_printed_update(backend):
    """The article adds d_W; fastnet returns the gradient, so dW = -(d_W)."""
    dW, db = Network.article(backend=backend).gradients(X, Y)
    assert db is None
    np.testing.assert_allclose(dW[1], -naive.D_W2, rtol=0, atol=ATOL)
    np.testing.assert_allclose(dW[0], W1 - NEW_W1, rtol=0, atol=ATOL)


def test_fit_one_epoch_gives_the_printed_new_weights(backend):
    net = Network.article(backend=backend)
    history = net.fit(X, Y, epochs=1, lr=1.0)
    assert isinstance(history, History)
    assert len(history.loss) == 1
    assert history.loss[0] == pytest.approx(SSE_BEFORE, abs=1e-7)
    np.testing.assert_allclose(net.weights[1], NEW_W2, rtol=0, atol=ATOL)
    np.testing.assert_allclose(net.weights[0], NEW_W1, rtol=0, atol=ATOL)


def test_step_does_not_change_the_article_modules_weights(backend):
    """The network copies its initial weights: training must not write into fastnet.article.W1/W2."""
    net = Network.article(backend=backend)
    net.step(X, Y, lr=1.0)
    np.testing.assert_array_equal(fastnet.article.W1, W1)
    np.testing.assert_array_equal(fastnet.article.W2, W2)
    # and a second article network starts from the article's weights again
    np.testing.assert_array_equal(Network.article(backend=backend).weights[0], W1)


# -- the exact derivative ------------------------------------------------------------


def exact_network(backend):
    return Network([4, 1, 1], backend=backend, derivative="exact", loss="sse", bias=False,
                   weights=[W1, W2])


def test_exact_step_differs_from_the_articles(backend):
    net = exact_network(backend)
    net.step(X, Y, lr=1.0)
    gap = max(np.abs(net.weights[0] - NEW_W1).max(), np.abs(net.weights[1] - NEW_W2).max())
    assert gap > 1e-3


def test_exact_step_follows_the_finite_difference_gradient_of_the_sse(backend):
    dW1, dW2 = hand_sse_gradient(W1, W2)
    net = exact_network(backend)
    net.step(X, Y, lr=1.0)
    np.testing.assert_allclose(net.weights[0], W1 - dW1, rtol=0, atol=1e-8)
    np.testing.assert_allclose(net.weights[1], W2 - dW2, rtol=0, atol=1e-8)


def test_exact_gradients_match_finite_differences_of_the_sse(backend):
    dW1, dW2 = hand_sse_gradient(W1, W2)
    dW, db = exact_network(backend).gradients(X, Y)
    assert db is None
    np.testing.assert_allclose(dW[0], dW1, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dW[1], dW2, rtol=1e-6, atol=1e-9)


# -- article_step and the walkthrough ----------------------------------------------------


PRINTED_VECTORS = {
    "neuron1output": naive.NEURON1OUTPUT, "output": naive.OUTPUT, "y* - output": naive.ERROR,
    "2(y* - output)": naive.DOUBLED_ERROR, "sigmoid(output)": naive.SIGMOID_OF_OUTPUT,
    "1 - sigmoid(output)": naive.ONE_MINUS_SIGMOID_OF_OUTPUT,
    "sigmoid(output)*(1-sigmoid(output))": naive.ARTICLE_SLOPE_AT_OUTPUT,
    "2(y*-output) * that": naive.OUTPUT_DELTA, "d_W2": naive.D_W2, "new W2": naive.NEW_W2, "new W1": naive.NEW_W1,
}


@pytest.mark.parametrize("label", list(PRINTED_VECTORS))
def test_article_step_shows_every_printed_vector(label):
    """Each vector the article prints is one of article_step("article")'s intermediates."""
    expected = PRINTED_VECTORS[label].ravel()
    steps = fastnet.article.article_step("article")
    matches = [name for name, value in steps.items()
               if np.size(value) == expected.size
               and np.allclose(np.ravel(value), expected, rtol=0, atol=ATOL)]
    assert matches, f"no intermediate of article_step('article') equals the printed {label}"


def test_article_step_exact_follows_the_finite_difference_gradient():
    dW1, dW2 = hand_sse_gradient(W1, W2)
    steps = fastnet.article.article_step("exact")
    new_weights = [np.asarray(value) for value in steps.values()]
    assert any(v.shape == W1.shape and np.allclose(v, W1 - dW1, rtol=0, atol=1e-8) for v in new_weights)
    assert any(v.shape == W2.shape and np.allclose(v, W2 - dW2, rtol=0, atol=1e-8) for v in new_weights)


KEY_NUMBERS = naive.KEY_NUMBERS


def test_walkthrough_contains_the_articles_numbers():
    text = fastnet.article.walkthrough()
    missing = [number for number in KEY_NUMBERS if number not in text]
    assert not missing, f"walkthrough lacks {missing}"


def test_walkthrough_mentions_every_backend():
    text = fastnet.article.walkthrough()
    for name in ["numpy", "numba", "native"]:
        assert name in text


def test_python_dash_m_fastnet_article_prints_the_walkthrough():
    result = run_python("-m", "fastnet", "article")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    missing = [number for number in KEY_NUMBERS if number not in result.stdout]
    assert not missing, f"`python -m fastnet article` output lacks {missing}"


# -- the teaching point: no bias, W2 > 0 => output > 0.5 ----------------------------------


def unit_cube_inputs(n, seed):
    """Random points of [0, 1]^4 plus all 16 corners."""
    rng = np.random.default_rng(seed)
    corners = np.array(np.meshgrid(*[[0.0, 1.0]] * 4)).reshape(4, -1).T
    return np.vstack([rng.uniform(0.0, 1.0, (n, 4)), corners])


def test_article_output_stays_above_one_half_on_the_unit_cube(backend):
    """sigmoid(hidden * W2) with hidden in (0, 1) and W2 = 0.5 > 0 is sigmoid(positive) > 0.5."""
    output = Network.article(backend=backend).forward(unit_cube_inputs(500, seed=3))
    assert (output > 0.5).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_output_above_one_half_for_any_first_layer_and_positive_w2(backend, seed):
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 3.0, (4, 1))                 # any sign
    w2 = rng.uniform(0.05, 2.0, (1, 1))               # positive
    net = Network([4, 1, 1], backend=backend, derivative="article", loss="sse", bias=False,
                  weights=[w1, w2])
    assert (net.forward(unit_cube_inputs(300, seed)) > 0.5).all()


def test_output_at_the_origin_is_sigmoid_of_a_quarter(backend):
    """X = 0: hidden = sigmoid(0) = 0.5, output = sigmoid(0.5 * 0.5)."""
    output = Network.article(backend=backend).forward(np.zeros((1, 4)))
    np.testing.assert_allclose(output, [[naive.sigmoid(0.25)]], rtol=1e-14)


def test_alices_target_stays_out_of_reach_while_w2_is_positive(backend):
    net = Network.article(backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.fit(X, Y, epochs=200, lr=1.0)
    assert net.weights[1][0, 0] > 0
    assert net.forward(X)[2, 0] > 0.5     # Alice's target is 0.4
