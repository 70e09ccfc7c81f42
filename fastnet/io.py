"""Reading data files and writing predictions for the command line.

CSV and Parquet go through pyarrow (the optional extra ``fastnet-kernels[io]``),
imported only when such a file is opened; ``.npy`` files are memory-mapped,
so a file larger than memory is read as training needs it; ``.npz`` archives
hold arrays ``X`` and ``y``.  Every problem with a file is a :class:`DataError`
whose one-line message names the file, the column or option, and what to
change.  Outputs are written to a temporary file in the destination folder
and renamed over the destination only once complete, so a failure or Ctrl-C
never leaves a partial file.
"""

import os
import tempfile

import numpy as np

#: File name endings and the format each means.
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npy": "npy", ".npz": "npz"}

#: Rows per chunk when predicting from a file: memory holds this many rows at once.
CHUNK_ROWS = 65_536


class DataError(ValueError):
    """A data file, column or option that cannot be used; the message says what to change."""


def file_format(path, option="DATA", allowed=tuple(FORMATS)):
    """The format of ``path`` from its ending (a value of FORMATS), or DataError naming ``option``."""
    ending = os.path.splitext(os.fspath(path))[1].lower()
    if ending not in allowed:
        raise DataError(f"{option} {path}: unknown file type {ending or '(no extension)'!r}; "
                        f"use a file ending in {', '.join(allowed)}")
    return FORMATS[ending]


def existing_file(path, option="DATA"):
    """``path`` as a str, or DataError when it is not an existing file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{option} {path}: no such file" + ("" if not os.path.exists(path) else " (it is a folder)"))
    return path


def writable_destination(path, option):
    """``path`` as a str, or DataError when its folder does not exist."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DataError(f"{option} {path}: the folder {folder} does not exist; create it or choose another path")
    return path


def _pyarrow(path):
    """pyarrow (with its csv and parquet modules), or DataError naming the extra to install."""
    try:
        import pyarrow
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError:
        raise DataError(f"{path}: reading and writing CSV or Parquet needs pyarrow: "
                        'pip install "fastnet-kernels[io]"') from None
    return pyarrow


class Table:
    """Named 1-D columns read from a file (NumPy arrays), in the file's order."""

    def __init__(self, path, columns):
        self.path, self.columns = path, columns

    @property
    def names(self):
        """Column names, in the file's order."""
        return list(self.columns)

    def column(self, name, option="--target"):
        """Column ``name``, or DataError listing the columns there are."""
        if name not in self.columns:
            shown = ", ".join(self.names[:20]) + (", ..." if len(self.names) > 20 else "")
            raise DataError(f"{self.path}: no column {name!r} (it has {shown}); pass {option} with one of them")
        return self.columns[name]


def column_names(path):
    """The column names of a CSV or Parquet file, reading only its header or schema."""
    pa = _pyarrow(path)
    try:
        if file_format(path) == "parquet":
            return list(pa.parquet.read_schema(path).names)
        with pa.csv.open_csv(path) as reader:
            return list(reader.schema.names)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: cannot read it as {file_format(path)}: {one_line(error)}") from None


def read_table(path, names):
    """Columns ``names`` of a CSV or Parquet file, whole, as a Table of NumPy arrays.

    Strings come back as str arrays; a column with missing values is a DataError.
    """
    pa = _pyarrow(path)
    try:
        if file_format(path) == "parquet":
            table = pa.parquet.read_table(path, columns=names)
        else:
            table = pa.csv.read_csv(path, convert_options=pa.csv.ConvertOptions(include_columns=names))
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: cannot read it as {file_format(path)}: {one_line(error)}") from None
    return Table(path, {name: arrow_to_numpy(path, name, table.column(name)) for name in names})


def arrow_to_numpy(path, name, column):
    """A pyarrow column as a 1-D NumPy array: numbers and booleans as they are,
    text as str; DataError when values are missing."""
    import pyarrow as pa
    if column.null_count:
        first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: column {name!r} has {column.null_count} missing values (the first in data row "
                        f"{first + 1}); fill them in or drop those rows")
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.to_numpy(zero_copy_only=False).astype(str)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return column.to_numpy(zero_copy_only=False)
    raise DataError(f"{path}: column {name!r} has type {kind}, which fastnet cannot use; "
                    "convert it to numbers or text")


