"""Network.save / Network.load: round trips, resuming training, atomic writes, damaged files.

A saved file is one .npz of plain arrays.  Loading it gives the same network
(bit for bit) with the same settings, the same random generator and the same
optimizer state, so training resumes exactly where it stopped.  A save that
is interrupted leaves any earlier file whole, and every kind of damaged,
foreign or tampered file is refused with a ValueError naming the file
(FileNotFoundError for a missing one), never by running code from it.
"""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from fastnet import Network

from conftest import (BACKENDS, assert_close_normwise, assert_parameters_equal, parameters_copy,
                      random_data)

#: (layers, bias, derivative, loss): the settings a file must carry.
SETTINGS = [
    ([3, 5, 2], True, "exact", "mse"),
    ([4, 1], False, "article", "sse"),
    ([2, 3, 3, 1], True, "exact", "bce"),
]


def settings_id(settings):
    layers, bias, derivative, loss = settings
    return f"{'-'.join(map(str, layers))}-{'bias' if bias else 'nobias'}-{derivative}-{loss}"


def make_network(backend, settings=SETTINGS[0], seed=7):
    layers, bias, derivative, loss = settings
    return Network(layers, backend=backend, bias=bias, derivative=derivative, loss=loss, seed=seed)


def data_for(net, n=40, seed=3):
    return random_data(net.layers, n, seed=seed)


def assert_same_settings(loaded, original, backend=None):
    assert loaded.layers == original.layers
    assert loaded.backend == (original.backend if backend is None else backend)
    assert loaded.derivative == original.derivative
    assert str(loaded.loss) == str(original.loss)
    assert (loaded.biases is None) == (original.biases is None)
    assert loaded.dtype == original.dtype


def assert_same_params(a, b):
    """Two networks hold bit-identical weights and biases."""
    assert_parameters_equal(a, parameters_copy(b))


# -- round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", SETTINGS, ids=settings_id)
def test_round_trip_gives_the_same_network(backend, settings, tmp_path):
    net = make_network(backend, settings)
    X, y = data_for(net)
    net.fit(X, y, epochs=2, batch_size=8, lr=0.5, seed=1)       # parameters that are not the initial ones
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = Network.load(path)
    assert_same_settings(loaded, net)
    assert_same_params(loaded, net)
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))
    for a, b in zip(loaded.activations(X), net.activations(X)):
        np.testing.assert_array_equal(a, b)
    assert loaded.evaluate(X, y) == net.evaluate(X, y)
    dW_loaded, db_loaded = loaded.gradients(X, y)
    dW, db = net.gradients(X, y)
    for a, b in zip(dW_loaded + (db_loaded or []), dW + (db or [])):
        np.testing.assert_array_equal(a, b)


def test_float32_network_round_trips_and_resumes(backend, tmp_path):
    net = Network([4, 6, 2], backend=backend, dtype="float32", loss="bce", seed=8)
    X, y = random_data(net.layers, 40, seed=9)
    net.fit(X, y, epochs=2, batch_size=8, optimizer="adam", seed=1)
    net.save(tmp_path / "net.npz")
    loaded = Network.load(tmp_path / "net.npz")
    assert loaded.dtype == np.float32 and all(w.dtype == np.float32 for w in loaded.weights + loaded.biases)
    assert_same_params(loaded, net)
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))
    net.partial_fit(X, y, batch_size=8, optimizer="adam", seed=2)
    loaded.partial_fit(X, y, batch_size=8, optimizer="adam", seed=2)
    assert_same_params(loaded, net)


def test_round_trip_accepts_str_and_pathlike(backend, tmp_path):
    net = make_network(backend)
    net.save(str(tmp_path / "as-str.npz"))
    net.save(tmp_path / "as-path.npz")
    for name in ("as-str.npz", "as-path.npz"):
        assert_same_params(Network.load(str(tmp_path / name)), net)
        assert_same_params(Network.load(tmp_path / name), net)


def test_save_overwrites_and_leaves_no_temporary_files(backend, tmp_path):
    net = make_network(backend)
    X, y = data_for(net)
    path = tmp_path / "net.npz"
    net.save(path)
    net.step(X, y, lr=1.0)
    net.save(path)
    assert sorted(os.listdir(tmp_path)) == ["net.npz"]
    assert_same_params(Network.load(path), net)


