"""Checks and conversions that run once, before any kernel sees the data.

Every failure is a ValueError or TypeError that names the argument, says
what was expected and what came.
"""

import numbers
import os

import numpy as np

from fastnet import _native, spec

#: numpy dtype kinds accepted as numbers: bool, signed, unsigned, float.
_NUMERIC_KINDS = "biuf"


def choice(value, name, options):
    """Return ``value`` if it is one of the string ``options``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {sorted(options)}; got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}; got {value!r}")
    return value


def layer_sizes(layers):
    """``layers`` as an int64 array of at least two positive widths."""
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__"):
        raise TypeError(f"layers must be a sequence of ints such as [4, 8, 1]; got {type(layers).__name__}")
    if len(layers) < 2:
        raise ValueError(f"layers must list at least an input and an output width; got {list(layers)}")
    for width in layers:
        if isinstance(width, (bool, np.bool_)) or not isinstance(width, numbers.Integral):
            raise TypeError(f"layers must hold ints; got {width!r} of type {type(width).__name__}")
        if width < 1:
            raise ValueError(f"every layer width must be >= 1; got layers={list(layers)}")
    return np.array([int(width) for width in layers], dtype=np.int64)


def float_array(value, name, dtype=np.float64):
    """``value`` as an ndarray of ``dtype``, numeric and finite (not yet shaped)."""
    array, _ = _finite_array_and_range(value, name, dtype)
    return array


def _finite_array_and_range(value, name, dtype):
    """``value`` as a numeric, finite ndarray of ``dtype``, and its (least, greatest) item."""
    if value is None:
        raise TypeError(f"{name} must be an array; got None")
    if isinstance(value, (str, os.PathLike)):
        value = open_npy(value, name)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name} must be a rectangular numeric array; could not convert it: {error}") from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(f"{name} must hold real numbers (bool, int or float); got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=dtype)
    bounds = finite_range(array)
    if bounds is None:
        raise ValueError(f"{name} must be finite; it holds NaN or infinity")
    return array, bounds


def open_npy(path, name):
    """The array in a ``.npy`` file, memory-mapped read-only (nothing is loaded yet)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{name} must be an array or the path of a .npy file; "
                         f"could not open {os.fspath(path)!r}: {error}") from None


def is_out_of_core(value):
    """True for a memory-mapped array or a path to one: data that lives on disk."""
    return isinstance(value, (np.memmap, str, os.PathLike))


def finite_range(array):
    """(least, greatest) item of a C-contiguous float64 or float32 array, or None
    when it holds NaN or an infinity; (inf, -inf) when it is empty.

    One read of the array, in C on the kernels' threads (``_native.finite_range``):
    for large inputs this check costs a third of a small network's gradient,
    and the targets' range check shares it.
    """
    return _native.finite_range(array)


def all_finite(array):
    """True when no element of a C-contiguous float64 or float32 array is NaN or infinite."""
    return finite_range(array) is not None


def batch(value, name, n_columns, dtype=np.float64):
    """A 2-D C-contiguous batch ``(n_samples, n_columns)`` with n_samples >= 1.

    A 1-D array is accepted only when ``n_columns == 1`` (one value per row).
    """
    return _shaped(float_array(value, name, dtype), name, n_columns)


def _shaped(array, name, n_columns):
    """``array`` as a batch (see ``batch``), or the ValueError saying why it is not one."""
    if array.ndim == 1 and n_columns == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, {n_columns}); got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row; got shape {array.shape}")
    if array.shape[1] != n_columns:
        raise ValueError(f"{name} must have {n_columns} columns; got shape {array.shape}")
    return array


def targets(y, X, n_outputs, output, loss, dtype=np.float64, names=("X", "y")):
    """``y`` as a batch ``(len(X), n_outputs)`` inside the range of ``output``; ``names``
    of X and y for messages.

    Targets outside the output activation's range (``fastnet.spec.Activation.range``)
    are refused: a sigmoid or softmax can never reach them, and "bce" would
    report negative losses.  The range comes from the same read as the finiteness check.
    """
    y, (low, high) = _finite_array_and_range(y, names[1], dtype)
    y = _shaped(y, names[1], n_outputs)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{names[1]} must have one row per row of {names[0]} ({X.shape[0]}); "
                         f"got {y.shape[0]} rows")
    bounds = spec.ACTIVATIONS[output].range
    if bounds is not None and (low < bounds[0] or high > bounds[1]):
        fix = "scale y into that range" + (", or use output='linear' with loss='mse'" if loss in ("mse", "sse")
                                          else "")
        raise ValueError(f"{names[1]} must lie in [{bounds[0]:g}, {bounds[1]:g}] for output={output!r} with "
                         f"loss={loss!r}; got values from {low:g} to {high:g}: {fix}")
    return y


