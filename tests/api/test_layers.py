"""The layers of issue 9 on every backend: tanh/relu hidden layers, linear/softmax outputs,
cross_entropy, the L2 penalty alpha, and what Network promises about them.

Oracles: naive.py (forward pass, losses, backpropagation, the training loop,
all written out), central finite differences of ``Network.evaluate``, the
NumPy reference backend (for the fast backends), and PyTorch autograd.
The combinations are those the specification allows
(``fastnet.spec.LOSSES[...].outputs``), checked against the issue's list.
"""

import importlib
import json
import re

import numpy as np
import pytest

import fastnet
from fastnet import Network, spec
from fastnet._config import TILE_ROWS

import naive
from conftest import (FAST_BACKENDS, REFERENCE, assert_close_normwise, finite_difference_gradient,
                      parameters_copy, random_parameters, same_network, targets_for)

HIDDEN = ["sigmoid", "tanh", "relu"]
OUTPUTS = ["sigmoid", "linear", "softmax"]

#: (activation, output, loss) for every loss the specification allows after each output.
COMBINATIONS = [(activation, output, loss) for activation in HIDDEN for output in OUTPUTS
                for loss, entry in spec.LOSSES.items() if output in entry.outputs]
COMBINATION_IDS = ["-".join(c) for c in COMBINATIONS]

#: Row counts around the kernels' tiles (TILE_ROWS rows).
ROW_COUNTS = [1, TILE_ROWS - 1, TILE_ROWS + 1, 1000]


def test_the_specification_allows_exactly_the_issues_combinations():
    assert sorted(COMBINATIONS) == sorted(naive.LAYER_COMBINATIONS)
    assert set(spec.HIDDEN_ACTIVATIONS) == set(HIDDEN)
    assert set(spec.OUTPUT_ACTIVATIONS) == set(OUTPUTS)


# =========================================================================================
# Cases: seeded random shapes, scales and row counts
# =========================================================================================


def make_case(activation, output, loss, bias, n, rng):
    """A case: 1-3 hidden layers of 1-24 units, 1-12 inputs, 1-6 outputs (2-6 for softmax), a weight
    scale and a seed, all drawn from ``rng``."""
    depth = int(rng.integers(1, 4))
    hidden = [int(w) for w in rng.integers(1, 25, depth)]
    n_out = int(rng.integers(2, 7)) if output == "softmax" else int(rng.integers(1, 7))
    return dict(activation=activation, output=output, loss=loss, bias=bias, n=n,
                layers=[int(rng.integers(1, 13))] + hidden + [n_out],
                scale=float(rng.choice([0.5, 1.0, 3.0])), seed=int(rng.integers(2**31)))


def case_id(case):
    """A readable test id: combination, bias, rows, widths."""
    return (f"{case['activation']}-{case['output']}-{case['loss']}-{'bias' if case['bias'] else 'nobias'}-"
            f"n{case['n']}-{'-'.join(map(str, case['layers']))}")


def agreement_cases():
    """Every combination x bias at one row count each (cycling through ROW_COUNTS) in the fast
    tier; every row count of every combination x bias behind the slow marker."""
    rng = np.random.default_rng(20260612)
    cases = []
    index = 0
    for activation, output, loss in COMBINATIONS:
        for bias in (True, False):
            for k, n in enumerate(ROW_COUNTS):
                case = make_case(activation, output, loss, bias, n, rng)
                fast = k == index % len(ROW_COUNTS)
                cases.append(pytest.param(case, id=case_id(case), marks=() if fast else pytest.mark.slow))
            index += 1
    return cases


def build(case, backend, dtype="float64"):
    """The case's Network on ``backend`` with its seeded random parameters."""
    weights, biases = random_parameters(case["layers"], seed=case["seed"], bias=case["bias"], scale=case["scale"])
    return Network(case["layers"], backend=backend, activation=case["activation"], output=case["output"],
                   loss=case["loss"], bias=case["bias"], weights=weights, biases=biases, dtype=dtype)


def case_data(case, n=None):
    """X uniform in [-2, 2], targets the output can reach, and row weights in (0, 1] with max 1."""
    n = case["n"] if n is None else n
    rng = np.random.default_rng(case["seed"] + 1)
    X = rng.uniform(-2.0, 2.0, (n, case["layers"][0]))
    y = targets_for(case["output"], case["loss"], n, case["layers"][-1], case["seed"] + 2)
    w = rng.uniform(0.0, 1.0, n)
    w[rng.integers(n)] = 1.0
    return X, y, w


def flat(gradients):
    """(arrays, arrays or None) as one vector, for normwise comparisons."""
    dW, db = gradients
    return np.concatenate([g.ravel() for g in dW + (db or [])])


def hand_model(case, X, y, w=None):
    """naive.loss_and_gradient for the case's network: (loss, dW, db)."""
    weights, biases = random_parameters(case["layers"], seed=case["seed"], bias=case["bias"], scale=case["scale"])
    value, _, dW, db = naive.loss_and_gradient(weights, biases, X, y, case["loss"], w,
                                               activation=case["activation"], output=case["output"])
    return value, dW, db


