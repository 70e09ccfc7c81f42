"""The property-based check shared by tests/api/test_fuzz.py (a few examples) and tests/slow/test_fuzz_full.py.

The property: any input to any public method gives the reference's answer or a clean error.

For every backend and every public method (forward, activations, loss,
gradients, step, fit, partial_fit), hypothesis draws networks and inputs of
any shape (zero rows, wrong column counts, 0-D, 3-D), dtype (bool, ints,
float16/32/64, complex, object, strings, bytes), values (NaN, inf), layout
(Fortran order, strided, reversed, read-only, nested lists, ragged lists)
and argument values (lr, batch_size, epochs, optimizer, sample_weight).  Each call must either

- give the numpy reference backend's result for the same input after the
  documented conversion (np.asarray, real numbers only, C-contiguous float64,
  a 1-D y meaning one output), to 1e-12 normwise, or
- raise ValueError or TypeError, exactly when the input is invalid,

and nothing else: no other exception, no crash, no change to the network on
an error, no write to the caller's arrays.

The native backend's examples run in a child interpreter (one per test,
running a batch of examples with hypothesis there), which prints each case
before running it: a segfault fails the test and names the crashing input
instead of killing pytest.

The hypothesis seed is fixed (reproducible CI); FASTNET_FUZZ_SEED=random (or
another integer) explores new cases.  Cases found so far are kept as
explicit examples (FOUND, run by both tiers) or as dedicated tests in
tests/api/test_fuzz.py.  The rules for valid input are naive.py's.
"""

import math
import os
import random
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, seed as hypothesis_seed, settings, strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.extra import numpy as hnp

from fastnet import Network

from naive import Invalid, converted, valid_count, valid_number
from conftest import REFERENCE, TESTS_DIR, run_python

METHODS = ["forward", "activations", "evaluate", "gradients", "step", "fit", "partial_fit"]
#: Examples per backend and method: the full run (slow tier) and the quick one (fast tier).
MAX_EXAMPLES = 50
QUICK_EXAMPLES = 8
#: Hypothesis seed: fixed by default so that CI runs are reproducible; set FASTNET_FUZZ_SEED to
#: another integer, or to "random" for a fresh seed each run, to explore further.
FUZZ_SEED = os.environ.get("FASTNET_FUZZ_SEED", "20240611")

#: Layer widths drawn for the networks: input widths 1 (a 1-D X is then valid) to 4.
LAYER_CHOICES = [[1, 1], [1, 3, 1], [3, 2], [3, 4, 2], [2, 3, 3, 1], [4, 5, 3]]
DTYPES = ["float64", "float32", "float16", "int64", "int32", "uint8", "bool",
          "complex128", "object", "str", "bytes"]
LAYOUTS = ["C", "fortran", "strided", "reversed", "read-only", "list", "ragged-list"]
SPECIALS = [math.nan, math.inf, -math.inf]


# -- strategies ---------------------------------------------------------------------------------

@st.composite
def network_settings(draw):
    return {
        "layers": draw(st.sampled_from(LAYER_CHOICES)),
        "bias": draw(st.booleans()),
        "derivative": draw(st.sampled_from(["exact", "article"])),
        "loss": draw(st.sampled_from(["sse", "mse", "bce"])),
        "seed": draw(st.integers(0, 2**16)),
    }


REAL_DTYPES = DTYPES[:7]
VALID_LAYOUTS = [layout for layout in LAYOUTS if layout != "ragged-list"]


