"""The ``fastnet`` command line, run as a separate process on small files made here.

Expected values come from the Python API (the same seed gives the same
network), from NumPy on the files' data, or from pyarrow/pandas/matplotlib
reading the outputs back.  The subprocesses share the test process's Numba
cache, so each kernel compiles once; the networks are tiny and most runs use
the NumPy reference backend, which compiles nothing.
"""

import importlib.util
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import fastnet
from fastnet import Network

#: The classes of the labelled data sets, sorted as the command line sorts them.
SPECIES = np.array(["setosa", "versicolor", "virginica"])


@pytest.fixture(scope="module")
def child_env():
    """The environment of every subprocess here.  They share the Numba cache of this
    test process (NUMBA_CACHE_DIR when set, else Numba's default folder beside the
    installed package): each kernel compiles once, and not again in later runs."""
    return dict(os.environ)


@pytest.fixture
def run(child_env, tmp_path):
    """``run(*arguments)``: ``python -m fastnet arguments...`` in tmp_path, the CompletedProcess."""
    def fastnet_command(*arguments, timeout=300):
        return subprocess.run([sys.executable, "-m", "fastnet", *map(str, arguments)], capture_output=True,
                              text=True, timeout=timeout, cwd=tmp_path, env=child_env)
    return fastnet_command


