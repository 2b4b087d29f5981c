"""The canonical data model: three tables every reader, adapter and generator produces.

interactions (one row per user-item event in a scenario)
    user_id     str, required, non-empty
    item_id     str, required, non-empty; must exist in the item table
    scenario    str, required (adapters set a single "default" when the data has none)
    timestamp   int64 seconds since the epoch, optional
    <task>      one column per task label, e.g. ``click``, ``conversion``, ``liked``:
                0/1 integers (a log of positives only has no label column at all)
    rating      float, optional
    weight      float >= 0, optional sample weight
    true_p_<task>  float in [0, 1], optional: the generator's true probability of the
                label, so the best achievable AUC can be computed (synthetic data only)

items
    item_id     str, required, unique
    title       str, required (may be empty text, never missing)
    description str, optional
    other columns: categorical when of string dtype (e.g. ``category``, ``brand``),
                   numeric otherwise

users (optional table)
    user_id     str, required, unique
    profile     str, optional free text
    other columns: categorical (str) or numeric, e.g. ``age_bucket``

All ids are strings in memory, whatever the file had.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import pandas as pd

USER_ID = "user_id"
ITEM_ID = "item_id"
SCENARIO = "scenario"
TIMESTAMP = "timestamp"
RATING = "rating"
WEIGHT = "weight"
TITLE = "title"
DESCRIPTION = "description"
PROFILE = "profile"
TRUE_PROB_PREFIX = "true_p_"

DEFAULT_SCENARIO = "default"

# Label columns recognised as tasks when a config does not name them.
KNOWN_TASKS = ("click", "conversion", "liked", "like", "purchase", "add_to_cart", "share")

INTERACTION_REQUIRED = (USER_ID, ITEM_ID, SCENARIO)
ITEM_REQUIRED = (ITEM_ID, TITLE)
USER_REQUIRED = (USER_ID,)

TABLE_NAMES = ("interactions", "items", "users")


@dataclasses.dataclass
class Tables:
    """The three canonical tables, in memory.

    Attributes:
      interactions: DataFrame with the interaction columns above.
      items: DataFrame indexed 0..n-1 with the item columns above.
      users: DataFrame with the user columns above, or None when there is no user table.
      tasks: the label columns of ``interactions`` that are tasks (may be empty).
      name: a short description of where the tables came from.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: Optional[pd.DataFrame] = None
    tasks: tuple = ()
    name: str = ""

    def __post_init__(self):
        if not self.tasks:
            self.tasks = tuple(detect_tasks(self.interactions))

    @property
    def scenarios(self) -> list:
        """Sorted distinct scenario names."""
        return sorted(self.interactions[SCENARIO].astype(str).unique().tolist())

    @property
    def true_prob_columns(self) -> dict:
        """Maps task -> column of the generator's true probability, where present."""
        return {
            c[len(TRUE_PROB_PREFIX):]: c
            for c in self.interactions.columns
            if c.startswith(TRUE_PROB_PREFIX)
        }

    def item_categorical_columns(self) -> list:
        return _categorical_columns(self.items, exclude=(ITEM_ID, TITLE, DESCRIPTION))

    def item_numeric_columns(self) -> list:
        return _numeric_columns(self.items, exclude=(ITEM_ID,))

    def user_categorical_columns(self) -> list:
        if self.users is None:
            return []
        return _categorical_columns(self.users, exclude=(USER_ID, PROFILE))

    def user_numeric_columns(self) -> list:
        if self.users is None:
            return []
        return _numeric_columns(self.users, exclude=(USER_ID,))

    def with_interactions(self, interactions: pd.DataFrame) -> "Tables":
        """The same item and user tables with other interactions (e.g. a split)."""
        return Tables(interactions.reset_index(drop=True), self.items, self.users, self.tasks, self.name)

    def summary(self) -> dict:
        return {
            "interactions": int(len(self.interactions)),
            "users": int(self.interactions[USER_ID].nunique()),
            "items": int(len(self.items)),
            "items_with_title": int((self.items[TITLE].astype(str).str.len() > 0).sum()),
            "scenarios": self.scenarios,
            "tasks": list(self.tasks),
        }


def detect_tasks(interactions: pd.DataFrame) -> list:
    return [c for c in KNOWN_TASKS if c in interactions.columns]


def _categorical_columns(frame: pd.DataFrame, exclude) -> list:
    return [
        c for c in frame.columns
        if c not in exclude and not pd.api.types.is_numeric_dtype(frame[c])
    ]


def _numeric_columns(frame: pd.DataFrame, exclude) -> list:
    return [
        c for c in frame.columns
        if c not in exclude and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]