@st.composite
def array_input(draw, rows, columns, low, high, vector=False, valid=False):
    """An array-like meant as (rows, columns), or (rows,) when ``vector``; unless ``valid``, often not quite that.

    Shape, dtype, special values and memory layout are drawn independently.
    With ``valid``, only documented-valid variants are drawn (real dtypes,
    the right shape, finite values, any layout but ragged lists).
    """
    if vector:
        shapes = [(rows,)] if valid else [(rows,)] * 6 + [(rows + 1,), (max(rows - 1, 0),), (rows, 1), ()]
        shape = draw(st.sampled_from(shapes))
    elif valid:
        shape = draw(st.sampled_from([(rows, columns)] * 3 + ([(rows,)] if columns == 1 else [])))
    else:
        n = draw(st.sampled_from([rows] * 6 + [0, rows + 1]))
        m = draw(st.sampled_from([columns] * 6 + [columns + 1, max(columns - 1, 0)]))
        shape = draw(st.sampled_from([(n, m)] * 8 + [(n * m,), (n, m, 1), ()]))
    values = draw(hnp.arrays(np.float64, shape,
                             elements=st.floats(low, high, allow_nan=False, allow_infinity=False, width=64)))
    dtype = draw(st.sampled_from(REAL_DTYPES if valid else REAL_DTYPES * 3 + DTYPES[7:]))
    if dtype in ("int64", "int32"):
        array = np.round(values).astype(dtype)
    elif dtype == "uint8":
        array = np.round(values).astype(np.int64).astype(np.uint8)     # wraps, no warning
    elif dtype == "bool":
        array = values > (low + high) / 2
    elif dtype == "str":
        array = values.astype(str)
    elif dtype == "bytes":
        array = values.astype("S32")
    else:
        array = values.astype(dtype)
    array = np.array(array)          # numpy scalars (0-D results) back to arrays
    if not valid and array.size and array.dtype.kind in "fcO" and draw(st.integers(0, 5)) == 0:
        index = draw(st.integers(0, array.size - 1))
        array.reshape(-1)[index] = draw(st.sampled_from(SPECIALS))
    layout = draw(st.sampled_from(VALID_LAYOUTS if valid else LAYOUTS))
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "strided" and array.ndim:
        wide = np.repeat(np.repeat(array, 2, axis=0), 2, axis=-1)
        return wide[::2, ..., ::2] if array.ndim > 1 else wide[::2]
    if layout == "reversed" and array.ndim:
        return array[::-1]
    if layout == "read-only":
        array = array.copy()
        array.flags.writeable = False
        return array
    if layout == "list":
        return array.tolist()
    if layout == "ragged-list" and array.ndim == 2 and array.shape[0] >= 2 and array.shape[1] >= 1:
        rows_list = array.tolist()
        rows_list[-1] = rows_list[-1][:-1]
        return rows_list
    return array


def either(valid, good, bad):
    """Draw from ``good`` only when ``valid``, else from ``good`` and ``bad`` together."""
    return st.sampled_from(good if valid else good * 3 + bad)


#: Argument values: documented-valid ones, and invalid ones.
LR = ([0.01, 0.3, 1.0, 2, np.float32(0.5)], [0, -0.1, math.nan, math.inf, "0.1", None, True])
BATCH_SIZE = ([None, 1, 2, 3, 7, 100], [0, -1, 2.5, "3", True])
EPOCHS = ([0, 1, 2], [-1, 1.5, "2", None])
OPTIMIZER = (["sgd", "momentum", "adam"], ["rmsprop", None])
FIT_SEED = st.sampled_from([None, 0, 12345])
PARTS = ["X", "y", "sample_weight", "arguments"]


@st.composite
def cases(draw, method):
    """A call of ``method``: half the time every part valid, else some parts free to be anything."""
    net = draw(network_settings())
    layers = net["layers"]
    rows = draw(st.integers(1, 12))
    mode = draw(st.sampled_from(["valid", "valid", "one-part", "all-parts"]))
    free = set() if mode == "valid" else set(PARTS) if mode == "all-parts" else {draw(st.sampled_from(PARTS))}
    case = {"method": method, "net": net,
            "X": draw(array_input(rows, layers[0], -3.0, 3.0, valid="X" not in free))}
    if method in ("forward", "activations"):
        return case
    case["y"] = draw(array_input(rows, layers[-1], 0.0, 1.0, valid="y" not in free))
    case["sample_weight"] = draw(st.one_of(
        st.none(), array_input(rows, 1, 0.0, 2.0, vector=True, valid="sample_weight" not in free)))
    valid = "arguments" not in free
    if method == "step":
        case["lr"] = draw(either(valid, *LR))
    if method in ("fit", "partial_fit"):
        case["lr"] = draw(either(valid, LR[0] + [None], [value for value in LR[1] if value is not None]))
        case["batch_size"] = draw(either(valid, *BATCH_SIZE))
        case["optimizer"] = draw(either(valid, *OPTIMIZER))
        case["shuffle"] = draw(st.booleans())
        case["seed"] = draw(FIT_SEED)
    if method == "fit":
        case["epochs"] = draw(either(valid, *EPOCHS))
    return case


# -- the oracle: the documented conversion (naive.py), then the reference backend ---------------

