"""What the two-tower model sees: feature spec, positives, histories and raw input dicts.

The towers take RAW values (strings) and do their own lookups, so a serving signature can
feed them strings. This module decides, from the training :class:`~tfrs_multiscene.data.
schema.Tables`, which features exist and with which vocabularies (:class:`FeatureSpec`),
and builds the raw input dicts:

query features (one row per query)
    ``user_id``   str [B]
    ``scenario``  str [B]
    ``history``   str [B, L]: the user's most recent training positives, "" padded
    one key per user categorical column (str [B]), when the data has a user table

candidate features (one row per item)
    ``item_id``   str [B]
    one key per item categorical column (str [B])

Text is looked up inside the towers by id (see ``towers.py``), so it is not an input.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from tfrs_multiscene.data import schema

USER_ID = schema.USER_ID
ITEM_ID = schema.ITEM_ID
SCENARIO = schema.SCENARIO
HISTORY = "history"
PAD = ""

#: Label columns that mark a positive interaction, first present wins.
POSITIVE_TASKS = ("click", "liked", "like", "purchase", "conversion")

#: ``positive_task`` value that makes every interaction a positive, label columns or not
#: (e.g. all MovieLens ratings, as in the TFRS tutorials and the published baselines).
ALL_INTERACTIONS = "all"


def positive_interactions(tables: schema.Tables, positive_task: Optional[str] = None) -> pd.DataFrame:
    """The interactions the retrieval model learns from (user-item positives).

    ``positive_task`` names the 0/1 label column that marks a positive; by default the first
    of :data:`POSITIVE_TASKS` the interactions have (``click`` for impression logs). A log
    without label columns is all positives (e.g. MovieLens ratings), and so is any log with
    ``positive_task == "all"``.
    """
    frame = tables.interactions
    if positive_task == ALL_INTERACTIONS:
        return frame.reset_index(drop=True)
    if positive_task is None:
        positive_task = next((t for t in POSITIVE_TASKS if t in frame.columns), None)
    elif positive_task not in frame.columns:
        raise ValueError(f"positive_task {positive_task!r} is not an interaction column; "
                         f"columns: {list(frame.columns)}")
    if positive_task is not None:
        frame = frame[frame[positive_task].astype(float) > 0]
    return frame.reset_index(drop=True)


def item_texts(items: pd.DataFrame) -> list:
    """The text of each item row: title, plus the description when there is one."""
    title = items[schema.TITLE].fillna("").astype(str)
    if schema.DESCRIPTION in items.columns:
        desc = items[schema.DESCRIPTION].fillna("").astype(str)
        title = (title + ". " + desc).where(desc.str.len() > 0, title)
    return title.tolist()


def user_texts(users: Optional[pd.DataFrame]) -> list:
    """The profile text of each user row ([] without a user table or profile column)."""
    if users is None or schema.PROFILE not in users.columns:
        return []
    return users[schema.PROFILE].fillna("").astype(str).tolist()


def _vocab(values) -> list:
    """Sorted distinct non-empty strings."""
    return sorted({str(v) for v in values if isinstance(v, str) or pd.notna(v)} - {PAD})


def _extend(base: Sequence[str], values) -> list:
    """``base`` in its order, then the new values (sorted): old ids keep their index."""
    seen = set(base)
    return list(base) + [v for v in _vocab(values) if v not in seen]


@dataclasses.dataclass
class FeatureSpec:
    """Vocabularies and text tables the towers are built from (JSON + .npy in a run dir).

    Attributes:
      user_ids / item_ids / scenarios: id vocabularies from the training positives (the
        towers add one OOV row for everything else).
      user_categorical / item_categorical: column -> vocabulary.
      item_table_ids / user_table_ids: ALL ids of the item (user) table, the rows of the
        text tables (cold items included).
      item_frequency: training positives per ``item_table_ids`` row (for log-Q).
      history_length: items pooled into the query tower.
      item_text / user_text: frozen text embeddings [len(*_table_ids), D] or None.
      item_text_strings / user_text_strings: raw texts (finetune mode) or None.
    """

    user_ids: list
    item_ids: list
    scenarios: list
    user_categorical: dict
    item_categorical: dict
    item_table_ids: list
    user_table_ids: list
    item_frequency: list
    history_length: int
    item_text: Optional[np.ndarray] = None
    user_text: Optional[np.ndarray] = None
    item_text_strings: Optional[list] = None
    user_text_strings: Optional[list] = None

    @classmethod
    def from_tables(cls, train: schema.Tables, history_length: int,
                    text: Optional[dict] = None, base: Optional["FeatureSpec"] = None,
                    positive_task: Optional[str] = None) -> "FeatureSpec":
        """Build the spec from the training split.

        ``text`` may hold ``item_embeddings`` [n_items, D] aligned with ``train.items`` rows
        and ``user_embeddings`` [n_users, D] aligned with ``train.users`` rows (frozen mode),
        and/or ``item_texts`` / ``user_texts`` lists (finetune mode). With ``base`` (warm
        start) every vocabulary keeps the base's order and appends new values.
        """
        text = dict(text or {})
        pos = positive_interactions(train, positive_task)
        if pos.empty:
            raise ValueError("no positive interactions in the training split")
        empty = FeatureSpec([], [], [], {}, {}, [], [], [], history_length)
        base = base or empty
        users = train.users
        user_cat = {c: _extend(base.user_categorical.get(c, []), users[c].dropna())
                    for c in train.user_categorical_columns()}
        item_cat = {c: _extend(base.item_categorical.get(c, []), train.items[c].dropna())
                    for c in train.item_categorical_columns()}
        item_table_ids = train.items[ITEM_ID].astype(str).tolist()
        counts = pos[ITEM_ID].astype(str).value_counts()
        freq = [int(counts.get(i, 0)) for i in item_table_ids]
        user_table_ids = users[USER_ID].astype(str).tolist() if users is not None else []
        spec = cls(
            user_ids=_extend(base.user_ids, pos[USER_ID].astype(str)),
            item_ids=_extend(base.item_ids, pos[ITEM_ID].astype(str)),
            scenarios=_extend(base.scenarios, train.interactions[SCENARIO].astype(str)),
            user_categorical=user_cat,
            item_categorical=item_cat,
            item_table_ids=item_table_ids,
            user_table_ids=user_table_ids,
            item_frequency=freq,
            history_length=int(history_length),
            item_text=_matrix(text.get("item_embeddings"), len(item_table_ids), "item_embeddings"),
            user_text=_matrix(text.get("user_embeddings"), len(user_table_ids), "user_embeddings"),
            item_text_strings=text.get("item_texts"),
            user_text_strings=text.get("user_texts"),
        )
        return spec

    # ------------------------------------------------------------------ persistence

    _ARRAYS = ("item_text", "user_text")
    #: Fields of older runs' specs that no model reads any more (always None there by default).
    _RETIRED = ("item_words",)

    def save(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in self._ARRAYS}
        (directory / "feature_spec.json").write_text(json.dumps(data))
        for name in self._ARRAYS:
            value = getattr(self, name)
            if value is not None:
                np.save(directory / f"{name}.npy", value)

    @classmethod
    def load(cls, directory) -> "FeatureSpec":
        directory = Path(directory)
        path = directory / "feature_spec.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: not a retrieval model directory")
        data = json.loads(path.read_text())
        for name in cls._RETIRED:
            data.pop(name, None)
        for name in cls._ARRAYS:
            file = directory / f"{name}.npy"
            data[name] = np.load(file) if file.exists() else None
        return cls(**data)

    # ------------------------------------------------------------------ helpers

    @property
    def has_item_text(self) -> bool:
        return self.item_text is not None or self.item_text_strings is not None

    @property
    def has_user_text(self) -> bool:
        return self.user_text is not None or self.user_text_strings is not None

    def candidate_probability(self) -> np.ndarray:
        """Sampling probability of each item-table row as an in-batch candidate."""
        freq = np.asarray(self.item_frequency, dtype=np.float64)
        return (np.maximum(freq, 0.5) / max(freq.sum(), 1.0)).astype(np.float32)


def _matrix(value, rows: int, name: str):
    if value is None:
        return None
    value = np.asarray(value, dtype=np.float32)
    if value.ndim != 2 or value.shape[0] != rows:
        raise ValueError(f"{name} must be [{rows}, D] (one row per table row), got {value.shape}")
    return value


# ---------------------------------------------------------------------- histories


class UserHistories:
    """Each user's training positives, most recent first, as item-table row indices.

    ``matrix`` is int32 [n_users, max_len] padded with -1; ``row_of`` maps user id -> row.
    Only the ``max_len`` most recent items of a user are kept.
    """

    def __init__(self, positives: pd.DataFrame, item_table_ids: Sequence[str], max_len: int):
        index = pd.Index(list(item_table_ids))
        frame = positives[[USER_ID, ITEM_ID] + ([schema.TIMESTAMP] if schema.TIMESTAMP in positives else [])].copy()
        frame[USER_ID] = frame[USER_ID].astype(str)
        frame["_item"] = index.get_indexer(frame[ITEM_ID].astype(str))
        frame = frame[frame["_item"] >= 0]
        frame["_order"] = np.arange(len(frame))
        keys = ([schema.TIMESTAMP] if schema.TIMESTAMP in frame else []) + ["_order"]
        frame = frame.sort_values(keys, ascending=False, kind="stable")
        groups = frame.groupby(USER_ID, sort=True)["_item"]
        self.users = list(groups.groups.keys())
        self.row_of = {u: i for i, u in enumerate(self.users)}
        lists = [g.to_numpy()[:max_len] for _, g in groups]
        width = max([len(x) for x in lists] + [1])
        self.matrix = np.full((len(lists), width), -1, dtype=np.int32)
        for i, x in enumerate(lists):
            self.matrix[i, : len(x)] = x

    def rows(self, users: Sequence[str]) -> np.ndarray:
        """Row index of each user (-1: no history)."""
        return np.array([self.row_of.get(str(u), -1) for u in users], dtype=np.int64)

    def recent(self, users: Sequence[str], length: int) -> np.ndarray:
        """int32 [len(users), length]: the most recent items per user, -1 padded."""
        rows = self.rows(users)
        out = np.full((len(rows), length), -1, dtype=np.int32)
        known = rows >= 0
        width = min(length, self.matrix.shape[1])
        out[known, :width] = self.matrix[rows[known], :width]
        return out


def item_strings(indices: np.ndarray, item_table_ids: Sequence[str]) -> np.ndarray:
    """Map item-table row indices (-1 = padding) to id strings ("" for padding)."""
    table = np.asarray([PAD] + [str(i) for i in item_table_ids], dtype=object)
    return table[np.asarray(indices) + 1]


# ---------------------------------------------------------------------- raw inputs


def column_values(frame: Optional[pd.DataFrame], key: str, ids: Sequence[str], column: str) -> np.ndarray:
    """``frame[column]`` for each id (by ``frame[key]``), "" where unknown or missing."""
    if frame is None or column not in frame.columns:
        return np.full(len(ids), PAD, dtype=object)
    unique = frame.drop_duplicates(key)
    lookup = pd.Series(unique[column].to_numpy(), index=unique[key].astype(str).to_numpy())
    values = lookup.reindex([str(i) for i in ids])
    return values.where(values.notna(), PAD).astype(str).to_numpy(dtype=object)


def query_features_for(users: Sequence[str], scenario: Union[str, Sequence[str]],
                       tables: schema.Tables, history_length: int = 20,
                       user_categorical: Sequence[str] = None,
                       positive_task: Optional[str] = None) -> dict:
    """Raw query-tower inputs for ``users`` in ``scenario`` (one name, or one per user).

    The history is each user's most recent positives in ``tables.interactions`` (pass the
    training split); user categorical columns come from ``tables.users`` (by default every
    categorical column it has). Returns a dict of numpy object/str arrays.
    """
    users = [str(u) for u in users]
    if isinstance(scenario, str):
        scenarios = [scenario] * len(users)
    else:
        scenarios = [str(s) for s in scenario]
        if len(scenarios) != len(users):
            raise ValueError(f"got {len(scenarios)} scenarios for {len(users)} users")
    items = tables.items[ITEM_ID].astype(str).tolist()
    histories = UserHistories(positive_interactions(tables, positive_task), items, history_length)
    feats = {
        USER_ID: np.asarray(users, dtype=object),
        SCENARIO: np.asarray(scenarios, dtype=object),
        HISTORY: item_strings(histories.recent(users, history_length), items),
    }
    columns = tables.user_categorical_columns() if user_categorical is None else user_categorical
    for col in columns:
        feats[col] = column_values(tables.users, USER_ID, users, col)
    return feats


def candidate_features(items: pd.DataFrame, item_categorical: Sequence[str] = None) -> dict:
    """Raw candidate-tower inputs for the rows of ``items`` (default: all str columns)."""
    if item_categorical is None:
        item_categorical = schema.Tables(pd.DataFrame(), items).item_categorical_columns()
    feats = {ITEM_ID: items[ITEM_ID].astype(str).to_numpy(dtype=object)}
    for col in item_categorical:
        values = items[col] if col in items.columns else pd.Series([PAD] * len(items))
        feats[col] = values.where(values.notna(), PAD).astype(str).to_numpy(dtype=object)
    return feats


def query_item_matrix(pairs, frame, items, by_scenario):
    """Sparse 0/1 [len(pairs), len(items)]: ``frame``'s items of each (user, scenario) query
    (of the user in any scenario unless ``by_scenario``)."""
    import scipy.sparse as sp

    keys = [USER_ID, SCENARIO] if by_scenario else [USER_ID]
    query_row = pd.Series(np.arange(len(pairs)))
    left = pairs.reset_index(drop=True).assign(_q=query_row)
    right = frame[[USER_ID, SCENARIO, ITEM_ID]].astype(str)
    merged = left[keys + ["_q"]].merge(right[keys + [ITEM_ID]], on=keys)
    cols = items.get_indexer(merged[ITEM_ID])
    keep = cols >= 0
    m = sp.csr_matrix((np.ones(keep.sum()), (merged["_q"].to_numpy()[keep], cols[keep])),
                      shape=(len(pairs), len(items)))
    m.data[:] = 1.0
    return m
