"""What the ranking model reads, and the layer that turns raw inputs into one dense vector.

A ranking example is one (user, item, scenario) impression. Its RAW inputs (a dict of
tensors, batch dimension first) are:

  user_id, item_id, scenario          string [B]
  <user/item categorical column>      string [B]   (e.g. category, brand, age_bucket)
  <user/item numeric column>          float  [B]   (e.g. price)
  title, description, profile         string [B]   (free text; hashed bag of words)
  timestamp                           int64  [B]   (optional; hour-of-day and weekday)
  <extra dense feature>               float  [B, d] (e.g. query_embedding,
                                                     candidate_embedding, history_affinity
                                                     [B, 1] (history.py), a frozen text
                                                     embedding of the title)

:class:`FeatureSpec` records which of these exist and their vocabularies (built from the
training split, so it can be saved as JSON and reloaded); :class:`FeatureEncoder` holds the
StringLookup / Embedding / Normalization layers and returns the concatenated vector
``[B, D]`` that every architecture consumes. When both ``query_embedding`` and
``candidate_embedding`` are given it also adds their dot product as a feature.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_multiscene.data import schema

QUERY_EMBEDDING = "query_embedding"
CANDIDATE_EMBEDDING = "candidate_embedding"
TEXT_TOKENS = 16           # tokens kept per text
TEXT_HASH_BINS = 4096      # hashed vocabulary of the bag-of-words text feature
MAX_VOCAB = 200_000        # ids beyond this (by frequency) share the OOV embedding
LOG_SKEW_THRESHOLD = 1.0   # positive numerics more skewed than this are standardised as log(x)


@dataclasses.dataclass
class FeatureSpec:
    """The model's inputs and their vocabularies / statistics (JSON-serialisable).

    Attributes:
      vocabularies: column -> list of known string values (user_id, item_id, scenario and
        every categorical column); unknown values map to one OOV index.
      numeric: column -> ``[mean, std]`` over the training rows, or ``[mean, std, "log"]``
        when the column is strictly positive and right-skewed (e.g. prices): the encoder
        then standardises ``log(x)`` and mean / std are those of ``log(x)``.
      text: free-text columns present (title, profile).
      extra: dense extra feature name -> width.
      has_timestamp: whether hour-of-day / weekday context features exist.
      tasks: the task names, in head order.
      scenarios: the scenario names (the routing order; == vocabularies["scenario"]).
      user_columns: the categorical columns that describe the user (user_id and the user
        table's columns); the others describe the item.
    """

    vocabularies: dict
    numeric: dict
    text: list
    extra: dict
    has_timestamp: bool
    tasks: list
    scenarios: list
    user_columns: list = dataclasses.field(default_factory=list)

    @property
    def categorical(self) -> list:
        return [c for c in self.vocabularies if c != schema.SCENARIO]

    def input_names(self) -> list:
        names = [schema.SCENARIO, *self.categorical, *self.numeric, *self.text, *self.extra]
        if self.has_timestamp:
            names.append(schema.TIMESTAMP)
        return names

    def input_signature(self) -> dict:
        """TensorSpecs of the raw inputs (for tf.function / SavedModel signatures)."""
        sig = {}
        for name in [schema.SCENARIO, *self.categorical, *self.text]:
            sig[name] = tf.TensorSpec([None], tf.string, name=name)
        for name in self.numeric:
            sig[name] = tf.TensorSpec([None], tf.float32, name=name)
        for name, dim in self.extra.items():
            sig[name] = tf.TensorSpec([None, dim], tf.float32, name=name)
        if self.has_timestamp:
            sig[schema.TIMESTAMP] = tf.TensorSpec([None], tf.int64, name=schema.TIMESTAMP)
        return sig

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "FeatureSpec":
        return cls(**json.loads(text))

    def save(self, path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path) -> "FeatureSpec":
        return cls.from_json(Path(path).read_text())


def build_feature_spec(train: schema.Tables, tasks, extra_features: Optional[dict] = None,
                       scenarios=None, log_skewed: bool = False) -> FeatureSpec:
    """Vocabularies and numeric statistics from the training tables.

    ``scenarios`` overrides the scenario vocabulary (the pooled / separate baselines use a
    single pseudo-scenario). With ``log_skewed`` a strictly positive numeric column whose
    skewness exceeds :data:`LOG_SKEW_THRESHOLD` is standardised on the log scale.
    """
    inter = train.interactions
    vocabs = {
        schema.USER_ID: _vocab(inter[schema.USER_ID]),
        schema.ITEM_ID: _vocab(inter[schema.ITEM_ID]),
    }
    numeric = {}
    used_items = train.items[train.items[schema.ITEM_ID].isin(inter[schema.ITEM_ID].unique())]
    for col in train.item_categorical_columns():
        vocabs[col] = _vocab(used_items[col])
    for col in train.item_numeric_columns():
        numeric[col] = _stats(used_items[col], log_skewed)
    if train.users is not None:
        users = train.users[train.users[schema.USER_ID].isin(inter[schema.USER_ID].unique())]
        for col in train.user_categorical_columns():
            if col in vocabs:
                raise ValueError(f"column {col!r} exists in both the item and the user table")
            vocabs[col] = _vocab(users[col])
        for col in train.user_numeric_columns():
            if col in numeric:
                raise ValueError(f"column {col!r} exists in both the item and the user table")
            numeric[col] = _stats(users[col], log_skewed)
    scen = list(scenarios) if scenarios is not None else train.scenarios
    vocabs[schema.SCENARIO] = scen
    text = [schema.TITLE]
    if schema.DESCRIPTION in train.items.columns:
        text.append(schema.DESCRIPTION)
    if train.users is not None and schema.PROFILE in train.users.columns:
        text.append(schema.PROFILE)
    for name in (extra_features or {}):
        if name in vocabs or name in numeric or name in text:
            raise ValueError(f"extra feature {name!r} collides with a table column")
    return FeatureSpec(
        vocabularies=vocabs,
        numeric=numeric,
        text=text,
        extra={k: int(v) for k, v in (extra_features or {}).items()},
        has_timestamp=schema.TIMESTAMP in inter.columns,
        tasks=list(tasks),
        scenarios=scen,
        user_columns=[schema.USER_ID, *(train.user_categorical_columns() if train.users is not None else [])],
    )


def _vocab(values: pd.Series) -> list:
    counts = values.astype(str).value_counts()
    return sorted(counts.index[:MAX_VOCAB].tolist())


def _stats(values: pd.Series, log_skewed: bool = False) -> list:
    """``[mean, std]`` of a numeric column, or ``[mean, std, "log"]`` of ``log(values)`` for a
    strictly positive, right-skewed column (skewness > LOG_SKEW_THRESHOLD) when ``log_skewed``."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    log = bool(log_skewed and v.notna().sum() > 2 and (v.dropna() > 0).all()
               and float(v.skew()) > LOG_SKEW_THRESHOLD)
    if log:
        v = np.log(v)
    mean = float(v.mean()) if v.notna().any() else 0.0
    std = float(v.std()) if v.notna().sum() > 1 else 1.0
    return [mean, std if std > 1e-9 else 1.0] + (["log"] if log else [])


