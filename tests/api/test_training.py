"""Training: mini-batches, optimizers, partial_fit, History, threads, progress, bad input.

Every expected value here comes from naive.py (a NumPy forward/backward
pass, the optimizer formulas of the backend contract and a mini-batch loop),
from ARTICLE.md (typed in there), or from hand arithmetic; nothing is read back
from the code under test except where a test compares two public calls
that must agree (e.g. partial_fit against fit).
"""

import importlib
import importlib.util
import math
import sys

import numpy as np
import pytest

import fastnet
from fastnet import History, Network

import naive
from conftest import (FAST_BACKENDS, assert_close_normwise, assert_parameters_equal, parameters_copy,
                      random_data, random_network, random_parameters, same_network)

#: Backend name -> its module under fastnet.backends (the layout in DESIGN.md).
BACKEND_MODULES = {"numpy": "reference", "numba": "numba_kernels", "native": "native"}

OPTIMIZERS = ["sgd", "momentum", "adam"]


def assert_network_parameters_close(net, weights, biases, rtol):
    """Every weight and bias of ``net`` within ``rtol`` (normwise per array) of the expected ones."""
    for actual, expected in zip(net.weights, weights):
        assert_close_normwise(actual, expected, rtol=rtol)
    if biases is None:
        assert net.biases is None
    else:
        for actual, expected in zip(net.biases, biases):
            assert_close_normwise(actual, expected, rtol=rtol)


def assert_same_parameters(net, other):
    """Two networks hold bitwise identical parameters."""
    assert_parameters_equal(net, parameters_copy(other))


def max_parameter_gap(net, other):
    return max(float(np.abs(a - b).max()) for a, b in zip(net.weights + (net.biases or []),
                                                            other.weights + (other.biases or [])))


# =========================================================================================
# Mini-batch fit equals the step-by-step computation
# =========================================================================================

SIM_LAYERS = [3, 5, 2]
#: 37 rows: not a multiple of 5 or 32, so every batch size but 1 ends in a short batch.
SIM_ROWS = 37
BATCH_SIZES = [1, 5, 32, None]


def sim_epochs(optimizer, batch_size):
    """Two epochs, but one for Adam with batch size 1: a few dozen updates (Adam is chaotic in long runs)."""
    return 1 if optimizer == "adam" and batch_size == 1 else 2


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "in-order"])
@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_minibatch_fit_equals_step_by_step_numpy(backend, optimizer, batch_size, shuffle):
    net = random_network(SIM_LAYERS, backend, seed=3, loss="mse")
    weights, biases = parameters_copy(net)
    X, y = random_data(SIM_LAYERS, SIM_ROWS, seed=4)
    epochs = sim_epochs(optimizer, batch_size)

    history = net.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle, seed=123,
                      optimizer=optimizer)         # lr=None: the optimizer's default rate

    expected_w, expected_b, expected_losses, _ = naive.train(
        weights, biases, X, y, loss="mse", epochs=epochs, batch_size=batch_size, shuffle=shuffle,
        seed=123, optimizer=optimizer)
    assert max(np.abs(a - b).max() for a, b in zip(expected_w, weights)) > 1e-4   # training moved
    assert_network_parameters_close(net, expected_w, expected_b, rtol=1e-10)
    assert len(history.loss) == epochs
    np.testing.assert_allclose(history.loss, expected_losses, rtol=1e-10)


@pytest.mark.parametrize("loss", ["sse", "mse", "bce"])
def test_weighted_minibatch_fit_equals_step_by_step_numpy(backend, loss):
    """With sample_weight, each batch is normalised by its own sum of weights."""
    layers = [4, 3, 2]
    net = random_network(layers, backend, seed=5, loss=loss)
    weights, biases = parameters_copy(net)
    X, y = random_data(layers, 23, seed=6)
    w = np.random.default_rng(7).uniform(0.0, 3.0, 23)
    w[[2, 11]] = 0.0
    lr = 0.05 if loss == "sse" else 0.3
    history = net.fit(X, y, epochs=3, lr=lr, batch_size=4, seed=8, optimizer="momentum", momentum=0.7,
                      sample_weight=w)
    expected_w, expected_b, expected_losses, _ = naive.train(
        weights, biases, X, y, loss=loss, epochs=3, lr=lr, batch_size=4, seed=8, optimizer="momentum",
        momentum=0.7, sample_weight=w)
    assert_network_parameters_close(net, expected_w, expected_b, rtol=1e-10)
    np.testing.assert_allclose(history.loss, expected_losses, rtol=1e-10)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_explicit_lr_and_momentum_are_used(backend, optimizer):
    layers = [3, 4, 1]
    net = random_network(layers, backend, seed=9, loss="sse", bias=False)
    weights, biases = parameters_copy(net)
    X, y = random_data(layers, 12, seed=10)
    net.fit(X, y, epochs=3, lr=0.02, batch_size=5, shuffle=False, optimizer=optimizer, momentum=0.5)
    expected_w, expected_b, _, _ = naive.train(weights, biases, X, y, loss="sse", epochs=3, lr=0.02,
                                                batch_size=5, shuffle=False, optimizer=optimizer, momentum=0.5)
    assert_network_parameters_close(net, expected_w, expected_b, rtol=1e-10)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_default_lr_is_the_documented_one(backend, optimizer):
    X, y = random_data(SIM_LAYERS, 20, seed=11)
    implicit = random_network(SIM_LAYERS, backend, seed=12)
    explicit = random_network(SIM_LAYERS, backend, seed=12)
    implicit.fit(X, y, epochs=2, batch_size=6, seed=1, optimizer=optimizer)
    explicit.fit(X, y, epochs=2, batch_size=6, seed=1, optimizer=optimizer, lr=naive.DEFAULT_LR[optimizer])
    assert_same_parameters(implicit, explicit)