def test_saved_file_holds_the_documented_fields_and_no_pickle(backend, tmp_path):
    net = make_network(backend)
    X, y = data_for(net)
    net.fit(X, y, epochs=1, batch_size=8, optimizer="adam", seed=0)
    path = tmp_path / "net.npz"
    net.save(path)
    with np.load(path, allow_pickle=False) as archive:      # would raise on any object array
        fields = {key: archive[key] for key in archive.files}
    for key in ("layers", "params", "bias", "dtype", "derivative", "loss", "backend", "format_version",
                "rng_state", "optimizer", "optimizer_state"):
        assert key in fields, f"the file has no field {key!r}: {sorted(fields)}"
    assert all(value.dtype.kind != "O" for value in fields.values())
    assert list(fields["layers"]) == net.layers
    assert str(fields["backend"]) == backend
    assert str(fields["loss"]) == "mse" and str(fields["derivative"]) == "exact"


@pytest.mark.parametrize("source", BACKENDS)
def test_load_with_another_backend(source, backend, tmp_path):
    net = make_network(source, SETTINGS[2])
    X, y = data_for(net)
    net.fit(X, y, epochs=2, batch_size=8, optimizer="momentum", seed=2)
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = Network.load(path, backend=backend)
    assert_same_settings(loaded, net, backend=backend)
    assert_same_params(loaded, net)
    # backends agree to 1e-12 (bitwise only within one backend)
    assert_close_normwise(loaded.forward(X), net.forward(X))
    # training continues on the new backend like on a fresh network of that backend with these parameters
    twin = Network.load(path, backend=backend)
    loaded.partial_fit(X, y, batch_size=8, optimizer="momentum", seed=3)
    twin.partial_fit(X, y, batch_size=8, optimizer="momentum", seed=3)
    assert_same_params(loaded, twin)
    # saving again records the new backend
    loaded.save(tmp_path / "again.npz")
    assert Network.load(tmp_path / "again.npz").backend == backend


def test_a_fresh_network_without_optimizer_round_trips(backend, tmp_path):
    net = make_network(backend)
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = Network.load(path)
    assert_same_params(loaded, net)
    X, y = data_for(net)
    net.partial_fit(X, y, batch_size=8, optimizer="adam", seed=4)
    loaded.partial_fit(X, y, batch_size=8, optimizer="adam", seed=4)
    assert_same_params(loaded, net)


# -- resuming training ------------------------------------------------------------------------

def trained_saved_and_loaded(backend, optimizer, tmp_path):
    """(net, loaded, X, y): a network after two epochs with ``optimizer``, and its copy through a file."""
    net = make_network(backend, SETTINGS[0], seed=5)
    X, y = data_for(net, n=50)
    net.fit(X, y, epochs=2, batch_size=8, optimizer=optimizer, seed=11)
    path = tmp_path / "net.npz"
    net.save(path)
    return net, Network.load(path), X, y


