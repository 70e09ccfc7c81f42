"""Saving and loading networks: one .npz, written atomically, read without pickle.

Files hold a network's ``state()`` (see ``Network.state``) as plain arrays,
so loading never runs code from them.  Every field is checked on the way
in; a damaged or foreign file gets a ValueError that names the file and the
problem.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

from fastnet import _validation as check
from fastnet import spec
from fastnet.layout import ParamLayout

FORMAT = "fastnet-network"
FORMAT_VERSION = 1


def write_atomically(path, arrays):
    """Save ``arrays`` as an .npz at ``path`` so that a crash leaves the old file whole.

    Writes a temporary file in the same folder, flushes and fsyncs it, then
    renames it over ``path`` (atomic on POSIX) and fsyncs the folder.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{path}: cannot save there, the folder {folder} does not exist")
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".fastnet-", suffix=".npz.tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def save(path, state):
    """Write a network's ``state`` to ``path`` as an .npz, atomically."""
    write_atomically(path, state_arrays(state))


def state_arrays(state):
    """A network's ``state`` as the file's plain arrays."""
    arrays = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION),
        "layers": np.array(state["layers"], dtype=np.int64),
        "params": state["params"],
        "bias": np.array(state["bias"]),
        "dtype": np.array(state["dtype"]),
        "derivative": np.array(state["derivative"]),
        "loss": np.array(state["loss"]),
        "activation": np.array(state["activation"]),
        "output": np.array(state["output"]),
        "backend": np.array(state["backend"]),
        "rng_state": np.array(state["rng_state"]),
    }
    optimizer = state["optimizer"]
    if optimizer is not None:
        arrays.update({"optimizer": np.array(optimizer["name"]), "optimizer_hyper": optimizer["hyper"],
                       "optimizer_state": optimizer["state"], "optimizer_step": optimizer["step"]})
    return arrays


def load(path, backends):
    """The network state held in the file at ``path``, every field checked.

    ``backends``: the backend names a file may name.
    """
    fields = read_fields(path)
    state = network_settings(fields, backends)
    state["optimizer"] = optimizer_fields(fields, state["params"].size, state["dtype"])
    return state


class FileFields:
    """Typed access to the fields of a loaded .npz, each failure naming file and field."""

    def __init__(self, path, fields):
        self.path, self._fields = os.fspath(path), fields

    def fail(self, problem):
        """Raise the ValueError for this file."""
        raise ValueError(f"{self.path}: not a valid fastnet network file: {problem}")

    def has(self, key):
        """Whether the file holds field ``key``."""
        return key in self._fields

    def array(self, key, kind=None, ndim=None):
        """Field ``key`` as an array, of dtype kind ``kind`` and ``ndim`` dimensions when given."""
        if key not in self._fields:
            self.fail(f"missing field {key!r}")
        value = self._fields[key]
        if kind is not None and value.dtype.kind not in kind:
            self.fail(f"field {key!r} has dtype {value.dtype}, expected kind {kind!r}")
        if ndim is not None and value.ndim != ndim:
            self.fail(f"field {key!r} has {value.ndim} dimensions, expected {ndim}")
        return value

    def text(self, key, options=None):
        """Field ``key`` as a str, one of ``options`` when given."""
        value = str(self.array(key, kind="U", ndim=0))
        if options is not None and value not in options:
            self.fail(f"field {key!r} is {value!r}, expected one of {sorted(options)}")
        return value

    def finite(self, key, shape, dtype="float64"):
        """Field ``key`` as a finite ``dtype`` array of exactly ``shape``."""
        value = self.array(key, kind="f")
        if value.shape != shape:
            self.fail(f"field {key!r} has shape {value.shape}, expected {shape}")
        if not np.isfinite(value).all():
            self.fail(f"field {key!r} holds NaN or infinity")
        return value.astype(dtype)


def read_fields(path):
    """Open ``path`` as an .npz without pickle and read every field into memory."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not a fastnet .npz archive")
        with archive:
            return FileFields(path, {key: archive[key] for key in archive.files})
    except FileNotFoundError:
        raise FileNotFoundError(f"{os.fspath(path)}: no such network file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f"{os.fspath(path)}: not a readable fastnet network file ({error})") from None


def network_settings(fields, backends):
    """Validated settings, parameters and generator state from a file's fields.

    ``backends``: the backend names a file may name.
    """
    if fields.text("format") != FORMAT:
        fields.fail("it was not written by fastnet")
    version = int(fields.array("format_version", kind="iu", ndim=0))
    if version != FORMAT_VERSION:
        fields.fail(f"format version {version} is not supported (this fastnet reads {FORMAT_VERSION})")
    layers = list(fields.array("layers", kind="iu", ndim=1))
    try:
        sizes = check.layer_sizes(layers)
    except (TypeError, ValueError) as error:
        fields.fail(f"field 'layers' is not a list of layer widths ({error})")
    has_bias = bool(fields.array("bias", kind="b", ndim=0))
    n_params = ParamLayout(sizes, has_bias).count
    dtype = fields.text("dtype", {"float32", "float64"})
    return {
        "dtype": dtype,
        "layers": [int(width) for width in sizes],
        "bias": has_bias,
        "params": fields.finite("params", (n_params,), dtype),
        "derivative": fields.text("derivative", spec.DERIVATIVES),
        "loss": fields.text("loss", spec.LOSSES),
        # Files written before hidden and output activations could be chosen are sigmoid networks.
        "activation": fields.text("activation", spec.HIDDEN_ACTIVATIONS) if fields.has("activation") else "sigmoid",
        "output": fields.text("output", spec.OUTPUT_ACTIVATIONS) if fields.has("output") else "sigmoid",
        "backend": fields.text("backend", backends),
        "rng_state": fields.text("rng_state"),
    }


def optimizer_fields(fields, n_params, dtype):
    """A saved optimizer's ``state_dict`` (name, hyper, state, step), or None when the file has none."""
    if not fields.has("optimizer"):
        return None
    name = fields.text("optimizer", spec.OPTIMIZERS)
    hyper = fields.array("optimizer_hyper", kind="f", ndim=1)
    # Files written before the L2 penalty hold every field but the last, alpha (then 0).
    if hyper.shape == (len(spec.HYPER_FIELDS) - 1,) and spec.HYPER_FIELDS[-1] == "alpha":
        hyper = np.append(hyper, 0.0)
    hyper = FileFields(fields.path, {"optimizer_hyper": hyper}).finite("optimizer_hyper",
                                                                       (len(spec.HYPER_FIELDS),))
    state = fields.finite("optimizer_state", (spec.STATE_ROWS, n_params), dtype)
    step = fields.array("optimizer_step", kind="i", ndim=1)
    if step.shape != (1,) or step[0] < 0:
        fields.fail("field 'optimizer_step' must be one non-negative count")
    return {"name": name, "hyper": hyper, "state": state, "step": step.astype(np.int64)}
