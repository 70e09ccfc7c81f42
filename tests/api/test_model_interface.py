"""Network as a model: its state, pickling and copying, evaluate, the backend
contract's unnormalised sums, the packed layout, and the one specification."""

import concurrent.futures
import copy
import importlib.util
import multiprocessing
import pickle
import re

import numpy as np
import pytest

import fastnet
from fastnet import Network, spec
from fastnet.backends import Rows, load
from fastnet.layout import ParamLayout

from conftest import BACKENDS, REPO_ROOT, assert_close_normwise, random_data, random_network


def trained(backend, dtype="float64", optimizer="adam"):
    """A [3, 5, 2] network after two epochs, so it has optimizer state and a moved generator."""
    X, y = random_data([3, 5, 2], 300, seed=4)
    net = Network([3, 5, 2], backend=backend, seed=7, dtype=dtype)
    net.fit(X, y, epochs=2, batch_size=32, optimizer=optimizer)
    return net, X, y


# -- pickling and copying ------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clone", [lambda net: pickle.loads(pickle.dumps(net)), copy.deepcopy, copy.copy],
                         ids=["pickle", "deepcopy", "copy"])
def test_a_copy_predicts_and_trains_on_exactly_like_the_original(clone, backend, dtype):
    net, X, y = trained(backend, dtype)
    twin = clone(net)
    assert twin is not net and repr(twin) == repr(net)
    np.testing.assert_array_equal(twin.predict(X), net.predict(X))
    assert twin.predict(X).dtype == np.dtype(dtype)
    # The generator and the optimizer's state came along: the next epochs agree bit for bit.
    history = net.partial_fit(X, y, batch_size=32, optimizer="adam")
    twin_history = twin.partial_fit(X, y, batch_size=32, optimizer="adam")
    assert twin_history.loss == history.loss
    for mine, theirs in zip(twin.weights, net.weights):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("clone", [lambda net: pickle.loads(pickle.dumps(net)), copy.deepcopy, copy.copy],
                         ids=["pickle", "deepcopy", "copy"])
def test_a_copy_shares_no_memory_with_the_original(clone):
    net, X, y = trained("numpy")
    twin = clone(net)
    before = net.predict(X)
    twin.weights[0][...] = 0.0
    twin.fit(X, y, epochs=1, optimizer="momentum")
    np.testing.assert_array_equal(net.predict(X), before)
    assert not np.shares_memory(twin.weights[0], net.weights[0])


def test_pickle_holds_no_module_and_reattaches_the_backend_by_name():
    net, _, _ = trained("native")
    payload = pickle.dumps(net)
    assert b"fastnet.backends.native" not in payload and b"_native" not in payload
    assert pickle.loads(payload)._backend is load("native")


def _fit_in_child(net, X, y):
    """Runs in a spawned process: what joblib or a Dask worker would do with a network."""
    net.fit(X, y, epochs=2, batch_size=16, optimizer="adam", seed=3)
    return net


def test_a_network_trains_in_another_process_exactly_as_here():
    net = Network([3, 5, 2], backend="numba", seed=1)
    X, y = random_data([3, 5, 2], 200, seed=2)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        remote = pool.submit(_fit_in_child, net, X, y).result(timeout=300)
    local = _fit_in_child(net, X, y)
    for theirs, mine in zip(remote.weights, local.weights):
        np.testing.assert_array_equal(theirs, mine)


def test_state_round_trips_through_from_state_and_other_backends():
    net, X, _ = trained("numba")
    state = net.state()
    assert set(state) == {"layers", "backend", "activation", "output", "derivative", "loss", "bias", "dtype",
                          "params", "rng_state", "optimizer"}
    again = Network.from_state(state, backend="numpy")
    assert again.backend == "numpy"
    assert_close_normwise(again.predict(X), net.predict(X))
    state["params"] = state["params"][:-1]
    with pytest.raises(ValueError, match="params must have shape"):
        Network.from_state(state)