@pytest.fixture(params=FAST_BACKENDS)
def fast_backend(request):
    return request.param


@pytest.fixture
def restore_threads():
    """Put the thread count back as it was, whatever the test did."""
    original = fastnet.get_num_threads()
    yield original
    fastnet.set_num_threads(original)


# =========================================================================================
# Agreement: fast backends with the reference, every backend with the hand model
# =========================================================================================


@pytest.mark.parametrize("case", agreement_cases())
def test_forward_and_activations_agree_with_reference(fast_backend, case):
    X, _, _ = case_data(case)
    expected = build(case, REFERENCE).activations(X)
    net = build(case, fast_backend)
    actual = net.activations(X)
    assert len(actual) == len(expected) == len(case["layers"]) - 1
    for a, e, width in zip(actual, expected, case["layers"][1:]):
        assert a.shape == (case["n"], width) and a.dtype == np.float64
        assert_close_normwise(a, e)
    assert_close_normwise(net.forward(X), expected[-1])


@pytest.mark.parametrize("case", agreement_cases())
def test_evaluate_and_gradients_agree_with_reference(fast_backend, case):
    X, y, w = case_data(case)
    reference, net = build(case, REFERENCE), build(case, fast_backend)
    for sample_weight in (None, w):
        assert net.evaluate(X, y, sample_weight) == pytest.approx(reference.evaluate(X, y, sample_weight),
                                                                  rel=1e-12, abs=1e-300)
        actual, expected = net.gradients(X, y, sample_weight), reference.gradients(X, y, sample_weight)
        assert (actual[1] is None) == (not case["bias"])
        for a, e in zip(actual[0] + (actual[1] or []), expected[0] + (expected[1] or [])):
            assert_close_normwise(a, e)


@pytest.mark.parametrize("case", agreement_cases())
def test_forward_loss_and_gradients_equal_the_hand_model(backend, case):
    X, y, w = case_data(case)
    net = build(case, backend)
    weights, biases = parameters_copy(net)
    expected = naive.activations(weights, biases, X, case["activation"], case["output"])[1:]
    for a, e in zip(net.activations(X), expected):
        assert_close_normwise(a, e, rtol=1e-11)
    value, dW, db = hand_model(case, X, y, w)
    assert net.evaluate(X, y, w) == pytest.approx(value, rel=1e-11)
    assert_close_normwise(flat(net.gradients(X, y, w)), flat((dW, db)), rtol=1e-10)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation, output, loss", COMBINATIONS, ids=COMBINATION_IDS)
def test_gradients_match_finite_differences(backend, activation, output, loss, bias):
    case = make_case(activation, output, loss, bias, 7,
                     np.random.default_rng(COMBINATIONS.index((activation, output, loss))))
    case["layers"] = [3, 4, 3]
    X, y, w = case_data(case)
    net = build(case, backend)
    for sample_weight in (None, w):
        dW, db = net.gradients(X, y, sample_weight)
        fd_W, fd_b = finite_difference_gradient(net, X, y, sample_weight=sample_weight)
        expected = flat((fd_W, fd_b))
        np.testing.assert_allclose(flat((dW, db)), expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max() + 1e-10)


# =========================================================================================
# float32
# =========================================================================================


@pytest.mark.parametrize("activation, output, loss", COMBINATIONS, ids=COMBINATION_IDS)
def test_float32_is_float32_and_close_to_float64(backend, activation, output, loss):
    case = dict(activation=activation, output=output, loss=loss, bias=True, n=2000, layers=[5, 9, 4],
                scale=1.0, seed=31)
    X, y, w = case_data(case)
    net64, net32 = build(case, backend), build(case, backend, dtype="float32")
    out32 = net32.forward(X)
    assert out32.dtype == np.float32
    assert_close_normwise(out32, net64.forward(X), rtol=1e-4)
    assert net32.evaluate(X, y, w) == pytest.approx(net64.evaluate(X, y, w), rel=1e-4)
    dW32, db32 = net32.gradients(X, y, w)
    assert all(g.dtype == np.float32 for g in dW32 + db32)
    assert_close_normwise(flat((dW32, db32)), flat(net64.gradients(X, y, w)), rtol=1e-4)
    history = net32.fit(X, y, epochs=2, batch_size=64, optimizer="adam", lr=0.01, alpha=1e-3, seed=2)
    net64.fit(X, y, epochs=2, batch_size=64, optimizer="adam", lr=0.01, alpha=1e-3, seed=2)
    assert all(p.dtype == np.float32 for p in net32.weights + net32.biases)
    assert np.isfinite(history.loss).all()
    assert_close_normwise(flat((net32.weights, net32.biases)), flat((net64.weights, net64.biases)), rtol=1e-3)


# =========================================================================================
# Training: mini-batch Adam with alpha and sample weights against the hand loop
# =========================================================================================


