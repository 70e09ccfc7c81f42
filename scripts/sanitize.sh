#!/usr/bin/env bash
# Build fastnet's C kernels with AddressSanitizer + UndefinedBehaviorSanitizer in a
# throwaway folder and exercise them: forward, gradient and train_epoch on random
# networks of every activation, output and loss the spec pairs (with the L2
# penalty) in float64 and float32 (compared with the NumPy reference), the input
# check finite_range, Network.fit end to end, and calls with wrong arguments that
# must be refused without touching memory.
#
# The checks run once per SIMD variant of the kernels this CPU runs (FASTNET_SIMD).
# Exits non-zero if the build fails, a check fails, or any sanitizer reports.
# Nothing is written to the working tree: the sources are copied to a temporary
# folder, built there (its own build-dir) and installed with --target there.
#
# Environment: PYTHON (default: python3) must have numpy and scikit-build-core
# (built without isolation); CC (default: gcc) must be the gcc whose libasan
# and libubsan get preloaded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
export CC=${CC:-gcc}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastnet-sanitize.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

say() { printf 'sanitize: %s\n' "$*" >&2; }

# -- the sanitizer runtimes of the compiler that builds the kernels -----------------------------
LIBASAN=$("$CC" -print-file-name=libasan.so)
LIBUBSAN=$("$CC" -print-file-name=libubsan.so)
for lib in "$LIBASAN" "$LIBUBSAN"; do
  if [[ ! -e "$lib" ]]; then
    say "$CC has no $(basename "$lib") (got '$lib'): install the sanitizer runtimes (e.g. libasan8, libubsan1)"
    exit 2
  fi
done

# -- a snapshot of the sources, then a sanitized build of it ------------------------------------
mkdir -p "$WORK/src"
tar -C "$ROOT" --exclude='__pycache__' --exclude='*.so' -cf - \
    pyproject.toml CMakeLists.txt README.md kernels fastnet | tar -C "$WORK/src" -xf -

isolation=(--no-build-isolation)
if ! "$PYTHON" -c 'import scikit_build_core' 2>/dev/null; then
  say "scikit-build-core is not installed for $PYTHON: building with build isolation"
  isolation=()
fi
say "building the kernels with -fsanitize=address,undefined in $WORK"
if ! "$PYTHON" -m pip install --no-deps "${isolation[@]}" --disable-pip-version-check --quiet \
      --target "$WORK/site" \
      -C cmake.define.FASTNET_SANITIZE=ON \
      -C cmake.build-type=RelWithDebInfo \
      -C build-dir="$WORK/build" \
      "$WORK/src" >"$WORK/build.log" 2>&1; then
  cat "$WORK/build.log" >&2
  say "the sanitized build failed"
  exit 1
fi
native_so=$(ls "$WORK"/site/fastnet/_native*.so)
if ! nm -D "$native_so" 2>/dev/null | grep -q '__asan_'; then
  say "$native_so is not instrumented with AddressSanitizer (FASTNET_SANITIZE ignored?)"
  exit 1
fi

# -- the check, through the sanitized build -----------------------------------------------------
cat >"$WORK/check.py" <<'PYTHON_CHECK'
import os
import sys

SITE = os.environ["FASTNET_SANITIZED_SITE"]
# An editable install of fastnet redirects imports through a meta-path finder;
# drop such finders so that the sanitized copy (first on sys.path) is imported.
sys.meta_path[:] = [finder for finder in sys.meta_path
                    if "editable" not in type(finder).__module__.lower()]
sys.path.insert(0, SITE)

import numpy as np

import fastnet
from fastnet import Network, _native, spec
from fastnet._config import BLOCK_ROWS as BLOCK, TILE_ROWS as TILE
from fastnet.backends import Model, Rows, reference
from fastnet.layout import ParamLayout