def test_load_names_a_bad_backend_before_reading_the_file(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        Network.load(tmp_path / "absent.npz", backend="gpu")


# -- evaluate and the loss name -----------------------------------------------------

def test_loss_is_the_plain_name():
    net = Network([2, 1], loss="bce")
    assert type(net.loss) is str and net.loss == "bce"
    assert not callable(net.loss)


@pytest.mark.parametrize("loss", ["sse", "mse", "bce"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_is_the_loss_of_the_predictions(backend, loss):
    """The loss written out from the predictions with NumPy: sum, mean, or torch's BCE."""
    net = random_network([3, 4, 2], backend, loss=loss)
    X, y = random_data([3, 4, 2], 500)
    weight = np.random.default_rng(5).uniform(0, 3, 500)
    a = net.predict(X)
    if loss == "bce":
        errors = -(y * np.log(a) + (1 - y) * np.log(1 - a)).sum(axis=1)
    else:
        errors = ((a - y) ** 2).sum(axis=1)
    expected = (weight * errors).sum() if loss == "sse" else (weight * errors).sum() / (weight.sum() * 2)
    assert net.evaluate(X, y, sample_weight=weight) == pytest.approx(expected, rel=1e-12)
    plain = errors.sum() if loss == "sse" else errors.mean() / 2
    assert net.evaluate(X, y) == pytest.approx(plain, rel=1e-12)


# -- the backend contract: unnormalised sums ---------------------------------------------

@pytest.mark.parametrize("loss", ["sse", "mse", "bce"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_sums_over_chunks_add_up_to_the_whole_batch(backend, loss):
    """What a distributed reducer relies on: chunks' sums, added, then normalised once,
    give the loss and gradient of all rows (here 3 chunks, one past a block edge)."""
    layers = [4, 6, 3]
    net = random_network(layers, backend, loss=loss)
    X, y = random_data(layers, 20_000)
    weight = np.random.default_rng(8).uniform(0, 2, 20_000)
    module = load(backend)
    model = net._model()
    total, errors = np.zeros(net.layout.count), 0.0
    for chunk in np.array_split(np.arange(20_000), [9_000, 17_500]):
        grad = np.empty(net.layout.count)
        errors += module.gradient(model, Rows(X[chunk], y[chunk], weight[chunk]), grad)
        total += grad
    c = 1.0 if loss == "sse" else 1.0 / (weight.sum() * layers[-1])
    assert c * errors == pytest.approx(net.evaluate(X, y, sample_weight=weight), rel=1e-12)
    dW, db = net.gradients(X, y, sample_weight=weight)
    expected = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(dW, db)])
    assert_close_normwise(c * total, expected)


# -- the packed layout --------------------------------------------------------------

@pytest.mark.parametrize("has_bias", [True, False])
def test_layout_packs_each_layer_as_weights_then_bias(has_bias):
    layout = ParamLayout([3, 4, 2], has_bias)
    pieces = [np.arange(12.0).reshape(3, 4), 100 + np.arange(4.0), 200 + np.arange(8.0).reshape(4, 2),
              300 + np.arange(2.0)]
    if not has_bias:
        pieces = pieces[::2]
    packed = np.concatenate([piece.ravel() for piece in pieces])
    assert layout.count == packed.size == (3 * 4 + 4 * 2 + (6 if has_bias else 0))
    weights, biases = layout.unpack(packed)
    np.testing.assert_array_equal(weights[0], pieces[0])
    np.testing.assert_array_equal(weights[1], pieces[2 if has_bias else 1])
    assert all(np.shares_memory(w, packed) for w in weights)
    if has_bias:
        np.testing.assert_array_equal(biases[0], pieces[1])
        np.testing.assert_array_equal(biases[1], pieces[3])
    else:
        assert biases is None
    assert layout.sizes.dtype == np.int64 and layout.weight_offsets.dtype == np.int64


def test_layout_counts_absurd_widths_without_wrapping():
    assert ParamLayout([2**40, 2**40, 1], True).count == 2**80 + 2**40 + 2**40 + 1


# -- one specification --------------------------------------------------------------

def _generated_header():
    path = REPO_ROOT / "kernels" / "generate_header.py"
    module_spec = importlib.util.spec_from_file_location("generate_header", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.header(REPO_ROOT / "fastnet")


def test_the_c_header_is_generated_from_the_specification():
    header = _generated_header()
    for prefix, table in (("LOSS", spec.LOSSES), ("OPTIMIZER", spec.OPTIMIZERS),
                          ("DERIVATIVE", spec.DERIVATIVES), ("ACTIVATION", spec.ACTIVATIONS)):
        for name, entry in table.items():
            assert re.search(rf"\bFN_{prefix}_{name.upper()} = {entry.code}\b", header)
        assert f"FN_N_{prefix} = {len(table)}" in header
    for i, field in enumerate(spec.HYPER_FIELDS):
        assert f"FN_HYPER_{field.upper()} = {i}" in header
    from fastnet import _config
    assert f"#define FN_TILE_ROWS INT64_C({_config.TILE_ROWS})\n" in header
    assert f"#define FN_PARTIAL_GRADIENT_BYTES INT64_C({_config.PARTIAL_GRADIENT_BYTES})\n" in header
    assert f"#define FN_CACHE_LINE_BYTES INT64_C({_config.CACHE_LINE_BYTES})\n" in header
    assert f"#define FN_SIGMOID_CLAMP {_config.SIGMOID_CLAMP!r}\n" in header
    assert f"#define FN_SIGMOID_CLAMP_FLOAT32 {_config.SIGMOID_CLAMP_FLOAT32!r}f\n" in header
    assert f"#define FN_BCE_LOG_FLOOR ({spec.BCE_LOG_FLOOR!r})\n" in header


def test_the_compiled_module_knows_exactly_the_specification_codes():
    """The built module accepts every code of the spec and names them all when refusing one."""
    from fastnet import _native
    X, y = np.zeros((1, 2)), np.zeros((1, 1))
    params, sizes, grad = np.zeros(3), np.array([2, 1], np.int64), np.zeros(3)
    empty = np.empty(0)
    sigmoid = np.array([spec.ACTIVATIONS["sigmoid"].code], np.int64)
    for entry in spec.LOSSES.values():       # each loss after an output it pairs with, two output units
        output = np.array([spec.ACTIVATIONS[entry.outputs[0]].code], np.int64)
        _native.gradient(X, np.zeros((1, 2)), empty, np.zeros(6), np.array([2, 2], np.int64), output, True, 0,
                         entry.code, 1, np.zeros(6))
    for argument, table, call in [
        ("loss", spec.LOSSES,
         lambda code: _native.gradient(X, y, empty, params, sizes, sigmoid, True, 0, code, 1, grad)),
        ("derivative", spec.DERIVATIVES,
         lambda code: _native.gradient(X, y, empty, params, sizes, sigmoid, True, code, 0, 1, grad)),
        ("activations", spec.ACTIVATIONS,
         lambda code: _native.forward(X, params, sizes, np.array([code], np.int64), True, 1, np.zeros(1))),
    ]:
        with pytest.raises(ValueError, match=argument) as refused:
            call(len(table))
        for name, entry in table.items():
            assert f"{entry.code} ({name})" in str(refused.value)


def test_codes_are_distinct_and_dense_in_every_table():
    for table in (spec.ACTIVATIONS, spec.DERIVATIVES, spec.LOSSES, spec.OPTIMIZERS):
        assert sorted(entry.code for entry in table.values()) == list(range(len(table)))


def test_importing_fastnet_loads_no_backend_and_no_optional_package():
    from conftest import run_python
    result = run_python(code="import sys, fastnet; print(sorted(m for m in ('numba', 'scipy', 'sklearn', "
                             "'dask', 'matplotlib', 'tqdm', 'torch') if m in sys.modules))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_version_is_the_installed_distribution_s():
    from importlib.metadata import version
    assert fastnet.__version__ == version("fastnet-kernels")


# -- arguments checked up front ---------------------------------------------------------

@pytest.mark.parametrize("seed, error", [("a", TypeError), (-1, ValueError), (True, TypeError), (1.5, TypeError)])
def test_a_bad_seed_is_refused_naming_it(seed, error):
    with pytest.raises(error, match="seed must be"):
        Network([2, 1], seed=seed)
    X, y = random_data([2, 1], 10)
    net = Network([2, 1], backend="numpy", seed=0)
    before = net.weights[0].copy()
    with pytest.raises(error, match="seed must be"):
        net.fit(X, y, batch_size=2, seed=seed)
    np.testing.assert_array_equal(net.weights[0], before)


def test_saving_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Network([2, 1]).save(tmp_path / "absent" / "model.npz")
    assert list(tmp_path.iterdir()) == []