def frame(n=120, seed=0):
    """Features a, b, c (c integer), a text label ``species``, an integer label
    ``passed`` (two classes) and a real ``value``."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    data = pd.DataFrame({"a": a, "b": b, "c": rng.integers(0, 4, n)})
    data["species"] = np.where(a + b > 0.5, "setosa", np.where(a > 0, "virginica", "versicolor"))
    data["passed"] = (a - b > 0).astype(int) * 5 + 2   # the labels 2 and 7
    data["value"] = 2 * a - b + 0.1 * data["c"]
    return data


def features(data, names=("a", "b", "c")):
    return data[list(names)].to_numpy(dtype=np.float64)


def api_network(layers, backend, output, loss, X, Y, *, seed=7, epochs=3, batch_size=16, validation=None,
                activation="relu", lr=None):
    """What ``fastnet train`` should produce, made with the Python API."""
    net = Network(layers, backend=backend, activation=activation, output=output, loss=loss, seed=seed)
    net.fit(X, Y, epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr, validation_data=validation)
    return net


def assert_ok(done):
    assert done.returncode == 0, done.stderr


def read_predictions(path):
    """A predictions file as a DataFrame (a .npy as one column per array column)."""
    if str(path).endswith(".npy"):
        array = np.load(path)
        return pd.DataFrame(array.reshape(len(array), -1))
    return pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)


# =========================================================================================
# train -> predict -> evaluate, against the Python API
# =========================================================================================


@pytest.mark.parametrize("source, backend", [("csv", "numpy"), ("parquet", "numba"), ("csv", "native")])
def test_text_labels_round_trip_equals_the_python_api(run, tmp_path, source, backend):
    data = frame()
    path = tmp_path / f"flowers.{source}"
    data.to_csv(path, index=False) if source == "csv" else data.to_parquet(path)
    assert_ok(run("train", path, "--target", "species", "--features", "a,b,c", "--layers", "5", "--epochs", 3,
                  "--batch-size", 16, "--seed", 7, "--backend", backend, "--out", "model.npz", "--quiet"))
    X = features(data)
    index = np.searchsorted(SPECIES, data["species"].to_numpy())
    Y = np.eye(3)[index]                                         # one-hot, classes in sorted order
    expected = api_network([3, 5, 3], backend, "softmax", "cross_entropy", X, Y)

    saved = Network.load(tmp_path / "model.npz")
    assert (saved.output, saved.loss, saved.activation) == ("softmax", "cross_entropy", "relu")
    np.testing.assert_array_equal(saved._params, expected._params)

    assert_ok(run("predict", "model.npz", path, "--out", "labels.csv"))
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert list(labels.columns) == ["species"]
    np.testing.assert_array_equal(labels["species"], SPECIES[expected.predict(X).argmax(axis=1)])

    assert_ok(run("predict", "model.npz", path, "--out", "proba.parquet", "--proba"))
    proba = pd.read_parquet(tmp_path / "proba.parquet")
    assert list(proba.columns) == [f"species={name}" for name in SPECIES]
    np.testing.assert_array_equal(proba.to_numpy(), expected.predict(X))

    done = run("evaluate", "model.npz", path)
    assert_ok(done)
    correct = int((expected.predict(X).argmax(axis=1) == index).sum())
    assert done.stdout.splitlines() == [f"loss (cross_entropy): {expected.evaluate(X, Y)!r}",
                                        f"accuracy: {correct / len(X)!r} ({correct} of {len(X)} rows)"]


def test_two_integer_classes_get_one_sigmoid_unit_and_bce(run, tmp_path):
    data = frame(seed=1)
    data.to_parquet(tmp_path / "exam.parquet")
    assert_ok(run("train", "exam.parquet", "--target", "passed", "--features", "a,b", "--layers", "4",
                  "--backend", "numpy", "--seed", 7, "--out", "exam.npz", "--quiet"))
    X = features(data, ("a", "b"))
    Y = (data["passed"].to_numpy() == 7).astype(float).reshape(-1, 1)
    expected = api_network([2, 4, 1], "numpy", "sigmoid", "bce", X, Y, epochs=10, batch_size=32)  # the defaults
    np.testing.assert_array_equal(Network.load(tmp_path / "exam.npz")._params, expected._params)
    assert_ok(run("predict", "exam.npz", "exam.parquet", "--out", "passed.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "passed.npy"),
                                  np.where(expected.predict(X)[:, 0] >= 0.5, 7, 2))


def test_npy_regression_with_validation_round_trip(run, tmp_path):
    data = frame(seed=2)
    X, y = features(data), data["value"].to_numpy()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    assert_ok(run("train", "X.npy", "--y", "y.npy", "--layers", "4,3", "--activation", "tanh", "--backend", "numpy",
                  "--validation-split", "0.25", "--epochs", 4, "--lr", "0.01", "--seed", 7,
                  "--out", "reg.npz", "--history", "history.csv", "--quiet"))
    expected = Network([3, 4, 3, 1], backend="numpy", activation="tanh", output="linear", loss="mse", seed=7)
    history = expected.fit(X[:90], y[:90], epochs=4, batch_size=32, optimizer="adam", lr=0.01,
                           validation_data=(X[90:], y[90:]))
    np.testing.assert_array_equal(Network.load(tmp_path / "reg.npz")._params, expected._params)
    written = pd.read_csv(tmp_path / "history.csv")
    assert list(written["epoch"]) == [1, 2, 3, 4]
    np.testing.assert_array_equal(written["loss"], history.loss)
    np.testing.assert_array_equal(written["val_loss"], history.val_loss)

    assert_ok(run("predict", "reg.npz", "X.npy"))                          # CSV on stdout
    from io import StringIO
    np.testing.assert_array_equal(pd.read_csv(StringIO(run("predict", "reg.npz", "X.npy").stdout))["y"],
                                  expected.predict(X)[:, 0])
    done = run("evaluate", "reg.npz", "X.npy", "--y", "y.npy")
    assert done.stdout == f"loss (mse): {expected.evaluate(X, y)!r}\n"


@pytest.mark.parametrize("source", ["csv", "parquet", "npy"])
def test_predict_in_chunks_equals_predicting_all_rows_at_once(run, tmp_path, source):
    data = frame(n=1000, seed=3)
    X = features(data)
    net = Network([3, 4, 1], backend="numpy", output="linear", loss="mse", seed=3)
    net.save(tmp_path / "plain.npz")                  # a model saved by the API: no column names
    path = tmp_path / f"rows.{source}"
    if source == "npy":
        np.save(path, X)
    elif source == "csv":
        data[["a", "b", "c"]].to_csv(path, index=False)
    else:
        data[["a", "b", "c"]].to_parquet(path, row_group_size=300)
    assert_ok(run("predict", "plain.npz", path, "--chunk-rows", 64, "--out", "out.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), net.predict(X)[:, 0])


def test_info_describes_the_model_and_its_history(run, tmp_path):
    data = frame(seed=4)
    data.to_csv(tmp_path / "flowers.csv", index=False)
    assert_ok(run("train", "flowers.csv", "--target", "species", "--features", "a,b", "--layers", "3",
                  "--backend", "numpy", "--epochs", 2, "--validation-split", "0.2", "--out", "m.npz", "--quiet"))
    done = run("info", "m.npz")
    assert_ok(done)
    lines = done.stdout.splitlines()
    n_params = 2 * 3 + 3 + 3 * 3 + 3
    for expected in ["layers: [2, 3, 3]", "activations: relu hidden, softmax output", "loss: cross_entropy",
                     "dtype: float64", "backend: numpy", f"parameters: {n_params}", "optimizer: adam",
                     "features: a, b", "target: species", "classes: setosa, versicolor, virginica"]:
        assert expected in lines
    assert any(line.startswith("history: 2 epochs") and "validation loss" in line for line in lines)


def test_info_on_a_file_saved_by_the_api(run, tmp_path):
    Network([4, 2, 1], backend="numpy", bias=False).save(tmp_path / "api.npz")
    done = run("info", "api.npz")
    assert_ok(done)
    assert "parameters: 10 (no biases)" in done.stdout and "optimizer: none (never trained)" in done.stdout


def test_early_stopping_keeps_the_best_epoch(run, tmp_path):
    data = frame(seed=5)
    data.to_csv(tmp_path / "d.csv", index=False)
    # A large learning rate makes the validation loss rise after a few epochs.
    assert_ok(run("train", "d.csv", "--target", "value", "--features", "a,b,c", "--layers", "8", "--backend", "numpy",
                  "--lr", "0.5", "--epochs", 40, "--validation-split", "0.3", "--early-stopping", "--patience", 2,
                  "--history", "h.csv", "--out", "m.npz", "--quiet"))
    history = pd.read_csv(tmp_path / "h.csv")
    best = int(history["val_loss"].idxmin())
    assert len(history) == best + 3                   # stopped 2 epochs after the best one
    X, y = features(data), data["value"].to_numpy()
    kept = Network.load(tmp_path / "m.npz")
    assert kept.evaluate(X[84:], y[84:]) == history["val_loss"][best]


# =========================================================================================
# pictures, bench, Ctrl-C
# =========================================================================================


def test_plot_writes_a_png_with_a_point_per_epoch(run, tmp_path):
    import matplotlib.image
    from PIL import Image
    frame(seed=6).to_csv(tmp_path / "d.csv", index=False)
    assert_ok(run("train", "d.csv", "--target", "value", "--features", "a,b", "--backend", "numpy", "--epochs", 6,
                  "--validation-split", "0.2", "--plot", "curves.png", "--out", "m.npz", "--quiet"))
    pixels = matplotlib.image.imread(tmp_path / "curves.png")
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert Image.open(tmp_path / "curves.png").text["Description"] == "loss: 6 points, val_loss: 6 points"


def test_history_plot_draws_both_curves_per_epoch():
    from matplotlib.figure import Figure
    history = fastnet.History(loss=[3.0, 2.0, 1.5], val_loss=[3.5, 2.5, 2.0], time=[0.1, 0.1, 0.1])
    ax = history.plot(Figure().add_subplot())
    (train, val) = ax.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(train.get_ydata(), history.loss)
    np.testing.assert_array_equal(val.get_ydata(), history.val_loss)
    assert ax.get_xlabel() == "epoch"


def test_history_plot_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"fastnet-kernels\[plot\]"):
        fastnet.History(loss=[1.0]).plot()


def bench_rows(done):
    """``fastnet bench``'s table rows by contender, after checking the machine line."""
    assert_ok(done)
    lines = done.stdout.splitlines()
    assert "numba" in lines[0] and "numpy" in lines[0]         # the machine and versions
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "contender" not in line}
    for backend in ("numpy", "numba", "native"):
        cells = [cell.strip() for cell in rows[backend].split("|")[2:-1]]
        assert float(cells[0]) > 0 and float(cells[2]) > 0     # gradient and epoch milliseconds
    assert rows["numba"].count("1.00x") == 2
    return rows


