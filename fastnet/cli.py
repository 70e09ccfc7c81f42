"""The ``fastnet`` command line: article, train, predict, evaluate, info, bench.

Each subcommand is a small function over the public API (``Network``,
``History``, ``fastnet.io``, ``fastnet.bench``).  Bad input ends the command
with one line on stderr naming the file, column or option and what to
change, and exit status 2 (``--debug`` shows the traceback instead); Ctrl-C
ends it with status 130.  Model files are fastnet's ``.npz`` with a few extra
fields (prefixed ``cli_``: feature and target names, class labels, the
training history) that ``Network.load`` ignores.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np

#: Exit statuses: bad input (as argparse's own errors), and Ctrl-C (128 + SIGINT).
BAD_INPUT, INTERRUPTED = 2, 130

#: The extra fields a model file written by ``fastnet train`` holds beside the network.
SIDECAR = ("cli_features", "cli_targets", "cli_classes", "cli_history", "cli_settings")


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (and status 2) and examples kept as written."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def listed(kind, option):
    """An argparse type: comma-separated values of ``kind``; an empty string is none."""
    def parse(text):
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} {text!r}: expected comma-separated "
                                             f"{kind.__name__} values, e.g. {option} 64,32") from None
    return parse


def fraction_below_one(text):
    """An argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"--validation-split {text!r}: expected a fraction in [0, 1), e.g. 0.1")
    return value


# -- reading training data ------------------------------------------------------


def read_training_data(path, target, features, y_path, dtype):
    """(X, raw targets, feature names, target names) from DATA and the options.

    CSV/Parquet: ``target`` (one or more comma-separated columns) and the
    ``features`` columns (default: all others).  .npy: X memory-mapped,
    targets from ``y_path``.  .npz: its arrays X and y.
    """
    from fastnet import io
    kind = io.file_format(io.existing_file(path))
    if kind in ("npy", "npz"):
        if features:
            raise io.DataError(f"--features selects columns of CSV or Parquet files; {path} is a .{kind} array")
        if kind == "npy":
            if y_path is None:
                raise io.DataError(f"{path} holds the features only: pass the targets with --y y.npy")
            X, y = io.open_array(path, "DATA"), io.open_array(y_path, "--y", "biufU")
        else:
            X, y = io.read_npz(path)
        if X.ndim != 2 or X.shape[0] == 0:
            raise io.DataError(f"DATA {path}: features must be a 2-D array (rows, features) with rows; "
                               f"got shape {X.shape}")
        if y.shape[0] != X.shape[0] or y.ndim > 2:
            raise io.DataError(f"{y_path or path}: targets must have one row per row of {path} ({X.shape[0]}); "
                               f"got shape {y.shape}")
        io.finite_or_fail(path, X)
        if X.dtype != np.dtype(dtype) or X.dtype.kind != "f":
            X = np.asarray(X, dtype)
        return X, y, None, ["y"] if y.ndim == 1 else [f"y{j}" for j in range(y.shape[1])]
    if y_path is not None:
        raise io.DataError(f"--y is for .npy features; {path} holds the targets: name them with --target")
    if not target:
        raise io.DataError(f"{path}: pass --target with the column to predict")
    available = io.column_names(path)
    for name in target + (features or []):
        if name not in available:
            shown = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "")
            option = "--target" if name in target else "--features"
            raise io.DataError(f"{path}: no column {name!r} (it has {shown}); pass {option} with columns it has")
    features = features or [name for name in available if name not in target]
    if not features:
        raise io.DataError(f"{path}: no feature columns left beside the target {', '.join(target)}")
    table = io.read_table(path, features + target)
    X = io.features_matrix(path, features, [table.column(name) for name in features], dtype)
    columns = [table.column(name) for name in target]
    y = columns[0] if len(columns) == 1 else np.column_stack(columns)
    return X, y, features, target


