"""Ranking examples: one row per (user, item, scenario) with labels, masks and weights.

Two kinds of logs:

* impression logs (synthetic, MIND): a binary label column other than ``liked`` has zeros.
  Every impression is an example; labels are taken as they are.
* positive-only logs (MovieLens, Amazon): every row is a positive. Task ``interaction``
  is 1 for it and 0 for ``negatives_per_positive`` sampled items per positive, drawn
  uniformly from the catalogue (``negative_source="catalogue"``) or from retrieval's
  top-N for that user (``"retrieval"``, hard negatives, through ``candidate_fn``), never
  an item the user interacted with. With a rating column, ``liked`` = rating >=
  threshold and, optionally, an MSE ``rating`` task. Both are judgements of a rated item,
  so their losses are masked out on sampled negatives: ``liked`` is P(liked | rated), the
  label multi-scenario benchmarks score among the rows users actually rated, and
  ``interaction`` carries "would the user pick this item at all".

:func:`example_arrays` turns the example frame into model inputs, label/mask arrays and
per-example weights (per-scenario balancing times an optional ``weight`` column).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_multiscene.data import schema
from tfrs_multiscene.ranking.features import FeatureSpec, RowsOf

INTERACTION = "interaction"     # task of positive-only logs
RATING_TASK = "rating"
OBSERVED = "_observed"          # 1 for logged rows, 0 for sampled negatives
RATED_ONLY_TASKS = ("liked", "like", RATING_TASK)   # judged on logged rows only
NON_IMPRESSION_LABELS = ("liked", "like")


def is_impression_log(tables: schema.Tables) -> bool:
    """True when some non-rating-derived label column has negatives (zeros)."""
    inter = tables.interactions
    for task in tables.tasks:
        if task in NON_IMPRESSION_LABELS or task not in inter.columns:
            continue
        if (pd.to_numeric(inter[task], errors="coerce") == 0).any():
            return True
    return False


def ranking_tasks(tables: schema.Tables, rating_task: bool = True) -> list:
    """Task names in head order. Binary tasks first (click before conversion), rating last."""
    inter = tables.interactions
    if is_impression_log(tables):
        tasks = [t for t in tables.tasks if t in inter.columns]
    else:
        tasks = [INTERACTION]
        if "liked" in inter.columns or schema.RATING in inter.columns:
            tasks.append("liked")
    if rating_task and schema.RATING in inter.columns and RATING_TASK not in tasks:
        tasks.append(RATING_TASK)
    return tasks


def build_examples(tables: schema.Tables, cfg, *, seed: int = 0,
                   candidate_fn: Optional[Callable] = None, tasks=None) -> pd.DataFrame:
    """The labelled example frame, joined with the item and user columns.

    ``candidate_fn(frame) -> list of item-id sequences`` (one per row of ``frame``) is
    required for ``cfg.negative_source == "retrieval"``: retrieval's top-N for each row's
    user and scenario.
    """
    inter = tables.interactions.copy()
    tasks = list(tasks) if tasks is not None else ranking_tasks(tables, cfg.rating_task)
    if is_impression_log(tables):
        frame = inter
        frame[OBSERVED] = 1.0
    else:
        frame = _with_sampled_negatives(tables, cfg, seed, candidate_fn)
    if "liked" in tasks and "liked" not in frame.columns:
        rating = pd.to_numeric(frame[schema.RATING], errors="coerce")
        frame["liked"] = (rating >= cfg.liked_threshold).astype(float).where(rating.notna())
    missing = [t for t in tasks if t not in frame.columns]
    if missing:
        raise ValueError(f"task label column(s) {missing} not in the interactions ({list(frame.columns)})")
    return join_features(frame, tables)


def _with_sampled_negatives(tables, cfg, seed, candidate_fn) -> pd.DataFrame:
    pos = tables.interactions.copy()
    pos[INTERACTION] = 1.0
    pos[OBSERVED] = 1.0
    k = int(cfg.negatives_per_positive)
    if k <= 0:
        raise ValueError("a positive-only log needs negatives_per_positive >= 1")
    rng = np.random.default_rng(seed)
    seen = pos.groupby(schema.USER_ID)[schema.ITEM_ID].agg(set).to_dict()
    users = pos[schema.USER_ID].to_numpy()
    if cfg.negative_source == "retrieval":
        if candidate_fn is None:
            raise ValueError("negative_source='retrieval' needs candidate_fn (retrieval's top-N per row)")
        pools = [np.asarray(list(c), dtype=object) for c in candidate_fn(pos)]
    else:
        pools = None
    catalogue = tables.items[schema.ITEM_ID].astype(str).to_numpy()
    neg_items = []
    for row, user in enumerate(users):
        picks = []
        if pools is not None:  # hard negatives: retrieval's candidates the user has not seen
            unseen = [c for c in pools[row] if c not in seen[user]]
            if unseen:
                picks = list(rng.choice(np.asarray(unseen, dtype=object), size=k, replace=len(unseen) < k))
        else:  # rejection sampling from the catalogue
            drawn = catalogue[rng.integers(0, len(catalogue), size=3 * k)]
            picks = [p for p in drawn if p not in seen[user]][:k]
        while len(picks) < k:  # rare: fall back to the catalogue one draw at a time
            cand = tables.items[schema.ITEM_ID].iloc[int(rng.integers(len(tables.items)))]
            if cand not in seen[user] or len(seen[user]) >= len(tables.items):
                picks.append(cand)
        neg_items.append(picks)
    neg = pos.loc[pos.index.repeat(k)].copy()
    neg[schema.ITEM_ID] = np.concatenate([np.asarray(p, dtype=object) for p in neg_items])
    neg[INTERACTION] = 0.0
    neg[OBSERVED] = 0.0
    for col in ("liked", "like", schema.RATING):
        if col in neg.columns:
            neg[col] = np.nan  # unknown: a sampled item was never rated
    return pd.concat([pos, neg], ignore_index=True)


def join_features(frame: pd.DataFrame, tables: schema.Tables) -> pd.DataFrame:
    """Add the item (and user) columns to each example row."""
    items = tables.items.drop(columns=[c for c in tables.items.columns if c in frame.columns and c != schema.ITEM_ID])
    out = frame.merge(items, on=schema.ITEM_ID, how="left")
    if tables.users is not None:
        users = tables.users.drop(columns=[c for c in tables.users.columns if c in out.columns and c != schema.USER_ID])
        out = out.merge(users, on=schema.USER_ID, how="left")
    return out.reset_index(drop=True)


def scenario_weights(scenarios: pd.Series, power: float) -> dict:
    """Scenario -> example weight proportional to n_s^-power, mean weight 1 over examples.

    power=1 gives every scenario the same total weight; power=0 leaves examples unweighted.
    """
    counts = scenarios.astype(str).value_counts()
    raw = counts.astype(float) ** (-float(power))
    scale = len(scenarios) / float((raw * counts).sum())
    return {s: float(raw[s] * scale) for s in counts.index}


def example_weights(frame: pd.DataFrame, cfg) -> np.ndarray:
    w = np.ones(len(frame), np.float32)
    if cfg.balance_scenarios and len(frame):
        table = scenario_weights(frame[schema.SCENARIO], cfg.scenario_weight_power)
        w *= frame[schema.SCENARIO].astype(str).map(table).to_numpy(np.float32)
    if schema.WEIGHT in frame.columns:
        w *= pd.to_numeric(frame[schema.WEIGHT], errors="coerce").fillna(1.0).to_numpy(np.float32)
    return w


def model_inputs(frame: pd.DataFrame, spec: FeatureSpec, extra: Optional[dict] = None) -> dict:
    """Raw inputs of the ranking model for every row of ``frame``: numpy arrays, and string
    columns as :class:`RowsOf` (their distinct values and each row's)."""
    out = {}
    for col in [schema.SCENARIO, *spec.categorical, *spec.text]:
        values = frame[col] if col in frame.columns else pd.Series([""] * len(frame))
        strings = values.fillna("").astype(str).to_numpy(dtype=object)
        out[col] = RowsOf.of_strings(strings) if len(strings) else strings  # each distinct string held once
    for col in spec.numeric:
        out[col] = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float32) if col in frame.columns \
            else np.full(len(frame), np.nan, np.float32)
    if spec.has_timestamp:
        out[schema.TIMESTAMP] = pd.to_numeric(frame[schema.TIMESTAMP], errors="coerce").fillna(0).to_numpy(np.int64)
    extra = extra or {}
    for name, dim in spec.extra.items():
        if name not in extra:
            raise KeyError(f"extra feature {name!r} was not supplied (the feature hook must return it)")
        value = extra[name]
        arr = value if isinstance(value, RowsOf) else np.asarray(value, np.float32).reshape(len(frame), -1)
        if arr.shape != (len(frame), dim):
            raise ValueError(f"extra feature {name!r} has shape {arr.shape}, the model expects {(len(frame), dim)}")
        out[name] = arr
    return out


