"""Preprocessed training examples: tf.train.Example TFRecords written by ``tfrs-multiscene
preprocess`` (pipelines/beam_preprocess.py) and read back here for training.

Layout of a preprocess output directory::

    examples/part-SSSSS-of-NNNNN.tfrecord.gz   one tf.train.Example per valid interaction,
                                               item and user features joined (GZIP)
    features.json                              feature name -> {"dtype", "shape"} (the
                                               parsing spec; written by the pipeline)
    vocab/vocabularies.json, vocab/<name>.txt  :class:`~tfrs_multiscene.data.vocab.Vocabularies`
    item_frequency.json                        item_id -> training positives (log-Q)
    items.parquet, users.parquet               the validated item / user tables
    stats.json                                 counts, quarantine reasons, per-scenario stats
    quarantine/quarantine_<table>.csv          rejected rows with file,row,field,reason,value

The feature keys are those of :func:`tfrs_multiscene.data.pipeline.interaction_features`
(ids, scenario, text, categorical, numeric, timestamp, rating, labels, weight) plus the
``true_p_*`` columns of synthetic data, and ``history`` ([L] strings: the user's
positive items strictly before the interaction, most recent last, "" padded on the left).
Encoding rules (shared by writer and reader): strings -> bytes_list, floats -> float_list,
integers -> int64_list; every feature is a scalar except ``history``.

:class:`HashedSplit` is the train / valid / test rule of ``train --examples``: decided per row
(hash of the row's ids, or timestamp cuts), identically on parsed examples inside ``tf.data``
and on pandas frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

EXAMPLES_DIR = "examples"
FEATURES_FILE = "features.json"
VOCAB_DIR = "vocab"
ITEM_FREQUENCY_FILE = "item_frequency.json"
STATS_FILE = "stats.json"
SHARD_PATTERN = "part-*.tfrecord.gz"
HISTORY = "history"

_KINDS = {"O": "string", "U": "string", "S": "string", "f": "float32", "i": "int64", "u": "int64", "b": "int64"}


# --------------------------------------------------------------------------- writing


def column_dtype(values: np.ndarray) -> str:
    """'string', 'float32' or 'int64': how a feature column is stored in an Example."""
    kind = _KINDS.get(np.asarray(values).dtype.kind)
    if kind is None:
        raise TypeError(f"cannot store a column of dtype {np.asarray(values).dtype} in a tf.train.Example")
    return kind


def feature_spec(features: dict) -> dict:
    """``{name: {"dtype": ..., "shape": [] or [L]}}`` of a dict of [N] or [N, L] columns."""
    return {name: {"dtype": column_dtype(v), "shape": list(np.shape(v)[1:])} for name, v in sorted(features.items())}


def encode_examples(features: dict) -> list:
    """Serialized tf.train.Example bytes, one per row of the [N] columns in ``features``.

    The protobuf wire format is written directly, column by column: each distinct value's
    ``Features.feature`` map entry is encoded once (``pd.factorize``) and floats are framed
    with numpy, so a row costs one ``bytes.join`` instead of a protobuf object per cell
    (about 10x faster than building ``tf.train.Example`` messages; parsed results are
    identical).
    """
    columns = [_encode_column(str(name), values) for name, values in features.items()]
    if not columns:
        return []
    out = []
    for parts in zip(*columns):
        body = b"".join(parts)
        out.append(b"\x0a" + _varint(len(body)) + body)  # Example.features (field 1)
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (``tag`` = field number << 3 | 2)."""
    return bytes([tag]) + _varint(len(payload)) + payload


def _entry(key_field: bytes, feature: bytes) -> bytes:
    """One ``Features.feature`` map entry (field 1 of Features): key 1, value 2."""
    return _field(0x0A, key_field + _field(0x12, feature))


def _encode_column(name: str, values) -> list:
    """The framed map entry of every cell of one column (see :func:`encode_examples`)."""
    import pandas as pd

    key = _field(0x0A, name.encode("utf-8"))
    kind = column_dtype(values)
    if np.ndim(values) == 2:  # fixed-length string lists, e.g. the history: one bytes_list per row
        if kind != "string":
            raise TypeError(f"{name}: only string columns may hold lists")
        codes, uniques = pd.factorize(np.asarray(values, dtype=object).ravel())
        framed = np.asarray([_field(0x0A, str(v).encode("utf-8", "surrogateescape")) for v in uniques] or [b""],
                            dtype=object)[codes].reshape(np.shape(values))
        return [_entry(key, _field(0x0A, b"".join(row))) for row in framed.tolist()]
    if kind == "float32":  # Feature.float_list (2) { value (1, packed): 4 bytes }
        raw = np.asarray(values, dtype="<f4").tobytes()
        prefix = _entry(key, b"\x12\x06\x0a\x04" + b"\0" * 4)[:-4]
        return [prefix + raw[i:i + 4] for i in range(0, len(raw), 4)]
    codes, uniques = pd.factorize(np.asarray(values, dtype=object if kind == "string" else np.int64))
    if kind == "string":  # Feature.bytes_list (1) { value (1): bytes }
        encoded = [_entry(key, _field(0x0A, _field(0x0A, str(v).encode("utf-8", "surrogateescape")))) for v in uniques]
    else:  # Feature.int64_list (3) { value (1, packed): varint }
        encoded = [_entry(key, _field(0x1A, _field(0x0A, _varint(int(v) & 0xFFFFFFFFFFFFFFFF)))) for v in uniques]
    return np.asarray(encoded, dtype=object)[codes].tolist()


