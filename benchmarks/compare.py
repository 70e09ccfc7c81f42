"""Side-by-side timings of fastnet's backends and of peers, when installed.

    python benchmarks/compare.py [--rounds 7] [--quick]

Prints Markdown tables (the README's figures come from here):
  1. full-batch gradient per backend, with PyTorch autograd and the time to
     read X and y once (X.sum() + y.sum());
  2. one epoch of mini-batch SGD (batch 32), with a plain PyTorch loop and
     scikit-learn's MLPRegressor;
  3. one epoch of a softmax classifier with Adam (batch 256), float32 and
     float64, with a plain PyTorch loop;
  4. resident memory added by a full-batch epoch over 10M x 4 rows, in
     memory and from a memory-mapped .npy;
  5. start-up: import plus first gradient in a fresh process, cache warm
     and cold.
Contenders are timed in alternating passes (A B C, C B A, A B C), a few
rounds each after one untimed call, so a noisy shared machine slows them
alike and compilation is never timed; medians and ratios of medians are
shown.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

import fastnet
from fastnet import Network

BACKENDS = ("numpy", "numba", "native")

#: (label, layers, rows, bias, derivative, loss)
GRADIENT_CASES = [
    ("article net, 10k rows", [4, 1, 1], 10_000, False, "article", "sse"),
    ("article net, 1M rows", [4, 1, 1], 1_000_000, False, "article", "sse"),
    ("[4, 1, 1] exact, 1M rows", [4, 1, 1], 1_000_000, False, "exact", "sse"),
    ("[64, 128, 1], 100k rows", [64, 128, 1], 100_000, True, "exact", "mse"),
]


#: Untimed calls before each contender's timed ones last at least this long.
#: PyTorch's and OpenBLAS's worker threads keep spinning for a while after
#: their last call; on two cores they took the CPUs from the next contender
#: and doubled its time.  Calls (rather than a sleep) also keep the clock up.
WARM_UP_SECONDS = 0.5


def warm_up(call):
    """Call ``call`` untimed, repeatedly, for at least WARM_UP_SECONDS."""
    start = time.perf_counter()
    call()
    while time.perf_counter() - start < WARM_UP_SECONDS:
        call()


def time_interleaved(contenders, rounds, passes=3):
    """Median seconds of each callable, timed in alternating passes.

    Each pass visits every contender in turn (in reversed order on odd
    passes): untimed calls for WARM_UP_SECONDS (at least one), then
    ``rounds // passes`` timed calls.  Noise on a shared machine thus hits
    all contenders alike.
    """
    samples = {name: [] for name in contenders}
    per_pass = max(1, rounds // passes)
    for index in range(passes):
        names = list(contenders) if index % 2 == 0 else list(reversed(contenders))
        for name in names:
            warm_up(contenders[name])
            for _ in range(per_pass):
                start = time.perf_counter()
                contenders[name]()
                samples[name].append(time.perf_counter() - start)
    return {name: float(np.median(times)) for name, times in samples.items()}


def networks(layers, bias, derivative, loss, seed=0):
    """One Network per backend, all with the same initial parameters."""
    base = Network(layers, backend="numpy", bias=bias, derivative=derivative, loss=loss, seed=seed)
    return {backend: Network(layers, backend=backend, bias=bias, derivative=derivative, loss=loss,
                             weights=base.weights, biases=base.biases)
            for backend in BACKENDS}


def torch_model(layers, bias):
    """nn.Sequential of Linear + Sigmoid layers in float64, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    modules = []
    for fan_in, fan_out in zip(layers[:-1], layers[1:]):
        modules += [torch.nn.Linear(fan_in, fan_out, bias=bias, dtype=torch.float64), torch.nn.Sigmoid()]
    return torch.nn.Sequential(*modules)


def torch_gradient(layers, X, y, bias, loss):
    """PyTorch autograd: one full-batch loss.backward(), or None without torch."""
    model = torch_model(layers, bias)
    if model is None:
        return None
    import torch
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    reduction = "sum" if loss == "sse" else "mean"

    def run():
        model.zero_grad()
        torch.nn.functional.mse_loss(model(tX), ty, reduction=reduction).backward()
    return run


def gradient_table(rounds):
    """Table 1: full-batch gradients."""
    print("\n### Full-batch gradient (median ms; speed-up = numpy time / this time)\n")
    print("| case | numpy | numba | native | numba vs numpy | native vs numpy | torch autograd | read X,y once |")
    print("|---|---|---|---|---|---|---|---|")
    for label, layers, rows, bias, derivative, loss in GRADIENT_CASES:
        rng = np.random.default_rng(0)
        X, y = rng.random((rows, layers[0])), rng.random((rows, layers[-1]))
        contenders = {name: (lambda net=net: net.gradients(X, y))
                      for name, net in networks(layers, bias, derivative, loss).items()}
        contenders["read"] = lambda: (X.sum(), y.sum())
        peer = torch_gradient(layers, X, y, bias, loss) if derivative == "exact" else None
        if peer is not None:
            contenders["torch"] = peer
        t = time_interleaved(contenders, rounds)
        torch_cell = f"{t['torch'] * 1e3:.2f} (numba {t['torch'] / t['numba']:.1f}x faster)" if "torch" in t else "-"
        print(f"| {label} | {t['numpy'] * 1e3:.2f} | {t['numba'] * 1e3:.2f} | {t['native'] * 1e3:.2f} "
              f"| {t['numpy'] / t['numba']:.1f}x | {t['numpy'] / t['native']:.1f}x | {torch_cell} "
              f"| {t['read'] * 1e3:.2f} (numba {t['numba'] / t['read']:.1f}x of it) |")