def encode_targets(path, y, target_names, output, loss):
    """(Y, class labels or None, output, loss): the network's targets from the raw ones.

    Text, integer or boolean labels (one column) are classes unless
    ``--output linear``: two give one sigmoid unit with "bce", more a softmax
    with "cross_entropy" over one-hot rows.  Real numbers give a linear
    output with "mse".  Explicit ``output``/``loss`` win over these defaults.
    """
    from fastnet import io
    y = np.asarray(y)
    labels = y.ndim == 1 and y.dtype.kind in "biuU" and output != "linear"
    if y.dtype.kind == "U" and not labels:
        raise io.DataError(f"{path}: target {', '.join(target_names)} holds text; it can only be a class label "
                           "(drop --output linear)")
    if not labels:
        if y.dtype.kind == "f":
            io.finite_or_fail(path, y.reshape(len(y), -1), target_names)
        Y = y.reshape(len(y), -1)
        return Y, None, output or "linear", loss or ("mse" if (output or "linear") == "linear" else None)
    classes, index = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise io.DataError(f"{path}: target column {target_names[0]!r} has a single value ({classes[0]}); "
                           "a classifier needs at least two classes")
    output = output or ("sigmoid" if classes.size == 2 else "softmax")
    if output == "sigmoid" and classes.size == 2:
        Y = index.reshape(-1, 1).astype(np.float64)
    else:
        Y = np.eye(classes.size)[index]
    return Y, classes, output, loss or ("bce" if output == "sigmoid" else "cross_entropy")


# -- model files ------------------------------------------------------------------


def save_model(net, path, features, targets, classes, history, settings):
    """``net`` and the command line's fields, written atomically to ``path`` (.npz)."""
    from fastnet import persistence
    arrays = persistence.state_arrays(net.state())
    arrays.update({
        "cli_features": np.array(features or [], dtype=str),
        "cli_targets": np.array(targets, dtype=str),
        "cli_history": np.array(json.dumps({"loss": history.loss, "val_loss": history.val_loss,
                                            "time": history.time})),
        "cli_settings": np.array(json.dumps(settings)),
    })
    if classes is not None:
        arrays["cli_classes"] = classes
    persistence.write_atomically(path, arrays)


def load_model(path):
    """(Network, extra fields) from a model file; the fields are {} for a file saved
    by ``Network.save``.  DataError for anything that is not a fastnet network."""
    from fastnet import Network, io
    io.existing_file(path, "model")
    try:
        net = Network.load(path)
    except (ValueError, TypeError) as error:
        raise io.DataError(f"{io.one_line(error)}; give a model file written by fastnet train or Network.save") \
            from None
    with np.load(path, allow_pickle=False) as archive:
        fields = {key: archive[key] for key in SIDECAR if key in archive.files}
    extra = {
        "features": [str(name) for name in fields["cli_features"]] if "cli_features" in fields else [],
        "targets": [str(name) for name in fields["cli_targets"]] if "cli_targets" in fields else [],
        "classes": fields.get("cli_classes"),
        "history": json.loads(str(fields["cli_history"])) if "cli_history" in fields else None,
        "settings": json.loads(str(fields["cli_settings"])) if "cli_settings" in fields else {},
    }
    return net, extra


# -- train ----------------------------------------------------------------------------


TRAIN_EXAMPLE = """\
example:
  fastnet train iris.csv --target species --layers 16 --epochs 50 --out iris.npz --plot iris.png

A text, integer or boolean target is a class label (two classes: one sigmoid
unit with binary cross-entropy; more: softmax with cross-entropy); real
numbers get a linear output with mean squared error.  --validation-split
holds out the LAST fraction of the rows.  The run is the Python API's
  Network([n_features, *layers, n_outputs], backend=..., activation=...,
          output=..., loss=..., dtype=..., seed=SEED).fit(X, Y, epochs, lr,
          batch_size=..., optimizer=..., alpha=...)
so the same seed gives the same network.  Ctrl-C saves the network after
the last completed epoch to --out and exits with status 130.
"""