def test_same_seed_same_result_other_seed_other_result(backend):
    X, y = random_data(SIM_LAYERS, 30, seed=13)
    runs = []
    for seed in [5, 5, 6]:
        net = random_network(SIM_LAYERS, backend, seed=14)
        net.fit(X, y, epochs=2, batch_size=4, seed=seed, lr=0.5)
        runs.append(net)
    assert_same_parameters(runs[0], runs[1])
    assert max_parameter_gap(runs[0], runs[2]) > 1e-8


def test_without_seed_fit_shuffles_with_the_networks_own_generator(backend):
    """Given weights, construction draws nothing, so Network(seed=9)'s generator is default_rng(9)
    untouched; fit without a seed continues it from one call to the next."""
    layers = [3, 4, 2]
    weights, biases = random_parameters(layers, seed=60)
    X, y = random_data(layers, 11, seed=61)
    net = Network(layers, backend=backend, weights=weights, biases=biases, seed=9)
    net.fit(X, y, epochs=1, lr=0.5, batch_size=4)
    net.fit(X, y, epochs=1, lr=0.5, batch_size=4)
    expected_w, expected_b, _, _ = naive.train(weights, biases, X, y, loss="mse", epochs=2, lr=0.5,
                                                batch_size=4, seed=9)
    assert_network_parameters_close(net, expected_w, expected_b, rtol=1e-10)


def test_full_batch_epochs_draw_no_permutation(backend):
    """A full-batch fit with shuffle=True leaves the network's generator where shuffle=False does."""
    layers = [3, 4, 2]
    weights, biases = random_parameters(layers, seed=62)
    X, y = random_data(layers, 11, seed=63)
    nets = [Network(layers, backend=backend, weights=weights, biases=biases, seed=10) for _ in range(2)]
    nets[0].fit(X, y, epochs=2, lr=0.5, shuffle=True)
    nets[1].fit(X, y, epochs=2, lr=0.5, shuffle=False)
    for net in nets:
        net.fit(X, y, epochs=1, lr=0.5, batch_size=4)       # shuffles with the network's generator
    assert_same_parameters(nets[0], nets[1])


def test_batch_size_at_least_the_row_count_is_full_batch(backend):
    X, y = random_data(SIM_LAYERS, 10, seed=15)
    full = random_network(SIM_LAYERS, backend, seed=16)
    big = random_network(SIM_LAYERS, backend, seed=16)
    h_full = full.fit(X, y, epochs=3, lr=0.5)
    h_big = big.fit(X, y, epochs=3, lr=0.5, batch_size=25, seed=3)
    assert_close_normwise(np.concatenate([w.ravel() for w in big.weights]),
                          np.concatenate([w.ravel() for w in full.weights]), rtol=1e-14)
    np.testing.assert_allclose(h_big.loss, h_full.loss, rtol=1e-14)


# =========================================================================================
# Full batch: the ARTICLE.md numbers
# =========================================================================================


@pytest.mark.parametrize("batch_size", [None, 3], ids=["None", "3=all-rows"])
def test_full_batch_fit_reproduces_the_article(backend, batch_size):
    net = Network.article(backend)
    history = net.fit(naive.X, naive.Y, epochs=1, lr=1.0, batch_size=batch_size)
    np.testing.assert_allclose(net.weights[0], naive.NEW_W1, rtol=0, atol=1e-8)
    np.testing.assert_allclose(net.weights[1], naive.NEW_W2, rtol=0, atol=1e-8)
    assert history.loss[0] == pytest.approx(naive.SSE_BEFORE, abs=1e-7)
    assert history.loss[0] == pytest.approx(Network.article(backend).evaluate(naive.X, naive.Y), rel=1e-14)


def test_full_batch_history_loss_is_the_loss_before_each_step(backend):
    layers = [3, 4, 2]
    X, y = random_data(layers, 9, seed=17)
    net = random_network(layers, backend, seed=18)
    before = []
    probe = random_network(layers, backend, seed=18)
    for _ in range(3):
        before.append(probe.evaluate(X, y))
        probe.step(X, y, lr=0.8)
    history = net.fit(X, y, epochs=3, lr=0.8)
    np.testing.assert_allclose(history.loss, before, rtol=1e-14)