@pytest.mark.parametrize("optimizer", ["adam", "momentum", "sgd"])
@pytest.mark.parametrize("shuffle_seed", [21, None], ids=["fit-seed", "network-generator"])
def test_training_resumes_exactly_after_load(backend, optimizer, shuffle_seed, tmp_path):
    """fit, save, load, then partial_fit on both: bit-identical parameters.

    With ``seed=None`` partial_fit shuffles with the network's own generator, so
    this also checks that the generator's state was saved.
    """
    net, loaded, X, y = trained_saved_and_loaded(backend, optimizer, tmp_path)
    for _ in range(2):
        history = net.partial_fit(X, y, batch_size=8, optimizer=optimizer, seed=shuffle_seed)
        loaded_history = loaded.partial_fit(X, y, batch_size=8, optimizer=optimizer, seed=shuffle_seed)
        assert loaded_history.loss == history.loss
        assert_same_params(loaded, net)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_resuming_uses_the_saved_optimizer_state(backend, optimizer, tmp_path):
    """The resume test above can fail: the same weights with a fresh optimizer train differently."""
    net, loaded, X, y = trained_saved_and_loaded(backend, optimizer, tmp_path)
    weights, biases = parameters_copy(net)
    fresh = Network(net.layers, backend=backend, weights=weights, biases=biases, loss=net.loss)
    loaded.partial_fit(X, y, batch_size=8, optimizer=optimizer, seed=12)
    fresh.partial_fit(X, y, batch_size=8, optimizer=optimizer, seed=12)
    assert not np.array_equal(loaded.weights[0], fresh.weights[0])


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_checkpoint_saved_by_a_callback_resumes_exactly(backend, optimizer, tmp_path):
    """Save from fit's callback after epoch 1; the file continues like the run itself did."""
    net = make_network(backend, SETTINGS[0], seed=5)
    X, y = data_for(net, n=50)
    path = tmp_path / "checkpoint.npz"

    def checkpoint(epoch, history):
        if epoch == 1:
            net.save(path)

    settings = dict(batch_size=8, optimizer=optimizer, lr=0.05, shuffle=False)
    history = net.fit(X, y, epochs=4, callback=checkpoint, **settings)
    resumed = Network.load(path)
    resumed_history = [resumed.partial_fit(X, y, **settings).loss[0] for _ in range(2)]
    assert resumed_history == history.loss[2:]
    assert_same_params(resumed, net)


# -- interrupted saves ------------------------------------------------------------------------

