"""The Numba backend's calls through compiled addresses: one signature per kernel and dtype,
and a call with other argument types fails to compile instead of running."""

import numba
import numpy as np
import pytest
from numba import types

from fastnet import Network
from fastnet.backends import block_rows
from fastnet.backends import numba_kernels as kernels
from fastnet.layout import ParamLayout

from conftest import random_data

#: A module-level constant, so that Numba types it as a literal (as the kernels' own).
SLOPE = kernels._CALL_SLOPE


def test_python_and_the_parallel_kernel_use_the_one_signature_of_rows_per_dtype():
    """Gradients (serial and in parallel blocks), a fit with small and with large
    batches and a predict, in float64 and float32, compile ``_rows`` only for the
    signature ``_blocks`` calls it with: a second one would be a second full compile."""
    for dtype in ("float64", "float32"):
        X, y = random_data([3, 5, 2], 20_000, seed=3)
        X, y = X.astype(dtype), y.astype(dtype)
        net = Network([3, 5, 2], backend="numba", seed=0, dtype=dtype)
        net.gradients(X[:100], y[:100])
        net.gradients(X, y)
        net.fit(X[:300], y[:300], batch_size=32, optimizer="adam")
        net.fit(X, y, batch_size=9_000)
        net.predict(X[:10])
    expected = {kernels._signature(kernels._CALL_ROWS, precision)[1] for precision in (types.float64, types.float32)}
    assert set(kernels._rows.signatures) == expected


def test_a_kernel_called_with_other_types_than_its_signature_fails_to_compile():
    """The slope kernels take (deltas, d, acts, layer, n_rows, m); three arguments are a
    typing error naming the expected types, raised before anything is called."""
    @numba.njit
    def wrong_call(acts):
        kernels._call(SLOPE, 0, (acts, 0, acts))

    with pytest.raises(numba.core.errors.TypingError, match="compiled for"):
        wrong_call(np.zeros((2, 2, 2)))


def test_parallel_calls_leave_the_callers_chunk_size_as_they_found_it():
    """Gradients and a fit over more than BLOCK_ROWS rows hand out their blocks one at a
    time (chunk size 1), and then give the thread back the chunk size it had."""
    X, y = random_data([3, 5, 2], 20_000, seed=4)
    net = Network([3, 5, 2], backend="numba", seed=0)
    previous = numba.set_parallel_chunksize(7)
    try:
        net.gradients(X, y)
        assert numba.get_parallel_chunksize() == 7
        net.fit(X, y, batch_size=10_000)
        assert numba.get_parallel_chunksize() == 7
    finally:
        numba.set_parallel_chunksize(previous)


def test_a_call_of_one_block_per_thread_gives_the_same_bits_whatever_the_callers_chunk_size():
    """A call of at most one block per thread runs on Numba's default schedule when the
    caller's chunk size is 0, and is handed out one block at a time otherwise: the
    same blocks, summed in the same order, so the same gradient to the last bit.  The
    network's 32,962 parameters on 128 rows are work enough to cut the batch into two
    blocks of 64 rows (fastnet.backends.block_rows): at most one per thread here."""
    assert numba.get_num_threads() >= 2
    layers = [512, 64, 2]
    X, y = random_data(layers, 128, seed=5)
    assert block_rows(128, ParamLayout(layers, True)) == 64
    net = Network(layers, backend="numba", seed=0)
    previous = numba.set_parallel_chunksize(0)
    try:
        default_schedule = net.gradients(X, y)
        assert numba.get_parallel_chunksize() == 0
        numba.set_parallel_chunksize(3)
        one_at_a_time = net.gradients(X, y)
        assert numba.get_parallel_chunksize() == 3
    finally:
        numba.set_parallel_chunksize(previous)
    for ours, theirs in zip(default_schedule[0] + default_schedule[1], one_at_a_time[0] + one_at_a_time[1]):
        np.testing.assert_array_equal(ours, theirs)