# =========================================================================================
# Threads: bitwise identical results for 1 and 2 threads
# =========================================================================================


@pytest.fixture
def restore_threads():
    """Put the thread count back as it was, whatever the test did."""
    original = fastnet.get_num_threads()
    yield original
    fastnet.set_num_threads(original)


def big_data(n, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (n, 6)), rng.uniform(0.0, 1.0, (n, 3))


BIG_LAYERS = [6, 16, 3]


def fit_with_threads(backend, threads, X, y, **kwargs):
    fastnet.set_num_threads(threads)
    assert fastnet.get_num_threads() == threads
    if backend == "native":
        from fastnet.backends import native
        assert native.get_num_threads() == threads
    net = random_network(BIG_LAYERS, backend, seed=19)
    history = net.fit(X, y, **kwargs)
    return net, history


THREAD_RUNS = {
    "full-batch-40000": dict(epochs=3, lr=2.0),
    "batch-20000-sgd": dict(epochs=2, lr=2.0, batch_size=20_000, seed=4),
    "batch-20000-adam": dict(epochs=2, batch_size=20_000, seed=4, optimizer="adam", lr=0.01),
}


@pytest.mark.parametrize("run", list(THREAD_RUNS))
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_fit_is_bitwise_identical_for_one_and_two_threads(backend, run, restore_threads):
    X, y = big_data(40_000, seed=20)
    kwargs = THREAD_RUNS[run]
    one, h_one = fit_with_threads(backend, 1, X, y, **kwargs)
    two, h_two = fit_with_threads(backend, 2, X, y, **kwargs)
    assert_same_parameters(one, two)
    assert h_one.loss == h_two.loss
    # and the runs are real training, agreeing with the reference backend
    reference = random_network(BIG_LAYERS, "numpy", seed=19)
    reference.fit(X, y, **kwargs)
    assert max_parameter_gap(reference, random_network(BIG_LAYERS, "numpy", seed=19)) > 1e-6
    for a, b in zip(two.weights + two.biases, reference.weights + reference.biases):
        assert_close_normwise(a, b, rtol=1e-10)


#: A network wide enough that a mini-batch of SPLIT_LAYERS_BATCH rows is cut into blocks of
#: 80 rows (fastnet.backends.block_rows: 300 x 16,708 parameters is over SPLIT_WORK).
SPLIT_LAYERS, SPLIT_LAYERS_BATCH = [256, 64, 4], 300


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_mini_batches_cut_into_blocks_are_bitwise_identical_for_one_and_two_threads(backend, dtype,
                                                                                      restore_threads):
    """1,000 rows in batches of 300, each cut into blocks of 80 rows (four blocks, the last
    of 60; the last batch of 100 rows into two) that run on both threads: the same bits on one
    and two threads, and the reference backend's training up to rounding."""
    from fastnet.backends import block_rows
    from fastnet.layout import ParamLayout
    assert block_rows(SPLIT_LAYERS_BATCH, ParamLayout(SPLIT_LAYERS, True)) == 80
    X, y = random_data(SPLIT_LAYERS, 1000, seed=31)
    fit = dict(epochs=2, batch_size=SPLIT_LAYERS_BATCH, optimizer="adam", lr=0.01, alpha=0.01, seed=5)

    def trained(backend_name, threads):
        fastnet.set_num_threads(threads)
        weights, biases = random_parameters(SPLIT_LAYERS, seed=32)
        net = Network(SPLIT_LAYERS, backend=backend_name, weights=weights, biases=biases, dtype=dtype)
        gradients = net.gradients(X[:SPLIT_LAYERS_BATCH], y[:SPLIT_LAYERS_BATCH])
        history = net.fit(X, y, **fit)
        return net, gradients, history

    one, gradients_one, history_one = trained(backend, 1)
    two, gradients_two, history_two = trained(backend, 2)
    assert_same_parameters(one, two)
    for a, b in zip(gradients_one[0] + gradients_one[1], gradients_two[0] + gradients_two[1]):
        np.testing.assert_array_equal(a, b)
    assert history_one.loss == history_two.loss
    reference, gradients_reference, _ = trained("numpy", 2)
    rtol = 1e-10 if dtype == "float64" else 1e-4
    for a, b in zip(two.weights + two.biases, reference.weights + reference.biases):
        assert_close_normwise(a, b, rtol=rtol)
    for a, b in zip(gradients_two[0] + gradients_two[1], gradients_reference[0] + gradients_reference[1]):
        assert_close_normwise(a, b, rtol=rtol)