def targets(frame: pd.DataFrame, tasks, cfg) -> dict:
    """Labels and loss masks: {"label/<task>": float [N], "mask/<task>": float [N]}."""
    out = {}
    observed = frame[OBSERVED].to_numpy(np.float32) if OBSERVED in frame.columns else np.ones(len(frame), np.float32)
    for task in tasks:
        y = pd.to_numeric(frame[task], errors="coerce")
        mask = y.notna().to_numpy(np.float32)
        if task in RATED_ONLY_TASKS:
            mask = mask * observed
        elif task == "conversion" and cfg.conversion_mode == "clicks_only" and "click" in tasks:
            mask = mask * (pd.to_numeric(frame["click"], errors="coerce").fillna(0).to_numpy(np.float32) > 0)
        out[f"label/{task}"] = y.fillna(0.0).to_numpy(np.float32)
        out[f"mask/{task}"] = mask.astype(np.float32)
    return out


def make_dataset(inputs: dict, target: Optional[dict], weights: Optional[np.ndarray], batch_size: int,
                 shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """tf.data over (inputs, targets-with-"weight") batches.

    The columns are held as whole tensors and each batch is gathered from them by index
    (a shuffled index when ``shuffle``: an exact shuffle, redrawn every epoch), so the cost
    per batch is one gather per column instead of one slice per example and column. A
    :class:`RowsOf` column stays a table and row indices; its batch is gathered from both.
    """
    n = len(next(iter(inputs.values())))
    tgt = dict(target or {})
    tgt["weight"] = weights if weights is not None else np.ones(n, np.float32)

    def held(value):
        return (tf.constant(value.table), tf.constant(value.rows)) if isinstance(value, RowsOf) else tf.constant(value)

    def take(column, rows):
        if isinstance(column, tuple):
            table, index = column
            return tf.gather(table, tf.gather(index, rows))
        return tf.gather(column, rows)

    held_inputs = {k: held(v) for k, v in inputs.items()}
    held_targets = {k: held(v) for k, v in tgt.items()}
    index = tf.data.Dataset.range(n)
    if shuffle:
        index = index.shuffle(n, seed=seed, reshuffle_each_iteration=True)

    def gather(rows):
        return ({k: take(c, rows) for k, c in held_inputs.items()}, {k: take(c, rows) for k, c in held_targets.items()})

    return index.batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)
