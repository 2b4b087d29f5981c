"""From ``Tables`` to feature dictionaries and batched ``tf.data`` pipelines.

:func:`interaction_features` joins each interaction with its item and user rows and returns
flat NumPy columns (one entry per interaction); :func:`make_dataset` batches them;
:func:`user_histories` / :func:`history_features` give the query tower its history feature.

Feature keys (those whose source column exists):

* ids and scenario: ``user_id``, ``item_id``, ``scenario`` (str)
* text: ``title``, ``description``, ``profile`` (str, missing -> "")
* categorical: every name of ``vocab.categorical_features`` (str, missing -> "")
* numeric: item and user numeric columns except ``is_cold`` (the generator's ground truth,
  not a feature), float32, missing -> 0; user columns whose name an item column already
  uses get the prefix ``user_``
* ``timestamp`` (int64), ``rating`` (float32)
* labels: one float32 array per task (e.g. ``click``, ``conversion``); ``weight`` float32
  (the interactions' weight column, else ones)
* with ``vocab``: ``<name>_idx`` int64 indices for every vocabulary name (0 = OOV)
"""

from __future__ import annotations

import bisect

import numpy as np
import pandas as pd

from tfrs_multiscene.data.schema import (
    DESCRIPTION,
    ITEM_ID,
    PROFILE,
    RATING,
    SCENARIO,
    TIMESTAMP,
    TITLE,
    USER_ID,
    WEIGHT,
    Tables,
)
from tfrs_multiscene.data.vocab import Vocabularies, categorical_features, joined_name

NOT_FEATURES = ("is_cold",)
HISTORY_PAD = ""


def interaction_features(tables: Tables, vocab: Vocabularies | None = None) -> dict:
    """Feature columns [N] of the N interactions of ``tables`` (see the module docstring)."""
    frame = _joined(tables)
    out = {c: _strings(frame[c]) for c in (USER_ID, ITEM_ID, SCENARIO)}
    for c in (TITLE, DESCRIPTION, PROFILE):
        if c in frame.columns:
            out[c] = _strings(frame[c])
    for name in categorical_features(tables):
        out[name] = _strings(frame[name])
    for name, column in _numeric_features(tables).items():
        out[name] = pd.to_numeric(frame[column], errors="coerce").fillna(0.0).to_numpy(np.float32)
    if TIMESTAMP in frame.columns:
        out[TIMESTAMP] = frame[TIMESTAMP].to_numpy(np.int64)
    if RATING in frame.columns:
        out[RATING] = frame[RATING].to_numpy(np.float32)
    for task in tables.tasks:
        out[task] = frame[task].to_numpy(np.float32)
    out[WEIGHT] = (frame[WEIGHT].to_numpy(np.float32) if WEIGHT in frame.columns
                   else np.ones(len(frame), np.float32))
    if vocab is not None:
        for name in vocab.names:
            if name in out:
                out[f"{name}_idx"] = vocab.lookup(name, out[name])
    return out