@pytest.mark.parametrize("activation, output, loss", COMBINATIONS, ids=COMBINATION_IDS)
def test_minibatch_adam_with_alpha_and_weights_equals_the_hand_loop(backend, activation, output, loss):
    case = dict(activation=activation, output=output, loss=loss, bias=True, n=45, layers=[4, 6, 3],
                scale=1.0, seed=41)
    X, y, w = case_data(case)
    net = build(case, backend)
    weights, biases = parameters_copy(net)
    settings = dict(epochs=3, lr=0.02, batch_size=8, seed=5, optimizer="adam", alpha=0.05,
                    betas=(0.8, 0.99), eps=1e-7)
    history = net.fit(X, y, sample_weight=w, **settings)
    expected_w, expected_b, losses, _ = naive.train(weights, biases, X, y, loss=loss, sample_weight=w,
                                                    activation=activation, output=output, **settings)
    assert max(np.abs(a - b).max() for a, b in zip(expected_w, weights)) > 1e-3   # training moved
    assert_close_normwise(flat((net.weights, net.biases)), flat((expected_w, expected_b)), rtol=1e-10)
    np.testing.assert_allclose(history.loss, losses, rtol=1e-10)


@pytest.mark.parametrize("activation, output, loss", [c for c in COMBINATIONS if c[0] != "sigmoid"][::2])
def test_same_seed_same_result_other_seed_other_result(backend, activation, output, loss):
    X, y, _ = case_data(dict(activation=activation, output=output, loss=loss, n=60, layers=[3, 5, 3], seed=51))

    def run(seed):
        net = Network([3, 5, 3], backend=backend, activation=activation, output=output, loss=loss, seed=seed)
        net.fit(X, y, epochs=2, batch_size=16, optimizer="adam", lr=0.01, alpha=0.01)
        return flat((net.weights, net.biases))

    first, again, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


#: (activation, output, loss) for the thread tests: each new activation and output once.
THREAD_COMBINATIONS = [("tanh", "softmax", "cross_entropy"), ("relu", "linear", "mse"), ("tanh", "sigmoid", "bce")]


@pytest.mark.parametrize("activation, output, loss", THREAD_COMBINATIONS)
def test_results_are_bitwise_identical_for_one_and_two_threads(backend, activation, output, loss, restore_threads):
    """20,000 rows: four parallel blocks of 5,168 rows (fastnet.backends.block_rows), the last partial."""
    case = dict(activation=activation, output=output, loss=loss, bias=True, n=20_000, layers=[6, 16, 4],
                scale=1.0, seed=61)
    X, y, w = case_data(case)
    results = []
    for threads in [1, 2]:
        fastnet.set_num_threads(threads)
        net = build(case, backend)
        outputs = net.activations(X)
        grads = flat(net.gradients(X, y, w))
        value = net.evaluate(X, y, w)
        history = net.fit(X, y, epochs=1, batch_size=10_000, optimizer="adam", lr=0.01, alpha=0.01, seed=3,
                          sample_weight=w)
        results.append((outputs, grads, value, history.loss, flat((net.weights, net.biases))))
    (o1, g1, v1, h1, p1), (o2, g2, v2, h2, p2) = results
    for a, b in zip(o1, o2):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(p1, p2)
    assert v1 == v2 and h1 == h2
    reference = build(case, REFERENCE)
    assert_close_normwise(g2, flat(reference.gradients(X, y, w)), rtol=1e-12)


# =========================================================================================
# PyTorch autograd
# =========================================================================================


def torch_loss_and_gradients(net, X, y, w):
    """The loss of ``net``'s parameters on (X, y) and its gradient, by torch.autograd in float64.

    Reductions as fastnet's spec defines them: sse the sum of squared errors, mse and bce the
    (weighted) mean over elements, cross_entropy the (weighted) mean over rows.
    """
    import torch
    import torch.nn.functional as F

    weights, biases = parameters_copy(net)
    tw = [torch.tensor(W, dtype=torch.float64, requires_grad=True) for W in weights]
    tb = [torch.tensor(b, dtype=torch.float64, requires_grad=True) for b in biases] if biases else None
    hidden = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu}[net.activation]
    a = torch.tensor(X, dtype=torch.float64)
    target = torch.tensor(y, dtype=torch.float64)
    for layer, W in enumerate(tw):
        z = a @ W + (tb[layer] if tb else 0.0)
        a = hidden(z) if layer < len(tw) - 1 else z
    if net.output == "sigmoid":
        a = torch.sigmoid(a)
    weight = None if w is None else torch.tensor(w, dtype=torch.float64)
    if net.loss == "cross_entropy":
        if weight is None:
            value = F.cross_entropy(a, target)                       # mean over rows
        else:
            value = (weight * F.cross_entropy(a, target, reduction="none")).sum() / weight.sum()
    else:
        if net.loss == "bce":
            elements = F.binary_cross_entropy(a, target, reduction="none")
        else:
            elements = F.mse_loss(a, target, reduction="none")
        if weight is None:
            if net.loss == "sse":
                value = F.mse_loss(a, target, reduction="sum")
            elif net.loss == "mse":
                value = F.mse_loss(a, target, reduction="mean")
            else:
                value = F.binary_cross_entropy(a, target, reduction="mean")
        else:
            rows = (weight[:, None] * elements).sum()
            value = rows if net.loss == "sse" else rows / (weight.sum() * y.shape[1])
    value.backward()
    return float(value.detach()), [t.grad.numpy() for t in tw], ([t.grad.numpy() for t in tb] if tb else None)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("activation, output, loss", COMBINATIONS, ids=COMBINATION_IDS)
