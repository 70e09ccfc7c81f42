"""The fast backends agree with the NumPy reference, and the sigmoid never overflows."""

import warnings

import numpy as np
import pytest

from fastnet import Network
from fastnet._config import BLOCK_ROWS, CACHE_LINE_BYTES, NARROW_TILE_ROWS, NARROW_WIDTH, TILE_ROWS

from conftest import (DERIVATIVES, FAST_BACKENDS, LOSSES, REFERENCE, assert_close_normwise,
                      random_data, random_parameters)

#: Row counts around the kernels' tiles (TILE_ROWS rows).
ROW_COUNTS = [1, 2, TILE_ROWS - 1, TILE_ROWS, TILE_ROWS + 1, 1000]


def agreement_cases():
    """Every (bias, derivative, loss) combination at every row count, on seeded random shapes."""
    rng = np.random.default_rng(20240611)
    cases = []
    for n in ROW_COUNTS:
        for bias in (True, False):
            for derivative in DERIVATIVES:
                for loss in LOSSES:
                    depth = int(rng.integers(1, 5))
                    layers = [int(w) for w in rng.integers(1, 41, depth + 1)]
                    scale = float(rng.choice([0.5, 1.0, 3.0]))
                    seed = int(rng.integers(2**31))
                    case = dict(n=n, layers=layers, bias=bias, derivative=derivative, loss=loss,
                                scale=scale, seed=seed)
                    cases.append(pytest.param(case, id=f"n{n}-{'-'.join(map(str, layers))}-"
                                                       f"{'bias' if bias else 'nobias'}-{derivative}-{loss}"))
    return cases


def build(case, backend):
    weights, biases = random_parameters(case["layers"], seed=case["seed"], bias=case["bias"],
                                        scale=case["scale"])
    return Network(case["layers"], backend=backend, derivative=case["derivative"], loss=case["loss"],
                   bias=case["bias"], weights=weights, biases=biases)


def case_data(case):
    X, y = random_data(case["layers"], case["n"], seed=case["seed"] + 1)
    return 2.0 * X, y          # inputs in [-2, 2]


@pytest.fixture(params=FAST_BACKENDS)
def fast_backend(request):
    return request.param


@pytest.mark.parametrize("case", agreement_cases())
def test_forward_and_activations_agree_with_reference(fast_backend, case):
    X, _ = case_data(case)
    expected = build(case, REFERENCE).activations(X)
    net = build(case, fast_backend)
    actual = net.activations(X)
    assert len(actual) == len(case["layers"]) - 1
    for a, e, width in zip(actual, expected, case["layers"][1:]):
        assert a.shape == (case["n"], width)
        assert a.dtype == np.float64
        assert_close_normwise(a, e)
    output = net.forward(X)
    assert output.shape == (case["n"], case["layers"][-1])
    assert_close_normwise(output, expected[-1])


@pytest.mark.parametrize("case", agreement_cases())
def test_loss_and_gradients_agree_with_reference(fast_backend, case):
    X, y = case_data(case)
    reference = build(case, REFERENCE)
    net = build(case, fast_backend)
    assert net.evaluate(X, y) == pytest.approx(reference.evaluate(X, y), rel=1e-12)
    dW, db = net.gradients(X, y)
    expected_W, expected_b = reference.gradients(X, y)
    for a, e in zip(dW, expected_W):
        assert_close_normwise(a, e)
    if case["bias"]:
        for a, e in zip(db, expected_b):
            assert_close_normwise(a, e)
    else:
        assert db is None


@pytest.mark.parametrize("case", [c for c in agreement_cases() if c.values[0]["n"] == 1000][:4])
def test_step_agrees_with_reference(fast_backend, case):
    X, y = case_data(case)
    reference, net = build(case, REFERENCE), build(case, fast_backend)
    assert net.step(X, y, lr=0.5) == pytest.approx(reference.step(X, y, lr=0.5), rel=1e-12)
    for a, e in zip(net.weights, reference.weights):
        assert_close_normwise(a, e)