class FeatureEncoder(tf.keras.layers.Layer):
    """Raw input dict -> dense vector ``[B, D]`` (embeddings, normalised numerics, text, extras).

    Per feature: string ids and categoricals -> StringLookup (1 OOV) -> Embedding(dim);
    numerics -> (x - mean) / std, or (log x - mean) / std for columns the spec marks "log"
    (missing or non-positive -> 0); text -> lower-case whitespace tokens
    (first 16) -> hashed to 4096 bins -> mean of token embeddings; timestamp -> hour-of-day
    and weekday embeddings; with ``dot_interactions`` the F(F-1)/2 pairwise dot products of
    those F embedding fields (DLRM-style, so user-item affinities such as profile text x
    title text are one multiplication away); extra dense features pass through, plus
    ``<query_embedding, candidate_embedding>`` when both are present. The scenario
    embedding is included unless ``use_scenario=False`` (the pooled baseline).
    """

    def __init__(self, spec: FeatureSpec, dim: int, use_scenario: bool = True, dot_interactions: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.use_scenario = use_scenario
        self.dot_interactions = dot_interactions
        self.lookups = {}
        self.embeddings = {}
        for col, vocab in spec.vocabularies.items():
            if col == schema.SCENARIO and not use_scenario:
                continue
            self.lookups[col] = tf.keras.layers.StringLookup(vocabulary=list(vocab), num_oov_indices=1,
                                                             name=f"lookup_{col}")
            self.embeddings[col] = tf.keras.layers.Embedding(len(vocab) + 1, dim, name=f"emb_{col}")
        self.text_hash = tf.keras.layers.Hashing(TEXT_HASH_BINS, name="text_hash")
        self.text_embeddings = {
            col: tf.keras.layers.Embedding(TEXT_HASH_BINS, dim, name=f"text_{col}") for col in spec.text
        }
        if spec.has_timestamp:
            self.hour_embedding = tf.keras.layers.Embedding(24, dim, name="emb_hour")
            self.weekday_embedding = tf.keras.layers.Embedding(7, dim, name="emb_weekday")

    def call(self, inputs: dict) -> tf.Tensor:
        missing = [n for n in self.spec.input_names() if n not in inputs
                   and not (n == schema.SCENARIO and not self.use_scenario)]
        if missing:
            raise KeyError(f"ranking model inputs missing {missing}; expected {self.spec.input_names()}")
        fields = []  # [B, dim] embeddings, one per categorical / text / context feature
        for col, lookup in self.lookups.items():
            fields.append(self.embeddings[col](lookup(string_feature(inputs[col]))))
        parts = []
        for col, stats in self.spec.numeric.items():
            parts.append(numeric_feature(inputs[col], stats))
        for col, emb in self.text_embeddings.items():
            fields.append(self._text(string_feature(inputs[col]), emb))
        if self.spec.has_timestamp:
            ts = tf.cast(tf.reshape(inputs[schema.TIMESTAMP], [-1]), tf.int64)
            hour = tf.math.floormod(tf.math.floordiv(ts, 3600), 24)
            weekday = tf.math.floormod(tf.math.floordiv(ts, 86400) + 3, 7)  # 1970-01-01 was a Thursday
            fields += [self.hour_embedding(hour), self.weekday_embedding(weekday)]
        parts = fields + parts
        if self.dot_interactions and len(fields) > 1:
            stacked = tf.stack(fields, axis=1)  # [B, F, dim]
            gram = tf.einsum("bfd,bgd->bfg", stacked, stacked)
            rows, cols = np.triu_indices(len(fields), k=1)
            flat = tf.reshape(gram, [-1, len(fields) ** 2])
            parts.append(tf.gather(flat, rows * len(fields) + cols, axis=1))  # [B, F(F-1)/2]
        for name, dim in self.spec.extra.items():
            parts.append(tf.reshape(tf.cast(inputs[name], tf.float32), [-1, dim]))
        if QUERY_EMBEDDING in self.spec.extra and CANDIDATE_EMBEDDING in self.spec.extra:
            q = tf.cast(inputs[QUERY_EMBEDDING], tf.float32)
            c = tf.cast(inputs[CANDIDATE_EMBEDDING], tf.float32)
            parts.append(tf.reduce_sum(q * c, axis=-1, keepdims=True))
        return tf.concat(parts, axis=-1)

    def _text(self, text: tf.Tensor, emb) -> tf.Tensor:
        tokens = tf.strings.split(tf.strings.lower(text))
        tokens = tokens[:, :TEXT_TOKENS].to_tensor(default_value="", shape=[None, TEXT_TOKENS])
        mask = tf.cast(tf.not_equal(tokens, ""), tf.float32)[..., None]
        vectors = emb(self.text_hash(tokens)) * mask
        return tf.reduce_sum(vectors, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


def numeric_feature(x: tf.Tensor, stats) -> tf.Tensor:
    """A raw numeric column ``[B]`` -> ``[B, 1]`` standardised with the spec's ``stats``
    (``[mean, std]``, or ``[mean, std, "log"]`` to standardise ``log x``); missing or (on the
    log scale) non-positive values -> 0."""
    mean, std = float(stats[0]), float(stats[1])
    x = tf.cast(tf.reshape(x, [-1, 1]), tf.float32)
    if len(stats) > 2 and stats[2] == "log":
        x = tf.math.log(tf.where(x > 0, x, tf.fill(tf.shape(x), float("nan"))))
    return tf.where(tf.math.is_finite(x), (x - mean) / std, tf.zeros_like(x))


def string_feature(x: tf.Tensor) -> tf.Tensor:
    """A raw id / categorical / text column as strings ``[B]`` (numbers are formatted)."""
    x = tf.reshape(x, [-1])
    return x if x.dtype == tf.string else tf.strings.as_string(x)


def dot_product(query: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Row-wise dot product (what the encoder adds for the two retrieval embeddings)."""
    return np.sum(np.asarray(query, np.float32) * np.asarray(candidate, np.float32), axis=1)


class RowsOf:
    """A feature column ``[N, ...]`` kept as a small ``table [T, ...]`` of its distinct values
    and ``rows int32 [N]``.

    Example columns repeat few distinct values over many examples (one query embedding per
    user and scenario, one candidate embedding or title per item, one profile per user):
    held this way they cost 4 bytes per example instead of a vector or a string, and
    ``make_dataset`` gathers each batch's values when it reads the batch. Float tables are
    float32; string tables stay object arrays.

    Indexing with rows (an int or bool array) gives another ``RowsOf``; any other index
    (a slice, a position, ``[:, j]``) gives numpy values (``predict`` reads slices);
    ``np.asarray`` gives the whole [N, D] array.

    >>> f = RowsOf(np.eye(2, dtype=np.float32), [1, 1, 0])
    >>> f.shape, f[1:].tolist(), f[np.array([0, 2])].rows.tolist()
    ((3, 2), [[0.0, 1.0], [1.0, 0.0]], [1, 0])
    """

    def __init__(self, table, rows):
        table = np.asarray(table)
        self.table = table.astype(np.float32) if table.dtype.kind == "f" else table
        self.rows = np.asarray(rows, np.int32)
        if self.table.ndim < 1 or self.rows.ndim != 1:
            raise ValueError(f"RowsOf needs a [T, ...] table and [N] rows, got {self.table.shape} and {self.rows.shape}")

    @classmethod
    def of_strings(cls, values) -> "RowsOf":
        """The distinct strings of ``values`` (a sequence of str) and each one's row."""
        codes, uniques = pd.factorize(np.asarray(values, dtype=object))
        return cls(np.asarray(uniques, dtype=object), codes)

    @property
    def shape(self) -> tuple:
        return (len(self.rows), *self.table.shape[1:])

    @property
    def dtype(self):
        return self.table.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, (np.ndarray, list)):
            return RowsOf(self.table, self.rows[index])
        if isinstance(index, tuple):  # e.g. [:, j]: the values themselves
            return np.asarray(self)[index]
        return self.table[self.rows[index]]

    def __array__(self, dtype=None, copy=None):
        out = self.table[self.rows]
        return out if dtype is None else out.astype(dtype)


def text_embedding_hook(encoder, column: str = schema.TITLE, name: str = "title_embedding"):
    """A feature hook adding a frozen text embedding (any object with ``.embed(list[str])``).

    Embeds each distinct text once. Returns ``hook(frame) -> {name: RowsOf [N, dim]}``.
    """

    def hook(frame: pd.DataFrame) -> dict:
        texts = frame[column].fillna("").astype(str)
        uniques, inverse = np.unique(texts.to_numpy(), return_inverse=True)
        vectors = np.asarray(encoder.embed(list(uniques)), np.float32)
        return {name: RowsOf(vectors, inverse)}

    return hook


def retrieval_feature_hook(retrieval_model, train: schema.Tables):
    """A feature hook adding the retrieval model's tower outputs to every example.

    ``retrieval_model`` needs ``query_features(users, scenarios, train)``,
    ``query_embeddings(features) -> [N, D]`` and ``candidate_embeddings(items) -> [I, D]``
    (tfrs_multiscene.retrieval's RetrievalModel). Each distinct (user, scenario) is embedded
    once; items missing from ``train.items`` get a zero candidate embedding. An ensemble
    gives its ``feature_towers`` (the first member's) outputs. Returns
    ``hook(frame) -> {"query_embedding": RowsOf [N, D], "candidate_embedding": RowsOf [N, D]}``
    (:class:`RowsOf`: each distinct vector held once); the ranking model adds their dot
    product itself.
    """
    towers = getattr(retrieval_model, "feature_towers", None)
    query_kw, candidate_kw = ({"tower": towers[0]}, {"tower": towers[1]}) if towers else ({}, {})
    item_ids = train.items[schema.ITEM_ID].astype(str).to_numpy()
    candidates = np.asarray(retrieval_model.candidate_embeddings(train.items, **candidate_kw), np.float32)
    candidates = np.concatenate([np.zeros((1, candidates.shape[1]), np.float32), candidates])  # row 0: unknown
    row_of = {item: i + 1 for i, item in enumerate(item_ids)}

    def hook(frame: pd.DataFrame) -> dict:
        keys = frame[schema.USER_ID].astype(str) + "\x1f" + frame[schema.SCENARIO].astype(str)
        uniq, inverse = np.unique(keys.to_numpy(dtype=str), return_inverse=True)
        users = [k.split("\x1f")[0] for k in uniq]
        scenarios = [k.split("\x1f")[1] for k in uniq]
        queries = np.asarray(retrieval_model.query_embeddings(
            retrieval_model.query_features(users, scenarios, train), **query_kw), np.float32)
        rows = np.array([row_of.get(i, 0) for i in frame[schema.ITEM_ID].astype(str)], np.int32)
        return {QUERY_EMBEDDING: RowsOf(queries, inverse), CANDIDATE_EMBEDDING: RowsOf(candidates, rows)}

    return hook


def combined_hook(*hooks):
    """One feature hook giving every given hook's features (None entries are skipped; None when
    none is left). Two hooks giving the same feature name are an error."""
    hooks = [h for h in hooks if h is not None]
    if len(hooks) <= 1:
        return hooks[0] if hooks else None

    def hook(frame: pd.DataFrame) -> dict:
        out = {}
        for h in hooks:
            for name, value in h(frame).items():
                if name in out:
                    raise ValueError(f"two feature hooks give {name!r}")
                out[name] = value
        return out

    return hook


def scenario_blind_hook(hook):
    """``hook`` computed as if no example's scenario were known (the scenario column set to
    ``""``, which the retrieval query tower maps to its OOV "any scenario" row, trained by
    scenario dropout). The pooled baseline uses it: with the true scenario its retrieval
    query embedding would carry the scenario it must ignore."""
    if hook is None or getattr(hook, "scenario_blind", False):
        return hook

    def blind(frame: pd.DataFrame) -> dict:
        return hook(frame.assign(**{schema.SCENARIO: ""}))

    blind.scenario_blind = True
    return blind
