"""Cold Numba compile time, as a new user meets it.

    python benchmarks/compile_time.py

Runs the first calls a new user makes, each in a fresh Python process, one
after another, all sharing one new, initially empty NUMBA_CACHE_DIR:

  1. first ``Network(...).gradients(X, y)`` (float64)
  2. then the first mini-batch fit (batch 32, adam)
  3. then the first ``predict(X)``
  4. then the first float32 fit (batch 32, adam)
  5. then the first fit from ``.npy`` paths (opened read-only, memory-mapped)
  6. then the first gradients on more rows than one parallel block
  7. the first gradients with backend="native" (compiled at install: nothing to compile)

and then a warm start (fresh process, warm cache: import plus first
gradient, median of 3).  Each step's seconds are those of its calls only,
as wall-clock and as the process's CPU time (what a compile costs; on a
machine shared with other work the wall clock also counts waiting for a
core); the warm start includes the import.  Uses only the public API
(``fastnet.Network``).  Prints a Markdown table and the machine.
"""

import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

LAYERS = [4, 8, 1]
ROWS = 1000
#: More rows than one block (fastnet._config.BLOCK_ROWS): blocks run on several threads.
BIG_ROWS = 20_000

#: Code run before each step, in its fresh process: the data, and the timer.
PRELUDE = textwrap.dedent(f"""
    import time
    start, start_cpu = time.perf_counter(), time.process_time()
    import numpy as np
    from fastnet import Network
    imported = time.perf_counter()
    rng = np.random.default_rng(0)
    X, y = rng.random(({ROWS}, {LAYERS[0]})), rng.random(({ROWS}, {LAYERS[-1]}))
    big_X, big_y = rng.random(({BIG_ROWS}, {LAYERS[0]})), rng.random(({BIG_ROWS}, {LAYERS[-1]}))
    def network(dtype="float64", backend="numba"):
        return Network({LAYERS}, backend=backend, seed=0, dtype=dtype)
""")

#: (label, code timed after PRELUDE); ``folder`` is the data folder, argv[1].
STEPS = [
    ("1. first gradients (float64)", "network().gradients(X, y)"),
    ("2. first fit, batch 32, adam", 'network().fit(X, y, epochs=1, batch_size=32, optimizer="adam")'),
    ("3. first predict", "network().predict(X)"),
    ("4. first float32 fit, batch 32, adam",
     'network("float32").fit(X, y, epochs=1, batch_size=32, optimizer="adam")'),
    ("5. first fit from .npy paths, batch 32, adam",
     'network().fit(folder + "/X.npy", folder + "/y.npy", epochs=1, batch_size=32, optimizer="adam")'),
    (f"6. first gradients on {BIG_ROWS:,} rows", "network().gradients(big_X, big_y)"),
    ('7. first gradients, backend="native"', 'network(backend="native").gradients(X, y)'),
]

WARM_START = "network().gradients(X, y)"


def run_step(code, env, folder, include_import=False):
    """(wall, CPU) seconds of ``code`` in a fresh process (from before the import when ``include_import``)."""
    script = PRELUDE + textwrap.dedent(f"""
        import sys
        folder = sys.argv[1]
        timed, timed_cpu = time.perf_counter(), time.process_time()
        {code}
        end, end_cpu = time.perf_counter(), time.process_time()
        print(end - (start if {include_import} else timed), end_cpu - (start_cpu if {include_import} else timed_cpu))
    """)
    # Run in the data folder: from a source tree, ``-c`` would import its
    # fastnet, which lacks the built fastnet._native, instead of the installed one.
    done = subprocess.run([sys.executable, "-c", script, folder], capture_output=True, text=True, env=env,
                          cwd=folder)
    if done.returncode != 0:
        raise RuntimeError(f"step failed: {code}\n{done.stderr[-2000:]}")
    wall, cpu = done.stdout.split()[-2:]
    return float(wall), float(cpu)


def cpu_model():
    """The CPU's model name (lscpu, else /proc/cpuinfo) and whether it has avx2 and avx512f."""
    model, flags = None, set()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        text = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            text += cpuinfo.read()
    except OSError:
        pass
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "model name") and model is None:
            model = value.strip()
        if key.strip() in ("Flags", "flags"):
            flags |= set(value.split())
    return model or platform.processor() or "unknown CPU", "avx2" in flags, "avx512f" in flags


def main():
    """Run the steps, then the warm start, and print the table and the machine."""
    import numba
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)  # the same data as PRELUDE's
        np.save(os.path.join(folder, "X.npy"), rng.random((ROWS, LAYERS[0])))
        np.save(os.path.join(folder, "y.npy"), rng.random((ROWS, LAYERS[-1])))
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        env.pop("NUMBA_DISABLE_JIT", None)
        rows = [(label, run_step(code, env, folder)) for label, code in STEPS]
        warm = np.median([run_step(WARM_START, env, folder, include_import=True) for _ in range(3)], axis=0)
    print(f"### Cold compile time, fresh process per step, one shared initially empty cache ({LAYERS}, {ROWS} rows)\n")
    print("| step | seconds | CPU seconds |")
    print("|---|---|---|")
    for label, (wall, cpu) in rows:
        print(f"| {label} | {wall:.2f} | {cpu:.2f} |")
    totals = np.sum([seconds for _, seconds in rows[:6]], axis=0)
    print(f"| total of the Numba steps 1-6 | {totals[0]:.2f} | {totals[1]:.2f} |")
    print(f"| warm start: import + first gradients (median of 3) | {warm[0]:.2f} | {warm[1]:.2f} |")
    model, avx2, avx512f = cpu_model()
    print(f"\n{model}; avx2 {'yes' if avx2 else 'no'}, avx512f {'yes' if avx512f else 'no'}; "
          f"{os.cpu_count()} cores; Python {platform.python_version()}, numpy {np.__version__}, "
          f"numba {numba.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