#: (inputs, units) of a hidden layer around the weight gradient's register blocks
#: (four inputs by whole vectors of 4, 8 or 16 units, from 16 inputs on): fewer
#: inputs than that, a multiple of four and not, units one short of a vector, whole
#: vectors, and whole vectors plus some.
WEIGHT_GRADIENT_SHAPES = [(15, 24), (16, 8), (18, 25), (19, 37), (32, 7), (20, 52)]

#: Row counts around the blocks' chunks of tile rows (up to 128) and the tiles.
WEIGHT_GRADIENT_ROWS = [1, 5, 127, 128, 129, TILE_ROWS + 3]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_inputs, n_units", WEIGHT_GRADIENT_SHAPES)
def test_weight_gradients_at_the_edges_of_the_register_blocks_agree_with_reference(fast_backend, dtype,
                                                                                    n_inputs, n_units):
    layers = [n_inputs, n_units, 3]
    weights, biases = random_parameters(layers, seed=n_inputs * 100 + n_units)
    reference = Network(layers, backend=REFERENCE, weights=weights, biases=biases)
    net = Network(layers, backend=fast_backend, weights=weights, biases=biases, dtype=dtype)
    for n in WEIGHT_GRADIENT_ROWS:
        X, y = random_data(layers, n, seed=n)
        (dW, db), (expected_dW, expected_db) = net.gradients(X, y), reference.gradients(X, y)
        for actual, expected in zip(dW + db, expected_dW + expected_db):
            # float32 rounds each of up to 275 terms to 24 bits.
            assert_close_normwise(actual, expected, rtol=1e-12 if dtype == "float64" else 2e-5)


def test_gradient_is_repeatable(fast_backend):
    """Same data, same parameters: bit-identical gradients (no thread-order dependence)."""
    layers = [30, 40, 20, 3]
    weights, biases = random_parameters(layers, seed=3)
    net = Network(layers, backend=fast_backend, weights=weights, biases=biases)
    X, y = random_data(layers, 3000, seed=4)
    first = net.gradients(X, y)
    for _ in range(3):
        again = net.gradients(X, y)
        for a, b in zip(first[0] + first[1], again[0] + again[1]):
            np.testing.assert_array_equal(a, b)


#: Widths that send the matrix products through their register blocks (a
#: multiple of four rows, at least 16 columns) forward and backward, over
#: several chunks of inputs (fastnet._config.PRODUCT_CHUNK, 64) with a
#: partial last one, next to narrow layers that do not.
WIDE_LAYERS = [[150, 20, 36, 3], [68, 132, 16, 4]]


@pytest.mark.parametrize("layers", WIDE_LAYERS, ids=lambda layers: "-".join(map(str, layers)))
@pytest.mark.parametrize("n", [13, 300, 525])
def test_wide_layers_agree_with_reference(fast_backend, layers, n):
    """Register-blocked products on tiles of any length (13 rows, and 300 and 525 rows, whose
    last tiles are not whole vectors either) give the reference's activations and gradients,
    float64 and float32."""
    weights, biases = random_parameters(layers, seed=n)
    X, y = random_data(layers, n, seed=n + 1)
    reference = Network(layers, backend=REFERENCE, weights=weights, biases=biases)
    net = Network(layers, backend=fast_backend, weights=weights, biases=biases)
    for actual, expected in zip(net.activations(X), reference.activations(X)):
        assert_close_normwise(actual, expected)
    assert net.evaluate(X, y) == pytest.approx(reference.evaluate(X, y), rel=1e-12)
    expected_W, expected_b = reference.gradients(X, y)
    dW, db = net.gradients(X, y)
    for actual, expected in zip(dW + db, expected_W + expected_b):
        assert_close_normwise(actual, expected)
    single = Network(layers, backend=fast_backend, weights=weights, biases=biases, dtype="float32")
    dW, db = single.gradients(X.astype(np.float32), y.astype(np.float32))
    for actual, expected in zip(dW + db, expected_W + expected_b):
        assert actual.dtype == np.float32
        assert_close_normwise(actual, expected, rtol=1e-4)


