"""fastnet.dask on a LocalCluster: speed-up of full-batch steps, per-step overhead, bytes moved.

    python benchmarks/dask_scaling.py [--rows 4000000] [--steps 5]

1. Scaling: 4M x 32 float64 rows (16 row chunks made on the workers, never
   on the client, half of them on each), targets in [0, 1], network
   [32, 64, 1] (numba backend, sigmoid, mse).  Seconds per full-batch
   gradient step (``fastnet.dask.fit``'s ``History.time``, median over the
   steps after the first) on a LocalCluster of 1 single-threaded worker
   process, then of 2; the kernels use one thread per worker
   (``fastnet.set_num_threads(1)`` on each).
2. Overhead of one synchronous step (broadcast + reduce) on 1 chunk of
   1,000 rows: the median step, next to Dask's own bare round trips on the
   same cluster (submit a task returning its argument, the parameters, and
   wait for it; call an actor's method doing the same) and the same step
   on one machine (``Network.step``).
   Each worker's chunks per step (those its ``fastnet.dask`` holder keeps)
   and CPU seconds per step (its process's): the one worker's over the
   busiest of two is the speed-up two cores nobody else uses would give.
3. Bytes moved per step: what the workers sent, by Dask's own accounting
   (``Worker.transfer_outgoing_bytes_total``: task results to other workers
   and to the client alike) plus the answers to actor calls, sized as Dask
   sizes a task result (``dask.sizeof``), against the parameters' size and X's.

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
    """On a worker: the native kernels on one thread.  Numba's thread count is per
    calling thread, and tasks run on the worker's executor thread, so the workers
    are started with NUMBA_NUM_THREADS=1 instead (see ``cluster``)."""
    fastnet.set_num_threads(1)


def counters_now(dask_worker):
    """On a worker: bytes it has sent so far (task results and actor answers), its process's
    CPU seconds, and the chunks its fastnet.dask holders keep."""
    held = sum(len(actor.chunks) for actor in dask_worker.state.actors.values() if isinstance(actor, fd._Holder))
    return (dask_worker.transfer_outgoing_bytes_total + getattr(dask_worker, "actor_answer_bytes", 0),
            time.process_time(), held)


def echo(value):
    return value


class Echo:
    """An actor answering its argument: Dask's bare actor call."""

    def echo(self, value):
        return value


def cluster(n_workers):
    """A LocalCluster of ``n_workers`` single-threaded worker processes, and its client."""
    local = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                         memory_limit=0, env={"NUMBA_NUM_THREADS": "1"})
    client = Client(local)
    client.run(one_thread)
    client.run(fd.count_actor_answers)
    return local, client


def chunk_of(seed, rows, columns, low, high):
    """On a worker: one chunk, uniform in [low, high), from its own seeded generator."""
    return np.random.default_rng(seed).uniform(low, high, (rows, columns))


def data(client, rows):
    """X uniform in [-1, 1] (rows, 32) and y uniform in [0, 1], in CHUNKS row chunks made on the
    workers, contiguous runs of chunks split evenly between them (X's chunk and y's on the same
    worker): data that is already spread over the cluster, as a persisted array is."""
    workers = sorted(client.scheduler_info()["workers"])
    sizes = [rows // CHUNKS + (1 if i < rows % CHUNKS else 0) for i in range(CHUNKS)]
    columns = {"X": (LAYERS[0], -1.0, 1.0), "y": (LAYERS[-1], 0.0, 1.0)}
    arrays = {}
    for name, (width, low, high) in columns.items():
        parts = [client.submit(chunk_of, (2024, index, width), n, width, low, high, pure=False,
                               workers=[workers[index * len(workers) // CHUNKS]])
                 for index, n in enumerate(sizes)]
        arrays[name] = da.concatenate([da.from_delayed(part, (n, width), np.float64)
                                       for part, n in zip(parts, sizes)])
    return arrays["X"], arrays["y"]


def steps(client, X, y, n_steps):
    """(median seconds per step after the first, bytes the workers sent per step, History,
    {worker: (chunk tasks run per step, median CPU seconds of its process per step)})."""
    net = Network(LAYERS, backend="numba", seed=0)
    sent, cpu, held = [], [], {}

    def record(epoch, history):
        counters = client.run(counters_now)
        sent.append(sum(out for out, _, _ in counters.values()))
        cpu.append({worker: seconds for worker, (_, seconds, _) in counters.items()})
        held.update({worker: chunks for worker, (_, _, chunks) in counters.items()})

    history = fd.fit(net, X, y, epochs=n_steps, lr=0.5, client=client, callback=record)
    busy = {worker: (held.get(worker, 0), float(np.median(np.diff([seconds[worker] for seconds in cpu]))))
            for worker in cpu[0]}
    return float(np.median(history.time[1:])), np.diff(sent), history, busy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()

    seconds, moved, cpu = {}, {}, {}
    for n_workers in (1, 2):
        local, client = cluster(n_workers)
        with local, client:
            # Warm the workers' kernels (compile or load from the cache) before timing.
            fd.fit(Network(LAYERS, backend="numba", seed=0), *data(client, CHUNKS * 1_000), client=client)
            X, y = data(client, args.rows)
            seconds[n_workers], moved[n_workers], history, busy = steps(client, X, y, args.steps)
            print(f"{n_workers} worker(s): steps {['%.3f' % t for t in history.time]} s, losses {history.loss}",
                  flush=True)
            for worker, (count, compute) in sorted(busy.items()):
                print(f"  {worker}: {count:.0f} chunks per step, {compute:.3f} CPU seconds per step", flush=True)
            cpu[n_workers] = max(compute for _, compute in busy.values())

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
        actor = client.submit(Echo, actor=True).result()
        calls = []
        for _ in range(200):
            start = time.perf_counter()
            actor.echo(params).result()
            calls.append(time.perf_counter() - start)
        actor_call = float(np.median(calls))
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
    print(f"| CPU seconds per step, 1 worker / busiest of 2 (the speed-up on two idle cores) | "
          f"{cpu[1] / cpu[2]:.2f}x |")
    print(f"| one synchronous step, 1 chunk of {SMALL_ROWS:,} rows (ms; target <= 10) | {overhead * 1e3:.1f} |")
    print(f"| Dask's bare task round trip, submit + result (ms) | {round_trip * 1e3:.1f} |")
    print(f"| Dask's bare actor call, call + result (ms) | {actor_call * 1e3:.1f} |")
    print(f"| the same step on one machine, Network.step (ms) | {local_step * 1e3:.2f} |")
    for n_workers in (1, 2):
        print(f"| bytes the workers sent per step, {n_workers} worker(s) (median) | "
              f"{int(np.median(moved[n_workers])):,} |")
    print(f"| parameters (bytes); X (bytes) | {param_bytes:,}; {X.nbytes:,} |")


if __name__ == "__main__":
    main()