def test_evaluate_and_gradients_equal_torch_autograd(backend, activation, output, loss, weighted):
    case = dict(activation=activation, output=output, loss=loss, bias=True, n=300, layers=[5, 8, 6, 4],
                scale=1.5, seed=71)
    X, y, w = case_data(case)
    w = w if weighted else None
    net = build(case, backend)
    value, dW, db = torch_loss_and_gradients(net, X, y, w)
    assert net.evaluate(X, y, w) == pytest.approx(value, rel=1e-10)
    assert_close_normwise(flat(net.gradients(X, y, w)), flat((dW, db)), rtol=1e-10)


def test_importing_fastnet_does_not_import_torch():
    from conftest import run_python
    result = run_python(code="import sys, fastnet; fastnet.Network([2, 2], backend='numpy', output='softmax'); "
                             "print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# =========================================================================================
# cross_entropy with huge logits
# =========================================================================================


def huge_logit_network(backend):
    """[3, 4, 5], tanh hidden layer (outputs in (-1, 1)), output weights ~ 5,000: logits ~ 1e4."""
    rng = np.random.default_rng(81)
    weights = [rng.normal(0.0, 1.0, (3, 4)), rng.normal(0.0, 5000.0, (4, 5))]
    biases = [rng.normal(0.0, 0.5, 4), rng.normal(0.0, 10.0, 5)]
    return Network([3, 4, 5], backend=backend, activation="tanh", output="softmax", weights=weights,
                   biases=biases), weights, biases


def test_cross_entropy_is_finite_and_exact_for_huge_logits(backend):
    import torch
    import torch.nn.functional as F

    net, weights, biases = huge_logit_network(backend)
    rng = np.random.default_rng(82)
    X = rng.uniform(-1.0, 1.0, (40, 3))
    zs, _ = naive.pre_activations_and_activations(weights, biases, X, "tanh", "softmax")
    logits = zs[-1]
    assert np.abs(logits).max() > 5e3
    # half the rows labelled with their largest logit (loss 0), half with another class (loss ~1e4)
    labels = np.where(np.arange(40) % 2 == 0, logits.argmax(axis=1), logits.argmin(axis=1))
    y = np.eye(5)[labels]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = net.evaluate(X, y)
        dW, db = net.gradients(X, y)
        output = net.forward(X)
    assert np.isfinite(value) and np.isfinite(flat((dW, db))).all() and np.isfinite(output).all()
    expected = naive.loss(weights, biases, X, y, "cross_entropy", activation="tanh", output="softmax")
    assert expected > 1e3
    assert value == pytest.approx(expected, rel=1e-12)
    torch_value = float(F.cross_entropy(torch.tensor(logits), torch.tensor(labels)))
    assert value == pytest.approx(torch_value, rel=1e-12)
    _, _, hand_dW, hand_db = naive.loss_and_gradient(weights, biases, X, y, "cross_entropy", activation="tanh",
                                                     output="softmax")
    assert_close_normwise(flat((dW, db)), flat((hand_dW, hand_db)), rtol=1e-10)


# =========================================================================================
# The L2 penalty
# =========================================================================================

#: loss -> (hidden activation, output) to try it with.
PENALTY_NETWORKS = {"sse": ("relu", "linear"), "mse": ("tanh", "linear"), "bce": ("tanh", "sigmoid"),
                    "cross_entropy": ("relu", "softmax")}


def penalty_case(loss, bias=True):
    activation, output = PENALTY_NETWORKS[loss]
    return dict(activation=activation, output=output, loss=loss, bias=bias, n=23, layers=[4, 5, 3],
                scale=1.0, seed=91)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("loss", list(PENALTY_NETWORKS))
def test_one_sgd_step_with_alpha_adds_alpha_r_w_to_the_weights_gradient(backend, loss, bias):
    case = penalty_case(loss, bias)
    X, y, _ = case_data(case)
    net = build(case, backend)
    weights, biases = parameters_copy(net)
    _, dW, db = hand_model(case, X, y)
    lr, alpha = 0.1, 0.7
    r = 1.0 if loss == "sse" else 1.0 / case["n"]
    net.fit(X, y, epochs=1, lr=lr, optimizer="sgd", alpha=alpha)
    for new, old, g in zip(net.weights, weights, dW):
        assert_close_normwise(new, old - lr * (g + alpha * r * old), rtol=1e-12)
    if bias:
        for new, old, g in zip(net.biases, biases, db):
            assert_close_normwise(new, old - lr * g, rtol=1e-12)        # biases are not penalised
    else:
        assert net.biases is None


@pytest.mark.parametrize("loss", list(PENALTY_NETWORKS))
def test_an_alpha_step_descends_the_finite_differences_of_the_penalised_objective(backend, loss):
    """(old - new) / lr = d/dp [evaluate + alpha/2 r sum W^2], by central differences of the public API."""
    case = penalty_case(loss)
    X, y, _ = case_data(case)
    net = build(case, backend)
    weights, biases = parameters_copy(net)
    lr, alpha = 0.05, 0.3
    r = 1.0 if loss == "sse" else 1.0 / case["n"]

    def objective(params):
        probe = Network(case["layers"], backend=backend, activation=case["activation"], output=case["output"],
                        loss=loss, weights=params[:2], biases=params[2:])
        return probe.evaluate(X, y) + naive.l2_penalty(params[:2], alpha, r)

    numeric = naive.central_differences(objective, weights + biases)
    net.fit(X, y, epochs=1, lr=lr, alpha=alpha)
    moved = [(old - new) / lr for old, new in zip(weights + biases, net.weights + net.biases)]
    expected = np.concatenate([g.ravel() for g in numeric])
    np.testing.assert_allclose(np.concatenate([m.ravel() for m in moved]), expected, rtol=1e-6,
                               atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_the_penalty_is_divided_by_the_batchs_total_sample_weight(backend, loss):
    """r = 1 / sum(w) with the caller's row weights (the spec's W, as fit's docstring says), so
    weights of 3 give a third of the penalty's pull of weights of 1."""
    case = penalty_case(loss)
    X, y, _ = case_data(case)
    w = np.random.default_rng(92).uniform(1.0, 4.0, case["n"])
    net = build(case, backend)
    weights, biases = parameters_copy(net)
    lr, alpha = 0.1, 0.7
    _, dW, _ = hand_model(case, X, y, w)
    net.fit(X, y, epochs=1, lr=lr, alpha=alpha, sample_weight=w)
    for new, old, g in zip(net.weights, weights, dW):
        assert_close_normwise(new, old - lr * (g + alpha / w.sum() * old), rtol=1e-12)


def test_alpha_zero_is_no_penalty(backend):
    case = penalty_case("cross_entropy")
    X, y, _ = case_data(case)
    plain, zero = build(case, backend), build(case, backend)
    plain.fit(X, y, epochs=2, batch_size=5, seed=1, optimizer="momentum")
    zero.fit(X, y, epochs=2, batch_size=5, seed=1, optimizer="momentum", alpha=0.0)
    np.testing.assert_array_equal(flat((plain.weights, plain.biases)), flat((zero.weights, zero.biases)))


# =========================================================================================
# Bad input: refused at construction or before any kernel, naming the arguments
# =========================================================================================


def named(*names):
    """Regexes matching each name as a whole word."""
    return [rf"(?<![A-Za-z0-9_]){name}(?![A-Za-z0-9_])" for name in names]


def assert_names(error, *names):
    """The raised error's message names every one of ``names``."""
    message = str(error.value)
    for pattern in named(*names):
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"


#: id -> (keyword arguments of Network([3, 4, 2], ...), error, names the message must hold).
BAD_CONSTRUCTIONS = {
    "activation='softmax'": (dict(activation="softmax"), ValueError, ["activation"]),
    "activation='linear'": (dict(activation="linear"), ValueError, ["activation"]),
    "activation='Tanh'": (dict(activation="Tanh"), ValueError, ["activation"]),
    "activation='logistic'": (dict(activation="logistic"), ValueError, ["activation"]),
    "activation=None": (dict(activation=None), TypeError, ["activation"]),
    "activation=1": (dict(activation=1), TypeError, ["activation"]),
    "output='tanh'": (dict(output="tanh"), ValueError, ["output"]),
    "output='relu'": (dict(output="relu"), ValueError, ["output"]),
    "output='Softmax'": (dict(output="Softmax"), ValueError, ["output"]),
    "output=4": (dict(output=4), TypeError, ["output"]),
    "sigmoid+cross_entropy": (dict(output="sigmoid", loss="cross_entropy"), ValueError, ["output", "loss"]),
    "default-output+cross_entropy": (dict(loss="cross_entropy"), ValueError, ["output", "loss"]),
    "linear+bce": (dict(output="linear", loss="bce"), ValueError, ["output", "loss"]),
    "linear+cross_entropy": (dict(output="linear", loss="cross_entropy"), ValueError, ["output", "loss"]),
    "softmax+sse": (dict(output="softmax", loss="sse"), ValueError, ["output", "loss"]),
    "softmax+mse": (dict(output="softmax", loss="mse"), ValueError, ["output", "loss"]),
    "softmax+bce": (dict(output="softmax", loss="bce"), ValueError, ["output", "loss"]),
    "article+tanh": (dict(derivative="article", activation="tanh"), ValueError, ["derivative", "activation"]),
    "article+relu": (dict(derivative="article", activation="relu"), ValueError, ["derivative", "activation"]),
    "article+linear": (dict(derivative="article", output="linear"), ValueError, ["derivative", "output"]),
    "article+softmax": (dict(derivative="article", output="softmax"), ValueError, ["derivative", "output"]),
}


@pytest.mark.parametrize("case", list(BAD_CONSTRUCTIONS))
def test_bad_layer_settings_are_refused_at_construction(backend, case):
    kwargs, error, names = BAD_CONSTRUCTIONS[case]
    with pytest.raises(error) as raised:
        Network([3, 4, 2], backend=backend, **kwargs)
    assert_names(raised, *names)


def test_softmax_of_one_unit_is_refused(backend):
    with pytest.raises(ValueError) as raised:
        Network([3, 4, 1], backend=backend, output="softmax")
    assert_names(raised, "output", "softmax")
    assert "1" in str(raised.value)


@pytest.mark.parametrize("activation, output, loss", COMBINATIONS, ids=COMBINATION_IDS)
def test_every_allowed_combination_is_accepted(backend, activation, output, loss):
    net = Network([3, 4, 2], backend=backend, activation=activation, output=output, loss=loss)
    assert (net.activation, net.output, net.loss) == (activation, output, loss)
    assert net.derivative == "exact"


@pytest.fixture
def guarded(backend, monkeypatch):
    """``make(activation, output, loss)``: a network on ``backend`` with some Adam state;
    after ``make.arm()`` the backend's kernels fail the test if they run."""
    from fastnet.backends import BACKENDS as MODULES
    module = importlib.import_module(f"fastnet.backends.{MODULES[backend]}")
    original = {name: getattr(module, name) for name in ["forward", "gradient", "train_epoch"]}

    def make(activation="sigmoid", output="sigmoid", loss=None, trained=True):
        layers = [3, 4, 2]
        weights, biases = random_parameters(layers, seed=101)
        net = Network(layers, backend=backend, activation=activation, output=output, loss=loss,
                      weights=weights, biases=biases, seed=5)
        if trained:  # some optimizer state to keep
            X, y = np.random.default_rng(102).uniform(0.0, 1.0, (6, 3)), np.full((6, 2), 0.5)
            net.partial_fit(X, y, optimizer="adam", lr=0.01, batch_size=2)
        return net

    def kernel_ran(*args, **kwargs):
        raise AssertionError("a backend kernel ran before the bad input was rejected")

    def arm():
        for name in original:
            monkeypatch.setattr(module, name, kernel_ran)

    make.arm = arm
    return make


def assert_same_state(net, before):
    """``net.state()`` (settings, parameters, generator, optimizer) equals ``before``."""
    after = net.state()
    assert set(after) == set(before)
    for key, value in before.items():
        if key == "optimizer":
            assert (after[key] is None) == (value is None)
            if value is not None:
                assert after[key]["name"] == value["name"]
                for part in ("hyper", "state", "step"):
                    np.testing.assert_array_equal(after[key][part], value[part])
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(after[key], value)
        else:
            assert after[key] == value


def out_of_range_y(output):
    """Six rows of targets with one value (1.5) outside [0, 1]; rows still sum to one for softmax."""
    y = np.full((6, 2), 0.5)
    if output == "softmax":
        y[2] = [1.5, -0.5]          # sums to one, but not probabilities
    else:
        y[2, 1] = 1.5
    return y


METHODS = ["evaluate", "gradients", "step", "fit", "partial_fit", "fit-validation"]


def call(net, method, X, y):
    """Call ``method`` (one of METHODS) with targets y; "fit-validation" passes them as y_val."""
    if method == "evaluate":
        return net.evaluate(X, y)
    if method == "gradients":
        return net.gradients(X, y)
    if method == "step":
        return net.step(X, y, lr=0.1)
    if method == "fit":
        return net.fit(X, y, epochs=2)
    if method == "partial_fit":
        return net.partial_fit(X, y)
    good_y = np.clip(y, 0.0, 1.0) / np.clip(y, 0.0, 1.0).sum(axis=1, keepdims=True)
    return net.fit(X, good_y, epochs=2, validation_data=(X, y))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("output, loss", [("sigmoid", "mse"), ("sigmoid", "sse"), ("sigmoid", "bce"),
                                          ("softmax", "cross_entropy")])
def test_targets_outside_the_outputs_range_are_refused(guarded, output, loss, method):
    net = guarded(output=output, loss=loss)
    before = net.state()
    guarded.arm()
    X = np.random.default_rng(103).uniform(-1.0, 1.0, (6, 3))
    y = out_of_range_y(output)
    with pytest.raises(ValueError) as raised:
        call(net, method, X, y)
    message = str(raised.value)
    assert_names(raised, "y_val" if method == "fit-validation" else "y", "output")
    assert "[0, 1]" in message and "1.5" in message
    assert "scale" in message
    if loss in ("mse", "sse"):
        assert "linear" in message
    assert_same_state(net, before)


def test_negative_targets_after_a_sigmoid_are_refused_naming_their_range(guarded):
    net = guarded(loss="bce")
    y = np.full((6, 2), 0.5)
    y[0, 0] = -0.25
    with pytest.raises(ValueError) as raised:
        net.evaluate(np.zeros((6, 3)), y)
    assert_names(raised, "y")
    assert "-0.25" in str(raised.value)


def test_a_linear_output_takes_any_targets(backend):
    net = Network([3, 4, 2], backend=backend, activation="relu", output="linear", seed=1)
    X = np.random.default_rng(104).uniform(-1.0, 1.0, (6, 3))
    y = np.linspace(25.0, 346.0, 12).reshape(6, 2)
    assert net.evaluate(X, y) == pytest.approx(
        naive.loss(*parameters_copy(net), X, y, "mse", activation="relu", output="linear"), rel=1e-12)


#: id -> (keyword arguments of fit / partial_fit, error, the argument's name).
BAD_OPTIMIZER_SETTINGS = {
    "alpha=-0.1": (dict(alpha=-0.1), ValueError, "alpha"),
    "alpha=-1e-300": (dict(alpha=-1e-300), ValueError, "alpha"),
    "alpha=nan": (dict(alpha=float("nan")), ValueError, "alpha"),
    "alpha=inf": (dict(alpha=float("inf")), ValueError, "alpha"),
    "alpha='0.1'": (dict(alpha="0.1"), TypeError, "alpha"),
    "alpha=None": (dict(alpha=None), TypeError, "alpha"),
    "betas=(0.9,)": (dict(optimizer="adam", betas=(0.9,)), TypeError, "betas"),
    "betas=0.9": (dict(optimizer="adam", betas=0.9), TypeError, "betas"),
    "betas='ab'": (dict(optimizer="adam", betas="ab"), TypeError, "betas"),
    "betas=(1.0, 0.999)": (dict(optimizer="adam", betas=(1.0, 0.999)), ValueError, "betas"),
    "betas=(0.9, 1.0)": (dict(optimizer="adam", betas=(0.9, 1.0)), ValueError, "betas"),
    "betas=(-0.1, 0.999)": (dict(optimizer="adam", betas=(-0.1, 0.999)), ValueError, "betas"),
    "betas=(nan, 0.999)": (dict(optimizer="adam", betas=(float("nan"), 0.999)), ValueError, "betas"),
    "eps=0": (dict(optimizer="adam", eps=0.0), ValueError, "eps"),
    "eps=-1e-8": (dict(optimizer="adam", eps=-1e-8), ValueError, "eps"),
    "eps=nan": (dict(optimizer="adam", eps=float("nan")), ValueError, "eps"),
    "eps=inf": (dict(optimizer="adam", eps=float("inf")), ValueError, "eps"),
    "eps='1e-8'": (dict(optimizer="adam", eps="1e-8"), TypeError, "eps"),
}


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("case", list(BAD_OPTIMIZER_SETTINGS))
def test_bad_alpha_betas_or_eps_are_refused_up_front(guarded, case, method):
    kwargs, error, name = BAD_OPTIMIZER_SETTINGS[case]
    net = guarded(activation="tanh", output="softmax")
    before = net.state()
    guarded.arm()
    X = np.random.default_rng(105).uniform(-1.0, 1.0, (6, 3))
    y = np.full((6, 2), 0.5)
    with pytest.raises(error) as raised:
        getattr(net, method)(X, y, **kwargs)
    assert_names(raised, name)
    assert_same_state(net, before)


# =========================================================================================
# partial_fit: Adam's state survives a change of lr; another optimizer starts afresh
# =========================================================================================

PF_CASE = dict(activation="tanh", output="softmax", loss="cross_entropy", bias=True, n=17, layers=[3, 4, 3],
               scale=1.0, seed=111)


@pytest.mark.parametrize("optimizer, lrs", [("adam", (0.01, 0.03)), ("momentum", (0.1, 0.02))])
def test_changing_lr_between_partial_fits_keeps_the_optimizer_state(backend, optimizer, lrs):
    X, y, w = case_data(PF_CASE)
    net = build(PF_CASE, backend)
    weights, biases = parameters_copy(net)
    settings = dict(batch_size=5, shuffle=False, optimizer=optimizer, alpha=0.01, momentum=0.8)
    net.partial_fit(X, y, lr=lrs[0], sample_weight=w, **settings)
    restarted = same_network(net, *parameters_copy(net))    # the same point, no optimizer state
    net.partial_fit(X, y, lr=lrs[1], sample_weight=w, **settings)
    # by hand: one epoch at the first rate, then one at the second with the moments carried over
    kwargs = dict(loss=PF_CASE["loss"], epochs=1, batch_size=5, shuffle=False, optimizer=optimizer,
                  momentum=0.8, sample_weight=w, activation="tanh", output="softmax", alpha=0.01)
    hand_w, hand_b, _, opt = naive.train(weights, biases, X, y, lr=lrs[0], **kwargs)
    opt.lr = lrs[1]
    hand_w, hand_b, _, _ = naive.train(hand_w, hand_b, X, y, lr=lrs[1], hand_optimizer=opt, **kwargs)
    assert_close_normwise(flat((net.weights, net.biases)), flat((hand_w, hand_b)), rtol=1e-10)
    # the carried state mattered: the same second epoch from a fresh optimizer ends elsewhere
    restarted.partial_fit(X, y, lr=lrs[1], sample_weight=w, **settings)
    assert np.abs(flat((restarted.weights, restarted.biases)) - flat((net.weights, net.biases))).max() > 1e-6


def test_switching_optimizer_between_partial_fits_starts_it_afresh(backend):
    X, y, _ = case_data(PF_CASE)
    net = build(PF_CASE, backend)
    settings = dict(batch_size=5, shuffle=False)
    net.partial_fit(X, y, optimizer="adam", lr=0.01, **settings)
    net.partial_fit(X, y, optimizer="sgd", lr=0.1, **settings)
    weights, biases = parameters_copy(net)
    net.partial_fit(X, y, optimizer="adam", lr=0.01, **settings)
    hand_w, hand_b, _, _ = naive.train(weights, biases, X, y, loss="cross_entropy", epochs=1, lr=0.01,
                                       optimizer="adam", activation="tanh", output="softmax", **settings)
    assert_close_normwise(flat((net.weights, net.biases)), flat((hand_w, hand_b)), rtol=1e-10)


# =========================================================================================
# Saving and loading
# =========================================================================================


@pytest.mark.parametrize("activation, output, loss", COMBINATIONS, ids=COMBINATION_IDS)
def test_save_and_load_keep_activation_and_output(backend, activation, output, loss, tmp_path):
    case = dict(activation=activation, output=output, loss=loss, bias=True, n=20, layers=[3, 5, 2],
                scale=1.0, seed=121)
    X, y, _ = case_data(case)
    net = build(case, backend)
    net.partial_fit(X, y, optimizer="adam", lr=0.01, batch_size=6, seed=1, alpha=0.01)
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = Network.load(path)
    assert (loaded.activation, loaded.output, loaded.loss, loaded.backend) == (activation, output, loss, backend)
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))
    # and it resumes exactly where the original goes
    for n in (net, loaded):
        n.partial_fit(X, y, optimizer="adam", lr=0.01, batch_size=6, seed=2, alpha=0.01)
    np.testing.assert_array_equal(flat((loaded.weights, loaded.biases)), flat((net.weights, net.biases)))