def add_train(commands):
    """The ``train`` subcommand's options."""
    from fastnet import spec
    p = commands.add_parser("train", help="train a network on a CSV, Parquet, .npy or .npz file",
                            description="Train a network on a data file and save it.", epilog=TRAIN_EXAMPLE)
    p.add_argument("data", metavar="DATA", help="training data: .csv, .parquet, .npy (with --y) or .npz (X, y)")
    p.add_argument("--target", type=listed(str, "--target"), help="the column(s) to predict (CSV, Parquet)")
    p.add_argument("--features", type=listed(str, "--features"), help="input columns (default: all but the target)")
    p.add_argument("--y", dest="y_path", metavar="Y.npy", help="targets of .npy features")
    p.add_argument("--layers", type=listed(int, "--layers"), default=[32],
                   help="hidden layer widths, e.g. 64,32 ('' for none; default 32)")
    p.add_argument("--activation", choices=list(spec.HIDDEN_ACTIVATIONS), default="relu",
                   help="hidden layers' activation (default relu)")
    p.add_argument("--output", choices=list(spec.OUTPUT_ACTIVATIONS), help="output activation (default: from the target)")
    p.add_argument("--loss", choices=list(spec.LOSSES), help="loss (default: from the target)")
    p.add_argument("--optimizer", choices=list(spec.OPTIMIZERS), default="adam", help="default adam")
    p.add_argument("--lr", type=float, help="learning rate (default: the optimizer's, 0.001 for adam)")
    p.add_argument("--epochs", type=int, default=10, help="default 10")
    p.add_argument("--batch-size", type=int, default=32, help="rows per update (default 32; 0: full batch)")
    p.add_argument("--alpha", type=float, default=0.0, help="L2 penalty (default 0)")
    p.add_argument("--backend", choices=["numba", "native", "numpy"], default="numba", help="default numba")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="default float64")
    p.add_argument("--seed", type=int, default=0, help="initialisation and shuffling (default 0)")
    p.add_argument("--validation-split", type=fraction_below_one, default=0.0, metavar="FRACTION",
                   help="hold out this last fraction of the rows to score after each epoch")
    p.add_argument("--early-stopping", action="store_true",
                   help="stop when the validation loss has not improved for --patience epochs; keep the best")
    p.add_argument("--patience", type=int, default=5, help="epochs without improvement (default 5)")
    p.add_argument("--out", required=True, metavar="MODEL.npz", help="where to save the network")
    p.add_argument("--history", metavar="HISTORY.csv", help="also write the loss per epoch as CSV")
    p.add_argument("--plot", metavar="CURVES.png", help="also draw the loss per epoch (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=train)


def check_train_options(args):
    """Every output path and option checked before any data is read."""
    from fastnet import io
    io.writable_destination(args.out, "--out")
    if not args.out.endswith(".npz"):
        raise io.DataError(f"--out {args.out}: a model file must end in .npz")
    if args.history is not None:
        io.writable_destination(args.history, "--history")
        io.file_format(args.history, "--history", (".csv",))
    if args.plot is not None:
        io.writable_destination(args.plot, "--plot")
        if importlib.util.find_spec("matplotlib") is None:
            raise io.DataError('--plot needs matplotlib: pip install "fastnet-kernels[plot]"')
    for option, value, low in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 0),
                               ("--patience", args.patience, 1)):
        if value < low:
            raise io.DataError(f"{option} {value}: must be at least {low}")
    if args.early_stopping and not args.validation_split:
        raise io.DataError("--early-stopping needs held-out rows: add --validation-split 0.1")


def split(X, Y, fraction, path):
    """((X, Y) for training, (X, Y) held out or None): the last ``fraction`` of the rows held out."""
    from fastnet import io
    held = int(round(fraction * X.shape[0]))
    if fraction and not 0 < held < X.shape[0]:
        raise io.DataError(f"--validation-split {fraction}: leaves no rows to train on or to validate "
                           f"({X.shape[0]} rows in {path})")
    if not held:
        return (X, Y), None
    return (X[:-held], Y[:-held]), (X[-held:], Y[-held:])