def test_numba_products_never_read_the_unused_rows_of_a_partial_tile():
    """The Numba products compute a partial tile's rows in whole vectors, the rows past the
    batch from whatever the work memory holds: with NaN there, the result is still the reference's."""
    from fastnet.backends import numba_kernels
    layers = [150, 20, 36, 3]
    weights, biases = random_parameters(layers, seed=5)
    net = Network(layers, backend="numba", weights=weights, biases=biases)
    reference = Network(layers, backend=REFERENCE, weights=weights, biases=biases)
    X, y = random_data(layers, 13, seed=6)
    net.gradients(X, y)  # keeps its work memory for the next call of this shape
    (_, _, acts, deltas, _), _ = numba_kernels._recent_work.memory
    acts.fill(np.nan)
    deltas.fill(np.nan)
    dW, db = net.gradients(X, y)
    assert numba_kernels._recent_work.memory[0][2] is acts  # the poisoned memory was the one used
    expected_W, expected_b = reference.gradients(X, y)
    for actual, expected in zip(dW + db, expected_W + expected_b):
        assert np.isfinite(actual).all()
        assert_close_normwise(actual, expected)
    for actual, expected in zip(net.activations(X), reference.activations(X)):
        assert_close_normwise(actual, expected)


def test_rows_are_independent_across_tile_boundaries(backend):
    """Row k's output does not depend on which tile it falls in or on the other rows."""
    layers = [5, 7, 2]
    weights, biases = random_parameters(layers, seed=9)
    net = Network(layers, backend=backend, weights=weights, biases=biases)
    X, _ = random_data(layers, 600, seed=10)
    full = net.forward(X)
    for k in [0, TILE_ROWS - 2, TILE_ROWS - 1, TILE_ROWS, TILE_ROWS + 1, 2 * TILE_ROWS - 1, 2 * TILE_ROWS, 599]:
        np.testing.assert_allclose(net.forward(X[k:k + 1]), full[k:k + 1], rtol=1e-14, atol=0)



@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layers, n, first_rows", [
    ([68, 132, 16, 4], 525, 144),             # 525 x 11,304 parameters is over SPLIT_WORK: ceil(525 / 4) -> 144
    ([4, 1, 1], BLOCK_ROWS + 300, 2448),      # over BLOCK_ROWS: 4 blocks of 9 tiles
], ids=["split-wide", "big-narrow"])
def test_forward_in_blocks_gives_each_row_as_alone_on_any_thread_count(fast_backend, dtype, layers, n, first_rows):
    """A forward pass runs in blocks of fastnet.backends.block_rows rows, as a gradient does:
    rows at the blocks' edges come out as when predicted alone, and the bits do not
    depend on the number of threads."""
    import fastnet
    from fastnet.backends import block_rows
    from fastnet.layout import ParamLayout
    assert block_rows(n, ParamLayout(layers, True)) == first_rows
    weights, biases = random_parameters(layers, seed=n)
    net = Network(layers, backend=fast_backend, weights=weights, biases=biases, dtype=dtype)
    X = random_data(layers, n, seed=n + 1)[0].astype(dtype)
    before = fastnet.get_num_threads()
    try:
        fastnet.set_num_threads(1)
        serial = net.forward(X)
        fastnet.set_num_threads(2)
        parallel = net.forward(X)
    finally:
        fastnet.set_num_threads(before)
    np.testing.assert_array_equal(parallel, serial)
    rtol = 1e-14 if dtype == "float64" else 1e-6
    for k in (0, first_rows - 1, first_rows, 2 * first_rows, 3 * first_rows - 1, 3 * first_rows, n - 1):
        np.testing.assert_allclose(parallel[k:k + 1], net.forward(X[k:k + 1]), rtol=rtol, atol=0)