OPTIMIZER_CODES = {name: entry.code for name, entry in spec.OPTIMIZERS.items()}
SSE = spec.LOSSES["sse"].code
SIGMOID = spec.ACTIVATIONS["sigmoid"].code
SOFTMAX = spec.ACTIVATIONS["softmax"].code
CROSS_ENTROPY = spec.LOSSES["cross_entropy"].code
#: (hidden, output, loss) codes of every combination the spec allows.
PAIRS = [(spec.ACTIVATIONS[hidden].code, spec.ACTIVATIONS[output].code, entry.code)
         for hidden in spec.HIDDEN_ACTIVATIONS for output in spec.OUTPUT_ACTIVATIONS
         for entry in spec.LOSSES.values() if output in entry.outputs]


class Optimizer:
    """What a backend's train_epoch reads of an optimizer."""

    def __init__(self, code, hyper, state, step):
        self.code, self.hyper, self.state, self.step = code, hyper, state, step

assert _native.simd() == os.environ["FASTNET_SIMD"], (_native.simd(), os.environ["FASTNET_SIMD"])
for module in (fastnet, _native):
    assert os.path.realpath(module.__file__).startswith(os.path.realpath(SITE)), (
        f"imported {module.__name__} from {module.__file__}, not from the sanitized build in {SITE}")

rng = np.random.default_rng(int(os.environ.get("FASTNET_SANITIZE_SEED", "20240611")))
checked = 0


def close(actual, expected, what, rtol=1e-9):
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def random_problem(n, output, scales=(0.5, 1.0, 5.0)):
    depth = int(rng.integers(1, 4))
    sizes = np.array(rng.integers(1, 24, depth + 1), dtype=np.int64)
    if output == SOFTMAX:
        sizes[-1] = max(int(sizes[-1]), 2)
    has_bias = bool(rng.integers(2))
    n_params = int(sum(a * b + (b if has_bias else 0) for a, b in zip(sizes[:-1], sizes[1:])))
    params = rng.normal(0.0, 1.0, n_params) * float(rng.choice(scales))
    X = rng.uniform(-2.0, 2.0, (n, int(sizes[0])))
    Y = rng.uniform(0.0, 1.0, (n, int(sizes[-1])))
    weights = rng.uniform(0.0, 2.0, n) if rng.integers(2) else np.empty(0)
    return sizes, has_bias, params, X, Y, weights