class EarlyStopping:
    """A fit callback: stop after ``patience`` epochs without a lower validation
    loss, remembering the best epoch's network state."""

    def __init__(self, net, patience):
        self.net, self.patience, self.best, self.best_epoch, self.best_state = net, patience, np.inf, -1, None

    def __call__(self, epoch, history):
        if history.val_loss[-1] < self.best:
            self.best, self.best_epoch, self.best_state = history.val_loss[-1], epoch, self.net.state()
        return epoch - self.best_epoch < self.patience


def train(args):
    """``fastnet train``: read, encode, fit, save; a summary on stdout."""
    from fastnet import Network
    check_train_options(args)
    X, y, features, targets = read_training_data(args.data, args.target, args.features, args.y_path, args.dtype)
    Y, classes, output, loss = encode_targets(args.data, y, targets, args.output, args.loss)
    (X_fit, Y_fit), validation = split(X, Y, args.validation_split, args.data)
    net = Network([X.shape[1], *args.layers, Y.shape[1]], backend=args.backend, activation=args.activation,
                  output=output, loss=loss, dtype=args.dtype, seed=args.seed)
    stopper = EarlyStopping(net, args.patience) if args.early_stopping else None
    settings = {key: getattr(args, key) for key in ("data", "optimizer", "lr", "epochs", "batch_size", "alpha",
                                                    "seed", "validation_split")}
    watch = time.perf_counter()
    try:
        history = net.fit(X_fit, Y_fit, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size or None,
                          optimizer=args.optimizer, alpha=args.alpha, validation_data=validation,
                          progress=not args.quiet, callback=stopper)
    except KeyboardInterrupt as interrupt:
        history = interrupt.history
        save_model(net, args.out, features, targets, classes, history, settings)
        print(f"fastnet train: interrupted; saved the network after {len(history.loss)} completed epochs "
              f"to {args.out}", file=sys.stderr)
        return INTERRUPTED
    seconds = time.perf_counter() - watch
    note = ""
    if stopper is not None and stopper.best_epoch + 1 < len(history.loss):
        net = Network.from_state(stopper.best_state)
        note = f"stopped early; kept epoch {stopper.best_epoch + 1} (lowest validation loss)"
    save_model(net, args.out, features, targets, classes, history, settings)
    if args.history is not None:
        write_history(history, args.history)
    if args.plot is not None:
        write_plot(history, args.plot, f"{os.path.basename(args.data)}: {net.loss}")
    print(summary(X_fit.shape[0], history, seconds, net, args.out, note))
    return 0


def summary(rows, history, seconds, net, out, note=""):
    """The few lines ``fastnet train`` prints when it is done."""
    epochs = len(history.loss)
    lines = [f"trained {net.layers} ({net.activation}, {net.output} output, {net.loss}) on {rows:,} rows "
             f"for {epochs} epochs in {seconds:.2f} s ({rows * epochs / max(seconds, 1e-9):,.0f} rows/s)",
             f"final training loss {history.loss[-1]:.6g}"
             + (f", validation loss {history.val_loss[-1]:.6g}" if history.val_loss else "")]
    if note:
        lines.append(note)
    lines.append(f"saved to {out}")
    return "\n".join(lines)


def write_history(history, path):
    """The History as CSV (epoch, loss, val_loss, seconds), written atomically."""
    from fastnet import io
    output = io.AtomicOutput(path, ".csv")
    try:
        with open(output.temporary, "w") as stream:
            stream.write("epoch,loss,val_loss,seconds\n")
            for epoch, (loss, seconds) in enumerate(zip(history.loss, history.time)):
                val = repr(history.val_loss[epoch]) if epoch < len(history.val_loss) else ""
                stream.write(f"{epoch + 1},{loss!r},{val},{seconds!r}\n")
        output.commit()
    finally:
        output.discard()


