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


@pytest.mark.parametrize("layers, rows", [([3, 5, 2], 20_000), ([512, 64, 2], 128)])
def test_parallel_calls_give_the_same_bits_whatever_the_callers_chunk_size(layers, rows):
    """Parallel calls run their blocks on Numba's schedule, the caller's chunk size
    included: the same blocks, summed in the same order, so the same gradient and fit
    to the last bit with chunk size 0 (an equal share per thread) and 3 (three of four
    blocks, or both of two, to one thread).  20,000 rows are four blocks of 5,168; the second
    network's 32,962 parameters make 128 rows work enough for two blocks of 64
    (fastnet.backends.block_rows)."""
    assert numba.get_num_threads() >= 2
    X, y = random_data(layers, rows, seed=5)
    assert -(-rows // block_rows(rows, ParamLayout(layers, True))) in (4, 2)
    results = []
    previous = numba.get_parallel_chunksize()
    try:
        for chunk_size in (0, 3):
            numba.set_parallel_chunksize(chunk_size)
            net = Network(layers, backend="numba", seed=0)
            gradients = net.gradients(X, y)
            net.fit(X, y, epochs=2, batch_size=rows, optimizer="adam", seed=1)
            assert numba.get_parallel_chunksize() == chunk_size
            results.append(gradients[0] + gradients[1] + net.weights + net.biases)
    finally:
        numba.set_parallel_chunksize(previous)
    for ours, theirs in zip(*results):
        np.testing.assert_array_equal(ours, theirs)
