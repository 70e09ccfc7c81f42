"""Side-by-side timings of fastnet's backends and of peers, when installed.

    python benchmarks/compare.py [--rounds 7] [--quick]

Prints Markdown tables (the README's figures come from here):
  1. full-batch gradient per backend, float64 and float32, with PyTorch
     autograd, a jit-compiled JAX value_and_grad and the time to read X and
     y once (X.sum() + y.sum());
  2. the MNIST shape [784, 128, 10], 60k rows: full-batch gradient against
     the same peers and against OpenBLAS doing only the matrix products;
     and one epoch of that shape (batch 128, Adam, binary cross-entropy) with
     a plain PyTorch loop;
  3. one epoch of mini-batch SGD (batch 32), with a plain PyTorch loop, a
     JAX loop (jit-compiled step) and scikit-learn's MLPRegressor;
  4. one epoch of a softmax classifier with Adam (batch 256), float32 and
     float64, with plain PyTorch and JAX loops;
  5. resident memory added by a full-batch epoch over 10M x 4 rows, in
     memory and from a memory-mapped .npy;
  6. start-up: import plus first gradient in a fresh process, cache warm
     and cold.
Peers that are not installed are left out (pip install "fastnet-kernels[peers]").
Contenders are timed in alternating passes (A B C, C B A, A B C), a few
rounds each after one untimed call, so a noisy shared machine slows them
alike and compilation is never timed; medians and ratios of medians are
shown.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

from fastnet import Network
# The timing harness and the peers, shared with ``fastnet bench``.
from fastnet.bench import (BACKENDS, jax_epoch, jax_gradient, jax_softmax_epoch, machine_line, networks, sklearn_epoch,
                           time_interleaved, torch_epoch, torch_gradient, torch_softmax_epoch)

#: (label, layers, rows, bias, derivative, loss)
GRADIENT_CASES = [
    ("article net, 10k rows", [4, 1, 1], 10_000, False, "article", "sse"),
    ("article net, 1M rows", [4, 1, 1], 1_000_000, False, "article", "sse"),
    ("[4, 1, 1] exact, 1M rows", [4, 1, 1], 1_000_000, False, "exact", "sse"),
    ("[4, 1, 1] with biases, mse, 1M rows", [4, 1, 1], 1_000_000, True, "exact", "mse"),
    ("[64, 128, 1], 100k rows", [64, 128, 1], 100_000, True, "exact", "mse"),
]


def random_rows(rows, layers, dtype):
    """(X, y): ``rows`` rows of uniform [0, 1) inputs and targets for ``layers``, in ``dtype``, seed 0."""
    rng = np.random.default_rng(0)
    return rng.random((rows, layers[0])).astype(dtype), rng.random((rows, layers[-1])).astype(dtype)


def backend_calls(call, layers, loss, dtype, bias=True, derivative="exact", backends=("numba", "native")):
    """{backend: a function of no arguments running ``call(net)``}, one sigmoid Network per
    backend with the same initial parameters (``networks``)."""
    return {name: (lambda net=net: call(net))
            for name, net in networks(layers, bias, derivative, loss, dtype=dtype, backends=backends).items()}


def _ms(seconds):
    """A median time in milliseconds to three significant figures (0.0652, 4.05, 460)."""
    return f"{seconds * 1e3:#.3g}".rstrip(".")


def _peer_cell(t, peer, reference="numba"):
    """``peer``'s median ms and how it compares with ``reference``'s, or "-" when not installed."""
    if peer not in t:
        return "-"
    ratio = t[peer] / t[reference]
    versus = f"{reference} {ratio:.1f}x faster" if ratio >= 1 else f"{reference} {1 / ratio:.1f}x slower"
    return f"{_ms(t[peer])} ({versus})"


def _gradient_peers(contenders, layers, X, y, bias, loss):
    """Add the installed autograd peers (PyTorch, JAX) to ``contenders``."""
    for name, build in (("torch", torch_gradient), ("jax", jax_gradient)):
        peer = build(layers, X, y, bias, loss)
        if peer is not None:
            contenders[name] = peer


def gradient_table(rounds):
    """Table 1: full-batch gradients, float64 and float32."""
    print("\n### Full-batch gradient (median ms; speed-up = numpy time / this time)\n")
    print("| case | dtype | numpy | numba | native | native / numba | numba vs numpy | torch autograd | jax | "
          "read X,y once |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, layers, rows, bias, derivative, loss in GRADIENT_CASES:
        for dtype in ("float64", "float32"):
            X, y = random_rows(rows, layers, dtype)
            contenders = backend_calls(lambda net: net.gradients(X, y), layers, loss, dtype, bias, derivative,
                                       backends=BACKENDS)
            contenders["read"] = lambda: (X.sum(), y.sum())
            if derivative == "exact":
                _gradient_peers(contenders, layers, X, y, bias, loss)
            t = time_interleaved(contenders, rounds)
            print(f"| {label} | {dtype} | {_ms(t['numpy'])} | {_ms(t['numba'])} | {_ms(t['native'])} "
                  f"| {t['native'] / t['numba']:.2f} | {t['numpy'] / t['numba']:.1f}x | {_peer_cell(t, 'torch')} "
                  f"| {_peer_cell(t, 'jax')} | {_ms(t['read'])} (numba {t['numba'] / t['read']:.1f}x of it) |")


def blas_products(X, y, layers):
    """The matrix products of one full-batch gradient through ``layers`` (one hidden layer),
    done by numpy's BLAS alone: forward X W1, A W2; weight gradients A^T D, X^T H; back to the
    hidden layer D W2^T.  No activation, no loss: the floor the fused kernels are measured against."""
    rng = np.random.default_rng(1)
    W1, W2 = (rng.random(shape).astype(X.dtype) for shape in ((layers[0], layers[1]), (layers[1], layers[2])))

    def run():
        A = X @ W1
        D = A @ W2
        hidden = D @ W2.T
        return A.T @ D, X.T @ hidden
    return run


def wide_table(rounds, layers=(784, 128, 10), rows=60_000):
    """Table 2: the MNIST shape, full-batch gradient, against autograd peers and BLAS's products alone."""
    layers = list(layers)
    print(f"\n### Full-batch gradient, {layers}, {rows:,} rows, sigmoid layers, mse (median ms)\n")
    print("| dtype | numba | native | BLAS products alone | numba / BLAS | torch autograd | jax |")
    print("|---|---|---|---|---|---|---|")
    for dtype in ("float32", "float64"):
        X, y = random_rows(rows, layers, dtype)
        contenders = backend_calls(lambda net: net.gradients(X, y), layers, "mse", dtype)
        contenders["blas"] = blas_products(X, y, layers)
        _gradient_peers(contenders, layers, X, y, True, "mse")
        t = time_interleaved(contenders, max(3, rounds // 2))
        print(f"| {dtype} | {t['numba'] * 1e3:.1f} | {t['native'] * 1e3:.1f} | {t['blas'] * 1e3:.1f} "
              f"| {t['numba'] / t['blas']:.2f} | {_peer_cell(t, 'torch')} | {_peer_cell(t, 'jax')} |")


def wide_epoch_table(rounds, layers=(784, 128, 10), rows=60_000, batch_size=128):
    """Table 2b: the MNIST shape, one epoch of mini-batches with Adam and binary cross-entropy,
    float32 and float64, against a plain PyTorch loop in the same precision."""
    layers = list(layers)
    print(f"\n### One epoch, {layers}, {rows:,} rows, batch {batch_size}, adam, bce (median s)\n")
    print("| dtype | numba | native | torch | numba vs torch | native vs torch |")
    print("|---|---|---|---|---|---|")
    for dtype in ("float32", "float64"):
        X, y = random_rows(rows, layers, dtype)
        contenders = backend_calls(lambda net: net.fit(X, y, batch_size=batch_size, optimizer="adam", lr=1e-3, seed=0),
                                   layers, "bce", dtype)
        peer = torch_epoch(X, y, layers, batch_size, 1e-3, optimizer="adam", loss="bce")
        if peer is not None:
            contenders["torch"] = peer
        t = time_interleaved(contenders, 3)
        versus = (f"{t['torch']:.3f} | {t['torch'] / t['numba']:.1f}x | {t['torch'] / t['native']:.1f}x"
                  if "torch" in t else "- | - | -")
        print(f"| {dtype} | {t['numba']:.3f} | {t['native']:.3f} | {versus} |")


def epoch_table(rounds, rows=100_000, batch_size=32, layers=(4, 8, 1)):
    """Table 3: one epoch of mini-batch SGD."""
    layers = list(layers)
    rng = np.random.default_rng(0)
    X, y = rng.random((rows, layers[0])), rng.random((rows, layers[-1]))
    contenders = backend_calls(lambda net: net.fit(X, y, batch_size=batch_size, lr=0.1, seed=0), layers, "mse",
                               "float64", backends=BACKENDS)
    for name, peer in (("torch", torch_epoch(X, y, layers, batch_size, 0.1)),
                       ("jax", jax_epoch(X, y, layers, batch_size, 0.1)),
                       ("sklearn", sklearn_epoch(X, y, tuple(layers[1:-1]), batch_size, 0.1))):
        if peer is not None:
            contenders[name] = peer
    t = time_interleaved(contenders, max(3, rounds // 3))
    print(f"\n### One epoch of mini-batch SGD, batch {batch_size}, {layers}, {rows:,} rows (median ms)\n")
    print("| contender | ms | numba is faster by |")
    print("|---|---|---|")
    for name, seconds in t.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / t['numba']:.1f}x |")


def softmax_table(rounds, rows=1_000_000, layers=(32, 64, 10), batch_size=256):
    """Table 4: one epoch of a softmax classifier with Adam, float32 and float64."""
    layers = list(layers)
    print(f"\n### One epoch of a softmax classifier, {layers}, {rows:,} rows, 10 classes, batch {batch_size}, "
          "adam (median s)\n")
    print("| hidden, dtype | numba | native | torch | numba vs torch | native vs torch | jax | numba vs jax |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(rows, layers[0]))
    labels = rng.integers(0, layers[-1], rows)
    for activation in ("relu", "sigmoid"):
        for dtype in ("float32", "float64"):
            X = features.astype(dtype)
            Y = np.eye(layers[-1], dtype=dtype)[labels]
            nets = {backend: Network(layers, backend=backend, activation=activation, output="softmax",
                                     dtype=dtype, seed=0) for backend in ("numba", "native")}
            contenders = {name: (lambda net=net: net.fit(X, Y, batch_size=batch_size, optimizer="adam", seed=0))
                          for name, net in nets.items()}
            for name, build in (("torch", torch_softmax_epoch), ("jax", jax_softmax_epoch)):
                peer = build(X, labels, layers, activation, batch_size, 1e-3)
                if peer is not None:
                    contenders[name] = peer
            t = time_interleaved(contenders, max(3, rounds // 3))
            versus = (f"{t['torch'] / t['numba']:.1f}x | {t['torch'] / t['native']:.1f}x" if "torch" in t
                      else "- | -")
            torch_cell = f"{t['torch']:.3f}" if "torch" in t else "-"
            jax_cells = f"{t['jax']:.3f} | {t['jax'] / t['numba']:.1f}x" if "jax" in t else "- | -"
            print(f"| {activation}, {dtype} | {t['numba']:.3f} | {t['native']:.3f} | {torch_cell} | {versus} "
                  f"| {jax_cells} |")


MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, numpy as np
    from fastnet import Network
    backend, source = sys.argv[1], sys.argv[2]
    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if source == "memory":
        rng = np.random.default_rng(0)
        X = rng.random((10_000_000, 4)); y = rng.random((10_000_000, 1))
    else:
        X = np.load(source + "_X.npy", mmap_mode="r"); y = np.load(source + "_y.npy", mmap_mode="r")
    net = Network([4, 1, 1], backend=backend, seed=0)
    net.fit(X[:1000], y[:1000])           # compile on a small slice
    if source != "memory":
        X.sum(); y.sum()                  # page the mapped files in, so they count in the baseline
    before = peak_mb()
    net.fit(X, y)                         # one full-batch epoch
    print(peak_mb() - before)
""")


def memory_table():
    """Table 5: resident memory a full-batch epoch adds beyond X and y."""
    print("\n### Peak resident memory added by one full-batch epoch, 10M x 4 float64 (X is 320 MB)\n")
    print("| backend | in memory | memory-mapped .npy |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        stem = os.path.join(folder, "data")
        rng = np.random.default_rng(0)
        np.save(stem + "_X.npy", rng.random((10_000_000, 4)))
        np.save(stem + "_y.npy", rng.random((10_000_000, 1)))
        for backend in ("numba", "native"):
            cells = []
            for source in ("memory", stem):
                done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, backend, source],
                                      capture_output=True, text=True, cwd=OUTSIDE_THE_SOURCE_TREE)
                cells.append(f"{float(done.stdout):.1f} MB" if done.returncode == 0 else f"failed: {done.stderr[-200:]}")
            print(f"| {backend} | {cells[0]} | {cells[1]} |")


#: Where subprocesses run: from a source tree, ``python -c`` would import its
#: fastnet, which lacks the compiled module, instead of the installed one.
OUTSIDE_THE_SOURCE_TREE = tempfile.gettempdir()

STARTUP_SCRIPT = textwrap.dedent("""
    import sys
    import time
    start = time.perf_counter()
    import fastnet
    from fastnet import article
    net = fastnet.Network.article(backend=sys.argv[1])
    net.gradients(article.X, article.Y)
    print(time.perf_counter() - start)
""")


def startup_table():
    """Table 6: a fresh process's import plus first gradient, cache warm and cold;
    the native backend, compiled at install, has nothing to compile."""
    def seconds(env, backend="numba"):
        done = subprocess.run([sys.executable, "-c", STARTUP_SCRIPT, backend], capture_output=True, text=True,
                              env=env, cwd=OUTSIDE_THE_SOURCE_TREE)
        return float(done.stdout) if done.returncode == 0 else float("nan")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = seconds(env)
        warm = float(np.median([seconds(env) for _ in range(3)]))
        native = float(np.median([seconds(env, "native") for _ in range(3)]))
    print("\n### Start-up: fresh process, import + first gradient on the article data\n")
    print("| backend, compile cache | seconds |\n|---|---|")
    print(f"| numba, cold (compiles) | {cold:.2f} |\n| numba, warm (median of 3) | {warm:.2f} |")
    print(f"| native (compiled at install; median of 3) | {native:.2f} |")


def main():
    """Print every table, headed by the machine and versions."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="gradients and epochs only")
    args = parser.parse_args()
    print(machine_line())
    gradient_table(args.rounds)
    wide_table(args.rounds)
    wide_epoch_table(args.rounds)
    epoch_table(args.rounds)
    softmax_table(args.rounds)
    if not args.quick:
        memory_table()
        startup_table()


if __name__ == "__main__":
    main()