# Row counts around the kernels' tiles and parallel blocks (fastnet._config); each
# count runs once in float64 and once in float32 (one per thread setting).
# The reference works in float64 on the same (rounded) values.  float32 cases
# keep weights small and take sse for bce: a float32 sigmoid rounds to 1 from
# z ~ 17 on, where bce's log(1 - a) is clamped and no longer comparable.
ROWS = [1, 2, TILE - 1, TILE, TILE + 1, 1000, BLOCK - 1, BLOCK + 1, 2 * BLOCK + 300]
RTOL = {np.float64: (1e-9, 1e-7), np.float32: (1e-4, 2e-3)}  # one call, one epoch
# Rows per block (fastnet.backends.block_rows, any count >= 1 to the kernels): big
# blocks, or batches cut into small ones, none a multiple of a vector's rows but 64.
# Drawn from a generator of their own, so the problems stay those of the seed.
BLOCK_CHOICES, block_rng = [BLOCK, 64, 37, 5], np.random.default_rng(7)
for threads in (1, 2):
    _native.set_num_threads(threads)
    for index, n in enumerate(ROWS):
        dtype = (np.float64, np.float32)[(index + threads) % 2]
        single = dtype == np.float32
        hidden, output, loss = PAIRS[int(rng.integers(len(PAIRS)))]
        if single and loss == spec.LOSSES["bce"].code:
            loss = SSE
        sizes, has_bias, params, X, Y, weights = random_problem(n, output, (0.5,) if single else (0.5, 1.0, 5.0))
        params, X, Y, weights = (a.astype(dtype) for a in (params, X, Y, weights))
        params64, X64, Y64, weights64 = (a.astype(np.float64) for a in (params, X, Y, weights))
        call_rtol, epoch_rtol = RTOL[dtype]
        derivative = int(rng.integers(2)) if hidden == output == SIGMOID else 0
        what = (f"threads={threads} n={n} {np.dtype(dtype).name} sizes={sizes.tolist()} bias={has_bias} "
                f"hidden={hidden} output={output} "
                f"derivative={derivative} loss={loss}")

        activations = np.array([hidden] * (len(sizes) - 2) + [output], np.int64)
        model64 = Model(params64, ParamLayout(sizes, has_bias), activations, derivative, loss)
        out = np.full(n * int(sizes[1:].sum()), np.nan, dtype)
        expected_out = np.empty(out.size)
        block_rows = int(block_rng.choice(BLOCK_CHOICES))
        what += f" block_rows={block_rows}"
        _native.forward(X, params, sizes, activations, has_bias, block_rows, out)
        reference.forward(model64, X64, expected_out)
        close(out, expected_out, "forward " + what, call_rtol)

        grad, expected_grad = np.full(params.size, np.nan, dtype), np.empty(params.size)
        value = _native.gradient(X, Y, weights, params, sizes, activations, has_bias, derivative, loss, block_rows,
                                 grad)
        expected = reference.gradient(model64, Rows(X64, Y64, weights64), expected_grad)
        close(value, expected, "gradient loss " + what, call_rtol)
        close(grad, expected_grad, "gradient " + what, call_rtol)

        for name, code in OPTIMIZER_CODES.items():
            batch_size = int(rng.choice([1, 7, 256, max(1, n // 3), n, n + 5]))
            if batch_size == 1 and n > 300:
                batch_size = 64           # keep the reference's per-batch loop short
            # The whole epoch's order, a stretch of it (part of an epoch), or rows in place.
            order = rng.permutation(n).astype(np.int64)[:int(rng.integers(1, n + 1))] if rng.integers(2) \
                else np.empty(0, np.int64)
            # Training must stay smooth for runs to be comparable (to 1e-7): where it is chaotic,
            # one rounding apart grows into different parameters.  sse sums over the batch,
            # so its rate is divided by the batch; momentum's steps add up to 1 / (1 - mu)
            # times the rate, so its rate is multiplied by 1 - mu.
            mu = 0.9
            lr = 0.05 / batch_size if loss == SSE else 0.05
            if code == OPTIMIZER_CODES["momentum"]:
                lr *= 1.0 - mu
            hyper = np.array([lr, mu, 0.9, 0.999, 1e-8, float(rng.choice([0.0, 0.1]))])
            runs = {}
            for backend, arrays in (("native", (X, Y, weights, params)),
                                    ("reference", (X64, Y64, weights64, params64))):
                X_, Y_, w_, p = arrays[0], arrays[1], arrays[2], arrays[3].copy()
                state, step, work = np.zeros((2, p.size), p.dtype), np.zeros(1, np.int64), np.empty(p.size, p.dtype)
                if backend == "native":
                    errors = _native.train_epoch(X_, Y_, w_, order, batch_size, p, sizes, activations, has_bias,
                                                 derivative, loss, code, hyper, state, step, block_rows, work)
                else:
                    errors = reference.train_epoch(model64._replace(params=p), Rows(X_, Y_, w_), order, batch_size,
                                                   Optimizer(code, hyper, state, step), work)
                runs[backend] = (errors, p, state, step)
            close(runs["native"][0], runs["reference"][0], f"train_epoch {name} errors " + what, epoch_rtol)
            close(runs["native"][1], runs["reference"][1], f"train_epoch {name} params " + what, epoch_rtol)
            assert runs["native"][3][0] == runs["reference"][3][0], f"adam step {what}"
        checked += 1

# The input check: every kind of non-finite value, at chunk edges, both dtypes.
for dtype in (np.float64, np.float32):
    values = rng.normal(size=3 * 2**16 + 3).astype(dtype)
    assert _native.finite_range(values) == (float(values.min()), float(values.max()))
    assert _native.finite_range(values[:0]) == (np.inf, -np.inf)
    for where in (0, 2**16 - 1, 2**16, values.size - 1):
        for bad in (np.nan, np.inf, -np.inf):
            spoiled = values.copy()
            spoiled[where] = bad
            assert _native.finite_range(spoiled) is None, (dtype, where, bad)
            checked += 1

# The public API end to end on the sanitized backend.
for optimizer in OPTIMIZER_CODES:
    X = rng.uniform(-1.0, 1.0, (3000, 5))
    y = rng.uniform(0.0, 1.0, (3000, 2))
    net = Network([5, 9, 2], backend="native", loss="bce", seed=1)
    softmax = Network([5, 9, 3], backend="native", activation="tanh", output="softmax", seed=1)
    relu = Network([5, 9, 2], backend="native", activation="relu", output="linear", seed=1)
    labels = np.eye(3)[rng.integers(0, 3, 3000)]
    softmax.fit(X, labels, epochs=2, batch_size=100, optimizer=optimizer, seed=2, alpha=0.01)
    relu.fit(X, y, epochs=2, batch_size=100, optimizer=optimizer, seed=2, alpha=0.01)
    assert np.isfinite(softmax.forward(X)).all() and np.isfinite(relu.forward(X)).all()
    net.fit(X, y, epochs=2, batch_size=100, optimizer=optimizer, seed=2, sample_weight=rng.uniform(0.5, 1.5, 3000))
    net.partial_fit(X, y, batch_size=1000, optimizer=optimizer)
    net.gradients(X, y)
    assert np.isfinite(net.forward(X)).all()
    checked += 1

# Wrong arguments must be refused (ValueError/TypeError) before any memory is touched.
sizes = np.array([4, 3, 1], dtype=np.int64)
acts = np.full(2, SIGMOID, np.int64)
X, Y = rng.uniform(size=(10, 4)), rng.uniform(size=(10, 1))
params, grad, out = np.zeros(19), np.empty(19), np.empty(40)
state, step, hyper = np.zeros((2, 19)), np.zeros(1, np.int64), np.array([0.1, 0.9, 0.9, 0.999, 1e-8, 0.0])
none = np.empty(0)


def train(**changes):
    arguments = dict(X=X, Y=Y, row_weight=none, order=np.empty(0, np.int64), batch_size=3, params=params.copy(),
                     sizes=sizes, activations=acts, has_bias=True, derivative=0, loss=1, optimizer=2, hyper=hyper,
                     state=state.copy(), step=step.copy(), block_rows=BLOCK, grad=grad)
    arguments.update(changes)
    return _native.train_epoch(*arguments.values())


BAD_CALLS = [
    lambda: _native.forward(X, params, sizes, acts, True, BLOCK, np.empty(39)),
    lambda: _native.forward(X, params[:18].copy(), sizes, acts, True, BLOCK, out),
    lambda: _native.forward(X[:, :3].copy(), params, sizes, acts, True, BLOCK, out),
    lambda: _native.forward(np.empty((0, 4)), params, sizes, acts, True, BLOCK, np.empty(0)),
    lambda: _native.forward(X, params, np.array([4, 2**62, 4, 1], dtype=np.int64), np.full(3, SIGMOID, np.int64), False,
                            BLOCK, out),
    lambda: _native.forward(X, params, np.array([4, -3, 1], dtype=np.int64), acts, True, BLOCK, out),
    lambda: _native.gradient(X, Y[:9].copy(), none, params, sizes, acts, True, 0, 1, BLOCK, grad),
    lambda: _native.gradient(X, Y, np.ones(9), params, sizes, acts, True, 0, 1, BLOCK, grad),
    lambda: _native.gradient(X, Y, none, params, sizes, acts, True, 0, 1, BLOCK, np.empty(18)),
    lambda: _native.gradient(X, Y, none, params, sizes, acts, True, 5, 1, BLOCK, grad),
    lambda: _native.gradient(X, Y, none, params, sizes, acts, True, 0, -1, BLOCK, grad),
    lambda: train(order=np.array([9, 10], dtype=np.int64)),
    lambda: train(order=np.r_[np.arange(9), 10].astype(np.int64)),
    lambda: train(order=np.r_[np.arange(9), -1].astype(np.int64)),
    lambda: train(batch_size=0),
    lambda: train(batch_size=-5),
    lambda: train(block_rows=0),
    lambda: _native.forward(X, params, sizes, acts, True, 0, out),
    lambda: _native.gradient(X, Y, none, params, sizes, acts, True, 0, 1, -1, grad),
    lambda: train(optimizer=3),
    lambda: train(hyper=hyper[:4].copy()),
    lambda: train(hyper=hyper[:5].copy()),
    lambda: train(activations=np.array([SIGMOID, SOFTMAX], np.int64)),
    lambda: train(activations=np.array([SOFTMAX, SOFTMAX], np.int64), loss=CROSS_ENTROPY),
    lambda: _native.gradient(X, Y, none, params, sizes, acts, True, 0, CROSS_ENTROPY, grad),
    lambda: _native.forward(X, params, sizes, np.array([SOFTMAX, SIGMOID], np.int64), True, BLOCK, out),
    lambda: train(state=np.zeros((2, 18))),
    lambda: train(step=np.zeros(2, np.int64)),
    lambda: train(step=np.zeros(1)),
    lambda: train(params=params[:18].copy()),
    lambda: train(row_weight=np.ones(11)),
    lambda: _native.gradient(X.astype(np.float32), Y, none, params, sizes, acts, True, 0, 1, grad),
    lambda: _native.forward(X, params, sizes, np.array([SIGMOID, 99], np.int64), True, BLOCK, out),
    lambda: _native.forward(X, params, sizes, acts[:1].copy(), True, BLOCK, out),
    lambda: _native.finite_range(np.arange(4)),
    lambda: _native.finite_range(X[:, ::2]),
]
for index, call in enumerate(BAD_CALLS):
    try:
        call()
    except (ValueError, TypeError):
        checked += 1
    else:
        raise AssertionError(f"bad call #{index} was accepted")

print(f"sanitize: {checked} checks passed on the sanitized native backend ({_native.simd()} kernels)", flush=True)
PYTHON_CHECK

sanitizer_env=(LD_PRELOAD="$LIBASAN $LIBUBSAN"
    ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:strict_string_checks=1:detect_stack_use_after_return=1"
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=87"
    FASTNET_SANITIZED_SITE="$WORK/site")
# Every SIMD variant of the kernels this CPU runs (the portable build has several).
variants=$(env "${sanitizer_env[@]}" "$PYTHON" -c '
import os, sys
sys.path.insert(0, os.environ["FASTNET_SANITIZED_SITE"])
from fastnet import _native
print(" ".join(name for name, runs in _native.simd_variants().items() if runs))')
if [[ -z "$variants" ]]; then
  say "the sanitized build reports no SIMD variant this CPU runs"
  exit 1
fi
for variant in $variants; do
  say "running the checks on the $variant kernels with $(basename "$LIBASAN") and $(basename "$LIBUBSAN") preloaded"
  status=0
  env "${sanitizer_env[@]}" FASTNET_SIMD="$variant" "$PYTHON" "$WORK/check.py" 2>"$WORK/check.err" || status=$?
  cat "$WORK/check.err" >&2
  if grep -Eq 'runtime error:|AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer' "$WORK/check.err"; then
    say "a sanitizer reported a problem on the $variant kernels (see above)"
    exit 1
  fi
  if [[ $status -ne 0 ]]; then
    say "the checks failed on the $variant kernels (exit status $status)"
    exit "$status"
  fi
done
say "no sanitizer reports"
