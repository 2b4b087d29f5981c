"""Train / validation / test splits of the interactions (items and users tables are shared).

Kinds (``SplitConfig.split``):

* ``random``: a seeded ``test_fraction`` of the interactions is the test set.
* ``temporal``: the latest ``test_fraction`` of the interactions (by timestamp, ties by row
  order) is the test set; every training interaction is no later than every test one.
* ``leave_last_out``: each user's latest interaction is the test set; users with a single
  interaction keep it in training (``test_fraction`` is not used).
* ``cold_item``: a seeded ``test_fraction`` of the items that have interactions is held out
  with every one of their interactions, so test items never occur in training.

Validation is carved from the training part by the same rule with ``valid_fraction`` (for
leave_last_out: each user's latest remaining interaction); ``valid_fraction == 0`` gives
``valid = None``. Rows keep their original relative order within each part.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from tfrs_multiscene.config import SplitConfig
from tfrs_multiscene.data.schema import ITEM_ID, TIMESTAMP, USER_ID, Tables


@dataclasses.dataclass
class Split:
    """A split of one ``Tables``: each part has the full items/users tables."""

    train: Tables
    valid: Tables | None
    test: Tables
    info: dict


def make_split(tables: Tables, cfg: SplitConfig) -> Split:
    """Split ``tables.interactions`` by ``cfg.split`` (deterministic in ``cfg.seed``).

    ``info`` records kind, fractions, seed, row counts and actual fractions, plus per kind:
    temporal cut timestamps, or the held-out item ids (``test_items``, ``valid_items``).
    """
    if cfg.split not in _RULES:
        raise ValueError(f"unknown split kind {cfg.split!r}; choose one of {sorted(_RULES)}")
    for name in ("test_fraction", "valid_fraction"):
        value = getattr(cfg, name)
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    frame = tables.interactions.reset_index(drop=True)
    if cfg.split in ("temporal", "leave_last_out") and TIMESTAMP not in frame.columns:
        raise ValueError(f"a {cfg.split} split needs a {TIMESTAMP!r} column in the interactions")
    rule = _RULES[cfg.split]
    rng = np.random.default_rng(cfg.seed)
    info = {"kind": cfg.split, "test_fraction": cfg.test_fraction,
            "valid_fraction": cfg.valid_fraction, "seed": cfg.seed}

    rest, test, test_info = rule(frame, cfg.test_fraction, rng)
    valid, valid_info = None, {}
    if cfg.valid_fraction > 0:
        train_part, valid, valid_info = rule(frame.loc[rest], cfg.valid_fraction, rng)
    else:
        train_part = rest
    info.update({f"test_{k}": v for k, v in test_info.items()})
    info.update({f"valid_{k}": v for k, v in valid_info.items()})
    counts = {"train": len(train_part), "valid": len(valid) if valid is not None else 0,
              "test": len(test)}
    info["counts"] = counts
    info["actual_fractions"] = {k: v / max(len(frame), 1) for k, v in counts.items()}

    def part(index) -> Tables:
        return tables.with_interactions(frame.loc[np.sort(np.asarray(index))])

    return Split(part(train_part), part(valid) if valid is not None else None, part(test), info)


# Each rule takes (interactions, fraction, rng) and returns (kept index, held-out index, info).


def _random(frame: pd.DataFrame, fraction: float, rng):
    order = rng.permutation(frame.index.to_numpy())
    n_out = round(fraction * len(order))
    return order[n_out:], order[:n_out], {}


def _temporal(frame: pd.DataFrame, fraction: float, rng):
    order = frame.sort_values(TIMESTAMP, kind="stable").index.to_numpy()
    n_out = round(fraction * len(order))
    kept, out = order[:len(order) - n_out], order[len(order) - n_out:]
    info = {"start_timestamp": int(frame.loc[out, TIMESTAMP].min())} if n_out else {}
    return kept, out, info


def _leave_last_out(frame: pd.DataFrame, fraction: float, rng):
    ordered = frame.sort_values(TIMESTAMP, kind="stable")
    sizes = ordered.groupby(USER_ID, sort=False)[USER_ID].transform("size")
    last = ~ordered.duplicated(USER_ID, keep="last") & (sizes > 1)
    return ordered.index[~last].to_numpy(), ordered.index[last].to_numpy(), {}


def _cold_item(frame: pd.DataFrame, fraction: float, rng):
    items = np.sort(frame[ITEM_ID].astype(str).unique())
    n_out = round(fraction * len(items))
    if fraction > 0 and n_out == 0 and len(items) > 1:
        n_out = 1
    held = set(rng.choice(items, size=n_out, replace=False).tolist())
    mask = frame[ITEM_ID].astype(str).isin(held).to_numpy()
    return frame.index[~mask].to_numpy(), frame.index[mask].to_numpy(), {"items": sorted(held)}


_RULES = {"random": _random, "temporal": _temporal, "leave_last_out": _leave_last_out,
          "cold_item": _cold_item}