# --------------------------------------------------------------------------- reading


def load_info(out_dir, need_shards: bool = True) -> dict:
    """What the pipeline wrote besides the examples: ``features`` (parsing spec), ``vocab``
    (:class:`Vocabularies`), ``item_frequency`` (dict), ``stats`` (dict), ``files`` (shards).

    Raises FileNotFoundError naming what is missing when ``out_dir`` is not a complete
    preprocess output.
    """
    from tfrs_multiscene.data.vocab import Vocabularies

    out_dir = Path(out_dir)
    required = [out_dir / FEATURES_FILE, out_dir / VOCAB_DIR, out_dir / ITEM_FREQUENCY_FILE, out_dir / STATS_FILE]
    missing = [str(p) for p in required if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{out_dir} is not a complete `tfrs-multiscene preprocess` output: missing {missing}")
    files = sorted(str(p) for p in (out_dir / EXAMPLES_DIR).glob(SHARD_PATTERN))
    if not files and need_shards:
        raise FileNotFoundError(f"{out_dir / EXAMPLES_DIR}: no {SHARD_PATTERN} shards")
    return {
        "features": json.loads((out_dir / FEATURES_FILE).read_text()),
        "vocab": Vocabularies.load(out_dir / VOCAB_DIR),
        "item_frequency": json.loads((out_dir / ITEM_FREQUENCY_FILE).read_text()),
        "stats": json.loads((out_dir / STATS_FILE).read_text()),
        "files": files,
        "items_path": str(out_dir / "items.parquet"),
        "users_path": str(out_dir / "users.parquet") if (out_dir / "users.parquet").exists() else None,
    }


def parsing_spec(features: dict) -> dict:
    """``tf.io.parse_example`` spec from the FEATURES_FILE dict."""
    import tensorflow as tf

    dtypes = {"string": tf.string, "float32": tf.float32, "int64": tf.int64}
    return {name: tf.io.FixedLenFeature(f.get("shape", []), dtypes[f["dtype"]]) for name, f in features.items()}


def read_examples(out_dir, batch_size: int = 1024, shuffle: bool = True, seed: int = 42,
                  input_context=None, num_parallel_reads: int | None = None,
                  shuffle_buffer: int = 10_000, repeat: bool = False, drop_remainder: bool = False,
                  files: list | None = None, filter_fn=None):
    """Stream the preprocessed examples -> ``(tf.data.Dataset of feature-dict batches, info)``.

    Nothing is loaded whole: the shards are listed (shuffled per epoch when ``shuffle``),
    sharded by input pipeline when ``input_context`` (a ``tf.distribute.InputContext``, as
    ``strategy.distribute_datasets_from_function`` passes) names several, read interleaved
    (``num_parallel_reads`` files at once, default AUTOTUNE) through a bounded shuffle
    buffer, batched and parsed with one vectorised ``tf.io.parse_example`` per batch. With
    an ``input_context`` ``batch_size`` is the GLOBAL batch size: each pipeline batches its
    per-replica share. ``info`` is :func:`load_info`.

    Batches are ``{feature: Tensor[B]}`` with the keys of ``info["features"]``.
    ``files`` (paths or glob patterns, e.g. a TFX ExampleGen split) replaces the shards of
    ``out_dir`` (whose vocabularies and feature spec still apply); ``filter_fn(example) ->
    bool`` keeps only some examples (e.g. retrieval positives) before batching, so batches
    stay full.
    """
    import tensorflow as tf

    info = load_info(out_dir, need_shards=files is None)
    spec = parsing_spec(info["features"])
    if files is not None:
        files = sorted(f for pattern in files for f in tf.io.gfile.glob(str(pattern)))
        if not files:
            raise FileNotFoundError("no example files match the given patterns")
        info["files"] = files
    files = info["files"]
    per_pipeline_batch = batch_size
    ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None and input_context.num_input_pipelines > 1:
        if len(files) < input_context.num_input_pipelines:
            raise ValueError(f"{len(files)} shard(s) cannot feed {input_context.num_input_pipelines} input "
                             "pipelines: re-run preprocess with --shards >= the number of workers")
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if input_context is not None:
        per_pipeline_batch = input_context.get_per_replica_batch_size(batch_size)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                       cycle_length=num_parallel_reads or tf.data.AUTOTUNE,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if filter_fn is not None:  # parse in blocks, filter, then batch so batches stay full
        ds = ds.batch(1024).map(lambda records: tf.io.parse_example(records, spec), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.unbatch().filter(filter_fn).batch(per_pipeline_batch, drop_remainder=drop_remainder)
    else:
        ds = ds.batch(per_pipeline_batch, drop_remainder=drop_remainder)
        ds = ds.map(lambda records: tf.io.parse_example(records, spec), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE), info


def load_frames(out_dir):
    """(items DataFrame, users DataFrame or None) as the pipeline validated them."""
    import pandas as pd

    info_dir = Path(out_dir)
    items = pd.read_parquet(info_dir / "items.parquet")
    users_path = info_dir / "users.parquet"
    return items, (pd.read_parquet(users_path) if users_path.exists() else None)


# --------------------------------------------------------------------------- row-level splits

#: Resolution of the split hash: a row's position in [0, 1) is bucket / SPLIT_BUCKETS.
SPLIT_BUCKETS = 1 << 20
TRAIN, VALID, TEST = 0, 1, 2
PARTS = {"train": TRAIN, "valid": VALID, "test": TEST}
_SEP = "\x1f"


class HashedSplit:
    """Train / valid / test decided row by row from columns every example carries, so the
    same rule filters a stream of ``tf.train.Example`` features (inside ``tf.data``) and a
    pandas frame of the same rows, identically (both go through TensorFlow's FarmHash
    ``tf.strings.to_hash_bucket_fast``). Used by ``tfrs-multiscene train --examples``.

    * ``random``: position = hash(seed, user_id, item_id, timestamp, scenario) -> test when
      below ``test_fraction``, valid when below ``test_fraction + valid_fraction *
      (1 - test_fraction)`` (valid is carved from the rest, as ``data.splits`` does).
    * ``cold_item``: the same bands on hash(seed, item_id): an item's rows all go one way.
    * ``temporal``: ``timestamp >= test_start`` -> test, ``>= valid_start`` -> valid, the
      cut timestamps being quantiles of the examples' timestamps (:meth:`from_config`).
    * ``leave_last_out`` needs each user's latest row: not decidable per row, refused.

    Fractions are therefore approximately (binomially) the requested ones, and the split is
    exactly reproducible from ``(kind, fractions, seed, cut timestamps)``: :meth:`to_dict`.
    """

    KINDS = ("random", "temporal", "cold_item")

    def __init__(self, kind: str, test_fraction: float, valid_fraction: float, seed: int,
                 test_start: int | None = None, valid_start: int | None = None, has_timestamp: bool = True):
        if kind not in self.KINDS:
            raise ValueError(f"a {kind!r} split cannot be decided row by row, as `train --examples` needs: "
                             f"choose one of {self.KINDS} (or train from the tables with --data)")
        for name, value in (("test_fraction", test_fraction), ("valid_fraction", valid_fraction)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        self.kind, self.seed = kind, int(seed)
        self.test_fraction, self.valid_fraction = float(test_fraction), float(valid_fraction)
        self.test_start, self.valid_start = test_start, valid_start
        self.has_timestamp = bool(has_timestamp)

    # construction ------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg, out_dir=None, features: dict | None = None, timestamps=None) -> HashedSplit:
        """From a ``SplitConfig``; a temporal split takes its cut timestamps from
        ``timestamps`` or, when None, from one streamed pass over ``out_dir``'s timestamp
        column (8 bytes a row in memory)."""
        if features is None and out_dir is not None:
            features = load_info(out_dir, need_shards=False)["features"]
        from tfrs_multiscene.data.schema import TIMESTAMP

        has_ts = TIMESTAMP in (features or {})
        if cfg.split not in cls.KINDS:
            cls(cfg.split, 0, 0, 0)  # raises the explanation
        if cfg.split != "temporal":
            return cls(cfg.split, cfg.test_fraction, cfg.valid_fraction, cfg.seed, has_timestamp=has_ts)
        if not has_ts:
            raise ValueError(f"a temporal split needs a {TIMESTAMP!r} feature in the examples")
        ts = np.sort(np.asarray(read_column(out_dir, TIMESTAMP) if timestamps is None else timestamps, np.int64))
        test_start, rest = _cut(ts, cfg.test_fraction)
        valid_start, _ = _cut(rest, cfg.valid_fraction)
        return cls("temporal", cfg.test_fraction, cfg.valid_fraction, cfg.seed, test_start, valid_start)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "test_fraction": self.test_fraction, "valid_fraction": self.valid_fraction,
                "seed": self.seed, "test_start": self.test_start, "valid_start": self.valid_start,
                "has_timestamp": self.has_timestamp, "buckets": SPLIT_BUCKETS}

    @classmethod
    def from_dict(cls, d: dict) -> HashedSplit:
        return cls(d["kind"], d["test_fraction"], d["valid_fraction"], d["seed"], d.get("test_start"),
                   d.get("valid_start"), d.get("has_timestamp", True))

    # the rule ----------------------------------------------------------------------
    def _bands(self):
        valid_top = self.test_fraction + self.valid_fraction * (1 - self.test_fraction)
        return int(round(self.test_fraction * SPLIT_BUCKETS)), int(round(valid_top * SPLIT_BUCKETS))

    def _key_parts(self, get, as_string):
        from tfrs_multiscene.data.schema import ITEM_ID, SCENARIO, TIMESTAMP, USER_ID

        if self.kind == "cold_item":
            return [get(ITEM_ID)]
        parts = [get(USER_ID), get(ITEM_ID)]
        if self.has_timestamp:
            parts.append(as_string(get(TIMESTAMP)))
        return parts + [get(SCENARIO)]

    def tf_part(self, example):
        """int32 part (TRAIN/VALID/TEST) of a parsed example (scalars or a batch)."""
        import tensorflow as tf

        from tfrs_multiscene.data.schema import TIMESTAMP

        if self.kind == "temporal":
            ts = example[TIMESTAMP]
            test = ts >= self.test_start if self.test_start is not None else tf.zeros_like(ts, tf.bool)
            valid = ts >= self.valid_start if self.valid_start is not None else tf.zeros_like(ts, tf.bool)
        else:
            parts = self._key_parts(lambda k: example[k], tf.strings.as_string)
            key = tf.strings.join([tf.constant(f"{self.seed}")] + parts, separator=_SEP)
            bucket = tf.strings.to_hash_bucket_fast(key, SPLIT_BUCKETS)
            test_top, valid_top = self._bands()
            test, valid = bucket < test_top, bucket < valid_top
        return tf.where(test, TEST, tf.where(valid, VALID, TRAIN))

    def filter_fn(self, part: str = "train"):
        """``example -> bool`` keeping one part (for ``read_examples(filter_fn=...)``)."""
        import tensorflow as tf

        want = PARTS[part]
        return lambda example: tf.equal(self.tf_part(example), want)

    def frame_part(self, frame) -> np.ndarray:
        """int part (TRAIN/VALID/TEST) of every row of a pandas frame of interactions."""
        import tensorflow as tf

        from tfrs_multiscene.data.schema import TIMESTAMP

        if self.kind == "temporal":
            ts = frame[TIMESTAMP].to_numpy(np.int64)
            test = ts >= self.test_start if self.test_start is not None else np.zeros(len(ts), bool)
            valid = ts >= self.valid_start if self.valid_start is not None else np.zeros(len(ts), bool)
        else:
            parts = self._key_parts(lambda k: frame[k].astype(str) if k != TIMESTAMP else frame[k],
                                    lambda s: s.astype(np.int64).astype(str))
            key = pd_join([str(self.seed)] + parts)
            bucket = tf.strings.to_hash_bucket_fast(key, SPLIT_BUCKETS).numpy() if len(key) else np.zeros(0, np.int64)
            test_top, valid_top = self._bands()
            test, valid = bucket < test_top, bucket < valid_top
        return np.where(test, TEST, np.where(valid, VALID, TRAIN))


def _cut(sorted_ts: np.ndarray, fraction: float):
    """(start timestamp of the latest ``fraction`` of ``sorted_ts`` or None, the rows before it)."""
    n_out = int(round(fraction * len(sorted_ts)))
    if n_out == 0:
        return None, sorted_ts
    start = int(sorted_ts[len(sorted_ts) - n_out])
    return start, sorted_ts[sorted_ts < start]


def pd_join(parts: list) -> np.ndarray:
    """Row-wise ``_SEP``-join of string Series (a leading str is broadcast)."""
    out = None
    for p in parts:
        out = p if out is None else (out + _SEP + p)
    return np.asarray(out, dtype=object)


def read_column(out_dir, name: str, filter_fn=None, files=None) -> np.ndarray:
    """One feature column of every example (streamed; only that column is kept)."""
    ds, info = read_examples(out_dir, batch_size=8192, shuffle=False, files=files, filter_fn=filter_fn)
    values = [batch[name].numpy() for batch in ds]
    dtype = {"string": object, "float32": np.float32, "int64": np.int64}[info["features"][name]["dtype"]]
    return np.concatenate(values) if values else np.zeros(0, dtype)
