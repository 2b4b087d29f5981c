"""Readers and writers of table files: CSV, TSV, Parquet, JSON lines and TFRecord.

Every reader streams: it yields ``pandas.DataFrame`` chunks of at most ``chunk_rows`` rows
and never holds the whole file (CSV/TSV/JSONL are read line by line, Parquet by record
batch, TFRecord record by record). Each chunk carries bookkeeping columns that validation
uses to cite the source of a problem:

``_row``
    the 1-based number of the record in the file. For line-oriented files (CSV/TSV with or
    without a header, JSONL, ``::``-separated files) it is the *line number* of the record
    in the file, so ``sed -n '<row>p' FILE`` shows it; for Parquet and TFRecord it is the
    1-based record index.
``_error`` / ``_error_field``
    present only when some row of the chunk could not be decoded faithfully: wrong number
    of fields, a line that is not JSON, non-UTF-8 bytes, an unreadable record. The reason
    names what was expected. Such rows are kept (never silently dropped) so validation can
    quarantine them.

Values are returned as read: text formats give ``str`` cells (``None`` for a missing
field), typed formats give their native types. Validation converts and checks types.

TFRecord files hold one ``tf.train.Example`` per row (str -> bytes_list, int -> int64_list,
float -> float_list; a missing value is an absent feature). GZIP is detected from the file's
magic bytes on read and chosen with a ``.gz`` suffix (or ``compression="GZIP"``) on write.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .schema import TABLE_NAMES, Tables

ROW = "_row"
ERROR = "_error"
ERROR_FIELD = "_error_field"
FILE = "_file"
BOOKKEEPING = (ROW, ERROR, ERROR_FIELD, FILE)

DEFAULT_CHUNK_ROWS = 200_000

# format -> file name suffixes (lower case); ".gz" may follow csv/tsv/jsonl/tfrecord suffixes.
EXTENSIONS = {
    "csv": (".csv",),
    "tsv": (".tsv", ".tab"),
    "parquet": (".parquet", ".pq"),
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "tfrecord": (".tfrecord", ".tfrecords", ".tfr"),
}
FORMATS = tuple(EXTENSIONS)
SEPARATORS = {"csv": ",", "tsv": "\t"}


class FormatError(ValueError):
    """A file cannot be read at all (unknown format, unreadable header...)."""


# --------------------------------------------------------------------------- detection


def detect_format(path) -> str:
    """The table format of ``path`` from its extension (``.gz`` is looked through).

    Raises FormatError naming the file and the known extensions when none matches.
    """
    name = Path(path).name.lower()
    name = name.removesuffix(".gz")
    for fmt, suffixes in EXTENSIONS.items():
        if any(name.endswith(s) for s in suffixes):
            return fmt
    known = ", ".join(s for suffixes in EXTENSIONS.values() for s in suffixes)
    raise FormatError(f"{path}: cannot tell the file format from the extension; expected one of {known} (optionally + .gz), or pass --format")


def find_table_file(directory, table: str) -> Path | None:
    """The single ``<table>.<ext>`` file of ``directory``, or None when there is none.

    Raises FormatError when several files could be the table (e.g. items.csv and items.jsonl).
    """
    directory = Path(directory)
    found = []
    for p in sorted(directory.iterdir()) if directory.is_dir() else []:
        if p.is_file() and p.name.lower().split(".")[0] == table:
            try:
                detect_format(p)
            except FormatError:
                continue
            found.append(p)
    if len(found) > 1:
        raise FormatError(f"{directory}: several files for table '{table}': {[p.name for p in found]}; keep one")
    return found[0] if found else None


def is_gzip(path) -> bool:
    """True when ``path`` starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _open_binary(path) -> io.BufferedIOBase:
    """Open ``path`` for reading bytes (the caller closes it), un-gzipping gzip files."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def mark_error(frame: pd.DataFrame, mask, field: str | None, reason) -> None:
    """Record ``reason`` (a str or per-row strings) as the ``_error`` of the rows in ``mask``
    that have no error yet, in place. Adapters use it for rows they cannot interpret."""
    mask = np.asarray(mask, bool)
    if ERROR not in frame.columns:
        frame[ERROR] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        frame[ERROR_FIELD] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    mask = mask & frame[ERROR].isna().to_numpy()
    if not mask.any():
        return
    reasons = np.full(len(frame), reason, object) if isinstance(reason, str) else np.asarray(reason, object)
    frame.loc[mask, ERROR] = reasons[mask]
    frame.loc[mask, ERROR_FIELD] = field


def concat_chunks(chunks) -> pd.DataFrame:
    """All chunks of a (small) table as one frame with a fresh index."""
    chunks = list(chunks)
    if not chunks:
        return pd.DataFrame({ROW: pd.Series([], dtype=np.int64)})
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0].reset_index(drop=True)


# --------------------------------------------------------------------------- text cleaning


def clean_text(value: str):
    """Return ``(text, problem)``: text with undecodable bytes shown as ``\\xNN`` escapes,
    and a reason string when ``value`` held non-UTF-8 bytes (decoded as surrogates), else None.
    """
    try:
        value.encode("utf-8")
        return value, None
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")
        bad = [b for b in raw.decode("utf-8", "surrogateescape") if "\udc80" <= b <= "\udcff"]
        shown = "".join(f"\\x{ord(c) - 0xDC00:02x}" for c in bad[:4])
        return raw.decode("utf-8", "backslashreplace"), f"non-UTF-8 text (bytes {shown})"


class _ChunkBuilder:
    """Accumulates rows (dicts or lists) and their bookkeeping into DataFrame chunks."""

    def __init__(self, columns: list | None, chunk_rows: int):
        self.columns = list(columns) if columns is not None else None
        self.chunk_rows = max(1, int(chunk_rows))
        self._reset()

    def _reset(self):
        self.rows, self.row_numbers, self.errors = [], [], {}

    def add(self, values, row: int, error: str | None = None, error_field: str | None = None):
        if error is not None:
            self.errors[len(self.rows)] = (error, error_field)
        self.rows.append(values)
        self.row_numbers.append(row)

    def full(self) -> bool:
        return len(self.rows) >= self.chunk_rows

    def frame(self) -> pd.DataFrame:
        n = len(self.rows)
        if self.rows and isinstance(self.rows[0], dict):
            cols = self.columns or list(dict.fromkeys(k for r in self.rows for k in r))
            data = {c: [r.get(c) for r in self.rows] for c in cols}
        else:
            cols = self.columns or []
            data = dict(zip(cols, zip(*self.rows))) if self.rows else {c: () for c in cols}
        index = pd.RangeIndex(n)
        frame = pd.DataFrame({c: pd.Series(list(v), index=index, dtype=object) for c, v in data.items()},
                             columns=cols, index=index)
        frame[ROW] = np.asarray(self.row_numbers, dtype=np.int64)
        if self.errors:
            errors, fields = [None] * n, [None] * n
            for i, (error, field) in self.errors.items():
                errors[i], fields[i] = error, field
            frame[ERROR] = pd.Series(errors, index=index, dtype=object)
            frame[ERROR_FIELD] = pd.Series(fields, index=index, dtype=object)
        self._reset()
        return frame


def _with_clean_text(values: list, names: list):
    """Clean every str in ``values``; return (values, error, field) for the first bad one."""
    error = field = None
    try:  # fast path: the whole row is valid UTF-8
        "".join(v for v in values if isinstance(v, str)).encode("utf-8")
        return values, None, None
    except UnicodeEncodeError:
        pass
    for i, v in enumerate(values):
        if isinstance(v, str):
            values[i], problem = clean_text(v)
            if problem and error is None:
                error, field = problem, names[i] if i < len(names) else None
    return values, error, field


# --------------------------------------------------------------------------- delimited text


def read_delimited(path, sep: str = ",", names: list | None = None, encoding: str = "utf-8",
                   quoting: bool = True, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Stream a delimited text file as str-valued chunks.

    ``names=None`` takes the column names from the first line (the header); otherwise the
    file has no header and ``names`` are its columns. ``sep`` may be several characters
    (e.g. MovieLens-1M's ``::``), in which case fields are split literally. ``quoting=False``
    treats quote characters as text (MovieLens, MIND). A row with the wrong number of fields
    is kept with an ``_error`` (missing fields are None, extra fields are dropped); blank
    lines are skipped. With an encoding other than UTF-8 (e.g. ``latin-1``) every byte is
    valid text.
    """
    with _open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape", newline="")
        yield from _delimited_chunks(text, sep, names, quoting, chunk_rows)


