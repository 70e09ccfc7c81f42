"""fastnet.dask: data-parallel fit, predict and evaluate on a local Dask cluster.

The oracles: single-machine ``Network.fit`` / ``predict`` / ``evaluate`` on
the computed arrays (full-batch training must equal it to 1e-12), and for
local SGD each chunk trained alone by ``Network.fit`` with the documented
seed stream, then averaged by hand.  Every test shares one LocalCluster of
two worker processes on localhost (``cluster``), started once for the module
and kept in one pytest-xdist process (the ``xdist_group`` mark).
"""

import os
import signal
import sys
import textwrap

import cloudpickle
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

import fastnet.dask as fd
from fastnet import DivergenceError, Network

from conftest import BACKENDS, REPO_ROOT, assert_close_normwise, assert_parameters_equal, parameters_copy, run_python

pytestmark = pytest.mark.xdist_group("dask")

OPTIMIZERS = ["sgd", "momentum", "adam"]
LAYERS = [5, 7, 3]
#: More rows than one parallel block (BLOCK_ROWS), cut into uneven chunks.
ROWS, CHUNK = 10_000, 3_000
#: Networks of several kinds (hidden activation, output, loss).
KINDS = {
    "sigmoid-mse": dict(),
    "tanh-softmax-cross_entropy": dict(activation="tanh", output="softmax"),
    "relu-linear-sse": dict(activation="relu", output="linear", loss="sse"),
}


#: No dashboard, and the scheduler's small HTTP server (health, metrics) on a free port, not 8787.
NO_DASHBOARD = dict(dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


def compile_numba_kernels_here():
    """Compile (or load) the Numba kernels in this process first, so that they are in the
    on-disk cache before the worker processes start: otherwise each worker compiles them
    itself, at once, on the same two cores."""
    X, y, _ = data(n=20)
    for dtype in ("float64", "float32"):
        net = Network(LAYERS, backend="numba", seed=0, dtype=dtype)
        net.gradients(X, y)
        net.fit(X, y, batch_size=4, optimizer="adam")
        net.predict(X)


@pytest.fixture(scope="module")
def client():
    """A client of two single-threaded worker processes on localhost, for every test here.

    The test module's own functions go to the workers by value (they cannot import it).
    """
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    compile_numba_kernels_here()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      **NO_DASHBOARD) as cluster, Client(cluster) as client:
        yield client
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def one_worker():
    """A second client: one worker thread inside this process."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, **NO_DASHBOARD) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


def data(n=ROWS, layers=LAYERS, seed=1, kind="sigmoid-mse"):
    """X uniform in [-1, 1]; y in [0, 1] (rows summing to one for a softmax), weights in [0, 3)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, layers[0]))
    y = rng.uniform(0.0, 1.0, (n, layers[-1]))
    if "softmax" in kind:
        y /= y.sum(axis=1, keepdims=True)
    return X, y, rng.uniform(0.0, 3.0, n)


def chunked(*arrays, chunk=CHUNK):
    """Each array as a dask array cut into row chunks of ``chunk`` rows (the last shorter)."""
    return [da.from_array(a, chunks=(chunk,) + a.shape[1:]) for a in arrays]


def network(backend, kind="sigmoid-mse", layers=LAYERS, seed=4, **settings):
    return Network(layers, backend=backend, seed=seed, **KINDS[kind], **settings)


def twins(backend, **settings):
    """Two identical networks."""
    return network(backend, **settings), network(backend, **settings)


def assert_params_close(net, expected, rtol=1e-12):
    weights, biases = parameters_copy(expected)
    for actual, wanted in zip(net.weights + net.biases, weights + biases):
        assert_close_normwise(actual, wanted, rtol=rtol)


# -- full batch equals one machine ------------------------------------------------------------

