"""MIND (Microsoft News Dataset), as downloaded (``MINDsmall_train/`` etc.) -> the three tables.

``news.tsv`` (no header): news id, category, subcategory, title, abstract, URL, title
entities, abstract entities -> items ``item_id, title, description`` (the abstract),
``category``, ``subcategory``.

``behaviors.tsv`` (no header): impression id, user id, time (``11/15/2019 8:55:22 AM``),
history (space-separated news ids), impressions (``N1-1 N2-0``: shown news and whether it
was clicked) -> one interaction per shown news: ``user_id, item_id, scenario, timestamp,
click`` (1/0) and ``impression_id`` (the impression the row belongs to, for GAUC).

So ``read`` counts of interactions are in impressions shown, not behaviors lines; a line that
cannot be split into impressions counts as one row. The row number cited is the
behaviors.tsv line. The click history column is not turned into interactions (it has no
time); there is no user table.

``scenario_from``: ``category`` (default: the news category), ``subcategory`` or ``none``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .. import schema as S
from ..formats import (
    DEFAULT_CHUNK_ROWS,
    ERROR,
    ERROR_FIELD,
    ROW,
    concat_chunks,
    mark_error,
    read_delimited,
)
from ..schema import Tables
from ..validation import RawTables, scenario_choice

NEWS_COLUMNS = [S.ITEM_ID, "category", "subcategory", S.TITLE, S.DESCRIPTION, "url", "title_entities",
                "abstract_entities"]
BEHAVIOR_COLUMNS = ["impression_id", S.USER_ID, "time", "history", "impressions"]
SCENARIO_CHOICES = ("category", "subcategory", "none")  # first: the default
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"


def _news(path: Path) -> pd.DataFrame:
    raw = concat_chunks(read_delimited(path, "\t", names=NEWS_COLUMNS, quoting=False))
    return raw[[c for c in raw.columns if c not in ("url", "title_entities", "abstract_entities")]]


def _timestamps(frame: pd.DataFrame) -> pd.Series:
    """Epoch seconds (UTC) of the behaviors ``time`` column; rows that do not parse are marked."""
    parsed = pd.to_datetime(frame["time"], format=TIME_FORMAT, errors="coerce")
    bad = parsed.isna().to_numpy() & frame["time"].notna().to_numpy()
    mark_error(frame, bad, "time", "time must look like '11/15/2019 8:55:22 AM'")
    seconds = (parsed - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    return seconds.astype(object).where(parsed.notna(), None)


def expand_impressions(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per shown news of each behaviors line, with ``item_id`` and ``click``.

    A line whose impressions are empty, or a token that is not ``NEWSID-0``/``NEWSID-1``,
    gives a row with an ``_error`` naming the token.
    """
    lines = lines.copy()
    lines[S.TIMESTAMP] = _timestamps(lines)
    lines["_token"] = lines["impressions"].map(lambda v: v.split() if isinstance(v, str) and v.strip() else [None])
    rows = lines.drop(columns=["impressions", "history", "time"]).explode("_token", ignore_index=True)
    parts = rows["_token"].str.extract(r"^(\S+)-([01])$")
    rows[S.ITEM_ID] = parts[0].to_numpy(object)
    rows["click"] = parts[1].to_numpy(object)
    no_token = rows["_token"].isna().to_numpy()
    mark_error(rows, no_token, "impressions", "no impressions on the line")
    bad = parts[0].isna().to_numpy() & ~no_token
    mark_error(rows, bad, "impressions",
               [f"impression {t!r} must be NEWSID-0 or NEWSID-1" for t in rows["_token"]])
    rows[S.ITEM_ID] = rows[S.ITEM_ID].where(~bad, rows["_token"])
    return rows.drop(columns=["_token"])


def _interactions(chunks, news: pd.DataFrame, scenario_from: str) -> Iterator[pd.DataFrame]:
    lookup = None
    if scenario_from != "none":
        unique = news.drop_duplicates(S.ITEM_ID)
        lookup = pd.Series(unique[scenario_from].to_numpy(object), index=unique[S.ITEM_ID].astype(str))
    for chunk in chunks:
        rows = expand_impressions(chunk)
        rows[S.SCENARIO] = S.DEFAULT_SCENARIO if lookup is None else rows[S.ITEM_ID].map(lookup).to_numpy(object)
        order = [S.USER_ID, S.ITEM_ID, S.SCENARIO, S.TIMESTAMP, "click", "impression_id", ROW]
        yield rows[order + [c for c in (ERROR, ERROR_FIELD) if c in rows.columns]]


def raw_mind(directory, scenario_from="category", chunk_rows=DEFAULT_CHUNK_ROWS) -> RawTables:
    """The MIND download in ``directory`` (behaviors.tsv, news.tsv) as raw tables."""
    directory = Path(directory)
    choice = scenario_choice(scenario_from, SCENARIO_CHOICES, "MIND")
    paths = {n: directory / n for n in ("behaviors.tsv", "news.tsv")}
    missing = [n for n, p in paths.items() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{directory}: MIND files {missing} not found (expected behaviors.tsv and news.tsv)")
    news = _news(paths["news.tsv"])
    lines = read_delimited(paths["behaviors.tsv"], "\t", names=BEHAVIOR_COLUMNS, quoting=False,
                           chunk_rows=max(1, chunk_rows // 40))
    return RawTables(interactions=_interactions(lines, news, choice), items=news, users=None,
                     files={"interactions": str(paths["behaviors.tsv"]), "items": str(paths["news.tsv"])},
                     name="mind")


def load_mind(directory, scenario_from="category", quarantine_dir=None) -> Tables:
    """MIND -> validated Tables (bad rows quarantined; see loading.load_tables for the report)."""
    return raw_mind(directory, scenario_from).validate(quarantine_dir=quarantine_dir)[0]
