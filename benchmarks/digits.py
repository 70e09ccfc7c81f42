"""NetworkClassifier against scikit-learn's MLPClassifier on the digits data set, side by side.

    python benchmarks/digits.py [--backends numba native] [--seeds 5] [--dtype float32]

scikit-learn's digits (1,797 x 64, 10 classes), standardised, one fixed
stratified 75/25 split; both estimators with the same settings: hidden
(100,), logistic activation, adam, batch 200, learning rate 1e-3, alpha
1e-4, 200 epochs, no early stopping (``n_iter_no_change=max_iter``, so
neither stops before the 200th epoch).

``--dtype float32`` fits the NetworkClassifier contenders in float32
(``dtype="float32"``); MLPClassifier stays in float64 (the reference row,
which the speed-ups divide), and a second MLPClassifier row is fed float32
X, which scikit-learn then fits in float32.

Each contender is fitted once untimed (its first fit, Numba compilation
included, is reported on its own), then once per seed, the contenders in
alternating order so that noise on a shared machine hits them alike.
Prints a Markdown table: median fit seconds, speed-up over MLPClassifier
(ratio of medians), and test accuracy as the mean over the seeds; then the
machine, the versions and the date.  Targets (issue 9): >= 10x faster,
accuracy at most 1 point below MLPClassifier's.
"""

import argparse
import os
import platform
import time
import warnings

import numba
import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

import fastnet
from compile_time import cpu_model
from fastnet import NetworkClassifier

EPOCHS = 200
SETTINGS = dict(hidden_layer_sizes=(100,), activation="logistic", solver="adam", batch_size=200,
                learning_rate_init=1e-3, alpha=1e-4, max_iter=EPOCHS, early_stopping=False,
                n_iter_no_change=EPOCHS)


def digits_split():
    """(X_train, X_test, y_train, y_test): standardised digits, a fixed stratified 75/25 split."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def contenders(backends, dtype="float64"):
    """Name -> (function of a seed returning an unfitted estimator, dtype of the X it is fed)."""
    suffix = "" if dtype == "float64" else f", {dtype}"
    made = {f"NetworkClassifier, {backend}{suffix}": (lambda seed, backend=backend:
                                                      NetworkClassifier(backend=backend, random_state=seed,
                                                                        dtype=dtype, **SETTINGS), dtype)
            for backend in backends}
    made["MLPClassifier"] = (lambda seed: MLPClassifier(random_state=seed, **SETTINGS)), "float64"
    if dtype != "float64":
        made[f"MLPClassifier, {dtype} X"] = (lambda seed: MLPClassifier(random_state=seed, **SETTINGS)), dtype
    return made


def fit_seconds(estimator, X, y):
    """Wall-clock seconds of ``estimator.fit(X, y)``; checks it ran every epoch."""
    start = time.perf_counter()
    estimator.fit(X, y)
    seconds = time.perf_counter() - start
    if estimator.n_iter_ != EPOCHS:
        raise RuntimeError(f"{estimator!r} stopped after {estimator.n_iter_} epochs, not {EPOCHS}")
    return seconds


def run(backends, seeds, dtype="float64"):
    """{name: (first fit s, fit seconds per seed, accuracy per seed)}."""
    X_train, X_test, y_train, y_test = digits_split()
    made = contenders(backends, dtype)
    data = {name: (X_train.astype(fed), X_test.astype(fed)) for name, (_, fed) in made.items()}
    results = {name: ([], [], []) for name in made}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 200 epochs without stopping, on purpose
        for name, (make, _) in made.items():
            results[name][0].append(fit_seconds(make(0), data[name][0], y_train))
        for index, seed in enumerate(seeds):
            names = list(made) if index % 2 == 0 else list(reversed(made))
            for name in names:
                estimator = made[name][0](seed)
                results[name][1].append(fit_seconds(estimator, data[name][0], y_train))
                results[name][2].append(estimator.score(data[name][1], y_test))
    return {name: (first[0], times, accuracies) for name, (first, times, accuracies) in results.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["numba", "native"], choices=fastnet.BACKENDS)
    parser.add_argument("--seeds", type=int, default=5, help="fits per contender, timed (default 5)")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="NetworkClassifier's dtype; float32 also adds MLPClassifier fed float32 X")
    arguments = parser.parse_args()
    seeds = range(arguments.seeds)
    results = run(arguments.backends, seeds, arguments.dtype)
    reference = np.median(results["MLPClassifier"][1])
    reference_accuracy = np.mean(results["MLPClassifier"][2])

    print(f"### Digits, {EPOCHS} epochs: NetworkClassifier vs MLPClassifier (same settings, {len(seeds)} seeds)\n")
    print("| estimator | fit s (median) | speed-up | test accuracy (mean) | vs MLP | first fit s |")
    print("|---|---|---|---|---|---|")
    for name, (first, times, accuracies) in results.items():
        median, accuracy = np.median(times), np.mean(accuracies)
        print(f"| {name} | {median:.3f} | {reference / median:.1f}x | {100 * accuracy:.2f} % | "
              f"{100 * (accuracy - reference_accuracy):+.2f} | {first:.2f} |")
    model, avx2, avx512f = cpu_model()
    print(f"\nSettings: {SETTINGS}; 1,347 training and 450 test rows. 'first fit' is the untimed first fit "
          "(with Numba's compilation or cache load for the numba backend).")
    print(f"\n{model}; avx2 {'yes' if avx2 else 'no'}, avx512f {'yes' if avx512f else 'no'}; {os.cpu_count()} cores, "
          f"{fastnet.get_num_threads()} fastnet threads; Python {platform.python_version()}, numpy {np.__version__}, "
          f"numba {numba.__version__}, scikit-learn {sklearn.__version__}, fastnet {fastnet.__version__}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