@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_full_batch_fit_equals_single_machine_fit(client, backend, optimizer):
    X, y, w = data()
    distributed_net, local_net = twins(backend)
    lr = {"sgd": 0.5, "momentum": 0.1, "adam": 0.01}[optimizer]
    history = fd.fit(distributed_net, *chunked(X, y), sample_weight=chunked(w)[0], epochs=4, lr=lr,
                     optimizer=optimizer)
    expected = local_net.fit(X, y, sample_weight=w, epochs=4, lr=lr, optimizer=optimizer)
    np.testing.assert_allclose(history.loss, expected.loss, rtol=1e-12)
    assert_params_close(distributed_net, local_net)
    # the optimizer's state continues as on one machine
    state, wanted = distributed_net.state()["optimizer"], local_net.state()["optimizer"]
    assert state["name"] == optimizer and state["step"] == wanted["step"]
    assert_close_normwise(state["state"], wanted["state"])


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_full_batch_fit_equals_single_machine_for_other_layers_and_the_l2_penalty(client, backend, kind):
    X, y, w = data(kind=kind)
    distributed_net, local_net = twins(backend, kind=kind)
    settings = dict(epochs=3, lr=0.01, optimizer="adam", alpha=0.3)
    history = fd.fit(distributed_net, *chunked(X, y), sample_weight=chunked(w)[0], **settings)
    expected = local_net.fit(X, y, sample_weight=w, **settings)
    np.testing.assert_allclose(history.loss, expected.loss, rtol=1e-12)
    assert_params_close(distributed_net, local_net)


def test_weights_are_scaled_by_the_largest_of_all_chunks(client):
    """One chunk holds every large weight and another only zeros: still the single-machine result
    (each chunk's weights divided by its own largest would not be)."""
    X, y, _ = data(n=900)
    w = np.concatenate([np.full(300, 1e-3), np.full(300, 250.0), np.zeros(300)])
    distributed_net, local_net = twins("numba")
    X_dask, y_dask, w_dask = chunked(X, y, w, chunk=300)
    history = fd.fit(distributed_net, X_dask, y_dask, sample_weight=w_dask, epochs=3, optimizer="sgd", lr=2.0)
    expected = local_net.fit(X, y, sample_weight=w, epochs=3, lr=2.0)
    np.testing.assert_allclose(history.loss, expected.loss, rtol=1e-12)
    assert_params_close(distributed_net, local_net)


def test_chunks_of_no_rows_are_skipped(client):
    X, y, _ = data(n=1_000)
    distributed_net, local_net = twins("native")
    X_dask, y_dask = (da.from_array(a, chunks=((400, 0, 600), a.shape[1])) for a in (X, y))
    assert X_dask.chunks[0] == (400, 0, 600)
    history = fd.fit(distributed_net, X_dask, y_dask, epochs=2)
    np.testing.assert_allclose(history.loss, local_net.fit(X, y, epochs=2).loss, rtol=1e-12)
    assert_params_close(distributed_net, local_net)


def test_validation_data_on_workers_or_in_memory_scores_as_single_machine(client):
    X, y, _ = data()
    X_val, y_val, _ = data(n=2_000, seed=9)
    on_workers, in_memory, local_net = network("native"), network("native"), network("native")
    scored_there = fd.fit(on_workers, *chunked(X, y), epochs=3, validation_data=chunked(X_val, y_val, chunk=700))
    scored_here = fd.fit(in_memory, *chunked(X, y), epochs=3, validation_data=(X_val, y_val))
    expected = local_net.fit(X, y, epochs=3, validation_data=(X_val, y_val))
    assert len(scored_there.val_loss) == 3
    np.testing.assert_allclose(scored_there.val_loss, expected.val_loss, rtol=1e-12)
    np.testing.assert_allclose(scored_here.val_loss, expected.val_loss, rtol=1e-12)


def test_callback_stops_training_as_on_one_machine(client):
    X, y, _ = data()
    distributed_net, local_net = twins("numba")
    epochs_seen = []

    def stop_after_two(epoch, history):
        epochs_seen.append((epoch, len(history.loss)))
        return epoch < 1

    history = fd.fit(distributed_net, *chunked(X, y), epochs=5, callback=stop_after_two)
    local_net.fit(X, y, epochs=2)
    assert epochs_seen == [(0, 1), (1, 2)] and len(history.loss) == len(history.time) == 2
    assert_params_close(distributed_net, local_net)


def test_float32_network_trains_in_float32(client):
    X, y, _ = data()
    distributed_net, local_net = twins("numba", dtype="float32")
    fd.fit(distributed_net, *chunked(X, y), epochs=3, optimizer="adam", lr=0.01)
    local_net.fit(X, y, epochs=3, optimizer="adam", lr=0.01)
    assert distributed_net.weights[0].dtype == np.float32
    assert_params_close(distributed_net, local_net, rtol=1e-4)
    assert fd.predict(distributed_net, chunked(X)[0]).compute().dtype == np.float32