@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_gradients_are_bitwise_identical_for_one_and_two_threads(backend, loss, restore_threads):
    X, y = big_data(100_000, seed=21)
    w = np.random.default_rng(22).uniform(0.0, 2.0, X.shape[0])
    results = []
    for threads in [1, 2]:
        fastnet.set_num_threads(threads)
        net = random_network(BIG_LAYERS, backend, seed=23, loss=loss)
        results.append((net.gradients(X, y), net.gradients(X, y, sample_weight=w), net.evaluate(X, y)))
    (plain1, weighted1, loss1), (plain2, weighted2, loss2) = results
    for g1, g2 in zip(plain1[0] + plain1[1] + weighted1[0] + weighted1[1],
                      plain2[0] + plain2[1] + weighted2[0] + weighted2[1]):
        np.testing.assert_array_equal(g1, g2)
    assert loss1 == loss2


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_activations_are_bitwise_identical_for_one_and_two_threads(backend, restore_threads):
    X, _ = big_data(100_000, seed=24)  # 12 blocks of BLOCK_ROWS rows, the last one partial
    results = []
    for threads in [1, 2]:
        fastnet.set_num_threads(threads)
        results.append(random_network(BIG_LAYERS, backend, seed=25).activations(X))
    reference = random_network(BIG_LAYERS, "numpy", seed=25).activations(X)
    for one, two, expected in zip(*results, reference):
        np.testing.assert_array_equal(one, two)
        assert_close_normwise(two, expected, rtol=1e-12)


def test_set_num_threads_round_trips(restore_threads):
    fastnet.set_num_threads(1)
    assert fastnet.get_num_threads() == 1
    fastnet.set_num_threads(restore_threads)
    assert fastnet.get_num_threads() == restore_threads


@pytest.mark.parametrize("n, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError),
                                      (10_000, ValueError)], ids=repr)
def test_set_num_threads_rejects_bad_counts(n, error, restore_threads):
    with pytest.raises(error, match=r"(?<![A-Za-z0-9_])n(?![A-Za-z0-9_])"):
        fastnet.set_num_threads(n)
    assert fastnet.get_num_threads() == restore_threads


# =========================================================================================
# partial_fit
# =========================================================================================

PF_LAYERS = [3, 4, 2]


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_two_partial_fits_equal_one_fit_of_two_epochs(backend, optimizer):
    X, y = random_data(PF_LAYERS, 17, seed=24)
    settings = dict(batch_size=5, shuffle=False, optimizer=optimizer, lr=0.1 if optimizer == "momentum" else 0.01)
    partial = random_network(PF_LAYERS, backend, seed=25)
    weights, biases = parameters_copy(partial)
    full = random_network(PF_LAYERS, backend, seed=25)
    h1 = partial.partial_fit(X, y, **settings)
    restarted = same_network(partial, *parameters_copy(partial))   # same point, fresh optimizer state
    h2 = partial.partial_fit(X, y, **settings)
    history = full.fit(X, y, epochs=2, **settings)

    assert isinstance(h1, History) and isinstance(h2, History)
    assert len(h1.loss) == len(h2.loss) == 1 and len(h1.time) == 1 and h1.val_loss == []
    assert_same_parameters(partial, full)
    assert [h1.loss[0], h2.loss[0]] == history.loss
    # and the step-by-step computation agrees
    expected_w, expected_b, _, _ = naive.train(weights, biases, X, y, loss="mse", epochs=2, **settings)
    assert_network_parameters_close(partial, expected_w, expected_b, rtol=1e-10)
    # the optimizer state mattered: an epoch from a fresh state ends elsewhere
    restarted.partial_fit(X, y, **settings)
    assert max_parameter_gap(restarted, partial) > 1e-6


RESET_CASES = {
    "momentum-then-adam": (dict(optimizer="momentum", lr=0.1), dict(optimizer="adam", lr=0.01)),
    "adam-then-momentum": (dict(optimizer="adam", lr=0.01), dict(optimizer="momentum", lr=0.1)),
    "adam-then-sgd": (dict(optimizer="adam", lr=0.01), dict(optimizer="sgd", lr=0.1)),
}


@pytest.mark.parametrize("case", list(RESET_CASES))
def test_changing_the_optimizer_resets_the_state(backend, case):
    first, second = RESET_CASES[case]
    X, y = random_data(PF_LAYERS, 17, seed=26)
    net = random_network(PF_LAYERS, backend, seed=27)
    net.partial_fit(X, y, batch_size=4, shuffle=False, **first)
    fresh = same_network(net, *parameters_copy(net))
    net.partial_fit(X, y, batch_size=4, shuffle=False, **second)
    fresh.partial_fit(X, y, batch_size=4, shuffle=False, **second)
    assert_same_parameters(net, fresh)


#: The same optimizer with other settings keeps its state (the issue: a new lr keeps Adam's moments).
KEEP_CASES = {
    "momentum-other-mu": (dict(optimizer="momentum", lr=0.1, momentum=0.9),
                          dict(optimizer="momentum", lr=0.1, momentum=0.5)),
    "momentum-other-lr": (dict(optimizer="momentum", lr=0.1), dict(optimizer="momentum", lr=0.05)),
    "adam-other-lr": (dict(optimizer="adam", lr=0.01), dict(optimizer="adam", lr=0.02)),
    "adam-other-betas": (dict(optimizer="adam", lr=0.01), dict(optimizer="adam", lr=0.01, betas=(0.5, 0.9))),
}