def write_plot(history, path, title):
    """``History.plot`` drawn into an image file (format from its ending), written
    atomically; its metadata say how many points each curve has."""
    from matplotlib.figure import Figure

    from fastnet import io
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = history.plot(figure.add_subplot())
    ax.set_title(title)
    ending = os.path.splitext(path)[1]
    output = io.AtomicOutput(path, ending)
    points = f"loss: {len(history.loss)} points, val_loss: {len(history.val_loss)} points"
    try:
        figure.savefig(output.temporary, format=ending.lstrip(".") or "png",
                       metadata={"Description": points} if ending.lower() == ".png" else None)
        output.commit()
    finally:
        output.discard()


# -- predict and evaluate --------------------------------------------------------------


PREDICT_EXAMPLE = """\
example:
  fastnet predict iris.npz new_flowers.csv --out predictions.csv

DATA is read --chunk-rows rows at a time, so memory holds one chunk.  The
model's feature columns are taken by name from a CSV or Parquet file.  A
classifier writes class labels (--proba: one probability column per class);
without --out the predictions go to stdout as CSV.
"""


def add_predict(commands):
    """The ``predict`` subcommand's options."""
    from fastnet import io
    p = commands.add_parser("predict", help="write a model's predictions for a data file",
                            description="Predict with a saved model.", epilog=PREDICT_EXAMPLE)
    p.add_argument("model", metavar="MODEL.npz")
    p.add_argument("data", metavar="DATA", help=".csv, .parquet, .npy or .npz (array X)")
    p.add_argument("--out", metavar="PREDICTIONS", help=".csv, .parquet or .npy (default: CSV on stdout)")
    p.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    p.add_argument("--chunk-rows", type=int, default=io.CHUNK_ROWS, help=f"default {io.CHUNK_ROWS:,}")
    p.set_defaults(run=predict)


def output_columns(outputs, extra, proba):
    """(column names, function from network outputs (m, k) to a list of columns)."""
    classes = extra["classes"]
    targets = extra["targets"] or [f"y{j}" for j in range(outputs)]
    if classes is None:
        return targets, lambda P: [P[:, j] for j in range(P.shape[1])]
    target = targets[0]
    if proba:
        names = [f"{target}={label}" for label in classes]
        if outputs == 1:  # one sigmoid unit: the probability of the second class
            return names, lambda P: [1.0 - P[:, 0], P[:, 0]]
        return names, lambda P: [P[:, j] for j in range(P.shape[1])]
    if outputs == 1:
        return [target], lambda P: [classes[(P[:, 0] >= 0.5).astype(np.intp)]]
    return [target], lambda P: [classes[P.argmax(axis=1)]]


def predict(args):
    """``fastnet predict``: stream DATA through the model into the output."""
    from fastnet import io
    net, extra = load_model(args.model)
    if args.proba and extra["classes"] is None:
        raise io.DataError(f"--proba: {args.model} is not a classifier trained on labels; drop --proba")
    if args.chunk_rows < 1:
        raise io.DataError(f"--chunk-rows {args.chunk_rows}: must be at least 1")
    names, columns = output_columns(net.layers[-1], extra, args.proba)
    writer = io.PredictionWriter(args.out, names, stream=sys.stdout if args.out is None else None)
    done = False
    try:
        for X in io.feature_chunks(args.data, extra["features"] or None, net.layers[0], net.dtype,
                                   args.chunk_rows):
            writer.write(columns(net.predict(X)))
        done = True
    finally:
        writer.close(commit=done)
    if args.out is not None:
        print(f"wrote {writer.rows:,} predictions to {args.out}", file=sys.stderr)
    return 0


EVALUATE_EXAMPLE = """\
example:
  fastnet evaluate iris.npz test.csv --target species

Prints the model's loss on DATA (as Network.evaluate) and, for a classifier,
its accuracy.  --target defaults to the column the model was trained on.
"""