# -- determinism --------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_full_batch_is_bitwise_the_same_for_any_worker_count_and_run(client, one_worker, backend):
    X, y, w = data()
    runs = []
    for each_client in (client, one_worker, client):
        net = network(backend)
        history = fd.fit(net, *chunked(X, y), sample_weight=chunked(w)[0], epochs=3, optimizer="adam",
                         lr=0.01, client=each_client)
        runs.append((net, history))
    for net, history in runs[1:]:
        assert history.loss == runs[0][1].loss
        assert_parameters_equal(net, parameters_copy(runs[0][0]))


def test_local_sgd_is_bitwise_the_same_for_any_worker_count(client, one_worker):
    X, y, _ = data()
    runs = []
    for each_client in (client, one_worker):
        net = network("numba")
        history = fd.fit(net, *chunked(X, y), epochs=4, batch_size=64, sync_every=2, seed=11, optimizer="momentum",
                         client=each_client)
        runs.append((net, history))
    assert runs[0][1].loss == runs[1][1].loss
    assert_parameters_equal(runs[0][0], parameters_copy(runs[1][0]))


@pytest.mark.parametrize("batch_size", [None, 64], ids=["full-batch", "local-sgd"])
def test_a_worker_of_two_threads_gives_the_same_bits(client, batch_size):
    """A worker of several threads computes its chunks side by side: the same numbers as
    single-threaded workers, since each chunk's sums are added by the same fixed tree."""
    X, y, _ = data()
    runs = []
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, **NO_DASHBOARD) as cluster, \
            Client(cluster, set_as_default=False) as two_threads:
        for each_client in (client, two_threads):
            net = network("numba")
            history = fd.fit(net, *chunked(X, y, chunk=1_100), epochs=3, optimizer="adam", lr=0.01,
                             batch_size=batch_size, seed=5, client=each_client)
            runs.append((net, history))
    assert runs[0][1].loss == runs[1][1].loss
    assert_parameters_equal(runs[1][0], parameters_copy(runs[0][0]))


# -- local SGD ----------------------------------------------------------------------------------

def replica_seed(seed, round_index, chunk_index):
    """The documented stream of chunk c in round r: SeedSequence(e, spawn_key=(r, c)),
    e = default_rng(seed).integers(2**63)."""
    entropy = int(np.random.default_rng(seed).integers(2**63))
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(round_index, chunk_index)))


def row_weighted_mean(values, rows):
    return sum(n * np.asarray(v, np.float64) for v, n in zip(values, rows)) / sum(rows)


@pytest.mark.parametrize("backend", BACKENDS)
def test_local_sgd_averages_replicas_trained_alone(client, backend):
    """Two rounds of two epochs, with sample weights and the L2 penalty: each round, every
    chunk's replica is the network trained by Network.fit on that chunk alone with its
    stream; then the row-weighted mean."""
    X, y, w = data(n=2_500)
    net, oracle = twins(backend)
    settings = dict(batch_size=50, lr=0.7, alpha=0.2)
    X_dask, y_dask, w_dask = chunked(X, y, w, chunk=1_000)
    history = fd.fit(net, X_dask, y_dask, sample_weight=w_dask, epochs=4, sync_every=2, seed=5, **settings)
    rows = [1_000, 1_000, 500]
    chunk_weights = [w[:1_000].sum(), w[1_000:2_000].sum(), w[2_000:].sum()]
    for round_index in range(2):
        replicas, losses = [], []
        for chunk_index, first in enumerate([0, 1_000, 2_000]):
            replica = Network.from_state(oracle.state())
            part = slice(first, first + rows[chunk_index])
            losses.append(replica.fit(X[part], y[part], sample_weight=w[part], epochs=2,
                                      seed=replica_seed(5, round_index, chunk_index), **settings).loss[-1])
            replicas.append(replica)
        for target, parts in zip(oracle.weights + oracle.biases,
                                 zip(*[replica.weights + replica.biases for replica in replicas])):
            target[...] = row_weighted_mean(parts, rows)
        # mse: the loss over all rows of the round's last epoch is the chunks' losses
        # weighted by their total row weights
        assert history.loss[round_index] == pytest.approx(row_weighted_mean(losses, chunk_weights), rel=1e-12)
    assert len(history.loss) == 2
    assert_params_close(net, oracle)