def canonical_case(case):
    """The case with every input converted as documented, or Invalid."""
    layers = case["net"]["layers"]
    canonical = dict(case)
    canonical["X"] = X = converted(case["X"], layers[0])
    if "y" in case:
        canonical["y"] = y = converted(case["y"], layers[-1])
        if y.shape[0] != X.shape[0]:
            raise Invalid("y rows differ from X rows")
    if case.get("sample_weight") is not None:
        w = converted(case["sample_weight"], 1, vector=True)
        if w.shape != (X.shape[0],) or (w < 0).any() or not w.sum() > 0:
            raise Invalid("bad sample_weight")
        canonical["sample_weight"] = w
    if case["method"] == "step":
        valid_number(case["lr"], allow_none=False)
    if case["method"] in ("fit", "partial_fit"):
        valid_number(case["lr"])
        valid_count(case["batch_size"], 1, allow_none=True)
        if case["optimizer"] not in ("sgd", "momentum", "adam"):
            raise Invalid(f"optimizer {case['optimizer']!r}")
    if case["method"] == "fit":
        valid_count(case["epochs"], 0, allow_none=False)
    return canonical


def build(backend, settings):
    return Network(settings["layers"], backend=backend, bias=settings["bias"], derivative=settings["derivative"],
                   loss=settings["loss"], seed=settings["seed"])


def outcome(net, case):
    """Everything the call returns or changes, as a flat dict of float64 arrays."""
    method = case["method"]
    X = case["X"]
    if method == "forward":
        result = {"forward": net.forward(X)}
    elif method == "activations":
        result = {f"A{i}": a for i, a in enumerate(net.activations(X))}
    elif method == "evaluate":
        result = {"loss": net.evaluate(X, case["y"], case["sample_weight"])}
    elif method == "gradients":
        dW, db = net.gradients(X, case["y"], sample_weight=case["sample_weight"])
        result = {**{f"dW{i}": g for i, g in enumerate(dW)}, **{f"db{i}": g for i, g in enumerate(db or [])}}
        if db is None:
            assert net.biases is None
    elif method == "step":
        result = {"step": net.step(X, case["y"], lr=case["lr"], sample_weight=case["sample_weight"])}
    else:
        kwargs = {key: case[key] for key in ("lr", "batch_size", "optimizer", "shuffle", "seed", "sample_weight")}
        if method == "fit":
            history = net.fit(X, case["y"], epochs=case["epochs"], progress=False, **kwargs)
        else:
            history = net.partial_fit(X, case["y"], **kwargs)
        result = {"history": np.array(history.loss, dtype=np.float64)}
    for key, value in list(result.items()):
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float64, f"{key} has dtype {value.dtype}"
        result[key] = np.asarray(value, dtype=np.float64)
    result.update({f"W{i}": np.array(w) for i, w in enumerate(net.weights)})
    result.update({f"b{i}": np.array(b) for i, b in enumerate(net.biases or [])})
    return result


def snapshot(value):
    """A copy of a caller's input, to check it is never written to."""
    return np.array(value, dtype=object, copy=True) if isinstance(value, list) else np.array(value, copy=True)


def check_case(backend, case):
    """The property: the reference's result on the converted input, or ValueError/TypeError."""
    try:
        canonical = canonical_case(case)
    except Invalid:
        canonical = None
    inputs = {key: case[key] for key in ("X", "y", "sample_weight") if case.get(key) is not None
              and not isinstance(case[key], list)}
    before_inputs = {key: snapshot(value) for key, value in inputs.items()}
    net = build(backend, case["net"])
    before = [np.array(p) for p in net.weights + (net.biases or [])]
    try:
        actual = outcome(net, case)
    except (ValueError, TypeError) as error:
        assert canonical is None, (f"valid input raised {type(error).__name__}: {error}")
        after = net.weights + (net.biases or [])
        for a, b in zip(after, before):
            np.testing.assert_array_equal(a, b, err_msg="a rejected call changed the network")
    else:
        assert canonical is not None, "invalid input was accepted without ValueError/TypeError"
        expected = outcome(build(REFERENCE, case["net"]), canonical)
        assert actual.keys() == expected.keys()
        for key, wanted in expected.items():
            got = actual[key]
            assert got.shape == wanted.shape, f"{key}: shape {got.shape}, expected {wanted.shape}"
            scale = float(np.abs(wanted).max()) if wanted.size else 0.0
            np.testing.assert_allclose(got, wanted, rtol=1e-12, atol=1e-12 * scale, err_msg=key)
    for key, value in inputs.items():
        now, then = np.asarray(value), before_inputs[key]
        if now.dtype == object:          # NaN != NaN element-wise: compare the objects' reprs
            now, then = np.array(repr(now.tolist())), np.array(repr(then.tolist()))
        np.testing.assert_array_equal(now, then, err_msg=f"the caller's {key} was written to")