def features_matrix(path, names, columns, dtype, first_row=0):
    """Feature columns (1-D arrays) as one C-contiguous (n, k) matrix of ``dtype``;
    DataError naming the first column that is not numeric or holds NaN/infinity
    (rows counted from ``first_row``)."""
    for name, values in zip(names, columns):
        if values.dtype.kind not in "biuf":
            held = "text" if values.dtype.kind == "U" else f"dtype {values.dtype}"
            raise DataError(f"{path}: feature column {name!r} is not numeric (it holds {held}); "
                            "leave it out with --features or encode it as numbers")
    X = np.empty((len(columns[0]) if columns else 0, len(columns)), dtype)
    for j, values in enumerate(columns):
        X[:, j] = values
    finite_or_fail(path, X, names, first_row)
    return X


def finite_or_fail(path, X, names=None, first_row=0):
    """DataError naming the first row and column of X (2-D) that is NaN or infinite.

    Reads X in chunks, so a memory-mapped file is scanned without loading it.
    """
    for start in range(0, X.shape[0], CHUNK_ROWS):
        chunk = np.asarray(X[start:start + CHUNK_ROWS])
        if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
            row, col = np.argwhere(~np.isfinite(chunk))[0]
            where = f"column {names[col]!r}" if names else f"column {col}"
            raise DataError(f"{path}: {where} holds {chunk[row, col]} in data row {first_row + start + row + 1}; "
                            "fill in or drop the rows with NaN or infinite values")


def open_array(path, option, allowed="biuf"):
    """The array of a .npy file, memory-mapped read-only; DataError when it is no
    readable .npy or its dtype kind is not in ``allowed``."""
    try:
        array = np.load(existing_file(path, option), mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{option} {path}: not a readable .npy file ({one_line(error)})") from None
    if array.dtype.kind not in allowed:
        raise DataError(f"{option} {path}: holds dtype {array.dtype}; save numbers (or for targets, labels)")
    return array


def read_npz(path):
    """Arrays ``X`` and ``y`` of an .npz archive, read into memory without pickle."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("X", "y") if key not in archive.files]
            if missing:
                raise DataError(f"{path}: has no array {missing[0]!r} (it has {', '.join(archive.files)}); "
                                "save the features as X and the targets as y (np.savez(path, X=X, y=y))")
            return archive["X"], archive["y"]
    except (OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz archive ({one_line(error)})") from None


def one_line(error):
    """An exception's message on one line."""
    return " ".join(str(error).split())


# -- streaming ----------------------------------------------------------------


def feature_chunks(path, names, n_features, dtype, chunk_rows=CHUNK_ROWS):
    """Yield the feature matrix of DATA ``chunk_rows`` rows at a time, (m, n_features) of ``dtype``.

    ``names``: the feature columns to take from a CSV/Parquet file (None:
    every column); a .npy/.npz file's columns are the features.  Memory
    holds one chunk (plus pyarrow's read-ahead block for CSV).
    """
    kind = file_format(existing_file(path))
    if kind in ("npy", "npz"):
        X = open_array(path, "DATA") if kind == "npy" else read_npz(path)[0]
        if X.ndim != 2 or X.shape[1] != n_features:
            raise DataError(f"DATA {path}: has shape {X.shape}; the model takes {n_features} feature columns, "
                            f"so it needs shape (rows, {n_features})")
        for start in range(0, X.shape[0], chunk_rows):
            chunk = np.ascontiguousarray(X[start:start + chunk_rows], dtype)
            finite_or_fail(path, chunk, first_row=start)
            yield chunk
        return
    available = column_names(path)
    names = available if names is None else names
    missing = [name for name in names if name not in available]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}, which the model was trained on; "
                        f"give DATA the feature columns {', '.join(names)}")
    if len(names) != n_features:
        raise DataError(f"{path}: has {len(names)} columns; the model takes {n_features} features "
                        "(it was trained on a file without column names: give DATA exactly those columns)")
    start = 0
    for batch in _record_batches(path, kind, names, chunk_rows):
        columns = [arrow_to_numpy(path, name, batch.column(name)) for name in names]
        if batch.num_rows:
            yield features_matrix(path, names, columns, dtype, start)
        start += batch.num_rows


def _record_batches(path, kind, names, chunk_rows):
    """pyarrow record batches or tables of ``names`` from a CSV or Parquet file,
    each of at most ``chunk_rows`` rows."""
    pa = _pyarrow(path)
    try:
        if kind == "parquet":
            yield from pa.parquet.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=names)
            return
        # Numbers everywhere: a column typed from the first block alone could change type later.
        options = pa.csv.ConvertOptions(include_columns=names, column_types={name: pa.float64() for name in names})
        held = None  # rows read but not yet yielded: less than a chunk plus one block
        with pa.csv.open_csv(path, convert_options=options) as reader:
            for batch in reader:
                block = pa.Table.from_batches([batch])
                held = block if held is None else pa.concat_tables([held, block])
                while held.num_rows >= chunk_rows:
                    yield held.slice(0, chunk_rows)
                    held = held.slice(chunk_rows)
        if held is not None and held.num_rows:
            yield held
    except pa.ArrowException as error:
        raise DataError(f"{path}: cannot read the feature columns as numbers: {one_line(error)}; "
                        "the model's feature columns must hold numbers only") from None