def layer_kinds(activation, output, loss, derivative, sizes):
    """Refuse combinations the kernels do not define, naming both arguments:
    a loss after an output it does not pair with (``fastnet.spec.Loss.outputs``),
    the article's derivative on anything but sigmoid layers, a softmax of one unit."""
    allowed = spec.LOSSES[loss].outputs
    if output not in allowed:
        fitting = [name for name, entry in spec.LOSSES.items() if output in entry.outputs]
        raise ValueError(f"loss={loss!r} needs output in {list(allowed)}; got output={output!r} "
                         f"(with output={output!r} use loss in {fitting})")
    if derivative == "article" and (activation, output) != ("sigmoid", "sigmoid"):
        raise ValueError(f"derivative='article' is defined for sigmoid layers only; got activation={activation!r}, "
                         f"output={output!r} (use derivative='exact')")
    if output == "softmax" and sizes[-1] < 2:
        raise ValueError(f"output='softmax' needs at least 2 output units; got layers={list(sizes)} "
                         "(for one unit use output='sigmoid' with loss='bce')")


def parameter_list(values, name, shapes):
    """A list of finite float64 arrays with exactly the given shapes."""
    if isinstance(values, np.ndarray) or not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} must be a list of {len(shapes)} arrays; got {type(values).__name__}")
    if len(values) != len(shapes):
        raise ValueError(f"{name} must hold {len(shapes)} arrays, one per layer; got {len(values)}")
    arrays = []
    for index, (value, shape) in enumerate(zip(values, shapes)):
        array = float_array(value, f"{name}[{index}]")
        if array.shape != shape:
            raise ValueError(f"{name}[{index}] must have shape {shape}; got {array.shape}")
        arrays.append(array)
    return arrays


def positive_number(value, name):
    """A finite real number > 0, as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0; got {value!r}")
    return float(value)


def non_negative_number(value, name):
    """A finite real number >= 0, as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0; got {value!r}")
    return float(value)


def pair(value, name):
    """A sequence of exactly two items, as a tuple."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"{name} must be a pair of numbers such as (0.9, 0.999); got {value!r}")
    return tuple(value)


def count(value, name, minimum=0):
    """An int >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def fraction(value, name):
    """A real number in [0, 1), as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1); got {value!r}")
    return float(value)


def float_dtype(value):
    """``dtype`` as numpy's float32 or float64 (names or numpy types)."""
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64'; got {value!r}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype}")
    return dtype


def row_weights(value, n_rows, dtype=np.float64):
    """``sample_weight`` as (n_rows,) ``dtype``, non-negative with a positive sum; empty for None."""
    if value is None:
        return np.empty(0, dtype)
    weights = float_array(value, "sample_weight", dtype)
    if weights.shape != (n_rows,):
        raise ValueError(f"sample_weight must have shape ({n_rows},), one weight per row; got {weights.shape}")
    if (weights < 0).any() or not weights.sum() > 0:
        raise ValueError("sample_weight must be >= 0 with a positive sum")
    return weights


def optional_count(value, name, minimum=1):
    """None, or an int >= ``minimum``."""
    return None if value is None else count(value, name, minimum)


def random_generator(seed, name="seed"):
    """A numpy Generator from ``seed`` (anything ``numpy.random.default_rng`` takes: None,
    ints >= 0, a SeedSequence; a Generator is used as it is).  TypeError or ValueError
    naming ``name`` otherwise; a bool is refused, as it is almost surely a mistake."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"{name} must be None, an int >= 0, a SeedSequence or a Generator; got bool")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name} must be None, an int >= 0, a SeedSequence or a Generator; "
                          f"got {seed!r} ({error})") from None