@pytest.mark.parametrize("case", list(KEEP_CASES))
def test_changing_the_settings_of_the_same_optimizer_keeps_its_state(backend, case):
    first, second = KEEP_CASES[case]
    X, y = random_data(PF_LAYERS, 17, seed=26)
    net = random_network(PF_LAYERS, backend, seed=27)
    weights, biases = parameters_copy(net)
    net.partial_fit(X, y, batch_size=4, shuffle=False, **first)
    net.partial_fit(X, y, batch_size=4, shuffle=False, **second)
    # by hand: the second epoch continues the first's optimizer with the new settings
    hand_w, hand_b, _, opt = naive.train(weights, biases, X, y, loss="mse", epochs=1, batch_size=4,
                                         shuffle=False, **first)
    opt.lr, opt.mu = second["lr"], second.get("momentum", 0.9)
    opt.beta1, opt.beta2 = second.get("betas", (naive.BETA1, naive.BETA2))
    hand_w, hand_b, _, _ = naive.train(hand_w, hand_b, X, y, loss="mse", epochs=1, batch_size=4, shuffle=False,
                                       hand_optimizer=opt, **second)
    assert_network_parameters_close(net, hand_w, hand_b, rtol=1e-10)


def test_going_back_to_an_earlier_optimizer_starts_it_afresh(backend):
    X, y = random_data(PF_LAYERS, 17, seed=28)
    net = random_network(PF_LAYERS, backend, seed=29)
    net.partial_fit(X, y, batch_size=4, shuffle=False, optimizer="momentum", lr=0.1)
    net.partial_fit(X, y, batch_size=4, shuffle=False, optimizer="adam", lr=0.01)
    fresh = same_network(net, *parameters_copy(net))
    net.partial_fit(X, y, batch_size=4, shuffle=False, optimizer="momentum", lr=0.1)
    fresh.partial_fit(X, y, batch_size=4, shuffle=False, optimizer="momentum", lr=0.1)
    assert_same_parameters(net, fresh)


def test_partial_fit_with_seed_visits_rows_in_that_seeds_permutation(backend):
    X, y = random_data(PF_LAYERS, 13, seed=30)
    net = random_network(PF_LAYERS, backend, seed=31)
    weights, biases = parameters_copy(net)
    net.partial_fit(X, y, batch_size=3, seed=77, lr=0.5)
    expected_w, expected_b, _, _ = naive.train(weights, biases, X, y, loss="mse", epochs=1, lr=0.5,
                                                batch_size=3, seed=77)
    assert_network_parameters_close(net, expected_w, expected_b, rtol=1e-10)


def test_a_rejected_partial_fit_keeps_the_optimizer_state(backend):
    X, y = random_data(PF_LAYERS, 17, seed=32)
    settings = dict(batch_size=5, shuffle=False, optimizer="momentum", lr=0.1)
    partial = random_network(PF_LAYERS, backend, seed=33)
    full = random_network(PF_LAYERS, backend, seed=33)
    partial.partial_fit(X, y, **settings)
    with pytest.raises(ValueError):
        partial.partial_fit(X, y, **{**settings, "batch_size": 0})
    partial.partial_fit(X, y, **settings)
    full.fit(X, y, epochs=2, **settings)
    assert_same_parameters(partial, full)


# =========================================================================================
# History and callbacks
# =========================================================================================

H_LAYERS = [3, 4, 2]


def history_data():
    X, y = random_data(H_LAYERS, 20, seed=34)
    X_val, y_val = random_data(H_LAYERS, 7, seed=35)
    return X, y, X_val, y_val


def test_history_has_one_entry_per_epoch(backend):
    X, y, _, _ = history_data()
    net = random_network(H_LAYERS, backend, seed=36)
    history = net.fit(X, y, epochs=4, lr=0.5, batch_size=6, seed=1)
    assert isinstance(history, History)
    assert len(history.loss) == len(history.time) == 4
    assert history.val_loss == []
    assert all(isinstance(t, float) and math.isfinite(t) and t > 0 for t in history.time)
    assert all(isinstance(v, float) and math.isfinite(v) for v in history.loss)


def test_validation_history_has_one_entry_per_epoch_ending_at_the_final_loss(backend):
    X, y, X_val, y_val = history_data()
    net = random_network(H_LAYERS, backend, seed=36)
    history = net.fit(X, y, epochs=4, lr=0.5, batch_size=6, seed=1, validation_data=(X_val, y_val))
    assert len(history.loss) == len(history.val_loss) == len(history.time) == 4
    assert all(isinstance(v, float) and math.isfinite(v) for v in history.val_loss)
    assert all(t > 0 for t in history.time)
    assert history.val_loss[-1] == pytest.approx(net.evaluate(X_val, y_val), rel=1e-14)


def test_val_loss_is_the_validation_loss_after_each_epoch(backend):
    X, y, X_val, y_val = history_data()
    history = random_network(H_LAYERS, backend, seed=37).fit(
        X, y, epochs=3, lr=0.5, batch_size=6, seed=2, validation_data=(X_val, y_val))
    for epochs in [1, 2, 3]:
        net = random_network(H_LAYERS, backend, seed=37)
        net.fit(X, y, epochs=epochs, lr=0.5, batch_size=6, seed=2)
        assert history.val_loss[epochs - 1] == pytest.approx(net.evaluate(X_val, y_val), rel=1e-14)