# -- the sigmoid at extreme arguments -----------------------------------------------------

EXTREME_Z = [1e3, -1e3, 1e6, -1e6, 1e300, -1e300]


def extreme_network(route, z, backend, derivative="exact"):
    """A one-weight network [1, 1] whose pre-activation on its input is z, and that input.

    route "weight": W = z, x = 1; "input": W = 1, x = z; "bias": W = 0, b = z, x = 0.5.
    """
    if route == "weight":
        return Network([1, 1], backend=backend, derivative=derivative, bias=False,
                       weights=[[[z]]]), np.array([[1.0]])
    if route == "input":
        return Network([1, 1], backend=backend, derivative=derivative, bias=False,
                       weights=[[[1.0]]]), np.array([[z]])
    return Network([1, 1], backend=backend, derivative=derivative, bias=True,
                   weights=[[[0.0]]], biases=[[z]]), np.array([[0.5]])


def strict(underflow="raise"):
    """Turn every warning into an error and floating-point exceptions into raises.

    Backpropagating through a saturated sigmoid multiplies numbers near 1e-308,
    so gradients may legitimately underflow to subnormals or zero; callers that
    compute gradients (or chain saturated layers through BLAS) pass
    ``underflow="ignore"``, NumPy's default.  Overflow, invalid and
    divide-by-zero always raise.
    """
    return warnings.catch_warnings(), np.errstate(all="raise", under=underflow)


def assert_saturated(output, z):
    assert np.isfinite(output).all()
    assert ((output >= 0.0) & (output <= 1.0)).all()
    if z > 0:
        assert (output == 1.0).all()
    else:
        assert (output >= 0.0).all() and (output <= 1e-300).all()


@pytest.mark.parametrize("route", ["weight", "input", "bias"])
@pytest.mark.parametrize("z", EXTREME_Z)
def test_sigmoid_saturates_without_warnings(backend, z, route):
    net, X = extreme_network(route, z, backend)
    catch, errstate = strict()
    with catch, errstate:
        warnings.simplefilter("error")
        output = net.forward(X)
        activations = net.activations(X)
    assert output.shape == (1, 1)
    assert_saturated(output, z)
    assert_saturated(activations[-1], z)


@pytest.mark.parametrize("derivative", DERIVATIVES)
@pytest.mark.parametrize("route", ["weight", "input", "bias"])
@pytest.mark.parametrize("z", EXTREME_Z)
def test_loss_gradients_and_step_stay_finite_at_extreme_z(backend, z, route, derivative):
    net, X = extreme_network(route, z, backend, derivative)
    y = np.array([[0.5]])
    catch, errstate = strict(underflow="ignore")
    with catch, errstate:
        warnings.simplefilter("error")
        loss = net.evaluate(X, y)
        dW, db = net.gradients(X, y)
        returned = net.step(X, y, lr=1.0)
    # output is 0 or 1, so the squared error is 0.25 (mse over one element, the default)
    assert loss == pytest.approx(0.25, rel=1e-12)
    assert returned == pytest.approx(0.25, rel=1e-12)
    assert all(np.isfinite(g).all() for g in dW + (db or []))
    assert all(np.isfinite(w).all() for w in net.weights)


@pytest.mark.parametrize("scale", [1e3, 1e6, 1e300])
def test_deep_network_with_huge_weights_stays_in_range(backend, scale):
    """Saturated hidden layers of both signs feed a saturated output; compare with the reference."""
    rng = np.random.default_rng(7)
    layers = [3, 4, 4, 2]
    weights = [scale * rng.choice([-1.0, 1.0], (i, o)) for i, o in zip(layers[:-1], layers[1:])]
    X = rng.uniform(0.1, 1.0, (20, 3)) * rng.choice([-1.0, 1.0], (20, 3))
    y = rng.uniform(0.0, 1.0, (20, 2))
    nets = {name: Network(layers, backend=name, bias=False, weights=weights) for name in {backend, REFERENCE}}
    catch, errstate = strict(underflow="ignore")
    with catch, errstate:
        warnings.simplefilter("error")
        outputs = nets[backend].activations(X)
        dW, _ = nets[backend].gradients(X, y)
        expected = nets[REFERENCE].activations(X)
    for a, e in zip(outputs, expected):
        assert np.isfinite(a).all() and ((a >= 0) & (a <= 1)).all()
        assert_close_normwise(a, e)
    assert all(np.isfinite(g).all() for g in dW)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 2, 1, TILE_ROWS), (2, 3, 17, TILE_ROWS), (5,), (3, 1)])