class _AsciiTracker:
    """Iterates the lines of ``text`` and remembers whether one was not pure ASCII."""

    def __init__(self, text):
        self.text = text
        self.non_ascii = False

    def __iter__(self):
        for line in self.text:
            if not line.isascii():
                self.non_ascii = True
            yield line


def _delimited_records(text, sep: str, quoting: bool):
    """Yield (line_number, fields, non_ascii) for each non-blank record of ``text``."""
    if len(sep) == 1:
        kwargs = {"delimiter": sep, "strict": False}
        if not quoting:
            kwargs["quoting"] = csv.QUOTE_NONE
        tracker = _AsciiTracker(text)
        reader = csv.reader(tracker, **kwargs)
        start = 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            non_ascii, tracker.non_ascii = tracker.non_ascii, False
            if fields and not (len(fields) == 1 and fields[0].strip() == ""):
                yield line, fields, non_ascii
    else:
        for line, content in enumerate(text, start=1):
            content = content.rstrip("\r\n")
            if content.strip():
                yield line, content.split(sep), not content.isascii()


def _delimited_chunks(text, sep, names, quoting, chunk_rows):
    records = _delimited_records(text, sep, quoting)
    header_line = 0
    if names is None:
        try:
            header_line, header, _ = next(records)
        except StopIteration:
            return  # empty file: no header, no rows
        names = [clean_text(h)[0].strip().lstrip("\ufeff") for h in header]
    width = len(names)
    builder = _ChunkBuilder(names, chunk_rows)
    for line, fields, non_ascii in records:
        error = field = None
        if len(fields) != width:
            error = f"expected {width} fields separated by {sep!r}, found {len(fields)}"
            field = names[len(fields)] if len(fields) < width else None
            fields = (fields + [None] * width)[:width]
        if non_ascii:
            fields, text_error, text_field = _with_clean_text(list(fields), names)
            if error is None:
                error, field = text_error, text_field
        builder.add(fields, line, error, field)
        if builder.full():
            yield builder.frame()
    if builder.rows or header_line:
        yield builder.frame()


