"""Side-by-side timings of fastnet's backends (and peers, when installed).

    python benchmarks/compare.py [--rounds 7] [--markdown]

Every case times each contender in interleaved rounds (A B C A B C ...), so
that a noisy shared machine slows them alike, and reports the median of
each and the ratio of medians to the NumPy reference.  Compilation happens
in an untimed warm-up call.
"""

import argparse
import platform
import time

import numpy as np

from fastnet import Network

#: (label, layers, rows, bias, derivative, loss)
CASES = [
    ("article net, 10k rows", [4, 1, 1], 10_000, False, "article", "sse"),
    ("article net, 1M rows", [4, 1, 1], 1_000_000, False, "article", "sse"),
    ("article shape exact, 1M rows", [4, 1, 1], 1_000_000, False, "exact", "sse"),
    ("[64, 128, 1], 100k rows", [64, 128, 1], 100_000, True, "exact", "mse"),
]


def make_case(layers, rows, bias, derivative, loss, seed=0):
    """Random data and one Network per backend with identical parameters."""
    rng = np.random.default_rng(seed)
    X = rng.random((rows, layers[0]))
    y = rng.random((rows, layers[-1]))
    base = Network(layers, backend="numpy", bias=bias, derivative=derivative, loss=loss, seed=seed)
    nets = {backend: Network(layers, backend=backend, bias=bias, derivative=derivative, loss=loss,
                             weights=base.weights, biases=base.biases)
            for backend in ("numpy", "numba", "native")}
    return X, y, nets


def peer_contenders(layers, X, y, bias, loss):
    """PyTorch autograd gradient, when torch is installed (MSE / SSE, exact derivative)."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(2)
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    model = torch.nn.Sequential(*[m for i, o in zip(layers[:-1], layers[1:])
                                  for m in (torch.nn.Linear(i, o, bias=bias, dtype=torch.float64), torch.nn.Sigmoid())])
    reduction = "sum" if loss == "sse" else "mean"

    def torch_gradient():
        model.zero_grad()
        torch.nn.functional.mse_loss(model(tX), ty, reduction=reduction).backward()

    return {"torch": torch_gradient}


def time_interleaved(contenders, rounds):
    """Median seconds of each callable over interleaved rounds, after one warm-up each."""
    for run in contenders.values():
        run()
    samples = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return {name: float(np.median(times)) for name, times in samples.items()}


def main():
    """Print a table of median times and speed-ups over the reference."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    import numba
    print(f"# {platform.processor() or platform.machine()}, {platform.python_version()}, "
          f"numpy {np.__version__}, numba {numba.__version__}, {time.strftime('%Y-%m-%d')}")
    print("| case | numpy ms | numba ms | native ms | numba speed-up | native speed-up | peers |")
    print("|---|---|---|---|---|---|---|")
    for label, layers, rows, bias, derivative, loss in CASES:
        X, y, nets = make_case(layers, rows, bias, derivative, loss)
        contenders = {name: (lambda net=net: net.gradients(X, y)) for name, net in nets.items()}
        if derivative == "exact":
            contenders.update(peer_contenders(layers, X, y, bias, loss))
        median = time_interleaved(contenders, args.rounds)
        peers = ", ".join(f"{name} {median[name] * 1e3:.1f} ms (numba {median[name] / median['numba']:.1f}x)"
                          for name in median if name not in nets) or "-"
        print(f"| {label} | {median['numpy'] * 1e3:.1f} | {median['numba'] * 1e3:.2f} | {median['native'] * 1e3:.2f} "
              f"| {median['numpy'] / median['numba']:.1f}x | {median['numpy'] / median['native']:.1f}x | {peers} |")


if __name__ == "__main__":
    main()