def make_dataset(features: dict, batch_size: int, shuffle: bool = True, seed: int = 42,
                 repeat: bool = False, drop_remainder: bool = False, cache: bool = True):
    """A ``tf.data.Dataset`` of feature-dict batches ``{key: Tensor[batch_size, ...]}``.

    The columns live in memory as tensors, so the pipeline shuffles *indices* (a full,
    seeded shuffle that is redrawn every epoch), batches them and gathers each batch with
    one vectorised ``tf.gather`` per column: much faster than per-element shuffling of
    dicts. Without shuffling the gathered batches are cached (``cache``) so later epochs
    replay them. ``repeat`` repeats forever (batches then span epoch boundaries). The last
    stage is ``prefetch(AUTOTUNE)``.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = {k: len(v) for k, v in features.items()}
    if not lengths or len(set(lengths.values())) != 1:
        raise ValueError(f"features must be non-empty columns of one length, got {lengths}")
    n = next(iter(lengths.values()))
    columns = {k: tf.constant(v) for k, v in features.items()}  # str -> tf.string

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda idx: {k: tf.gather(t, idx) for k, t in columns.items()},
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache and not shuffle and not repeat:
        ds = ds.cache()
    return ds.prefetch(tf.data.AUTOTUNE)


def user_histories(train_tables: Tables, max_length: int, label: str | None = "auto") -> dict:
    """``{user_id: [item_id, ...]}``: each user's last ``max_length`` positive items in time
    order, **most recent last**. Positives are rows whose ``label`` is 1 (``"auto"``: the
    first task of the tables, e.g. ``click``; ``None`` or no task: every row)."""
    frame = _positives(train_tables, label)
    out = {}
    for user, items in frame.groupby(USER_ID, sort=False)[ITEM_ID]:
        out[str(user)] = items.astype(str).tolist()[-max_length:] if max_length > 0 else []
    return out


def history_features(tables: Tables, max_length: int, label: str | None = "auto") -> np.ndarray:
    """[N, max_length] str: for each interaction, the user's positive items strictly before
    it (earlier timestamp; without timestamps, earlier rows), most recent last, left-padded
    with ``HISTORY_PAD`` (""). Leak-free training input for the history feature."""
    inter = tables.interactions.reset_index(drop=True)
    positive = _positive_mask(tables, label)
    order = _time_order(inter)
    out = np.full((len(inter), max_length), HISTORY_PAD, dtype=object)
    if max_length <= 0:
        return out
    users = inter[USER_ID].astype(str).to_numpy()[order]
    items = inter[ITEM_ID].astype(str).to_numpy()[order]
    times = (inter[TIMESTAMP].to_numpy()[order] if TIMESTAMP in inter.columns
             else np.arange(len(inter)))
    seen: dict = {}  # user -> (times, items) of positives so far, in time order
    for row, user, item, t, is_pos in zip(order, users, items, times, positive[order]):
        pos_times, pos_items = seen.setdefault(user, ([], []))
        k = bisect.bisect_left(pos_times, t)  # positives strictly before t
        recent = pos_items[max(0, k - max_length):k]
        if recent:
            out[row, max_length - len(recent):] = recent
        if is_pos:
            pos_times.append(t)
            pos_items.append(item)
    return out


# --------------------------------------------------------------------------- helpers


def _joined(tables: Tables) -> pd.DataFrame:
    """Interactions with item columns and (prefixed where clashing) user columns joined."""
    inter = tables.interactions.reset_index(drop=True)
    items = tables.items.drop_duplicates(ITEM_ID)
    frame = inter.merge(items, on=ITEM_ID, how="left", suffixes=("", "__item"),
                        validate="many_to_one", indicator="_item_found")
    missing = int((frame.pop("_item_found") != "both").sum())
    if missing:
        raise ValueError(f"{missing} interaction(s) have an item_id missing from the items table; "
                         "validate the tables first (tfrs-multiscene validate)")
    if tables.users is not None:
        users = tables.users.drop_duplicates(USER_ID)
        users = users.rename(columns={c: joined_name(tables, "users", c)
                                      for c in users.columns if c != USER_ID})
        frame = frame.merge(users, on=USER_ID, how="left", validate="many_to_one")
    return frame


def _numeric_features(tables: Tables) -> dict:
    """Feature name -> joined column of the numeric item and user columns."""
    out = {c: c for c in tables.item_numeric_columns() if c not in NOT_FEATURES}
    for c in tables.user_numeric_columns():
        name = joined_name(tables, "users", c)
        out[name] = name
    return out


def _strings(column: pd.Series) -> np.ndarray:
    return column.fillna("").astype(str).to_numpy(dtype=object)


def _positive_mask(tables: Tables, label) -> np.ndarray:
    inter = tables.interactions
    if label == "auto":
        label = tables.tasks[0] if tables.tasks else None
    if label is None:
        return np.ones(len(inter), dtype=bool)
    if label not in inter.columns:
        raise KeyError(f"no label column {label!r} in the interactions; have {list(inter.columns)}")
    return inter[label].to_numpy() > 0


def _time_order(inter: pd.DataFrame) -> np.ndarray:
    if TIMESTAMP in inter.columns:
        return np.argsort(inter[TIMESTAMP].to_numpy(), kind="stable")
    return np.arange(len(inter))


def _positives(tables: Tables, label) -> pd.DataFrame:
    inter = tables.interactions.reset_index(drop=True)
    order = _time_order(inter)
    mask = _positive_mask(tables, label)[order]
    return inter.iloc[order[mask]]