def test_a_file_from_before_layer_choices_loads_as_a_sigmoid_network_and_resumes(backend, tmp_path):
    """Written by hand as fastnet 0.2 wrote it: no "activation"/"output" fields, and an
    optimizer_hyper of five fields (lr, momentum, beta1, beta2, eps; no alpha)."""
    layers = [3, 4, 2]
    rng = np.random.default_rng(131)
    weights = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))]
    biases = [rng.normal(size=4), rng.normal(size=2)]
    # Adam's moments for each array, and its step count t = 5
    m = [rng.normal(0.0, 0.01, p.shape) for p in weights + biases]
    v = [rng.uniform(0.0, 1e-4, p.shape) for p in weights + biases]
    order = [0, 2, 1, 3]      # packed: W_0, b_0, W_1, b_1 (weights + biases is W_0, W_1, b_0, b_1)

    def packed(arrays):
        return np.concatenate([arrays[i].ravel() for i in order])

    generator_state = json.dumps(np.random.default_rng(7).bit_generator.state)
    path = tmp_path / "old.npz"
    np.savez(path, format=np.array("fastnet-network"), format_version=np.array(1),
             layers=np.array(layers, dtype=np.int64), params=packed(weights + biases), bias=np.array(True),
             dtype=np.array("float64"), derivative=np.array("exact"), loss=np.array("mse"),
             backend=np.array(backend), rng_state=np.array(generator_state), optimizer=np.array("adam"),
             optimizer_hyper=np.array([0.01, 0.9, 0.9, 0.999, 1e-8]),
             optimizer_state=np.stack([packed(m), packed(v)]), optimizer_step=np.array([5], dtype=np.int64))

    net = Network.load(path)
    assert (net.activation, net.output, net.loss, net.derivative) == ("sigmoid", "sigmoid", "mse", "exact")
    for actual, expected in zip(net.weights + net.biases, weights + biases):
        np.testing.assert_array_equal(actual, expected)
    X = rng.uniform(-1.0, 1.0, (11, 3))
    y = rng.uniform(0.0, 1.0, (11, 2))
    np.testing.assert_allclose(net.forward(X), naive.forward(weights, biases, X), rtol=1e-13)

    net.partial_fit(X, y, optimizer="adam", lr=0.01, batch_size=4, shuffle=False)
    opt = naive.Optimizer("adam", 0.01, 0.9, weights + biases)
    opt.m, opt.v, opt.t = [a.copy() for a in m], [a.copy() for a in v], 5
    hand_w, hand_b, _, _ = naive.train(weights, biases, X, y, loss="mse", epochs=1, lr=0.01, batch_size=4,
                                       shuffle=False, optimizer="adam", hand_optimizer=opt)
    assert_close_normwise(flat((net.weights, net.biases)), flat((hand_w, hand_b)), rtol=1e-10)


# =========================================================================================
# The default loss
# =========================================================================================


@pytest.mark.parametrize("output, expected", [("softmax", "cross_entropy"), ("sigmoid", "mse"), ("linear", "mse"),
                                              (None, "mse")])
def test_the_default_loss_follows_the_output(backend, output, expected):
    net = Network([3, 4, 2], backend=backend, output=output, seed=1)
    assert net.loss == expected
    assert net.output == (output or "sigmoid")
    X = np.random.default_rng(141).uniform(-1.0, 1.0, (9, 3))
    y = targets_for(net.output, expected, 9, 2, 142)
    assert net.evaluate(X, y) == pytest.approx(
        naive.loss(*parameters_copy(net), X, y, expected, output=net.output), rel=1e-12)