def describe(case):
    """A reproducible description of a case (arrays with dtype, shape, strides, flags and values)."""
    def show(value):
        if isinstance(value, np.ndarray):
            return (f"np.ndarray(dtype={value.dtype}, shape={value.shape}, strides={value.strides}, "
                    f"c_contiguous={value.flags.c_contiguous}, writeable={value.flags.writeable}, "
                    f"values={value.tolist()!r})")
        return repr(value)
    return "{" + ", ".join(f"{key!r}: {show(value)}" for key, value in case.items()) + "}"


def zero_weight_batch(method):
    """Found by this file (native train_epoch, since fixed): batch_size=1 with a zero sample weight
    makes a batch whose weights sum to 0; mse/bce must treat it as contributing nothing, not NaN."""
    case = {"method": method, "net": {"layers": [1, 1], "bias": False, "derivative": "exact", "loss": "mse",
                                      "seed": 0},
            "X": np.zeros((2, 1)), "y": np.zeros((2, 1)), "sample_weight": np.array([0.0, 1.0]),
            "lr": 0.01, "batch_size": 1, "optimizer": "sgd", "shuffle": False, "seed": None}
    if method == "fit":
        case["epochs"] = 1
    return case


#: Cases found earlier, run first on every backend, every time (hypothesis @example).
FOUND = {
    "fit": [zero_weight_batch("fit")],
    "partial_fit": [zero_weight_batch("partial_fit"),
                    {**zero_weight_batch("partial_fit"),
                     "net": {"layers": [3, 2], "bias": True, "derivative": "article", "loss": "bce", "seed": 1},
                     "X": np.arange(12.0).reshape(4, 3) / 10, "y": np.eye(4, 2),
                     "sample_weight": np.array([0.0, 0.0, 1.0, 2.0]), "batch_size": 2, "optimizer": "adam"}],
}


def run_property(backend, method, max_examples=MAX_EXAMPLES, seed=None, announce=False):
    """Run the property for ``backend`` and ``method`` on ``max_examples`` drawn cases (and FOUND ones)."""
    def prop(case):
        if announce:
            print("CASE", describe(case), flush=True)
        check_case(backend, case)

    for found in FOUND.get(method, []):
        prop = example(case=found)(prop)
    prop = given(case=cases(method))(prop)
    prop = settings(max_examples=max_examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])(prop)
    if seed is not None:
        prop = hypothesis_seed(seed)(prop)
    # hypothesis caches things under ./.hypothesis; keep the working tree clean
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "fastnet-tests-hypothesis")
    try:
        prop()
    finally:
        set_hypothesis_home_dir(None)


# -- running it ----------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import faulthandler, sys
    faulthandler.enable()
    sys.path.insert(0, {tests!r})
    import fuzzing
    fuzzing.run_property({backend!r}, {method!r}, max_examples={max_examples!r}, seed={seed!r}, announce=True)
    print("DONE", flush=True)
""")


def fuzz_seed(method):
    """This run's hypothesis seed for ``method`` (see FUZZ_SEED)."""
    if FUZZ_SEED == "random":
        return random.randrange(2**32)
    return int(FUZZ_SEED) + METHODS.index(method)


def run_in_child(backend, method, seed, max_examples=MAX_EXAMPLES):
    """The property in a fresh interpreter; a crash fails with the last case it started."""
    result = run_python(code=CHILD.format(tests=TESTS_DIR, backend=backend, method=method, seed=seed,
                                          max_examples=max_examples),
                        timeout=900)
    started = [line for line in result.stdout.splitlines() if line.startswith("CASE ")]
    if result.returncode < 0 or (result.returncode != 0 and "Traceback" not in result.stderr):
        pytest.fail(f"the {backend} backend crashed the interpreter (return code {result.returncode}) "
                    f"in {method} on the input\n{started[-1] if started else '(before the first case)'}\n"
                    f"(hypothesis seed {seed})\nstderr:\n{result.stderr[-4000:]}")
    assert result.returncode == 0 and result.stdout.rstrip().endswith("DONE"), (
        f"{method} on {backend} broke the property (hypothesis seed {seed}); hypothesis says:\n"
        f"{result.stderr[-8000:]}\nlast output:\n{result.stdout[-3000:]}")


def check_property(backend, method, max_examples):
    """The body of the fuzz tests: ``max_examples`` cases (and FOUND ones) of ``method`` on ``backend``.

    The native backend's cases run in a child interpreter, so that a crash names its input.
    """
    seed = fuzz_seed(method)
    if backend == "native":
        run_in_child(backend, method, seed, max_examples)
    else:
        try:
            run_property(backend, method, max_examples=max_examples, seed=seed)
        except BaseException as error:
            error.add_note(f"hypothesis seed {seed} (FASTNET_FUZZ_SEED={FUZZ_SEED})")
            raise
