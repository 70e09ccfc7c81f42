"""The README's picture: training loss against wall-clock seconds on scikit-learn's
digits (1,797 images of 8x8 pixels, 10 classes), fastnet's numba backend beside
scikit-learn's MLPClassifier, both [64, 32, 10] with ReLU, softmax and
cross-entropy, Adam (lr 0.001), batches of 32, no L2 penalty.

    python benchmarks/plot_digits.py [--epochs 60] [--out docs/digits_loss.png]

Needs scikit-learn and matplotlib.  Compilation is not timed: fastnet trains a
throwaway network first.  Each curve's points are the losses of its epochs
(batch losses averaged as each optimizer reports them) at the cumulative
seconds when the epoch ended.
"""

import argparse
import time
import warnings

import numpy as np

from fastnet import Network


def digits():
    """Pixels scaled to [0, 1], labels 0-9 and their one-hot rows."""
    from sklearn.datasets import load_digits
    data = load_digits()
    X = data.data / 16.0
    return X, data.target, np.eye(10)[data.target]


def fastnet_curve(X, Y, epochs, batch_size, seed=0):
    """(cumulative seconds, loss) per epoch of fastnet's numba backend."""
    def network():
        return Network([64, 32, 10], backend="numba", activation="relu", output="softmax", seed=seed)
    network().fit(X[:256], Y[:256], epochs=1, batch_size=batch_size, optimizer="adam")  # compile, untimed
    history = network().fit(X, Y, epochs=epochs, batch_size=batch_size, optimizer="adam", lr=1e-3, seed=seed)
    return np.cumsum(history.time), np.array(history.loss)


def sklearn_curve(X, labels, epochs, batch_size, seed=0):
    """(cumulative seconds, loss) per epoch of scikit-learn's MLPClassifier, one partial_fit an epoch."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    model = MLPClassifier(hidden_layer_sizes=(32,), activation="relu", solver="adam", alpha=0.0,
                          batch_size=batch_size, learning_rate_init=1e-3, random_state=seed)
    seconds, losses = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(X, labels, classes=np.arange(10))
        seconds.append(time.perf_counter() - start)
        losses.append(model.loss_)
    return np.cumsum(seconds), np.array(losses)


def main():
    """Train both, draw both curves, write the PNG."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="docs/digits_loss.png")
    args = parser.parse_args()
    import sklearn
    from matplotlib.figure import Figure
    X, labels, Y = digits()
    ours = fastnet_curve(X, Y, args.epochs, args.batch_size)
    theirs = sklearn_curve(X, labels, args.epochs, args.batch_size)
    figure = Figure(figsize=(6.4, 4), layout="constrained")
    ax = figure.add_subplot()
    ax.plot(*ours, marker=".", label=f"fastnet (numba), {ours[0][-1]:.2f} s for {args.epochs} epochs")
    ax.plot(*theirs, marker=".", label=f"scikit-learn {sklearn.__version__} MLPClassifier, {theirs[0][-1]:.2f} s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wall-clock seconds (log scale)")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title(f"digits, [64, 32, 10] ReLU + softmax, Adam, batch {args.batch_size}")
    ax.legend(loc="lower left")
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}: fastnet {ours[0][-1]:.3f} s, final loss {ours[1][-1]:.4f}; "
          f"scikit-learn {theirs[0][-1]:.3f} s, final loss {theirs[1][-1]:.4f}")


if __name__ == "__main__":
    main()