def test_local_sgd_averages_the_optimizer_state(client):
    X, y, _ = data(n=2_000)
    net = network("numba")
    start = net.state()
    fd.fit(net, *chunked(X, y, chunk=1_600), epochs=1, batch_size=100, optimizer="adam", lr=0.01, seed=8)
    replicas = []
    for chunk_index, (first, stop) in enumerate([(0, 1_600), (1_600, 2_000)]):
        replica = Network.from_state(start)
        replica.fit(X[first:stop], y[first:stop], batch_size=100, optimizer="adam", lr=0.01,
                    seed=replica_seed(8, 0, chunk_index))
        replicas.append(replica.state()["optimizer"])
    state = net.state()["optimizer"]
    assert_close_normwise(state["state"], row_weighted_mean([r["state"] for r in replicas], [1_600, 400]))
    # steps 16 and 4, weighted 4:1: 13.6, rounded
    assert [r["step"][0] for r in replicas] == [16, 4] and state["step"][0] == 14


def test_local_sgd_with_a_last_round_shorter_than_sync_every(client):
    X, y, _ = data(n=1_000)
    history = fd.fit(network("numba"), *chunked(X, y, chunk=400), epochs=5, batch_size=100, sync_every=2, seed=1)
    assert len(history.loss) == 3 and np.isfinite(history.loss).all()