def add_evaluate(commands):
    """The ``evaluate`` subcommand's options."""
    p = commands.add_parser("evaluate", help="the loss (and accuracy) of a model on a data file",
                            description="Score a saved model on labelled data.", epilog=EVALUATE_EXAMPLE)
    p.add_argument("model", metavar="MODEL.npz")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--target", type=listed(str, "--target"), help="the target column(s)")
    p.add_argument("--y", dest="y_path", metavar="Y.npy", help="targets of .npy features")
    p.set_defaults(run=evaluate)


def evaluate(args):
    """``fastnet evaluate``: loss and, for classifiers, accuracy."""
    from fastnet import io
    net, extra = load_model(args.model)
    target = args.target or extra["targets"]
    X, y, _, _ = read_training_data(args.data, target, extra["features"] or None, args.y_path, net.dtype.name)
    if X.shape[1] != net.layers[0]:
        raise io.DataError(f"DATA {args.data}: has {X.shape[1]} feature columns; the model takes {net.layers[0]}")
    classes = extra["classes"]
    if classes is None:
        Y = np.asarray(y, dtype=net.dtype).reshape(len(y), -1)
        print(f"loss ({net.loss}): {net.evaluate(X, Y)!r}")
        return 0
    y = np.asarray(y)
    index = np.searchsorted(classes, y)
    index[index >= classes.size] = 0
    unknown = classes[index] != y
    if unknown.any():
        raise io.DataError(f"{args.data}: target {target[0]!r} holds the label {y[unknown][0]!r} in data row "
                           f"{int(np.flatnonzero(unknown)[0]) + 1}, which the model never saw "
                           f"(its classes: {', '.join(map(str, classes))})")
    Y = index.reshape(-1, 1).astype(net.dtype) if net.layers[-1] == 1 else np.eye(classes.size, dtype=net.dtype)[index]
    outputs = net.predict(X)
    predicted = (outputs[:, 0] >= 0.5).astype(np.intp) if net.layers[-1] == 1 else outputs.argmax(axis=1)
    correct = int((predicted == index).sum())
    print(f"loss ({net.loss}): {net.evaluate(X, Y)!r}")
    print(f"accuracy: {correct / len(index)!r} ({correct} of {len(index)} rows)")
    return 0


# -- info ---------------------------------------------------------------------------------


INFO_EXAMPLE = """\
example:
  fastnet info iris.npz
"""


def add_info(commands):
    """The ``info`` subcommand's options."""
    p = commands.add_parser("info", help="what a model file holds", description="Describe a saved model.",
                            epilog=INFO_EXAMPLE)
    p.add_argument("model", metavar="MODEL.npz")
    p.set_defaults(run=info)


def info(args):
    """``fastnet info``: layers, activations, loss, dtype, backend, parameters, history."""
    net, extra = load_model(args.model)
    state = net.state()
    n_params = sum(w.size for w in net.weights) + sum(b.size for b in (net.biases or []))
    lines = [f"model: {args.model}",
             f"layers: {net.layers}",
             f"activations: {net.activation} hidden, {net.output} output",
             f"loss: {net.loss}",
             f"dtype: {net.dtype.name}",
             f"backend: {net.backend}",
             f"parameters: {n_params:,}" + ("" if net.biases is not None else " (no biases)"),
             f"optimizer: {state['optimizer']['name'] if state['optimizer'] else 'none (never trained)'}"]
    if extra["features"]:
        lines.append(f"features: {', '.join(extra['features'])}")
    if extra["targets"]:
        lines.append(f"target: {', '.join(extra['targets'])}")
    if extra["classes"] is not None:
        lines.append(f"classes: {', '.join(map(str, extra['classes']))}")
    history = extra["history"]
    if history and history["loss"]:
        loss = history["loss"]
        text = (f"history: {len(loss)} epochs in {sum(history['time']):.2f} s, training loss "
                f"{loss[0]:.6g} -> {loss[-1]:.6g}")
        if history["val_loss"]:
            val = history["val_loss"]
            text += f", validation loss {val[-1]:.6g} (lowest {min(val):.6g} at epoch {int(np.argmin(val)) + 1})"
        lines.append(text)
    print("\n".join(lines))
    return 0


