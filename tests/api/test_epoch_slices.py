"""Epochs run as several backend calls on consecutive whole batches (so a progress
bar moves within an epoch): the parameters and optimizer state come out bitwise as
from one call per epoch, on every backend, shuffled or in place, and a failure in
any call puts back the state from before the epoch."""

import numpy as np
import pytest

from fastnet import Network, training

CASES = {
    # name: (fit keyword arguments, with sample weights)
    "shuffled sgd": ({"batch_size": 8, "optimizer": "sgd", "lr": 0.5}, False),
    "in place momentum": ({"batch_size": 8, "optimizer": "momentum", "shuffle": False}, False),
    "shuffled adam, weighted": ({"batch_size": 5, "optimizer": "adam", "lr": 0.01}, True),
    "in place adam, weighted, L2": ({"batch_size": 7, "optimizer": "adam", "shuffle": False, "alpha": 0.1}, True),
}


def data(n=203):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 3))
    labels = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0.5)
    return X, np.eye(3)[labels], rng.uniform(0.1, 2.0, n)


def trained(backend, kwargs, weighted, slice_work, calls=None):
    """A softmax network after 3 epochs with epochs cut at ``slice_work``, and its
    History; the number of rows each backend call visits is appended to ``calls`` when given."""
    X, Y, weights = data()
    net = Network([3, 6, 3], backend=backend, activation="tanh", output="softmax", seed=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "EPOCH_SLICE_WORK", slice_work)
        if calls is not None:
            original = net._backend.train_epoch

            def counting(model, rows, order, *args):
                calls.append(order.size if order.size else rows.X.shape[0])   # rows this call visits
                return original(model, rows, order, *args)
            patch.setattr(net._backend, "train_epoch", counting)
        history = net.fit(X, Y, epochs=3, seed=2, sample_weight=weights if weighted else None, **kwargs)
    return net, history


def two_batches_of_work(batch_size, n_params=3 * 6 + 6 + 6 * 3 + 3):
    """EPOCH_SLICE_WORK for two batches per call of the [3, 6, 3] network (45 parameters)."""
    return 2 * n_params * (3 * batch_size + 8)


@pytest.mark.parametrize("case", CASES)
def test_sliced_epochs_are_bitwise_one_call_per_epoch(backend, case):
    kwargs, weighted = CASES[case]
    batch = kwargs["batch_size"]
    whole_calls, sliced_calls = [], []
    whole, whole_history = trained(backend, kwargs, weighted, 2**62, whole_calls)
    sliced, sliced_history = trained(backend, kwargs, weighted, two_batches_of_work(batch), sliced_calls)
    assert whole_calls == [203] * 3
    per_epoch = [2 * batch] * (203 // (2 * batch)) + ([203 % (2 * batch)] if 203 % (2 * batch) else [])
    assert sliced_calls == per_epoch * 3
    np.testing.assert_array_equal(sliced._params, whole._params)
    np.testing.assert_array_equal(sliced._optimizer.state, whole._optimizer.state)
    np.testing.assert_array_equal(sliced._optimizer.step, whole._optimizer.step)
    # The epoch's loss is a sum of the calls' sums instead of one running sum.
    np.testing.assert_allclose(sliced_history.loss, whole_history.loss, rtol=1e-14)


@pytest.mark.parametrize("n_rows, batch, n_params, work, expected", [
    # work for 3 batches of 4 rows (10 parameters: 10 * (3 * 4 + 8) = 200 each)
    (25, 4, 10, 600, [(0, 12), (12, 24), (24, 25)]),
    # less work than one batch: one batch per call
    (9, 4, 10, 1, [(0, 4), (4, 8), (8, 9)]),
    # one call for the whole epoch
    (9, 4, 10, 2**40, [(0, 9)]),
])
def test_epoch_slices_are_whole_batches_within_the_work_budget(monkeypatch, n_rows, batch, n_params, work, expected):
    monkeypatch.setattr(training, "EPOCH_SLICE_WORK", work)
    assert training.epoch_slices(n_rows, batch, n_params) == expected


@pytest.mark.parametrize("shuffle", [True, False])
def test_a_failure_in_a_later_call_restores_the_state_before_the_epoch(backend, shuffle, monkeypatch):
    X, Y, _ = data()
    net = Network([3, 6, 3], backend=backend, activation="tanh", output="softmax", seed=1)
    net.fit(X, Y, epochs=1, batch_size=8, optimizer="adam", lr=0.01, seed=2)  # some optimizer state
    params, state, step = net._params.copy(), net._optimizer.state.copy(), net._optimizer.step.copy()
    original, calls = net._backend.train_epoch, []

    def failing_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args)
    monkeypatch.setattr(training, "EPOCH_SLICE_WORK", two_batches_of_work(8))
    monkeypatch.setattr(net._backend, "train_epoch", failing_third)
    with pytest.raises(KeyboardInterrupt) as caught:
        net.fit(X, Y, epochs=2, batch_size=8, optimizer="adam", lr=0.01, seed=3, shuffle=shuffle)
    assert len(calls) == 3 and caught.value.history.loss == []
    np.testing.assert_array_equal(net._params, params)
    np.testing.assert_array_equal(net._optimizer.state, state)
    np.testing.assert_array_equal(net._optimizer.step, step)


def test_the_bar_moves_within_each_epoch(monkeypatch):
    """Progress.within sees each call's share of the epoch, then update the whole epoch."""
    seen = []
    monkeypatch.setattr(training.Progress, "within", lambda self, epoch, fraction: seen.append((epoch, fraction)))
    monkeypatch.setattr(training, "EPOCH_SLICE_WORK", two_batches_of_work(50))
    X, Y, _ = data(200)
    Network([3, 6, 3], backend="numpy", output="softmax", seed=1).fit(X, Y, epochs=2, batch_size=50,
                                                                         progress=False)
    assert seen == [(0, 0.5), (0, 1.0), (1, 0.5), (1, 1.0)]