# -- predict and evaluate ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_is_lazy_row_chunked_and_equals_network_predict(client, backend):
    X, _, _ = data()
    net = network(backend)
    X_dask = chunked(X)[0]
    expected = net.predict(X)
    predicted = fd.predict(net, X_dask)
    assert isinstance(predicted, da.Array)
    assert predicted.chunks == (X_dask.chunks[0], (LAYERS[-1],))
    net.fit(X, y=np.zeros((ROWS, LAYERS[-1])), epochs=2)  # training later does not change the graph
    np.testing.assert_allclose(predicted.compute(), expected, rtol=1e-13, atol=0)
    np.testing.assert_allclose(predicted.compute(scheduler="threads"), expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_equals_network_evaluate(client, backend):
    X, y, w = data()
    net = network(backend)
    assert fd.evaluate(net, *chunked(X, y)) == pytest.approx(net.evaluate(X, y), rel=1e-12)
    weighted = fd.evaluate(net, *chunked(X, y), sample_weight=chunked(w)[0])
    assert weighted == pytest.approx(net.evaluate(X, y, sample_weight=w), rel=1e-12)
    assert weighted != pytest.approx(net.evaluate(X, y), rel=1e-6)


# -- only parameters move; kernels compile once per worker ----------------------------------------

def worker_counters(dask_worker):
    """On a worker (client.run's ``dask_worker``): bytes it has sent (Dask's own accounting of
    task results sent to peers and clients alike, plus the actor answers counted since
    ``fastnet.dask.count_actor_answers``) and the compiled signatures of every Numba kernel of fastnet."""
    import numba
    from fastnet.backends import numba_kernels

    signatures = sum(len(kernel.signatures) for kernel in vars(numba_kernels).values()
                     if isinstance(kernel, numba.core.dispatcher.Dispatcher))
    return dask_worker.transfer_outgoing_bytes_total + getattr(dask_worker, "actor_answer_bytes", 0), signatures


def test_a_step_moves_parameters_not_rows(client):
    """The data is made on the workers; per step the workers send O(parameters x chunks) bytes."""
    rng = da.random.default_rng(3)
    X = rng.uniform(-1.0, 1.0, size=(80_000, LAYERS[0]), chunks=(10_000, LAYERS[0]))
    y = rng.uniform(0.0, 1.0, size=(80_000, LAYERS[-1]), chunks=(10_000, LAYERS[-1]))
    net = network("numba")
    sent = []
    client.run(fd.count_actor_answers)

    def record(epoch, history):
        sent.append(sum(out for out, _ in client.run(worker_counters).values()))

    fd.fit(net, X, y, epochs=4, callback=record)
    per_step = np.diff(sent)
    param_bytes = net.state()["params"].nbytes
    # 8 chunk sums, one tree node over them, each at most the gradient plus a little framing
    assert (per_step <= 9 * (param_bytes + 1_000)).all(), (per_step, param_bytes)
    assert (per_step >= param_bytes).all()  # the accounting does see the partial sums
    assert per_step.max() < X.nbytes / 1_000


def test_numba_kernels_compile_once_per_worker(client):
    X, y, _ = data()
    fd.fit(network("numba"), *chunked(X, y), epochs=2)
    fd.fit(network("numba"), *chunked(X, y), epochs=1, batch_size=32)
    before = {worker: signatures for worker, (_, signatures) in client.run(worker_counters).items()}
    X2, y2, _ = data(n=7_000, seed=3)
    fd.fit(network("numba", seed=9), *chunked(X2, y2, chunk=2_000), epochs=3, optimizer="adam")
    fd.fit(network("numba", seed=9), *chunked(X2, y2, chunk=2_000), epochs=2, batch_size=32, sync_every=2)
    after = {worker: signatures for worker, (_, signatures) in client.run(worker_counters).items()}
    assert after == before and all(count > 0 for count in after.values())


# -- fault tolerance ----------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [None, 100], ids=["full-batch", "local-sgd"])
def test_a_killed_worker_does_not_change_the_result(client, batch_size):
    X, y, w = data()
    settings = dict(epochs=6, optimizer="adam", lr=0.01, batch_size=batch_size, seed=2)
    undisturbed, disturbed = twins("numba")
    expected = fd.fit(undisturbed, *chunked(X, y), sample_weight=chunked(w)[0], **settings)
    victim = sorted(client.run(os.getpid).values())[0]

    def kill_after_epoch_1(epoch, history):
        if epoch == 1:
            os.kill(victim, signal.SIGKILL)

    try:
        history = fd.fit(disturbed, *chunked(X, y), sample_weight=chunked(w)[0], callback=kill_after_epoch_1,
                         **settings)
    finally:
        client.wait_for_workers(2, timeout=120)
    assert victim not in client.run(os.getpid).values()  # it did die (its nanny started a new one)
    assert history.loss == expected.loss
    assert_parameters_equal(disturbed, parameters_copy(undisturbed))


# -- bad input --------------------------------------------------------------------------------------

def assert_unchanged(net, before):
    assert_parameters_equal(net, before)
    assert net.state()["optimizer"] is None


@pytest.mark.parametrize("case, error, words", [
    ("numpy X", TypeError, ["X must be a dask array", "ndarray"]),
    ("numpy y", TypeError, ["y must be a dask array"]),
    ("columns in chunks", ValueError, ["X must be chunked by rows only", "rechunk"]),
    ("different row chunks", ValueError, ["y must be cut into the same row chunks as X", "rechunk"]),
    ("fewer rows in y", ValueError, ["y must have one row per row of X (1000)", "999"]),
    ("wrong width", ValueError, ["X must have 5 columns"]),
    ("weights in other chunks", ValueError, ["sample_weight must be cut into the same row chunks"]),
    ("NaN in a chunk", ValueError, ["X chunk 2 (rows 600 to 899) must be finite"]),
    ("target out of range", ValueError, ["y chunk 1 (rows 300 to 599)"]),
    ("negative weight", ValueError, ["sample_weight chunk 3 (rows 900 to 999) must be >= 0"]),
    ("zero weights", ValueError, ["sample_weight must be >= 0 with a positive sum"]),
    ("client", TypeError, ["client must be a distributed.Client"]),
    ("sync_every", ValueError, ["sync_every applies to local SGD"]),
    ("lr", ValueError, ["lr"]),
    ("net", TypeError, ["net must be a fastnet.Network"]),
])
def test_bad_input_raises_naming_it_and_leaves_the_network_unchanged(client, case, error, words):
    X, y, w = data(n=1_000)
    net = network("numba")
    before = parameters_copy(net)
    args = dict(X=chunked(X, chunk=300)[0], y=chunked(y, chunk=300)[0])
    kwargs = {}
    if case == "numpy X":
        args["X"] = X
    elif case == "numpy y":
        args["y"] = y
    elif case == "columns in chunks":
        args["X"] = da.from_array(X, chunks=(300, 2))
    elif case == "different row chunks":
        args["y"] = chunked(y, chunk=250)[0]
    elif case == "fewer rows in y":
        args["y"] = chunked(y[:999], chunk=300)[0]
    elif case == "wrong width":
        args["X"] = chunked(X[:, :4], chunk=300)[0]
    elif case == "weights in other chunks":
        kwargs["sample_weight"] = chunked(w, chunk=500)[0]
    elif case == "NaN in a chunk":
        X[700, 3] = np.nan
        args["X"] = chunked(X, chunk=300)[0]
    elif case == "target out of range":
        y[450, 0] = 1.5
        args["y"] = chunked(y, chunk=300)[0]
    elif case == "negative weight":
        w[950] = -1.0
        kwargs["sample_weight"] = chunked(w, chunk=300)[0]
    elif case == "zero weights":
        kwargs["sample_weight"] = chunked(np.zeros(1_000), chunk=300)[0]
    elif case == "client":
        kwargs["client"] = "tcp://127.0.0.1:8786"
    elif case == "sync_every":
        kwargs["sync_every"] = 2
    elif case == "lr":
        kwargs["lr"] = -1.0
    with pytest.raises(error) as caught:
        fd.fit("not a network" if case == "net" else net, args["X"], args["y"], epochs=2, **kwargs)
    for word in words:
        assert word in str(caught.value)
    assert_unchanged(net, before)


def test_predict_and_evaluate_refuse_bad_input(client):
    X, y, _ = data(n=1_000)
    net = network("numpy")
    with pytest.raises(TypeError, match="X must be a dask array"):
        fd.predict(net, X)
    with pytest.raises(ValueError, match="X must be chunked by rows only"):
        fd.predict(net, da.from_array(X, chunks=(500, 3)))
    X[10, 0] = np.inf
    with pytest.raises(ValueError, match=r"X chunk 0 \(rows 0 to 499\) must be finite"):
        fd.predict(net, chunked(X, chunk=500)[0]).compute()
    with pytest.raises(ValueError, match=r"X chunk 0 \(rows 0 to 499\) must be finite"):
        fd.evaluate(net, *chunked(X, y, chunk=500))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_rolls_back_as_single_machine_fit(client):
    """After epoch 1 a callback raises the learning rate; epoch 2 overflows."""
    rng = np.random.default_rng(0)
    X, y = rng.uniform(-1.0, 1.0, (3_000, 3)), np.ones((3_000, 1))
    results = []
    for train in (lambda net, cb: fd.fit(net, *chunked(X, y, chunk=1_000), epochs=5, lr=1e-3, callback=cb),
                  lambda net, cb: net.fit(X, y, epochs=5, lr=1e-3, callback=cb)):
        net = Network([3, 4, 1], backend="numba", seed=3, loss="sse")

        def raise_lr_after_epoch_1(epoch, history, net=net):
            if epoch == 1:
                net._optimizer.hyper[0] = 1e307

        with pytest.raises(DivergenceError) as caught:
            train(net, raise_lr_after_epoch_1)
        results.append((net, caught.value))
    (net, error), (local_net, local_error) = results
    assert error.epoch == local_error.epoch == 2 and "epoch 2" in str(error)
    np.testing.assert_allclose(error.history.loss, local_error.history.loss, rtol=1e-12)
    assert_params_close(net, local_net)


# -- the optional dependency ---------------------------------------------------------------------

def test_import_fastnet_does_not_import_dask_and_no_client_is_an_error():
    result = run_python(code=textwrap.dedent("""
        import sys
        import numpy as np
        import fastnet
        assert "dask" not in sys.modules and "distributed" not in sys.modules
        import dask.array as da
        import fastnet.dask
        X = da.zeros((10, 2), chunks=5)
        try:
            fastnet.dask.fit(fastnet.Network([2, 1], backend="numpy"), X, X[:, :1])
        except ValueError as error:
            print(error)
    """))
    assert result.returncode == 0, result.stderr
    assert "client: no Dask client is running and none was given" in result.stdout


def test_without_dask_the_import_error_names_the_extra():
    result = run_python(code=textwrap.dedent("""
        import sys
        sys.modules["dask"] = None  # as if dask were not installed
        try:
            import fastnet.dask
        except ImportError as error:
            print(error)
    """))
    assert result.returncode == 0, result.stderr
    assert 'pip install "fastnet-kernels[dask]"' in result.stdout


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path):
    """The first Python block of the README's "More than one machine" section, as a script."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## More than one machine"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    script = tmp_path / "example.py"
    script.write_text(code[:code.index("```")])
    result = run_python(str(script))
    assert result.returncode == 0, result.stderr
    first, last = (float(value) for value in result.stdout.split("\n")[0].removeprefix("loss ").split(" -> "))
    assert last < first / 2  # it learned the sign of the first input