def test_numba_work_memory_starts_on_a_cache_line(shape, dtype):
    """Tile rows (TILE_ROWS values, a multiple of 16) are then whole cache lines: no vector
    load straddles two."""
    from fastnet.backends.numba_kernels import _aligned_empty
    for _ in range(20):  # numpy itself guarantees only 16 bytes; try several allocations
        array = _aligned_empty(shape, dtype)
        assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous
        assert array.ctypes.data % CACHE_LINE_BYTES == 0
        array[...] = 1  # the whole extent is writable memory of its own


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layers", [[4, 1, 1], [3, 1], [4, 3, 2], [784, 128, 10]], ids=str)
def test_numba_partial_gradients_of_two_blocks_never_share_a_cache_line(layers, dtype):
    """Each block's partial gradient starts on a cache line of its own, however few the
    parameters (7 float32 would otherwise put two blocks' partials in one line), and holds
    them all."""
    from fastnet.backends import numba_kernels
    from fastnet.layout import ParamLayout
    layout = ParamLayout(layers, True)
    params = np.zeros(layout.count, dtype)
    _, parts = numba_kernels._allocate_work_memory(2, 3, params, layout)
    assert parts.shape[0] == 3 and parts.shape[1] >= layout.count and parts.dtype == dtype
    assert parts.ctypes.data % CACHE_LINE_BYTES == 0 and parts.strides[0] % CACHE_LINE_BYTES == 0
    assert parts.strides[0] < layout.count * parts.itemsize + CACHE_LINE_BYTES  # padded to the next line only


def test_numba_work_memory_is_reused_only_when_small_and_of_the_same_shape():
    from fastnet._config import BLOCK_ROWS
    from fastnet.backends import numba_kernels
    from fastnet.layout import ParamLayout
    small, big = ParamLayout([4, 8, 1], True), ParamLayout([1000, 1000, 1000], True)
    params = np.zeros(4 * 8 + 8 + 8 + 1)
    first = numba_kernels._work_memory(1000, BLOCK_ROWS, params, small)
    assert numba_kernels._work_memory(1000, BLOCK_ROWS, params, ParamLayout([4, 8, 1], True)) is first
    assert numba_kernels._work_memory(1000, BLOCK_ROWS, params, ParamLayout([4, 8, 1], False)) is not first
    big_params = np.zeros(2 * 1000 * 1000 + 2000)
    (_, _, acts, deltas, _), parts = numba_kernels._work_memory(100_000, BLOCK_ROWS, big_params, big)
    assert acts.nbytes + deltas.nbytes + parts.nbytes > numba_kernels.KEPT_WORK_BYTES
    assert numba_kernels._work_memory(100_000, BLOCK_ROWS, big_params, big)[1] is not parts


#: Networks with no layer wider than NARROW_WIDTH units, which the Numba kernels run in
#: tiles of NARROW_TILE_ROWS rows, and row counts around those tiles: one short, one over,
#: whole tiles, and two blocks whose second ends in a partial tile.
NARROW_LAYERS = [[4, 1, 1], [2, 4, 3, 1], [3, 4]]
NARROW_ROW_COUNTS = [NARROW_TILE_ROWS - 1, NARROW_TILE_ROWS + 1, 3 * NARROW_TILE_ROWS,
                     BLOCK_ROWS + NARROW_TILE_ROWS + 5]


