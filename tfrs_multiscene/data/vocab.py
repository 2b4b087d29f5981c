"""String vocabularies built from the training split only, with index 0 as the OOV bucket.

A vocabulary maps each distinct training value to 1..n (sorted by descending training
frequency, ties by value, so it is deterministic) and everything else (unseen ids, cold
items, categories only test items have) to 0. This is the same convention as
``tf.keras.layers.StringLookup(vocabulary=vocab.vocabulary(name), num_oov_indices=1)``,
so in-graph lookups of an exported model agree with :meth:`Vocabularies.lookup`.

Names: ``user_id``, ``item_id``, ``scenario`` and every categorical column of the item and
user tables (see :func:`categorical_features`; a user column whose name an item or
interaction column already uses gets the prefix ``user_``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tfrs_multiscene.data.schema import ITEM_ID, SCENARIO, USER_ID, Tables

OOV_TOKEN = "[OOV]"
VOCAB_FILE = "vocabularies.json"


def joined_name(tables: Tables, table: str, column: str) -> str:
    """Name of ``table``'s ``column`` once users and items are joined onto the interactions:
    a user column whose name an item or interaction column already uses gets ``user_``."""
    if table == "users" and (column in tables.items.columns or column in tables.interactions.columns):
        return "user_" + column
    return column


def categorical_features(tables: Tables) -> dict:
    """Feature name -> (table, column) of the item and user categorical columns."""
    out = {c: ("items", c) for c in tables.item_categorical_columns()}
    for c in tables.user_categorical_columns():
        out[joined_name(tables, "users", c)] = ("users", c)
    return out


class Vocabularies:
    """Named string vocabularies (index 0 = OOV); see the module docstring."""

    def __init__(self, vocabularies: dict):
        self._values = {name: [str(v) for v in values] for name, values in vocabularies.items()}
        self._index = {name: pd.Index(values) for name, values in self._values.items()}
        for name, index in self._index.items():
            if not index.is_unique:
                raise ValueError(f"vocabulary {name!r} has duplicate values")

    @classmethod
    def from_tables(cls, train: Tables, min_count: int = 1) -> Vocabularies:
        """Vocabularies of the values seen in ``train``'s interactions (and, for item/user
        columns, of the items/users those interactions touch) at least ``min_count`` times."""
        inter = train.interactions
        columns = {USER_ID: inter[USER_ID], ITEM_ID: inter[ITEM_ID], SCENARIO: inter[SCENARIO]}
        for name, (table, column) in categorical_features(train).items():
            key = ITEM_ID if table == "items" else USER_ID
            frame = getattr(train, table).drop_duplicates(key).set_index(key)[column]
            columns[name] = inter[key].map(frame)  # one value per interaction: frequency-weighted
        return cls({name: _sorted_values(values, min_count) for name, values in columns.items()})

    @property
    def names(self) -> list:
        return sorted(self._values)

    def vocabulary(self, name: str) -> list:
        """The in-vocabulary values of ``name`` in index order 1..n (without the OOV token)."""
        return list(self._values[self._check(name)])

    def size(self, name: str) -> int:
        """Number of indices of ``name`` including the OOV index 0."""
        return len(self._values[self._check(name)]) + 1

    def lookup(self, name: str, values) -> np.ndarray:
        """Indices [len(values)] int64 of ``values`` (strings) in ``name``; unseen -> 0."""
        values = np.asarray(values, dtype=object).reshape(-1).astype(str)
        return (self._index[self._check(name)].get_indexer(values) + 1).astype(np.int64)

    def save(self, directory) -> Path:
        """Write ``vocabularies.json`` and one ``<name>.txt`` per vocabulary (one value a
        line, OOV excluded: the file StringLookup/TextFileInitializer read) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"oov_token": OOV_TOKEN, "oov_index": 0, "vocabularies": self._values}
        (directory / VOCAB_FILE).write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
        for name, values in self._values.items():
            (directory / f"{name}.txt").write_text("".join(v.replace("\n", " ") + "\n" for v in values))
        return directory / VOCAB_FILE

    @classmethod
    def load(cls, directory) -> Vocabularies:
        """Read what :meth:`save` wrote."""
        path = Path(directory) / VOCAB_FILE
        if not path.exists():
            raise FileNotFoundError(f"no {VOCAB_FILE} in {directory}: was it written by Vocabularies.save?")
        return cls(json.loads(path.read_text())["vocabularies"])

    def _check(self, name: str) -> str:
        if name not in self._values:
            raise KeyError(f"no vocabulary {name!r}; known: {self.names}")
        return name

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabularies) and self._values == other._values

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={self.size(n)}" for n in self.names)
        return f"Vocabularies({sizes})"


def _sorted_values(values: pd.Series, min_count: int) -> list:
    """Distinct non-missing values, most frequent first, ties by value."""
    counts = values.dropna().astype(str).value_counts()
    counts = counts[counts >= min_count]
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [value for value, _ in order]
