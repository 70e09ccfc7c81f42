"""fastnet.dask on a LocalCluster: speed-up of full-batch steps, per-step overhead, bytes moved.

    python benchmarks/dask_scaling.py [--rows 4000000] [--steps 5]

1. Scaling: 4M x 32 float64 rows (16 row chunks, made on the workers by
   ``dask.array.random``, never on the client), targets in [0, 1], network
   [32, 64, 1] (numba backend, sigmoid, mse).  Seconds per full-batch
   gradient step (``fastnet.dask.fit``'s ``History.time``, median over the
   steps after the first) on a LocalCluster of 1 single-threaded worker
   process, then of 2; the kernels use one thread per worker
   (``fastnet.set_num_threads(1)`` on each).
2. Overhead of one synchronous step (broadcast + reduce) on 1 chunk of
   1,000 rows: the median step, next to Dask's own bare round trip on the
   same cluster (submit a task returning its argument, the parameters,
   and wait for it) and the same step on one machine (``Network.step``).
3. Bytes moved per step: what the workers sent, by Dask's own accounting
   (``Worker.transfer_outgoing_bytes_total``: to other workers and to the
   client alike), against the parameters' size and X's.

Prints a Markdown table, the CPU (lscpu's model name) and the load average
before and after: ratios taken on a busy machine understate the speed-up.
"""

import argparse
import os
import subprocess
import time

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

import fastnet
import fastnet.dask as fd
from fastnet import Network

LAYERS = [32, 64, 1]
CHUNKS = 16
SMALL_ROWS = 1_000


def cpu_model():
    """lscpu's model name."""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def one_thread():
    """On a worker: kernels on one thread (the worker's one thread runs them)."""
    fastnet.set_num_threads(1)


def sent_bytes(dask_worker):
    """On a worker: bytes it has sent so far, by Dask's accounting."""
    return dask_worker.transfer_outgoing_bytes_total


def echo(value):
    return value


def cluster(n_workers):
    """A LocalCluster of ``n_workers`` single-threaded worker processes, and its client."""
    local = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                         memory_limit=0)
    client = Client(local)
    client.run(one_thread)
    return local, client


def data(rows):
    """X uniform in [-1, 1] (rows, 32) and y uniform in [0, 1], in CHUNKS row chunks, lazily."""
    rng = da.random.default_rng(2024)
    chunk = -(-rows // CHUNKS)
    X = rng.uniform(-1.0, 1.0, size=(rows, LAYERS[0]), chunks=(chunk, LAYERS[0]))
    y = rng.uniform(0.0, 1.0, size=(rows, LAYERS[-1]), chunks=(chunk, LAYERS[-1]))
    return X, y


def steps(client, X, y, n_steps):
    """(median seconds per step after the first, bytes the workers sent per step, History)."""
    net = Network(LAYERS, backend="numba", seed=0)
    sent = []

    def record(epoch, history):
        sent.append(sum(client.run(sent_bytes).values()))

    history = fd.fit(net, X, y, epochs=n_steps, lr=0.5, client=client, callback=record)
    return float(np.median(history.time[1:])), np.diff(sent), history, net


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()
    X, y = data(args.rows)

    seconds, moved = {}, {}
    for n_workers in (1, 2):
        local, client = cluster(n_workers)
        with local, client:
            # Warm the workers' kernels (compile or load from the cache) before timing.
            fd.fit(Network(LAYERS, backend="numba", seed=0), *data(CHUNKS * 1_000), client=client)
            seconds[n_workers], moved[n_workers], history, net = steps(client, X, y, args.steps)
            print(f"{n_workers} worker(s): steps {['%.3f' % t for t in history.time]} s, losses {history.loss}",
                  flush=True)

    local, client = cluster(1)
    with local, client:
        rng = np.random.default_rng(0)
        X_small = rng.uniform(-1.0, 1.0, (SMALL_ROWS, LAYERS[0]))
        y_small = rng.uniform(0.0, 1.0, (SMALL_ROWS, LAYERS[-1]))
        net = Network(LAYERS, backend="numba", seed=0)
        small = (da.from_array(X_small, chunks=SMALL_ROWS), da.from_array(y_small, chunks=SMALL_ROWS))
        fd.fit(net, *small, epochs=5, client=client)
        overhead = float(np.median(fd.fit(net, *small, epochs=200, client=client).time))
        params = net.state()["params"]
        trips = []
        for _ in range(200):
            start = time.perf_counter()
            client.submit(echo, params, pure=False).result()
            trips.append(time.perf_counter() - start)
        round_trip = float(np.median(trips))
        local_net = Network(LAYERS, backend="numba", seed=0)
        local_net.step(X_small, y_small)
        start = time.perf_counter()
        for _ in range(200):
            local_net.step(X_small, y_small)
        local_step = (time.perf_counter() - start) / 200

    param_bytes = params.nbytes
    print()
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores; load average before {load_before[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")
    print(f"fastnet.dask scaling: {args.rows:,} x {LAYERS[0]} float64 ({X.nbytes / 1e9:.2f} GB) in {CHUNKS} chunks, "
          f"{LAYERS}, full-batch gradient step, numba backend, one kernel thread per worker")
    print()
    print("| measurement | value |")
    print("|---|---|")
    print(f"| step, 1 worker process (s) | {seconds[1]:.3f} |")
    print(f"| step, 2 worker processes (s) | {seconds[2]:.3f} |")
    print(f"| speed-up, 2 vs 1 (target >= 1.6) | {seconds[1] / seconds[2]:.2f}x |")
    print(f"| one synchronous step, 1 chunk of {SMALL_ROWS:,} rows (ms; target <= 10) | {overhead * 1e3:.1f} |")
    print(f"| of which Dask's bare round trip, submit + result (ms) | {round_trip * 1e3:.1f} |")
    print(f"| the same step on one machine, Network.step (ms) | {local_step * 1e3:.2f} |")
    for n_workers in (1, 2):
        print(f"| bytes the workers sent per step, {n_workers} worker(s) (median) | "
              f"{int(np.median(moved[n_workers])):,} |")
    print(f"| parameters (bytes); X (bytes) | {param_bytes:,}; {X.nbytes:,} |")


if __name__ == "__main__":
    main()