# --------------------------------------------------------------------------- JSON lines


def read_jsonl(path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Stream a JSON-lines file (one object per line; ``.gz`` allowed) as chunks.

    A line that is not a JSON object is kept as a row with an ``_error``. Nested values
    (lists, objects) are kept as Python objects for adapters to flatten.
    """
    builder = _ChunkBuilder(None, chunk_rows)
    with _open_binary(path) as raw:
        for line_number, line in enumerate(raw, start=1):
            content = line.decode("utf-8", "surrogateescape").strip()
            if not content:
                continue
            try:
                obj = json.loads(content)
            except ValueError as exc:
                builder.add({}, line_number, f"not valid JSON: {exc.msg} at column {exc.colno}")
            else:
                if not isinstance(obj, dict):
                    builder.add({}, line_number, f"expected a JSON object, got {type(obj).__name__}")
                else:
                    keys = list(obj)
                    values, error, field = _with_clean_text(list(obj.values()), keys)
                    builder.add(dict(zip(keys, values)), line_number, error, field)
            if builder.full():
                yield builder.frame()
    if builder.rows:
        yield builder.frame()


# --------------------------------------------------------------------------- Parquet


def read_parquet(path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Stream a Parquet file record batch by record batch."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise FormatError(f"{path}: not a readable Parquet file ({exc})") from exc
    start = 1
    empty = True
    for batch in pf.iter_batches(batch_size=max(1, int(chunk_rows))):
        frame = batch.to_pandas()
        frame[ROW] = np.arange(start, start + len(frame), dtype=np.int64)
        start += len(frame)
        empty = False
        yield frame
    if empty:
        frame = pf.schema_arrow.empty_table().to_pandas()
        frame[ROW] = np.zeros(0, dtype=np.int64)
        yield frame


# --------------------------------------------------------------------------- TFRecord


def _feature_value(feature):
    """A Python value from one tf.train.Feature: scalar for one value, list for several."""
    kind = feature.WhichOneof("kind")
    if kind is None:
        return None, None
    values = list(getattr(feature, kind).value)
    error = None
    if kind == "bytes_list":
        decoded = []
        for b in values:
            text = b.decode("utf-8", "surrogateescape")
            text, problem = clean_text(text)
            error = error or problem
            decoded.append(text)
        values = decoded
    elif kind == "float_list":
        values = [float(v) for v in values]
    else:
        values = [int(v) for v in values]
    if not values:
        return None, error
    return (values[0] if len(values) == 1 else values), error


def read_tfrecord(path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Stream a TFRecord file of tf.train.Example rows (GZIP detected automatically)."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    dataset = tf.data.TFRecordDataset(str(path), compression_type="GZIP" if is_gzip(path) else "")
    builder = _ChunkBuilder(None, chunk_rows)
    row = 0
    iterator = iter(dataset.as_numpy_iterator())
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            break
        except tf.errors.DataLossError as exc:
            builder.add({}, row + 1, f"corrupted TFRecord data after record {row}: {exc.message.splitlines()[0]}")
            break
        row += 1
        try:
            example = tf.train.Example.FromString(record)
        except DecodeError:
            builder.add({}, row, "record is not a tf.train.Example")
            continue
        values, error, field = {}, None, None
        for name, feature in example.features.feature.items():
            values[name], problem = _feature_value(feature)
            if problem and error is None:
                error, field = problem, name
        builder.add(values, row, error, field)
        if builder.full():
            yield builder.frame()
    if builder.rows:
        yield builder.frame()


def _example_from_row(row: dict):
    import tensorflow as tf

    feature = {}
    for name, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, (list, tuple, np.ndarray)):
            values = list(value)
        else:
            values = [value]
        if not values:
            continue
        first = values[0]
        if isinstance(first, (bool, np.bool_, int, np.integer)):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
        elif isinstance(first, (float, np.floating)):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
        else:
            data = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=data))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_tfrecord(frame: pd.DataFrame, path, compression: str | None = None) -> None:
    """Write one tf.train.Example per row; NaN/None cells become absent features."""
    import tensorflow as tf

    if compression is None:
        compression = "GZIP" if str(path).lower().endswith(".gz") else ""
    with tf.io.TFRecordWriter(str(path), options=tf.io.TFRecordOptions(compression_type=compression)) as writer:
        for row in frame.to_dict(orient="records"):
            writer.write(_example_from_row(row).SerializeToString(deterministic=True))


# --------------------------------------------------------------------------- public API


def read_table(path, fmt: str | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Stream the table in ``path`` as DataFrame chunks (see the module docstring).

    ``fmt`` is one of csv, tsv, parquet, jsonl, tfrecord; by default it comes from the
    extension. CSV/TSV files have a header line. An empty file yields nothing; a file with
    only a header yields one empty chunk with the header's columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = (fmt or detect_format(path)).lower()
    if fmt in SEPARATORS:
        return read_delimited(path, SEPARATORS[fmt], chunk_rows=chunk_rows)
    if fmt == "jsonl":
        return read_jsonl(path, chunk_rows)
    if fmt == "parquet":
        return read_parquet(path, chunk_rows)
    if fmt == "tfrecord":
        return read_tfrecord(path, chunk_rows)
    raise FormatError(f"{path}: unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}")


def write_table(frame: pd.DataFrame, path, fmt: str | None = None) -> Path:
    """Write ``frame`` (without its index) to ``path`` in ``fmt`` (default: from the extension)."""
    path = Path(path)
    fmt = (fmt or detect_format(path)).lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = frame.drop(columns=[c for c in BOOKKEEPING if c in frame.columns])
    if fmt in SEPARATORS:
        frame.to_csv(path, sep=SEPARATORS[fmt], index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "tfrecord":
        write_tfrecord(frame, path)
    else:
        raise FormatError(f"{path}: unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return path


def write_tables(tables: Tables, out_dir, fmt: str = "csv") -> dict:
    """Write the canonical directory layout: ``interactions.<ext>``, ``items.<ext>`` and
    (when there is a user table) ``users.<ext>``. Returns {table name: path}."""
    fmt = fmt.lower()
    if fmt not in EXTENSIONS:
        raise FormatError(f"unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    written = {}
    for name in TABLE_NAMES:
        frame = getattr(tables, name)
        if frame is None:
            continue
        written[name] = write_table(frame, out_dir / f"{name}{EXTENSIONS[fmt][0]}", fmt)
    return written