class AtomicOutput:
    """A file written under a temporary name in its destination's folder and
    renamed onto the destination by ``commit``; ``discard`` removes it."""

    def __init__(self, path, suffix):
        self.path = path
        handle, self.temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                                  prefix=".fastnet-", suffix=suffix + ".tmp")
        os.close(handle)

    def commit(self):
        """Move the finished temporary file onto the destination (atomic on POSIX)."""
        os.replace(self.temporary, self.path)

    def discard(self):
        """Remove the temporary file, if it is still there."""
        if os.path.exists(self.temporary):
            os.unlink(self.temporary)


class PredictionWriter:
    """Writes columns of predictions chunk by chunk to a CSV, Parquet or .npy file,
    or as CSV to a text stream; the file appears only at ``close(commit=True)``.

    ``names``: the column names; chunks are lists of 1-D arrays, one per name.
    A .npy output holds one column as a 1-D array, several as (rows, columns).
    """

    def __init__(self, path, names, stream=None):
        self.names, self.stream, self.rows = list(names), stream, 0
        self.kind = "csv" if path is None else file_format(path, "--out", (".csv", ".parquet", ".pq", ".npy"))
        self._output = None if path is None else AtomicOutput(writable_destination(path, "--out"), "." + self.kind)
        self._writer = self._raw = None
        self._dtype = None

    def write(self, columns):
        """Append one chunk: a list of equally long 1-D arrays, in ``names`` order."""
        if self.kind == "npy":
            block = np.column_stack(columns) if len(columns) > 1 else np.asarray(columns[0])
            if self._raw is None:
                self._dtype, self._raw = block.dtype, open(self._output.temporary + ".raw", "wb")
            np.ascontiguousarray(block, self._dtype).tofile(self._raw)
        elif self.stream is not None and self.kind == "csv":
            text = [np.asarray(values).astype(str) for values in columns]
            if self.rows == 0:
                self.stream.write(",".join(self.names) + "\n")
            self.stream.write("".join(",".join(row) + "\n" for row in zip(*text)))
        else:
            pa = _pyarrow(self._output.path)
            table = pa.table({name: values for name, values in zip(self.names, columns)})
            if self._writer is None:
                if self.kind == "parquet":
                    self._writer = pa.parquet.ParquetWriter(self._output.temporary, table.schema)
                else:
                    self._writer = pa.csv.CSVWriter(self._output.temporary, table.schema,
                                                    write_options=pa.csv.WriteOptions(quoting_style="needed"))
            self._writer.write_table(table)
        self.rows += len(columns[0])

    def close(self, commit):
        """Finish the file and move it into place (``commit``), or remove every trace of it."""
        try:
            if self._writer is not None:
                self._writer.close()
            if self._raw is not None:
                self._raw.close()
            if commit and self._output is not None:
                if self.kind == "npy":
                    self._write_npy()
                elif self._writer is None:  # no rows: still a valid, empty file
                    self._write_empty()
                self._output.commit()
        finally:
            if self._output is not None:
                self._output.discard()
                if os.path.exists(self._output.temporary + ".raw"):
                    os.unlink(self._output.temporary + ".raw")

    def _write_npy(self):
        """The .npy file from the raw chunks: a header for the final shape, then the rows."""
        dtype = self._dtype or np.dtype(np.float64)
        shape = (self.rows,) if len(self.names) == 1 else (self.rows, len(self.names))
        out = np.lib.format.open_memmap(self._output.temporary, mode="w+", dtype=dtype, shape=shape)
        if self.rows:
            raw = np.memmap(self._output.temporary + ".raw", dtype, mode="r", shape=shape)
            for start in range(0, self.rows, CHUNK_ROWS):
                out[start:start + CHUNK_ROWS] = raw[start:start + CHUNK_ROWS]
            del raw
        out.flush()
        del out

    def _write_empty(self):
        pa = _pyarrow(self._output.path)
        table = pa.table({name: pa.array([], pa.float64()) for name in self.names})
        if self.kind == "parquet":
            pa.parquet.write_table(table, self._output.temporary)
        else:
            pa.csv.write_csv(table, self._output.temporary)