@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()], ids=["OSError", "KeyboardInterrupt"])
@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_interrupted_save_leaves_the_old_file(backend, tmp_path, monkeypatch, failure, where):
    old = make_network(backend, seed=1)
    path = tmp_path / "net.npz"
    old.save(path)
    old_bytes = path.read_bytes()
    new = make_network(backend, seed=2)
    assert not np.array_equal(new.weights[0], old.weights[0])

    def interrupted(*args, **kwargs):
        raise failure

    # between writing the temporary file and renaming it over the old one
    monkeypatch.setattr(os, where, interrupted)
    with pytest.raises(type(failure)):
        new.save(path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["net.npz"], "a temporary file was left behind"
    assert path.read_bytes() == old_bytes
    assert_same_params(Network.load(path), old)
    # and the network that failed to save can still save
    new.save(path)
    assert_same_params(Network.load(path), new)


def test_save_that_fails_while_writing_leaves_the_old_file(backend, tmp_path, monkeypatch):
    old = make_network(backend, seed=1)
    path = tmp_path / "net.npz"
    old.save(path)
    real_savez = np.savez

    def half_written(file, *args, **kwargs):
        buffer = io.BytesIO()
        real_savez(buffer, *args, **kwargs)
        file.write(buffer.getvalue()[:100])
        raise OSError("no space left on device")

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(OSError):
        make_network(backend, seed=2).save(path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["net.npz"]
    assert_same_params(Network.load(path), old)


# -- damaged, foreign and tampered files -------------------------------------------------------

def saved_fields(backend, tmp_path, optimizer="adam"):
    """The fields of a freshly saved (trained) network, as a dict of arrays."""
    net = make_network(backend)
    X, y = data_for(net)
    if optimizer is not None:
        net.fit(X, y, epochs=1, batch_size=8, optimizer=optimizer, seed=0)
    path = tmp_path / "original.npz"
    net.save(path)
    with np.load(path, allow_pickle=False) as archive:
        fields = {key: archive[key] for key in archive.files}
    path.unlink()
    return fields


def edited(**changes):
    """A damage that saves the network's fields with some replaced (None: removed)."""
    def damage(fields, path):
        fields = dict(fields)
        for key, value in changes.items():
            if value is None:
                fields.pop(key)
            else:
                fields[key] = value
        np.savez(path, **fields)
    return damage


def raw_bytes(make):
    """A damage that replaces the whole file with ``make(original bytes)``."""
    def damage(fields, path):
        buffer = io.BytesIO()
        np.savez(buffer, **fields)
        path.write_bytes(make(buffer.getvalue()))
    return damage


def flipped_byte_in_params(data):
    fields = np.load(io.BytesIO(data))
    params = fields["params"].tobytes()
    start = data.find(params)
    assert start > 0
    data = bytearray(data)
    data[start + len(params) // 2] ^= 0xFF
    return bytes(data)


def plain_npy(fields, path):
    with open(path, "wb") as stream:
        np.save(stream, fields["params"])


def unrelated_npz(fields, path):
    np.savez(path, a=np.arange(3.0), b=np.ones((2, 2)))


REQUIRED_FIELDS = ["format", "format_version", "layers", "params", "bias", "dtype", "derivative", "loss",
                   "backend", "rng_state"]
OPTIMIZER_FIELDS = ["optimizer_hyper", "optimizer_state", "optimizer_step"]

DAMAGES = {
    "empty-file": raw_bytes(lambda data: b""),
    "truncated-to-10-bytes": raw_bytes(lambda data: data[:10]),
    "truncated-to-half": raw_bytes(lambda data: data[:len(data) // 2]),
    "truncated-by-one-byte": raw_bytes(lambda data: data[:-1]),
    "truncated-before-central-directory": raw_bytes(lambda data: data[:data.rfind(b"PK\x01\x02")]),
    "random-bytes": raw_bytes(lambda data: np.random.default_rng(0).bytes(len(data))),
    "random-bytes-after-zip-magic": raw_bytes(lambda data: b"PK\x03\x04" + np.random.default_rng(1).bytes(500)),
    "random-bytes-after-npy-magic": raw_bytes(lambda data: b"\x93NUMPY\x01\x00" + np.random.default_rng(2).bytes(500)),
    "flipped-byte-in-params": raw_bytes(flipped_byte_in_params),
    "plain-npy": plain_npy,
    "unrelated-npz": unrelated_npz,
    **{f"missing-{key}": edited(**{key: None}) for key in REQUIRED_FIELDS + OPTIMIZER_FIELDS},
    "params-one-too-many": edited(params=np.zeros(33)),
    "params-one-too-few": edited(params=np.zeros(31)),
    "params-2-d": edited(params=np.zeros((2, 16))),
    "params-for-other-layers": edited(layers=np.array([3, 4, 2])),
    "params-nan": edited(params=np.r_[np.zeros(31), np.nan]),
    "params-inf": edited(params=np.r_[-np.inf, np.zeros(31)]),
    "format-version-2": edited(format_version=np.array(2)),
    "format-version-0": edited(format_version=np.array(0)),
    "format-of-another-program": edited(format=np.array("keras-weights")),
    "unknown-loss": edited(loss=np.array("mae")),
    "unknown-derivative": edited(derivative=np.array("approx")),
    "unknown-backend": edited(backend=np.array("torch")),
    "unknown-dtype": edited(dtype=np.array("float16")),
    "unknown-optimizer": edited(optimizer=np.array("rmsprop")),
    "layers-with-a-zero-width": edited(layers=np.array([3, 0, 2])),
    "layers-of-one-width": edited(layers=np.array([3])),
    # 4*2**62 + 2**62*4 + 4*1 wraps to 4 in int64: a 4-element params must not pass for these layers
    "layers-whose-size-overflows": edited(layers=np.array([4, 2**62, 4, 1]), bias=np.array(False),
                                          params=np.zeros(4), optimizer=None, optimizer_hyper=None,
                                          optimizer_state=None, optimizer_step=None),
    "layers-as-float": edited(layers=np.array([3.0, 5.0, 2.0])),
    "layers-as-strings": edited(layers=np.array(["3", "5", "2"])),
    "params-as-int": edited(params=np.zeros(32, dtype=np.int64)),
    "params-as-complex": edited(params=np.zeros(32, dtype=np.complex128)),
    "params-as-strings": edited(params=np.full(32, "0.5")),
    "bias-as-int": edited(bias=np.array(1)),
    "bias-as-string": edited(bias=np.array("True")),
    "format-version-as-float": edited(format_version=np.array(1.0)),
    "format-version-as-string": edited(format_version=np.array("1")),
    "loss-as-bytes": edited(loss=np.array(b"mse")),
    "loss-as-int": edited(loss=np.array(1)),
    "dtype-as-int": edited(dtype=np.array(64)),
    "backend-as-list": edited(backend=np.array(["numpy", "numba"])),
    "rng-state-as-int": edited(rng_state=np.array(12345)),
    "rng-state-not-json": edited(rng_state=np.array("{not json")),
    "rng-state-of-another-generator": edited(rng_state=np.array(
        '{"bit_generator": "MT19937", "state": {"key": [1, 2], "pos": 0}}')),
    "rng-state-json-list": edited(rng_state=np.array("[1, 2, 3]")),
    "optimizer-state-wrong-shape": edited(optimizer_state=np.zeros((2, 31))),
    "optimizer-state-nan": edited(optimizer_state=np.full((2, 32), np.nan)),
    "optimizer-hyper-negative-lr": edited(optimizer_hyper=np.array([-0.1, 0.9, 0.9, 0.999, 1e-8])),
    "optimizer-hyper-short": edited(optimizer_hyper=np.array([0.1, 0.9])),
    "optimizer-step-as-float": edited(optimizer_step=np.array([3.0])),
    "optimizer-step-negative": edited(optimizer_step=np.array([-1])),
}


def test_damage_table_matches_the_saved_layout(backend, tmp_path):
    """The table above assumes [3, 5, 2] with biases packs into 32 parameters, with an adam optimizer."""
    fields = saved_fields(backend, tmp_path)
    assert fields["params"].shape == (32,)
    assert set(REQUIRED_FIELDS + OPTIMIZER_FIELDS + ["optimizer"]) <= set(fields)


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_file_is_refused_naming_the_file(backend, damage, tmp_path):
    fields = saved_fields(backend, tmp_path)
    path = tmp_path / "damaged.npz"
    DAMAGES[damage](fields, path)
    with pytest.raises(ValueError) as error:
        Network.load(path)
    assert str(path) in str(error.value), f"the message does not name the file: {error.value}"


def test_missing_file_raises_file_not_found_naming_it(tmp_path):
    path = tmp_path / "nowhere" / "net.npz"
    with pytest.raises(FileNotFoundError) as error:
        Network.load(path)
    assert str(path) in str(error.value)


def test_directory_instead_of_file_is_refused_naming_it(tmp_path):
    with pytest.raises((ValueError, IsADirectoryError)) as error:
        Network.load(tmp_path)
    assert str(tmp_path) in str(error.value)


# -- files that would run code if unpickled ---------------------------------------------------

class CreatesMarkerWhenUnpickled:
    """Unpickling this calls open(marker, "w"): the file appearing means code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_marker_payload_really_runs_when_unpickled(tmp_path):
    """The payload used below is live: plain pickle.loads does create the marker."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(np.array([CreatesMarkerWhenUnpickled(marker)], dtype=object))).tolist()
    assert marker.exists()


@pytest.mark.parametrize("field", ["params", "loss", "rng_state", "extra", "optimizer_state"])
def test_object_array_is_refused_without_unpickling(backend, field, tmp_path):
    fields = saved_fields(backend, tmp_path)
    marker = tmp_path / "marker"
    fields[field] = np.array([CreatesMarkerWhenUnpickled(marker)], dtype=object)
    path = tmp_path / "evil.npz"
    np.savez(path, **fields)                   # pickles the object array into the archive
    with zipfile.ZipFile(path) as archive:
        assert f"{field}.npy" in archive.namelist()
    with pytest.raises(ValueError) as error:
        Network.load(path)
    assert str(path) in str(error.value)
    assert not marker.exists(), "loading the file ran code from it"


def test_pickle_file_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"params": CreatesMarkerWhenUnpickled(marker)}))
    with pytest.raises(ValueError) as error:
        Network.load(path)
    assert str(path) in str(error.value)
    assert not marker.exists(), "loading the file ran code from it"


def test_refused_load_leaves_no_files_behind(backend, tmp_path):
    fields = saved_fields(backend, tmp_path)
    path = tmp_path / "damaged.npz"
    edited(params=None)(fields, path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError):
        Network.load(path)
    assert sorted(os.listdir(tmp_path)) == before
