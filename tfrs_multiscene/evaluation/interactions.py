"""Integer indexing of users and items, and user x item sparse matrices from ``Tables``.

Evaluation and the baselines work on ``scipy.sparse.csr_matrix [n_users, n_items]``. The
item index covers the whole item table (so cold items, absent from training, still have a
column); the user index covers the users of the training interactions plus those of the
user table, if any (users only in the user table have empty training rows).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_multiscene.data.schema import ITEM_ID, RATING, SCENARIO, USER_ID, WEIGHT, Tables

WEIGHTS = ("binary", "count", "rating", "weight")


class InteractionIndex:
    """Maps user ids to matrix rows and item ids to matrix columns.

    Attributes:
      user_ids: ``np.ndarray[str] [n_users]``, row ``r`` belongs to ``user_ids[r]``.
      item_ids: ``np.ndarray[str] [n_items]``, column ``c`` belongs to ``item_ids[c]``.
    """

    def __init__(self, user_ids: Sequence[str], item_ids: Sequence[str]):
        self.user_ids = np.asarray([str(u) for u in user_ids], dtype=object)
        self.item_ids = np.asarray([str(i) for i in item_ids], dtype=object)
        self._user_pos = pd.Index(self.user_ids)
        self._item_pos = pd.Index(self.item_ids)
        for name, idx in (("user", self._user_pos), ("item", self._item_pos)):
            if not idx.is_unique:
                raise ValueError(f"duplicate {name} ids in the index")

    @classmethod
    def from_tables(cls, train: Tables, all_items: Optional[Sequence[str]] = None) -> "InteractionIndex":
        """Users of ``train`` (interactions, then the user table); items = ``all_items``
        (default: the item table of ``train``), in the order given."""
        users = pd.unique(train.interactions[USER_ID].astype(str))
        users = sorted(users)
        if train.users is not None and USER_ID in train.users:
            known = set(users)
            users += sorted(u for u in train.users[USER_ID].astype(str) if u not in known)
        items = train.items[ITEM_ID].astype(str) if all_items is None else all_items
        return cls(users, list(items))

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_rows(self, user_ids) -> np.ndarray:
        """``int64[N]`` rows of ``user_ids``; -1 for users not in the index."""
        return self._user_pos.get_indexer(pd.Index(np.asarray(user_ids).astype(str)))

    def item_cols(self, item_ids) -> np.ndarray:
        """``int64[N]`` columns of ``item_ids``; -1 for items not in the index."""
        return self._item_pos.get_indexer(pd.Index(np.asarray(item_ids).astype(str)))

    def encode(self, interactions: pd.DataFrame) -> tuple:
        """``(rows, cols)`` int64 arrays for each interaction row (-1 where unknown)."""
        return self.user_rows(interactions[USER_ID]), self.item_cols(interactions[ITEM_ID])

    def matrix(
        self,
        tables: Tables,
        weights: str = "binary",
        positive_label: Optional[str] = None,
        scenario: Optional[str] = None,
        unknown_users: str = "raise",
    ) -> sp.csr_matrix:
        """``csr_matrix [n_users, n_items]`` of the interactions of ``tables``.

        Args:
          weights: ``binary`` (1 per user-item pair), ``count`` (number of interactions),
            ``rating`` or ``weight`` (sum of that column over the pair's interactions).
          positive_label: keep only rows where this label column is > 0 (e.g. ``click``);
            ``None`` keeps every row (a log of positives).
          scenario: keep only rows of this scenario.
          unknown_users: ``raise`` or ``drop`` rows whose user is not in the index.
        Raises: ValueError on unknown items (the item index covers the item table) and on
          unknown users unless ``unknown_users='drop'``.
        """
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
        frame = self.positives(tables, positive_label, scenario)
        rows, cols = self.encode(frame)
        if (cols < 0).any():
            bad = frame[ITEM_ID].astype(str)[cols < 0].unique()[:5].tolist()
            raise ValueError(f"{int((cols < 0).sum())} interactions with items not in the index, e.g. {bad}")
        if (rows < 0).any() and unknown_users != "drop":
            bad = frame[USER_ID].astype(str)[rows < 0].unique()[:5].tolist()
            raise ValueError(f"{int((rows < 0).sum())} interactions of users not in the index, e.g. {bad}; pass unknown_users='drop'")
        if weights in ("rating", "weight"):
            column = RATING if weights == "rating" else WEIGHT
            if column not in frame:
                raise ValueError(f"weights={weights!r} but the interactions have no {column!r} column")
            values = frame[column].to_numpy(dtype=np.float64)
        else:
            values = np.ones(len(frame))
        keep = rows >= 0
        m = sp.csr_matrix((values[keep], (rows[keep], cols[keep])), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        if weights == "binary":
            m.data = np.ones_like(m.data)
        return m

    @staticmethod
    def positives(tables: Tables, positive_label: Optional[str] = None, scenario: Optional[str] = None) -> pd.DataFrame:
        """The interaction rows that count as positives (optionally of one scenario)."""
        frame = tables.interactions
        if positive_label is not None:
            if positive_label not in frame:
                raise ValueError(f"positive_label {positive_label!r} is not an interaction column")
            frame = frame[frame[positive_label].to_numpy() > 0]
        if scenario is not None:
            frame = frame[frame[SCENARIO].astype(str) == str(scenario)]
        return frame


__all__ = ["InteractionIndex", "WEIGHTS"]