def test_narrow_networks_get_the_long_tiles_and_the_rest_the_short():
    """The Numba work memory's tile length follows the rule of fastnet._config: a widest
    layer of NARROW_WIDTH units or fewer, inputs included, gets NARROW_TILE_ROWS."""
    from fastnet.backends import numba_kernels
    from fastnet.layout import ParamLayout
    for layers, tile in (([4, 1, 1], NARROW_TILE_ROWS), ([2, 4, 3, 1], NARROW_TILE_ROWS),
                         ([NARROW_WIDTH + 1, 1], TILE_ROWS), ([1, NARROW_WIDTH + 1, 1], TILE_ROWS),
                         ([784, 128, 10], TILE_ROWS)):
        layout = ParamLayout(layers, True)
        (_, _, acts, deltas, _), _ = numba_kernels._allocate_work_memory(1, 1, np.zeros(layout.count), layout)
        assert acts.shape[-1] == deltas.shape[-1] == tile, layers


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layers", NARROW_LAYERS, ids=str)
def test_narrow_networks_agree_with_reference_around_their_long_tiles(fast_backend, layers, dtype):
    """Activations, loss and gradient of narrow networks, with biases, at every row count of
    NARROW_ROW_COUNTS, and the parameters after an epoch of batches longer than a long
    tile, agree with the NumPy reference (float32 to 1e-5 of the float64 reference)."""
    rtol = 1e-12 if dtype == "float64" else 1e-5
    weights, biases = random_parameters(layers, seed=31, bias=True, scale=3.0)
    for n in NARROW_ROW_COUNTS:
        X, y = random_data(layers, n, seed=n)
        X = 2.0 * X
        reference = Network(layers, backend=REFERENCE, weights=weights, biases=biases)
        net = Network(layers, backend=fast_backend, dtype=dtype, weights=weights, biases=biases)
        Xd, yd = X.astype(dtype), y.astype(dtype)
        for actual, wanted in zip(net.activations(Xd), reference.activations(X)):
            assert_close_normwise(actual, wanted, rtol=rtol)
        assert net.evaluate(Xd, yd) == pytest.approx(reference.evaluate(X, y), rel=rtol)
        for actual, wanted in zip(net.gradients(Xd, yd), reference.gradients(X, y)):
            for a, e in zip(actual, wanted):
                assert_close_normwise(a, e, rtol=rtol)
    fit = dict(epochs=1, lr=0.1, batch_size=NARROW_TILE_ROWS + 300, shuffle=False)
    reference.fit(X, y, **fit)
    net.fit(Xd, yd, **fit)
    for a, e in zip(net.weights + net.biases, reference.weights + reference.biases):
        assert_close_normwise(a, e, rtol=100 * rtol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_single_unit_layers_are_written_as_the_reference_computes_them(fast_backend, dtype):
    """Layers of one unit, inside the network and at its end, over several blocks of rows
    and a partial last tile: every layer's activations and the output alone (predict's
    write) agree with the NumPy reference, in every row."""
    layers, n = [5, 1, 3, 1], 2 * BLOCK_ROWS + TILE_ROWS + 3
    X, _ = random_data(layers, n, seed=21)
    X = (2.0 * X).astype(dtype)
    weights, biases = random_parameters(layers, seed=22, bias=True, scale=3.0)
    expected = Network(layers, backend=REFERENCE, weights=weights, biases=biases).activations(X.astype(np.float64))
    net = Network(layers, backend=fast_backend, dtype=dtype, weights=weights, biases=biases)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    for actual, wanted in zip(net.activations(X), expected):
        assert_close_normwise(actual, wanted, rtol=rtol)
    assert_close_normwise(net.forward(X), expected[-1], rtol=rtol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forward_writes_the_last_layers_that_fill_out(backend, dtype):
    """Given room for the last k layers, a backend's forward writes exactly their blocks of
    its every-layer output, bit for bit, for each k (predict writes the output layer
    alone); any other length is a ValueError naming out, with out left as it was."""
    layers = [7, 33, 17, 5]
    X, _ = random_data(layers, 700, seed=12)
    X = X.astype(dtype)
    net = Network(layers, backend=backend, dtype=dtype, seed=3)
    model, n = net._model(), X.shape[0]
    every = np.empty(n * sum(layers[1:]), dtype)
    net._backend.forward(model, X, every)
    for first in range(1, len(layers)):
        out = np.full(n * sum(layers[first:]), np.nan, dtype)
        net._backend.forward(model, X, out)
        np.testing.assert_array_equal(out, every[n * sum(layers[1:first]):])
    for length in (0, n * layers[-1] - 1, n * (layers[-1] + 1), every.size + n):
        out = np.full(length, 7.0, dtype)
        with pytest.raises(ValueError, match="out"):
            net._backend.forward(model, X, out)
        assert (out == 7.0).all()


def test_block_rows_cuts_only_batches_with_enough_work_into_a_few_blocks():
    """fastnet.backends.block_rows against its rule, worked out by hand, for batches of at
    most BLOCK_ROWS rows: BLOCK_ROWS (one block) unless rows x parameters reach SPLIT_WORK
    (2**22); then ceil(rows / 4) rounded up to a multiple of 16, at least 64."""
    from fastnet._config import BLOCK_ROWS
    from fastnet.backends import block_rows
    from fastnet.layout import ParamLayout
    mnist = ParamLayout([784, 128, 10], True)  # 101,770 parameters
    assert block_rows(128, mnist) == 64          # ceil(128 / 4) = 32, raised to 64
    assert block_rows(1000, mnist) == 256        # 250 rounded up to 256
    assert block_rows(BLOCK_ROWS, mnist) == 2176  # 8704 / 4
    assert block_rows(41, mnist) == BLOCK_ROWS   # 41 x 101,770 = 4,172,570 < 2**22: one block
    assert block_rows(42, mnist) == 64           # 4,274,340: cut (into one block of 64: serial all the same)
    narrow = ParamLayout([4, 8, 1], True)        # 49 parameters: never worth cutting
    assert block_rows(BLOCK_ROWS, narrow) == BLOCK_ROWS
    assert block_rows(32, narrow) == BLOCK_ROWS


def test_block_rows_cuts_big_batches_into_a_multiple_of_four_blocks_of_whole_tiles():
    """Over BLOCK_ROWS (8,704) rows, whatever the network: the blocks of BLOCK_ROWS it needs,
    rounded up to a multiple of 4, then the fewest whole tiles of 272 rows per block
    that take every row in that many blocks (hand arithmetic)."""
    from fastnet._config import BLOCK_ROWS, TILE_ROWS
    from fastnet.backends import block_rows
    from fastnet.layout import ParamLayout
    for layout in (ParamLayout([784, 128, 10], True), ParamLayout([4, 8, 1], True)):
        assert block_rows(BLOCK_ROWS + 1, layout) == 2448   # 4 blocks: ceil(8,705 / 4) = 2,177 -> 9 tiles
        assert block_rows(10_000, layout) == 2720           # 4 blocks: 2,500 -> 10 tiles
        assert block_rows(60_000, layout) == 7616           # 7 -> 8 blocks: 7,500 -> 28 tiles
        assert block_rows(1_000_000, layout) == BLOCK_ROWS  # 115 -> 116 blocks: 8,621 -> 32 tiles
        for rows in (BLOCK_ROWS + 1, 10_000, 20_000, 60_000, 100_000, 1_000_000, 1_000_001):
            size, most_blocks = block_rows(rows, layout), -(-(-(-rows // BLOCK_ROWS)) // 4) * 4
            assert size % TILE_ROWS == 0 and size <= BLOCK_ROWS
            assert size * most_blocks >= rows > (size - TILE_ROWS) * most_blocks, (rows, size)