def test_validation_data_does_not_change_training(backend):
    X, y, X_val, y_val = history_data()
    with_val = random_network(H_LAYERS, backend, seed=38)
    without = random_network(H_LAYERS, backend, seed=38)
    h_with = with_val.fit(X, y, epochs=3, lr=0.5, batch_size=6, seed=3, validation_data=[X_val, y_val])
    h_without = without.fit(X, y, epochs=3, lr=0.5, batch_size=6, seed=3)
    assert_same_parameters(with_val, without)
    assert h_with.loss == h_without.loss
    assert h_without.val_loss == []


def test_callback_receives_epoch_and_history(backend):
    X, y, _, _ = history_data()
    calls = []

    def callback(epoch, history):
        calls.append((epoch, history, len(history.loss), len(history.time)))

    history = random_network(H_LAYERS, backend, seed=39).fit(X, y, epochs=3, lr=0.5, callback=callback)
    assert [c[0] for c in calls] == [0, 1, 2]
    assert all(c[1] is history for c in calls)
    assert [c[2:] for c in calls] == [(1, 1), (2, 2), (3, 3)]


def test_callback_sees_the_epochs_validation_loss(backend):
    X, y, X_val, y_val = history_data()
    seen = []
    history = random_network(H_LAYERS, backend, seed=39).fit(
        X, y, epochs=3, lr=0.5, validation_data=(X_val, y_val),
        callback=lambda epoch, history: seen.append(list(history.val_loss)))
    assert seen == [history.val_loss[:1], history.val_loss[:2], history.val_loss[:3]]


@pytest.mark.parametrize("stop_after", [0, 2])
def test_callback_returning_false_stops_training(backend, stop_after):
    X, y, _, _ = history_data()
    seen = []

    def callback(epoch, history):
        seen.append(epoch)
        return False if epoch == stop_after else None

    stopped = random_network(H_LAYERS, backend, seed=40)
    history = stopped.fit(X, y, epochs=10, lr=0.5, batch_size=5, seed=4, callback=callback)
    assert seen == list(range(stop_after + 1))
    assert len(history.loss) == len(history.time) == stop_after + 1
    short = random_network(H_LAYERS, backend, seed=40)
    h_short = short.fit(X, y, epochs=stop_after + 1, lr=0.5, batch_size=5, seed=4)
    assert_same_parameters(stopped, short)
    assert history.loss == h_short.loss


def test_callback_returning_true_or_none_continues(backend):
    X, y, _, _ = history_data()
    answers = iter([True, None, True])
    history = random_network(H_LAYERS, backend, seed=41).fit(
        X, y, epochs=3, lr=0.5, callback=lambda epoch, history: next(answers))
    assert len(history.loss) == 3


def test_callback_may_evaluate_the_network(backend):
    """A callback runs on the training thread; evaluating the network there is natural (early
    stopping on a custom metric, logging predictions) and must not be mistaken for use from
    another thread."""
    X, y, X_val, y_val = history_data()
    net = random_network(H_LAYERS, backend, seed=42)
    measured = []
    history = net.fit(X, y, epochs=3, lr=0.5, validation_data=(X_val, y_val),
                      callback=lambda epoch, history: measured.append(net.evaluate(X_val, y_val)))
    np.testing.assert_allclose(measured, history.val_loss, rtol=1e-14)


# =========================================================================================
# Progress bar
# =========================================================================================


def test_progress_false_is_silent(backend, capsys):
    X, y, _, _ = history_data()
    history = random_network(H_LAYERS, backend, seed=43).fit(X, y, epochs=3, lr=0.5, progress=False)
    assert len(history.loss) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_default_is_silent_for_a_short_run_off_a_terminal(backend, capsys):
    X, y, _, _ = history_data()
    random_network(H_LAYERS, backend, seed=43).fit(X, y, epochs=3, lr=0.5)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_true_shows_a_bar_or_asks_for_tqdm(backend, capsys):
    X, y, _, _ = history_data()
    net = random_network(H_LAYERS, backend, seed=44)
    if importlib.util.find_spec("tqdm") is not None:
        history = net.fit(X, y, epochs=3, lr=0.5, progress=True)
        assert len(history.loss) == 3
        assert "3/3" in capsys.readouterr().err      # tqdm's counter at the end
    else:
        before = parameters_copy(net)
        with pytest.raises(ImportError, match="tqdm"):
            net.fit(X, y, epochs=3, lr=0.5, progress=True)
        assert_parameters_equal(net, before)