def torch_epoch(X, y, layers, batch_size, lr):
    """A plain PyTorch epoch: nn.Sequential, optim.SGD, MSELoss, shuffled batches."""
    model = torch_model(layers, True)
    if model is None:
        return None
    import torch
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def run():
        for rows in torch.randperm(len(tX)).split(batch_size):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(tX[rows]), ty[rows]).backward()
            optimizer.step()
    return run


def sklearn_epoch(X, y, hidden, batch_size, lr):
    """scikit-learn's MLPRegressor(solver="sgd"), one epoch per call, or None without it."""
    try:
        from sklearn.neural_network import MLPRegressor
    except ImportError:
        return None
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    model = MLPRegressor(hidden_layer_sizes=hidden, activation="logistic", solver="sgd", batch_size=batch_size,
                         learning_rate_init=lr, momentum=0.0, max_iter=1, shuffle=True, random_state=0)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(X, y.ravel())
    return run


def epoch_table(rounds, rows=100_000, batch_size=32, layers=(4, 8, 1)):
    """Table 2: one epoch of mini-batch SGD."""
    layers = list(layers)
    rng = np.random.default_rng(0)
    X, y = rng.random((rows, layers[0])), rng.random((rows, layers[-1]))
    nets = networks(layers, True, "exact", "mse")
    contenders = {name: (lambda net=net: net.fit(X, y, batch_size=batch_size, lr=0.1, seed=0))
                  for name, net in nets.items()}
    for name, peer in (("torch", torch_epoch(X, y, layers, batch_size, 0.1)),
                       ("sklearn", sklearn_epoch(X, y, tuple(layers[1:-1]), batch_size, 0.1))):
        if peer is not None:
            contenders[name] = peer
    t = time_interleaved(contenders, max(3, rounds // 3))
    print(f"\n### One epoch of mini-batch SGD, batch {batch_size}, {layers}, {rows:,} rows (median ms)\n")
    print("| contender | ms | numba is faster by |")
    print("|---|---|---|")
    for name, seconds in t.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / t['numba']:.1f}x |")


def torch_softmax_epoch(X, labels, layers, activation, batch_size, lr):
    """A plain PyTorch epoch of a softmax classifier: nn.Sequential (hidden ``activation``),
    cross-entropy on logits, optim.Adam, shuffled batches; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    dtype = torch.float32 if X.dtype == np.float32 else torch.float64
    hidden = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}[activation]
    modules = []
    for fan_in, fan_out in zip(layers[:-2], layers[1:-1]):
        modules += [torch.nn.Linear(fan_in, fan_out, dtype=dtype), hidden()]
    model = torch.nn.Sequential(*modules, torch.nn.Linear(layers[-2], layers[-1], dtype=dtype))
    tX, ty = torch.from_numpy(X), torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def run():
        for rows in torch.randperm(len(tX)).split(batch_size):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(tX[rows]), ty[rows]).backward()
            optimizer.step()
    return run


def softmax_table(rounds, rows=1_000_000, layers=(32, 64, 10), batch_size=256):
    """Table 3: one epoch of a softmax classifier with Adam, float32 and float64."""
    layers = list(layers)
    print(f"\n### One epoch of a softmax classifier, {layers}, {rows:,} rows, 10 classes, batch {batch_size}, "
          "adam (median s)\n")
    print("| hidden, dtype | numba | native | torch | numba vs torch | native vs torch |")
    print("|---|---|---|---|---|---|")
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
            peer = torch_softmax_epoch(X, labels, layers, activation, batch_size, 1e-3)
            if peer is not None:
                contenders["torch"] = peer
            t = time_interleaved(contenders, max(3, rounds // 3))
            versus = (f"{t['torch'] / t['numba']:.1f}x | {t['torch'] / t['native']:.1f}x" if "torch" in t
                      else "- | -")
            torch_cell = f"{t['torch']:.3f}" if "torch" in t else "-"
            print(f"| {activation}, {dtype} | {t['numba']:.3f} | {t['native']:.3f} | {torch_cell} | {versus} |")


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
    """Table 3: resident memory a full-batch epoch adds beyond X and y."""
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
    """Table 4: a fresh process's import plus first gradient, cache warm and cold;
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
    import numba
    versions = [f"Python {platform.python_version()}", f"numpy {np.__version__}", f"numba {numba.__version__}"]
    for peer in ("torch", "sklearn"):
        try:
            versions.append(f"{peer} {__import__(peer).__version__}")
        except ImportError:
            versions.append(f"{peer} not installed")
    from fastnet.backends import native
    print(f"{platform.machine()}, {os.cpu_count()} cores, {fastnet.get_num_threads()} threads; "
          f"{', '.join(versions)}; native kernels: {native.simd()}; {time.strftime('%Y-%m-%d')}")
    gradient_table(args.rounds)
    epoch_table(args.rounds)
    softmax_table(args.rounds)
    if not args.quick:
        memory_table()
        startup_table()


if __name__ == "__main__":
    main()
