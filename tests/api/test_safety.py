"""Training that goes wrong leaves the network usable: divergence, Ctrl-C, threads, determinism.

- Divergence (NaN/inf loss or parameters) stops training with
  fastnet.DivergenceError, the network back at the last finite epoch.
- KeyboardInterrupt during fit leaves the network exactly at the last
  completed epoch, records what completed, and propagates.
- Two threads may train two networks at once (same results as one after the
  other); one network used from two threads at once raises RuntimeError in one.
- The same seed gives bit-identical training, across runs and thread counts.
"""

import textwrap
import threading

import numpy as np
import pytest

import fastnet
from fastnet import DivergenceError, Network, spec

from conftest import (BACKENDS, TESTS_DIR, assert_parameters_equal, parameters_copy, random_data, run_python,
                      seeded_training)

LAYERS = [3, 4, 1]


def network(backend, seed=3, loss="sse", layers=LAYERS):
    return Network(layers, backend=backend, seed=seed, loss=loss)


def far_data(n=300, seed=0):
    """Targets far from the initial outputs (about 0.5), so the full-batch gradient is large."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (n, LAYERS[0])), np.ones((n, LAYERS[-1]))


def assert_same_params(a, b):
    assert_parameters_equal(a, parameters_copy(b))


# -- divergence -------------------------------------------------------------------------------

def test_divergence_error_is_a_floating_point_error():
    assert issubclass(DivergenceError, FloatingPointError)
    assert fastnet.DivergenceError is DivergenceError


@pytest.mark.filterwarnings("ignore::RuntimeWarning")     # the reference may warn about the overflow
def test_divergence_in_the_first_epoch_restores_the_initial_parameters(backend):
    net = network(backend)
    X, y = far_data()
    before = parameters_copy(net)
    with pytest.raises(DivergenceError) as caught:
        net.fit(X, y, epochs=3, lr=1e307)
    error = caught.value
    assert error.epoch == 0
    assert "epoch 0" in str(error)
    assert "learning rate" in str(error) and "1e+307" in str(error)
    assert error.history.loss == []
    assert_parameters_equal(net, before)
    assert all(np.isfinite(w).all() for w in net.weights + net.biases)
    # the network still works, and trains with a sensible rate
    assert np.isfinite(net.forward(X)).all()
    net.fit(X, y, epochs=2, lr=1e-3)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("batch_size", [None, 1000], ids=["full-batch", "mini-batch"])
def test_divergence_after_successful_epochs_restores_the_last_finite_epoch(backend, batch_size):
    """A callback raises the learning rate after epoch 1 (through the optimizer's settings); epoch 2 overflows."""
    net = network(backend)
    X, y = far_data(3000)
    snapshots = []

    def raise_lr_after_epoch_1(epoch, history):
        snapshots.append(parameters_copy(net))
        if epoch == 1:
            net._optimizer.hyper[0] = 1e307

    with pytest.raises(DivergenceError) as caught:
        net.fit(X, y, epochs=5, lr=1e-3, batch_size=batch_size, shuffle=False, callback=raise_lr_after_epoch_1)
    error = caught.value
    assert error.epoch == 2
    assert "epoch 2" in str(error) and "learning rate" in str(error)
    assert len(error.history.loss) == 2 and np.isfinite(error.history.loss).all()
    assert_parameters_equal(net, snapshots[-1])
    # the same as training for exactly the two completed epochs
    reference = network(backend)
    history = reference.fit(X, y, epochs=2, lr=1e-3, batch_size=batch_size, shuffle=False)
    assert history.loss == error.history.loss
    assert_same_params(net, reference)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_divergence_after_successful_epochs_restores_the_optimizer_state_too(backend, optimizer):
    """The velocity or moments, and Adam's step count, go back to the end of the last
    finite epoch with the parameters: they equal those of a twin that trained exactly
    that long, and training on from there gives the twin's parameters."""
    X, y = far_data(3000)
    net, twin = network(backend), network(backend)
    settings = dict(lr=1e-3, batch_size=1000, shuffle=False, optimizer=optimizer)

    def raise_lr_after_epoch_1(epoch, history):
        if epoch == 1:
            net._optimizer.hyper[spec.hyper_index("lr")] = 1e308

    with pytest.raises(DivergenceError) as caught:
        net.fit(X, y, epochs=5, callback=raise_lr_after_epoch_1, **settings)
    assert caught.value.epoch == 2
    twin.fit(X, y, epochs=2, **settings)
    np.testing.assert_array_equal(net._optimizer.state, twin._optimizer.state)
    np.testing.assert_array_equal(net._optimizer.step, twin._optimizer.step)
    for n in (net, twin):
        n.partial_fit(X, y, **settings)
    assert_same_params(net, twin)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_in_a_later_partial_fit_restores_the_previous_one(backend):
    net = network(backend)
    X, y = far_data()
    net.partial_fit(X, y, lr=1e-3)
    after_first = parameters_copy(net)
    with pytest.raises(DivergenceError) as caught:
        net.partial_fit(X, y, lr=1e307)
    assert caught.value.epoch == 0
    assert "learning rate" in str(caught.value)
    assert caught.value.history.loss == []
    assert_parameters_equal(net, after_first)


def diverging_partial_fit(net, X, y, monkeypatch):
    with pytest.raises(DivergenceError):
        net.partial_fit(X, y, lr=1e307, seed=1)


def diverging_fit(net, X, y, monkeypatch):
    with pytest.raises(DivergenceError):
        net.fit(X, y, epochs=3, lr=1e307)


def interrupted_partial_fit(net, X, y, monkeypatch):
    real_train_epoch = net._backend.train_epoch

    def interrupted(*args, **kwargs):
        real_train_epoch(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(net._backend, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        net.partial_fit(X, y, lr=0.5, optimizer="sgd", seed=1)
    monkeypatch.undo()


FAILED_CALLS = {"diverging-partial_fit": diverging_partial_fit, "diverging-fit": diverging_fit,
                "interrupted-partial_fit": interrupted_partial_fit}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("failed_call", list(FAILED_CALLS))
def test_failed_call_leaves_the_optimizer_state_as_it_was(backend, failed_call, monkeypatch, optimizer):
    """A call that fails in its first epoch is undone entirely, optimizer included: carrying on
    with the earlier settings gives what a twin that never made the failed call gets.

    (The failed call uses other optimizer settings; the network must not keep them, nor drop
    the velocity/moments that the earlier partial_fit calls built up.)
    """
    X, y = far_data()
    net, twin = network(backend), network(backend)
    for n in (net, twin):
        n.partial_fit(X, y, lr=1e-4, optimizer=optimizer, batch_size=30, seed=1)
    FAILED_CALLS[failed_call](net, X, y, monkeypatch)
    assert_same_params(net, twin)
    for n in (net, twin):
        n.partial_fit(X, y, lr=1e-4, optimizer=optimizer, batch_size=30, seed=2)
    assert_same_params(net, twin)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverged_network_saves_and_loads(backend, tmp_path):
    net = network(backend)
    X, y = far_data()
    with pytest.raises(DivergenceError):
        net.fit(X, y, epochs=1, lr=1e307)
    net.save(tmp_path / "net.npz")
    assert_same_params(Network.load(tmp_path / "net.npz"), net)


# -- KeyboardInterrupt ------------------------------------------------------------------------

FIT = dict(lr=0.05, batch_size=16, optimizer="adam", seed=9)


def interrupt_data():
    return random_data(LAYERS, 100, seed=4)


def continue_both(net, reference, X, y):
    """partial_fit with fit's settings continues the optimizer's state: both must stay identical."""
    for _ in range(2):
        net.partial_fit(X, y, **FIT)
        reference.partial_fit(X, y, **FIT)
        assert_same_params(net, reference)


@pytest.mark.parametrize("k", [0, 2])
def test_interrupt_from_callback_keeps_the_completed_epochs(backend, k):
    """Ctrl-C in the callback of epoch k: epochs 0..k are complete and kept."""
    X, y = interrupt_data()
    net = network(backend, loss="mse")

    def interrupt_at_k(epoch, history):
        if epoch == k:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        net.fit(X, y, epochs=6, callback=interrupt_at_k, **FIT)
    reference = network(backend, loss="mse")
    history = reference.fit(X, y, epochs=k + 1, **FIT)
    assert caught.value.history.loss == history.loss
    assert_same_params(net, reference)
    continue_both(net, reference, X, y)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_interrupt_inside_the_backend_keeps_the_completed_epochs(backend, k, monkeypatch):
    """Ctrl-C arriving in epoch k's backend call, after it has updated its buffers: epoch k is dropped."""
    X, y = interrupt_data()
    net = network(backend, loss="mse")
    real_train_epoch = net._backend.train_epoch
    calls = []

    def interrupted_train_epoch(*args, **kwargs):
        result = real_train_epoch(*args, **kwargs)
        calls.append(result)
        if len(calls) == k + 1:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(net._backend, "train_epoch", interrupted_train_epoch)
    with pytest.raises(KeyboardInterrupt) as caught:
        net.fit(X, y, epochs=6, **FIT)
    monkeypatch.undo()
    reference = network(backend, loss="mse")
    history = reference.fit(X, y, epochs=k, **FIT)
    assert caught.value.history.loss == history.loss
    assert len(caught.value.history.loss) == k
    assert_same_params(net, reference)
    continue_both(net, reference, X, y)


def test_interrupt_inside_partial_fit_keeps_the_previous_call(backend, monkeypatch):
    X, y = interrupt_data()
    net, reference = network(backend, loss="mse"), network(backend, loss="mse")
    for n in (net, reference):
        n.partial_fit(X, y, **FIT)
    real_train_epoch = net._backend.train_epoch

    def interrupted_train_epoch(*args, **kwargs):
        real_train_epoch(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(net._backend, "train_epoch", interrupted_train_epoch)
    with pytest.raises(KeyboardInterrupt) as caught:
        net.partial_fit(X, y, **FIT)
    monkeypatch.undo()
    assert caught.value.history.loss == []
    assert_same_params(net, reference)
    continue_both(net, reference, X, y)


# -- threads ----------------------------------------------------------------------------------

#: Large enough that a full batch is cut into several parallel blocks (BLOCK_ROWS = 8,704).
THREAD_ROWS = 50_000
THREAD_LAYERS = [8, 16, 4]
#: The NumPy reference takes seconds on THREAD_ROWS: the fast tier runs it on fewer rows (still
#: more than one block), the slow tier on THREAD_ROWS like the compiled backends.
QUICK_THREAD_ROWS = 10_000
THREAD_CASES = [pytest.param("numpy", QUICK_THREAD_ROWS, id="numpy-quick"),
                pytest.param("numpy", THREAD_ROWS, id="numpy", marks=pytest.mark.slow),
                pytest.param("numba", THREAD_ROWS, id="numba"),
                pytest.param("native", THREAD_ROWS, id="native")]


def run_in_threads(*jobs):
    """Run each job in its own thread, all at once; their results (re-raising the first error)."""
    results, errors = [None] * len(jobs), [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def runner(index, job):
        try:
            start.wait()
            results[index] = job()
        except BaseException as error:      # noqa: B036 - reported to the main thread
            errors[index] = error

    threads = [threading.Thread(target=runner, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
        assert not thread.is_alive(), "a training thread did not finish"
    for error in errors:
        if error is not None:
            raise error
    return results


@pytest.mark.parametrize("batch_fraction", [None, 0.4], ids=["full-batch", "mini-batch"])
@pytest.mark.parametrize("backend, rows", THREAD_CASES)
def test_two_threads_training_two_networks_match_sequential_training(backend, rows, batch_fraction):
    """batch_size None, or 0.4 of the rows (20,000 of THREAD_ROWS)."""
    batch_size = None if batch_fraction is None else int(rows * batch_fraction)
    X, y = random_data(THREAD_LAYERS, rows, seed=5)
    X2, y2 = random_data(THREAD_LAYERS, rows, seed=6)

    sequential = [Network(THREAD_LAYERS, backend=backend, seed=s) for s in (1, 2)]
    sequential_histories = [net.fit(*data, epochs=3, lr=0.5, batch_size=batch_size, seed=7)
                            for net, data in zip(sequential, [(X, y), (X2, y2)])]
    concurrent = [Network(THREAD_LAYERS, backend=backend, seed=s) for s in (1, 2)]
    histories = run_in_threads(
        lambda: concurrent[0].fit(X, y, epochs=3, lr=0.5, batch_size=batch_size, seed=7),
        lambda: concurrent[1].fit(X2, y2, epochs=3, lr=0.5, batch_size=batch_size, seed=7))
    for net, expected, history, expected_history in zip(concurrent, sequential, histories, sequential_histories):
        assert history.loss == expected_history.loss
        assert_same_params(net, expected)


@pytest.mark.parametrize("backend, rows", THREAD_CASES)
def test_two_threads_computing_gradients_of_two_networks(backend, rows):
    X, y = random_data(THREAD_LAYERS, rows, seed=5)
    nets = [Network(THREAD_LAYERS, backend=backend, seed=s) for s in (1, 2)]
    expected = [net.gradients(X, y) for net in nets]
    results = run_in_threads(*[lambda net=net: [net.gradients(X, y) for _ in range(5)] for net in nets])
    for runs, (dW, db) in zip(results, expected):
        for got_W, got_b in runs:
            for a, b in zip(got_W + got_b, dW + db):
                np.testing.assert_array_equal(a, b)


SECOND_CALLS = {
    "fit": lambda net, X, y, path: net.fit(X, y, epochs=1, lr=0.1),
    "partial_fit": lambda net, X, y, path: net.partial_fit(X, y, lr=0.1),
    "step": lambda net, X, y, path: net.step(X, y, lr=0.1),
    "gradients": lambda net, X, y, path: net.gradients(X, y),
    "loss": lambda net, X, y, path: net.evaluate(X, y),
    "forward": lambda net, X, y, path: net.forward(X),
    "activations": lambda net, X, y, path: net.activations(X),
    "save": lambda net, X, y, path: net.save(path),
}


@pytest.mark.parametrize("second", list(SECOND_CALLS))
def test_one_network_used_from_two_threads_raises_in_the_second(backend, second, tmp_path):
    X, y = random_data(LAYERS, 2000, seed=8)
    net = network(backend, loss="mse")
    running, stop = threading.Event(), threading.Event()

    def keep_going_until_stopped(epoch, history):
        running.set()
        return not stop.is_set()

    outcome = {}

    def train():
        try:
            outcome["history"] = net.fit(X, y, epochs=100_000, lr=0.5, batch_size=500, seed=3,
                                         callback=keep_going_until_stopped)
        except BaseException as error:      # noqa: B036 - reported to the main thread
            outcome["error"] = error

    thread = threading.Thread(target=train)
    thread.start()
    try:
        assert running.wait(timeout=120), "the training thread did not start"
        with pytest.raises(RuntimeError, match=r"already in use.*thread|thread.*already in use"):
            SECOND_CALLS[second](net, X, y, tmp_path / "net.npz")
    finally:
        stop.set()
        thread.join(timeout=600)
    assert not thread.is_alive()
    assert "error" not in outcome, f"the first call failed: {outcome.get('error')!r}"
    completed = len(outcome["history"].loss)
    # the rejected call changed nothing: the network is exactly `completed` epochs of the first call
    reference = network(backend, loss="mse")
    reference.fit(X, y, epochs=completed, lr=0.5, batch_size=500, seed=3)
    assert_same_params(net, reference)
    assert not (tmp_path / "net.npz").exists()
    # and the network is free again
    net.gradients(X, y)
    net.fit(X, y, epochs=1, lr=0.5)


def test_fit_with_validation_data_is_not_mistaken_for_a_second_thread(backend):
    """fit scores validation_data after each epoch from inside its own call: that must work."""
    X, y = random_data(LAYERS, 60, seed=10)
    X_val, y_val = random_data(LAYERS, 30, seed=11)
    net = network(backend, loss="mse")
    history = net.fit(X, y, epochs=3, lr=0.5, validation_data=(X_val, y_val))
    assert len(history.val_loss) == 3
    assert history.val_loss[-1] == net.evaluate(X_val, y_val)


def test_callback_may_evaluate_the_network(backend):
    """The callback runs in fit's own thread: calling the network from it is not a second thread."""
    X, y = random_data(LAYERS, 60, seed=10)
    net = network(backend, loss="mse")
    seen = []

    def monitor(epoch, history):
        seen.append((net.evaluate(X, y), net.forward(X[:2]).copy()))

    net.fit(X, y, epochs=2, lr=0.5, callback=monitor)
    assert len(seen) == 2
    assert seen[-1][0] == net.evaluate(X, y)


# -- determinism (seeded_training is in conftest.py, shared with tests/slow/test_numba_cache.py) --

def assert_identical_runs(first, second):
    (net_a, history_a, (dW_a, db_a)), (net_b, history_b, (dW_b, db_b)) = first, second
    assert history_a.loss == history_b.loss
    assert_same_params(net_a, net_b)
    for a, b in zip(dW_a + db_a, dW_b + db_b):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_same_seed_gives_identical_training(backend, optimizer):
    assert_identical_runs(seeded_training(backend, optimizer), seeded_training(backend, optimizer))


@pytest.fixture
def restore_threads():
    import numba

    before = fastnet.get_num_threads()
    yield min(2, numba.config.NUMBA_NUM_THREADS)
    fastnet.set_num_threads(before)


def test_same_seed_gives_identical_training_for_any_thread_count(backend, restore_threads):
    fastnet.set_num_threads(1)
    one = seeded_training(backend)
    fastnet.set_num_threads(restore_threads)
    many = seeded_training(backend)
    assert_identical_runs(one, many)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_same_seed_gives_identical_training_in_a_fresh_interpreter(backend_name, tmp_path):
    """Nothing process-wide (hash seeds, compiled-kernel caches, global RNGs) leaks into the result."""
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        sys.path.insert(0, {TESTS_DIR!r})
        from conftest import seeded_training
        net, history, _ = seeded_training({backend_name!r})
        net.save({str(tmp_path / "child.npz")!r})
    """)
    result = run_python(code=code, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    net, _, _ = seeded_training(backend_name)
    assert_same_params(Network.load(tmp_path / "child.npz"), net)


INTERRUPT_SCRIPT = """
import signal
from fastnet import training

# As in an interpreter started from a shell: a test runner's worker may pass SIGINT on ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)

recorded = []
try:
    with training.INTERRUPTS.held():          # an epoch being applied and recorded
        signal.raise_signal(signal.SIGINT)
        recorded.append("epoch")
except KeyboardInterrupt:
    print("held until recorded", recorded == ["epoch"])
try:
    with training.INTERRUPTS.held():
        with training.INTERRUPTS.allowed():   # the epoch's work
            signal.raise_signal(signal.SIGINT)
            print("not interrupted")
except KeyboardInterrupt:
    print("work interrupted at once")
print("handler restored", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""


def test_ctrl_c_is_held_while_an_epoch_is_applied_and_immediate_in_its_work():
    """Parameters, optimizer state and History never disagree about the completed epochs."""
    done = run_python(code=INTERRUPT_SCRIPT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["held until recorded True", "work interrupted at once",
                                           "handler restored True"]