def test_progress_true_without_tqdm_raises_import_error_naming_tqdm(backend, monkeypatch):
    """tqdm made unimportable (None in sys.modules): progress=True fails up front, None still runs."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    X, y, _, _ = history_data()
    net = random_network(H_LAYERS, backend, seed=45)
    before = parameters_copy(net)
    with pytest.raises(ImportError, match="tqdm"):
        net.fit(X, y, epochs=2, lr=0.5, progress=True)
    assert_parameters_equal(net, before)
    assert len(net.fit(X, y, epochs=2, lr=0.5, progress=None).loss) == 2
    assert len(net.fit(X, y, epochs=2, lr=0.5, progress=False).loss) == 2


# =========================================================================================
# A learnable problem
# =========================================================================================

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([[0.0], [1.0], [1.0], [0.0]])


def test_xor_is_learned_with_bce_and_adam(backend):
    """XOR needs the hidden layer.  Threshold: a network without one (logistic regression) is at
    best ln 2 = 0.693 on XOR (its convex loss is symmetric under the swaps that exchange the
    classes, so its optimum is the constant 0.5).  A loss below 0.05 < ln(2)/10 means every
    output is on the right side of 1/2 by a wide margin, which we check too."""
    net = Network([2, 8, 1], backend=backend, loss="bce", seed=0)
    history = net.fit(XOR_X, XOR_Y, epochs=400, optimizer="adam", lr=0.05)
    losses = np.array(history.loss)
    assert losses[0] > 0.5                      # it starts near chance
    assert net.evaluate(XOR_X, XOR_Y) < 0.05
    assert losses[-1] < 0.05
    assert np.all(np.abs(net.forward(XOR_X) - XOR_Y) < 0.25)


# =========================================================================================
# Bad input: rejected before training starts, naming the argument, parameters unchanged
# =========================================================================================

BAD_LAYERS = [3, 4, 2]
BAD_N = 6


def name_pattern(name):
    """A regex matching ``name`` as a whole word (so "y" does not match "array")."""
    return rf"(?<![A-Za-z0-9_]){name}(?![A-Za-z0-9_])"


@pytest.fixture
def guarded(backend, monkeypatch):
    """A bias network on ``backend`` whose kernels fail the test if they run."""
    net = random_network(BAD_LAYERS, backend, seed=46, bias=True)
    module = importlib.import_module(f"fastnet.backends.{BACKEND_MODULES[backend]}")

    def kernel_ran(*args, **kwargs):
        raise AssertionError("a backend kernel ran before the bad input was rejected")

    for name in ["forward", "gradient", "train_epoch"]:
        monkeypatch.setattr(module, name, kernel_ran)
    return net


def bad_data():
    return random_data(BAD_LAYERS, BAD_N, seed=47)


def test_guard_catches_training(guarded):
    X, y = bad_data()
    with pytest.raises(AssertionError, match="kernel ran"):
        guarded.fit(X, y, epochs=1, batch_size=2)
    with pytest.raises(AssertionError, match="kernel ran"):
        guarded.partial_fit(X, y)


X_V, Y_V = random_data(BAD_LAYERS, 4, seed=48)

#: (argument named in the message, keyword arguments, expected error).
BAD_TRAINING_ARGUMENTS = {
    "batch_size=0": ("batch_size", dict(batch_size=0), ValueError),
    "batch_size=-1": ("batch_size", dict(batch_size=-1), ValueError),
    "batch_size=2.5": ("batch_size", dict(batch_size=2.5), TypeError),
    "batch_size='32'": ("batch_size", dict(batch_size="32"), TypeError),
    "batch_size=True": ("batch_size", dict(batch_size=True), TypeError),
    "lr=0": ("lr", dict(lr=0), ValueError),
    "lr=-0.1": ("lr", dict(lr=-0.1), ValueError),
    "lr=nan": ("lr", dict(lr=float("nan")), ValueError),
    "lr=inf": ("lr", dict(lr=float("inf")), ValueError),
    "lr=0-adam": ("lr", dict(lr=0.0, optimizer="adam"), ValueError),
    "lr=nan-momentum": ("lr", dict(lr=float("nan"), optimizer="momentum"), ValueError),
    "lr='0.1'": ("lr", dict(lr="0.1"), TypeError),
    "optimizer='rmsprop'": ("optimizer", dict(optimizer="rmsprop"), ValueError),
    "optimizer='Adam'": ("optimizer", dict(optimizer="Adam"), ValueError),
    "optimizer=1": ("optimizer", dict(optimizer=1), TypeError),
    "optimizer=None": ("optimizer", dict(optimizer=None), TypeError),
    "momentum=-0.1": ("momentum", dict(optimizer="momentum", momentum=-0.1), ValueError),
    "momentum=1.0": ("momentum", dict(optimizer="momentum", momentum=1.0), ValueError),
    "momentum=nan": ("momentum", dict(optimizer="momentum", momentum=float("nan")), ValueError),
    "momentum='0.5'": ("momentum", dict(optimizer="momentum", momentum="0.5"), TypeError),
    "sample_weight-short": ("sample_weight", dict(sample_weight=np.ones(BAD_N - 1)), ValueError),
    "sample_weight-long": ("sample_weight", dict(sample_weight=np.ones(BAD_N + 1)), ValueError),
    "sample_weight-negative": ("sample_weight", dict(sample_weight=np.array([1, 1, -0.5, 1, 1, 1.0])), ValueError),
    "sample_weight-zeros": ("sample_weight", dict(sample_weight=np.zeros(BAD_N)), ValueError),
    "sample_weight-nan": ("sample_weight", dict(sample_weight=np.array([1, np.nan, 1, 1, 1, 1.0])), ValueError),
    "sample_weight-inf": ("sample_weight", dict(sample_weight=np.array([1, np.inf, 1, 1, 1, 1.0])), ValueError),
    "sample_weight-2-D": ("sample_weight", dict(sample_weight=np.ones((BAD_N, 1))), ValueError),
    "sample_weight-strings": ("sample_weight", dict(sample_weight=["a"] * BAD_N), TypeError),
}

#: Arguments only fit takes.
BAD_FIT_ONLY_ARGUMENTS = {
    "epochs=-1": ("epochs", dict(epochs=-1), ValueError),
    "epochs=1.5": ("epochs", dict(epochs=1.5), TypeError),
    "callback=3": ("callback", dict(callback=3), TypeError),
    "callback='print'": ("callback", dict(callback="print"), TypeError),
    "validation_data-X-alone": ("validation_data", dict(validation_data=X_V), TypeError),
    "validation_data-one-item": ("validation_data", dict(validation_data=(X_V,)), TypeError),
    "validation_data-three-items": ("validation_data", dict(validation_data=(X_V, Y_V, Y_V)), TypeError),
    "validation_data-dict": ("validation_data", dict(validation_data={"X": X_V, "y": Y_V}), TypeError),
}

#: validation_data that is a pair but of the wrong shape: the message should say it is the
#: validation data that is wrong, not the training X or y the caller got right.
BAD_VALIDATION_SHAPES = {
    "X_val-wrong-columns": (np.ones((4, 5)), Y_V),
    "y_val-wrong-columns": (X_V, np.ones((4, 3))),
    "y_val-wrong-rows": (X_V, np.ones((3, 2))),
    "X_val-1-D": (np.ones(3), Y_V),
    "X_val-nan": (np.where(X_V > 0, np.nan, X_V), Y_V),
}
VALIDATION_NAMES = r"validation_data|X_val|y_val"


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("case", list(BAD_TRAINING_ARGUMENTS))
def test_bad_training_argument_is_rejected_up_front(guarded, case, method):
    name, kwargs, error = BAD_TRAINING_ARGUMENTS[case]
    X, y = bad_data()
    before = parameters_copy(guarded)
    with pytest.raises(error, match=name_pattern(name)):
        getattr(guarded, method)(X, y, **kwargs)
    assert_parameters_equal(guarded, before)


@pytest.mark.parametrize("case", list(BAD_FIT_ONLY_ARGUMENTS))
def test_bad_fit_argument_is_rejected_up_front(guarded, case):
    name, kwargs, error = BAD_FIT_ONLY_ARGUMENTS[case]
    X, y = bad_data()
    before = parameters_copy(guarded)
    with pytest.raises(error, match=name_pattern(name)):
        guarded.fit(X, y, **{"epochs": 2, **kwargs})
    assert_parameters_equal(guarded, before)


@pytest.mark.parametrize("case", list(BAD_VALIDATION_SHAPES))
def test_validation_data_of_the_wrong_shape_is_rejected_naming_it(guarded, case):
    X, y = bad_data()
    before = parameters_copy(guarded)
    with pytest.raises(ValueError, match=VALIDATION_NAMES):
        guarded.fit(X, y, epochs=2, validation_data=BAD_VALIDATION_SHAPES[case])
    assert_parameters_equal(guarded, before)


SAMPLE_WEIGHT_CASES = [case for case in BAD_TRAINING_ARGUMENTS if case.startswith("sample_weight")]


@pytest.mark.parametrize("method", ["evaluate", "gradients", "step"])
@pytest.mark.parametrize("case", SAMPLE_WEIGHT_CASES)
def test_bad_sample_weight_is_rejected_by_evaluate_gradients_and_step(guarded, case, method):
    _, kwargs, error = BAD_TRAINING_ARGUMENTS[case]
    X, y = bad_data()
    before = parameters_copy(guarded)
    with pytest.raises(error, match=name_pattern("sample_weight")):
        if method == "evaluate":
            guarded.evaluate(X, y, **kwargs)
        elif method == "gradients":
            guarded.gradients(X, y, **kwargs)
        else:
            guarded.step(X, y, lr=0.1, **kwargs)
    assert_parameters_equal(guarded, before)


@pytest.mark.parametrize("loss, error", [("rmse", ValueError), ("BCE", ValueError), ("cross_entropy", ValueError),
                                         ("log_loss", ValueError), (2, TypeError)], ids=repr)
def test_unknown_loss_is_rejected_at_construction(backend, loss, error):
    with pytest.raises(error, match=name_pattern("loss")):
        Network(BAD_LAYERS, backend=backend, loss=loss)