# -- bench ----------------------------------------------------------------------------------


BENCH_EXAMPLE = """\
example:
  fastnet bench --layers 64,128,1 --rows 100000 --batch-size 32

Times a full-batch gradient and one epoch of mini-batch SGD for every
backend and, when installed, PyTorch, JAX and scikit-learn, in alternating
passes (see fastnet.bench), and prints a Markdown table headed by the
machine and versions.  --quick: 10,000 rows unless --rows is given, one
timed call each.  --no-peers: fastnet's backends only (importing the peers
takes seconds).
"""


def add_bench(commands):
    """The ``bench`` subcommand's options."""
    p = commands.add_parser("bench", help="time the backends and installed peers on this machine",
                            description="Benchmark fastnet's backends side by side.", epilog=BENCH_EXAMPLE)
    p.add_argument("--layers", type=listed(int, "--layers"), default=[64, 128, 1],
                   help="all layer widths, inputs first (default 64,128,1)")
    p.add_argument("--rows", type=int, help="default 100,000 (10,000 with --quick)")
    p.add_argument("--batch-size", type=int, default=32, help="default 32")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="default float64")
    p.add_argument("--rounds", type=int, default=9, help="timed calls of each gradient (default 9)")
    p.add_argument("--quick", action="store_true", help="a quick look: fewer rows, one timed call each")
    p.add_argument("--no-peers", dest="peers", action="store_false",
                   help="fastnet's backends only: no PyTorch, JAX or scikit-learn, even where installed")
    p.set_defaults(run=bench)


def bench(args):
    """``fastnet bench``: the side-by-side table."""
    from fastnet import bench as harness, io
    rows = args.rows or (10_000 if args.quick else 100_000)
    if len(args.layers) < 2 or min(args.layers) < 1 or rows < 1 or args.batch_size < 1 or args.rounds < 1:
        raise io.DataError("--layers needs at least two positive widths (e.g. 64,128,1); --rows, --batch-size "
                           "and --rounds must be positive")
    print(harness.machine_line(args.peers))
    print(f"\n### {args.layers}, {rows:,} rows, {args.dtype}: full-batch gradient and one epoch of SGD, "
          f"batch {args.batch_size} (median ms)\n")
    times = harness.side_by_side(args.layers, rows, args.batch_size, args.dtype, args.rounds, args.quick,
                                 peers=args.peers)
    print(harness.markdown_table(times))
    return 0


# -- the command ----------------------------------------------------------------------------


def add_article(commands):
    """The ``article`` subcommand (the default)."""
    p = commands.add_parser("article", help="walk through the blog's example on every backend (the default)",
                            description="Print the worked example of the blog series on every backend.",
                            epilog="example:\n  fastnet article")
    p.set_defaults(run=article)


def article(args):
    """``fastnet article``: the walkthrough, as ``python -m fastnet`` always printed it."""
    from fastnet.article import walkthrough
    print(walkthrough())
    return 0


def parser():
    """The ``fastnet`` argument parser with every subcommand."""
    top = Parser(prog="fastnet", description="fastnet: train and use neural networks from the command line.",
                 epilog="examples:\n  fastnet article\n  fastnet train data.csv --target label --out model.npz\n"
                        "  fastnet predict model.npz new.csv --out predictions.csv\n"
                        "  fastnet bench --quick\n\n`fastnet COMMAND --help` shows each command's options.")
    top.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for add in (add_article, add_train, add_predict, add_evaluate, add_info, add_bench):
        add(commands)
    for sub in commands.choices.values():
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show the traceback of an error")
    return top


def main(argv=None):
    """Run the command in ``argv`` (default sys.argv[1:]); returns the exit status."""
    args = parser().parse_args(argv)
    if args.command is None:
        args.run = article
    try:
        return args.run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"fastnet {args.command or 'article'}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except (ValueError, TypeError, OSError, ImportError) as error:
        if args.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"fastnet {args.command or 'article'}: error: {message}", file=sys.stderr)
        return BAD_INPUT
