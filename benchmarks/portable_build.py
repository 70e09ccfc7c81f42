"""The portable native build against a ``-march=native`` build of the same sources, side by side.

    python benchmarks/portable_build.py [--site DIR] [--rounds 5]

The installed fastnet is the portable build (baseline code plus runtime
dispatch to its AVX2 or AVX-512 variant).  The other contender is the same
source tree built with ``FASTNET_MARCH_NATIVE=ON`` into ``DIR`` (built
there first, with pip, when ``DIR`` holds no fastnet).  Each case runs the
``native`` backend in fresh processes of either build, alternating, several
rounds; each process reports the median of its timed calls after one
untimed call.  Prints a Markdown table: median ms per build and the
portable build's time divided by the ``-march=native`` build's (issue 12:
within 5%).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from fastnet.bench import machine_line

REPO_ROOT = Path(__file__).resolve().parent.parent

#: (label, code that builds ``run``, a callable of one timed call); ``Network`` and ``np`` are in scope.
CASES = [
    ("gradient, article net, 1M rows, float64",
     "X, y = rng.random((1_000_000, 4)), rng.random((1_000_000, 1))\n"
     "net = Network([4, 1, 1], backend='native', bias=False, loss='sse', seed=0)\n"
     "run = lambda: net.gradients(X, y)"),
    ("gradient, [4, 1, 1] with biases, mse, 1M rows, float32",
     "X, y = rng.random((1_000_000, 4), dtype=np.float32), rng.random((1_000_000, 1), dtype=np.float32)\n"
     "net = Network([4, 1, 1], backend='native', loss='mse', dtype='float32', seed=0)\n"
     "run = lambda: net.gradients(X, y)"),
    ("gradient, [64, 128, 1], 100k rows, float64",
     "X, y = rng.random((100_000, 64)), rng.random((100_000, 1))\n"
     "net = Network([64, 128, 1], backend='native', loss='mse', seed=0)\n"
     "run = lambda: net.gradients(X, y)"),
    ("gradient, [64, 128, 1], 100k rows, float32",
     "X, y = rng.random((100_000, 64), dtype=np.float32), rng.random((100_000, 1), dtype=np.float32)\n"
     "net = Network([64, 128, 1], backend='native', loss='mse', dtype='float32', seed=0)\n"
     "run = lambda: net.gradients(X, y)"),
    ("gradient, [784, 128, 10], 60k rows, float32",
     "X, y = rng.random((60_000, 784), dtype=np.float32), rng.random((60_000, 10), dtype=np.float32)\n"
     "net = Network([784, 128, 10], backend='native', loss='mse', dtype='float32', seed=0)\n"
     "run = lambda: net.gradients(X, y)"),
    ("epoch, [4, 8, 1], 100k rows, batch 32, sgd",
     "X, y = rng.random((100_000, 4)), rng.random((100_000, 1))\n"
     "net = Network([4, 8, 1], backend='native', loss='mse', seed=0)\n"
     "run = lambda: net.fit(X, y, batch_size=32, lr=0.1, seed=0)"),
    ("epoch, softmax [32, 64, 10] relu, 200k rows, batch 256, adam, float32",
     "X = rng.normal(size=(200_000, 32)).astype(np.float32)\n"
     "Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 200_000)]\n"
     "net = Network([32, 64, 10], backend='native', activation='relu', output='softmax', dtype='float32', seed=0)\n"
     "run = lambda: net.fit(X, Y, batch_size=256, optimizer='adam', seed=0)"),
]

#: One process's measurement: argv[1] the case's code, argv[2] how many timed calls.
TIMER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from fastnet import Network
    from fastnet.backends import native
    rng = np.random.default_rng(0)
    exec(sys.argv[1])
    run()
    times = []
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    print(native.simd(), float(np.median(times)))
""")


def build_march_native(site):
    """pip-install this source tree, built with -march=native, into ``site``."""
    with tempfile.TemporaryDirectory() as build:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
                        "--target", str(site), "-C", "cmake.define.FASTNET_MARCH_NATIVE=ON",
                        "-C", f"build-dir={build}", str(REPO_ROOT)], check=True)


def measure(case_code, site, calls):
    """(simd variant, median seconds) of one fresh process; ``site`` first on the path, or the installed build."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    done = subprocess.run([sys.executable, "-c", TIMER, case_code, str(calls)], capture_output=True, text=True,
                          env=env, cwd=tempfile.gettempdir(), check=True)
    variant, seconds = done.stdout.split()
    return variant, float(seconds)


def main():
    """Build the -march=native contender if needed, then print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, default=Path(tempfile.gettempdir()) / "fastnet-march-native")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5, help="timed calls per process")
    args = parser.parse_args()
    if not (args.site / "fastnet").is_dir():
        build_march_native(args.site)
    print(machine_line())
    print("\n| case | portable (variant) ms | -march=native ms | portable / -march=native |")
    print("|---|---|---|---|")
    for label, code in CASES:
        times = {"portable": [], "native": []}
        variants = {}
        for round_ in range(args.rounds):
            order = ("portable", "native") if round_ % 2 == 0 else ("native", "portable")
            for build in order:
                variants[build], seconds = measure(code, None if build == "portable" else args.site, args.calls)
                times[build].append(seconds)
        portable, native = (float(np.median(times[build])) for build in ("portable", "native"))
        print(f"| {label} | {portable * 1e3:.2f} ({variants['portable']}) | {native * 1e3:.2f} "
              f"| {portable / native:.3f} |", flush=True)


if __name__ == "__main__":
    main()
