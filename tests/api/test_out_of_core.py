"""Data on disk: memory-mapped arrays and .npy paths train like arrays in memory."""

import numpy as np
import pytest

from conftest import random_data, random_network
from fastnet.training import DISK_BLOCK_ROWS, visiting_order

LAYERS = [3, 4, 2]


@pytest.fixture
def saved_data(tmp_path):
    """(X, y) in memory and the paths of the same arrays saved as .npy files."""
    X, y = random_data(LAYERS, 3000, seed=7)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return X, y, tmp_path / "X.npy", tmp_path / "y.npy"


@pytest.mark.parametrize("as_paths", [False, True], ids=["memmap", "path"])
@pytest.mark.parametrize("batch_size", [None, 64])
def test_fit_on_disk_equals_fit_in_memory(backend, saved_data, as_paths, batch_size):
    X, y, x_path, y_path = saved_data
    on_disk = (x_path, y_path) if as_paths else (np.load(x_path, mmap_mode="r"), np.load(y_path, mmap_mode="r"))
    in_memory, mapped = random_network(LAYERS, backend), random_network(LAYERS, backend)
    # Fewer rows than one disk block, so both visit rows in the same seeded permutation.
    history_memory = in_memory.fit(X, y, epochs=2, batch_size=batch_size, lr=0.5, seed=3)
    history_disk = mapped.fit(*on_disk, epochs=2, batch_size=batch_size, lr=0.5, seed=3)
    assert history_disk.loss == history_memory.loss
    for a, b in zip(mapped.weights, in_memory.weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["forward", "evaluate", "gradients"])
def test_evaluation_on_disk_equals_in_memory(backend, saved_data, method):
    X, y, x_path, y_path = saved_data
    net = random_network(LAYERS, backend)
    args_memory = (X,) if method == "forward" else (X, y)
    args_disk = (x_path,) if method == "forward" else (x_path, np.load(y_path, mmap_mode="r"))
    np.testing.assert_array_equal(flat(getattr(net, method)(*args_disk)), flat(getattr(net, method)(*args_memory)))


def flat(result):
    """A float, an array, or nested lists/tuples of arrays as one 1-D array."""
    if isinstance(result, (list, tuple)):
        return np.concatenate([flat(part) for part in result if part is not None])
    return np.ravel(result)


def test_missing_file_is_a_clear_error(backend, tmp_path):
    net = random_network(LAYERS, backend)
    with pytest.raises(ValueError, match=r"\bX\b.*no-such\.npy"):
        net.fit(tmp_path / "no-such.npy", np.zeros((3, 2)))


def test_file_of_the_wrong_shape_is_a_clear_error(backend, tmp_path):
    np.save(tmp_path / "X.npy", np.zeros((10, 5)))
    net = random_network(LAYERS, backend)
    before = [w.copy() for w in net.weights]
    with pytest.raises(ValueError, match=r"\bX\b.*3 columns"):
        net.fit(tmp_path / "X.npy", np.zeros((10, 2)))
    for a, b in zip(net.weights, before):
        np.testing.assert_array_equal(a, b)


def test_disk_order_shuffles_blocks_and_rows_within_blocks():
    n = 3 * DISK_BLOCK_ROWS + 5
    order = visiting_order(np.random.default_rng(0), n, shuffle=True, batch_size=32, on_disk=True)
    assert np.array_equal(np.sort(order), np.arange(n))  # a permutation
    blocks = order // DISK_BLOCK_ROWS
    # Each block's rows are visited together: four blocks, four runs.
    assert np.count_nonzero(np.diff(blocks)) == 3
    # Rows inside the first visited block are shuffled, not read in file order.
    first_run = order[:np.count_nonzero(blocks == blocks[0])]
    assert not np.array_equal(first_run, np.sort(first_run))


def test_predict_in_chunks_matches_whole_batch_outputs_from_a_memmap(backend, tmp_path):
    """More rows than one FORWARD_CHUNK_ROWS chunk (and a partial last chunk),
    compared with the NumPy reference's activations of all rows in one call."""
    from fastnet._config import FORWARD_CHUNK_ROWS
    layers = [3, 5, 2]
    X, _ = random_data(layers, FORWARD_CHUNK_ROWS + 1001, seed=8)
    np.save(tmp_path / "X.npy", X)
    expected = random_network(layers, "numpy", seed=9).activations(X)[-1]
    for source in (X, np.load(tmp_path / "X.npy", mmap_mode="r"), tmp_path / "X.npy"):
        predicted = random_network(layers, backend, seed=9).predict(source)
        assert predicted.shape == expected.shape
        np.testing.assert_allclose(predicted, expected, rtol=1e-12, atol=0)


def test_predict_memory_does_not_grow_with_the_number_of_rows(backend):
    """Beyond its result, predict on three chunks' worth of rows holds no more
    than on one chunk (all hidden activations at once would take three times
    as much: n x 64 floats).  The NumPy reference holds one chunk's hidden
    layer; the compiled backends write the output layer alone and hold a few
    tiles per thread, far less than one chunk's hidden layer."""
    import tracemalloc
    from fastnet._config import BLOCK_ROWS, FORWARD_CHUNK_ROWS
    layers = [2, 64, 1]
    X, _ = random_data(layers, 3 * FORWARD_CHUNK_ROWS, seed=10)
    net = random_network(layers, backend, seed=11)
    net.predict(X[:2 * BLOCK_ROWS])  # compile (numba), the parallel kernel too, before measuring

    def working_memory(rows):
        tracemalloc.start()
        try:
            outputs = net.predict(rows)
            return tracemalloc.get_traced_memory()[1] - outputs.nbytes
        finally:
            tracemalloc.stop()

    one_chunk, three_chunks = working_memory(X[:FORWARD_CHUNK_ROWS]), working_memory(X)
    hidden_layer_of_a_chunk = FORWARD_CHUNK_ROWS * 64 * X.itemsize
    if backend == "numpy":
        assert one_chunk > hidden_layer_of_a_chunk  # the chunk's hidden layer is counted
    else:
        assert one_chunk < hidden_layer_of_a_chunk / 10
    assert three_chunks < 1.1 * one_chunk + 2**16