def test_bench_quick_without_peers_prints_a_row_per_backend_only(run):
    done = run("bench", "--quick", "--no-peers", "--layers", "3,4,1", "--rows", 300, "--batch-size", 16)
    assert set(bench_rows(done)) == {"numpy", "numba", "native"}
    assert "torch" not in done.stdout and "sklearn" not in done.stdout


@pytest.mark.slow
def test_bench_quick_prints_a_row_per_backend_and_installed_peer(run):
    done = run("bench", "--quick", "--layers", "3,4,1", "--rows", 300, "--batch-size", 16)
    # The test extras install PyTorch and scikit-learn; JAX is the peers extra's.
    jax = {"jax"} if importlib.util.find_spec("jax") else set()
    assert set(bench_rows(done)) == {"numpy", "numba", "native", "torch", "sklearn"} | jax


def default_sigint():
    """In the child before it runs Python: SIGINT's default action, whatever the test
    runner's process ignores (Python then installs its KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_saves_the_last_completed_epoch_and_exits_130(child_env, tmp_path):
    data = frame(seed=8)
    data.to_csv(tmp_path / "d.csv", index=False)
    log = open(tmp_path / "stderr.txt", "w")
    child = subprocess.Popen([sys.executable, "-m", "fastnet", "train", "d.csv", "--target", "value", "--features",
                              "a,b,c", "--layers", "3", "--backend", "numpy", "--batch-size", "0", "--epochs",
                              str(10**7), "--out", "m.npz"], cwd=tmp_path, stderr=log, stdout=subprocess.PIPE, text=True,
                             env=child_env, preexec_fn=default_sigint)
    deadline = time.monotonic() + 240                  # a cold start on a busy machine is slow
    while "loss=" not in (tmp_path / "stderr.txt").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)                                # until the bar shows a completed epoch
    child.send_signal(signal.SIGINT)
    try:
        status = child.wait(timeout=120)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail("the child went on after SIGINT; its stderr ends: "
                    + (tmp_path / "stderr.txt").read_text()[-500:])
    assert status == 130, (tmp_path / "stderr.txt").read_text()[-500:]
    log.close()
    message = (tmp_path / "stderr.txt").read_text().split("\r")[-1].strip().splitlines()[-1]
    assert message.startswith("fastnet train: interrupted; saved the network after ")
    epochs = int(message.split("after ")[1].split()[0])
    assert epochs >= 1
    expected = Network([3, 3, 1], backend="numpy", activation="relu", output="linear", loss="mse", seed=0)
    expected.fit(features(data), data["value"].to_numpy(), epochs=epochs, optimizer="adam")
    np.testing.assert_array_equal(Network.load(tmp_path / "m.npz")._params, expected._params)
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".fastnet-")]


# =========================================================================================
# Bad input: one line naming what to change, status 2, no traceback, no output file
# =========================================================================================


@pytest.fixture
def files(tmp_path):
    """A good CSV, one with text and NaN in feature columns, a saved model, a foreign .npz."""
    data = frame(seed=9)
    data.to_csv(tmp_path / "good.csv", index=False)
    broken = data.copy()
    broken.loc[17, "b"] = np.nan
    broken.to_csv(tmp_path / "nan.csv", index=False)
    Network([3, 2, 1], backend="numpy").save(tmp_path / "model.npz")
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    np.save(tmp_path / "two.npy", np.ones((5, 2)))
    (tmp_path / "notes.txt").write_text("a,b\n1,2\n")
    return tmp_path


BAD_INPUT = {
    "missing file": (["train", "absent.csv", "--target", "a", "--out", "m.npz"], ["absent.csv", "no such file"]),
    "unknown extension": (["train", "notes.txt", "--target", "a", "--out", "m.npz"],
                          ["notes.txt", "'.txt'", ".csv"]),
    "missing target": (["train", "good.csv", "--target", "label", "--out", "m.npz"],
                       ["good.csv", "'label'", "--target"]),
    "text feature": (["train", "good.csv", "--target", "value", "--out", "m.npz"],
                     ["good.csv", "'species'", "--features"]),
    "NaN feature": (["train", "nan.csv", "--target", "value", "--features", "a,b", "--out", "m.npz"],
                    ["nan.csv", "'b'", "row 18"]),
    "out folder missing": (["train", "good.csv", "--target", "value", "--features", "a,b", "--out",
                            "nowhere/m.npz"], ["--out", "nowhere", "does not exist"]),
    "not a model": (["predict", "foreign.npz", "good.csv"], ["foreign.npz", "not a valid fastnet network"]),
    "feature count": (["predict", "model.npz", "two.npy", "--out", "p.csv"], ["two.npy", "3 feature columns"]),
    "predict out folder missing": (["predict", "model.npz", "good.csv", "--out", "nowhere/p.csv"],
                                   ["--out", "nowhere"]),
    "bad option value": (["train", "good.csv", "--target", "value", "--layers", "8,x", "--out", "m.npz"],
                         ["--layers", "'8,x'"]),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_status_2_and_no_output(run, files, case):
    arguments, named = BAD_INPUT[case]
    before = set(os.listdir(files))
    done = run(*arguments)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    for word in named:
        assert word in done.stderr
    assert done.stdout == ""
    assert set(os.listdir(files)) == before           # no partial output, no temporary file


def test_debug_shows_the_traceback(run, files):
    done = run("train", "absent.csv", "--target", "a", "--out", "m.npz", "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_network_save_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="the folder .*nowhere does not exist"):
        Network([2, 1]).save(tmp_path / "nowhere" / "m.npz")
    assert os.listdir(tmp_path) == []


# =========================================================================================
# help and the article
# =========================================================================================


@pytest.mark.parametrize("command", ["article", "train", "predict", "evaluate", "info", "bench"])
def test_every_subcommand_help_shows_an_example(command, capsys):
    from fastnet import cli
    with pytest.raises(SystemExit) as exit:
        cli.main([command, "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text and f"  fastnet {command}" in text


def test_article_is_still_the_default_command(capsys):
    from fastnet import article, cli
    assert cli.main([]) == 0
    first = capsys.readouterr().out
    assert cli.main(["article"]) == 0
    assert first == capsys.readouterr().out == article.walkthrough() + "\n"


@pytest.mark.slow
def test_python_m_fastnet_article_in_a_fresh_process(run):
    from fastnet import article
    done = run("article")
    assert_ok(done)
    assert done.stdout == article.walkthrough() + "\n"


def test_import_fastnet_imports_no_optional_package(tmp_path):
    code = ("import sys, fastnet, fastnet.cli, fastnet.io, fastnet.bench; "
            "print([m for m in ('pyarrow', 'pandas', 'matplotlib', 'tqdm', 'torch', 'sklearn') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout.strip() == "[]", done.stderr
