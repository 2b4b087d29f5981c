"""Amazon reviews 2018 (J. McAuley's JSON-lines files) -> the three tables.

A directory holds, per category, a review file ``<Category>.json[.gz]`` (or the 5-core
``<Category>_5.json[.gz]``) and its metadata ``meta_<Category>.json[.gz]``.

Reviews (``reviewerID, asin, overall, unixReviewTime, ...``) -> interactions ``user_id,
item_id, scenario, timestamp, rating, liked`` (``liked = overall >= liked_threshold``).
Metadata (``asin, title, description, brand, main_cat, category, ...``) -> items
``item_id, title, description`` (paragraphs joined), ``brand``, ``category`` (``main_cat``,
else the first of ``category``). There is no user table.

``scenario_from``: ``file`` (default: one scenario per review file, named after its category,
so several files give several scenarios), ``category`` (the item's category) or ``none``.
An item listed in several metadata files (or twice in one) is a duplicate item id and is
quarantined after its first occurrence.

``id_only_items`` (``DataConfig.id_only_items``, ``--id-only-items``; on by default): a
reviewed item without metadata (its category has no ``meta_*`` file, or the file lacks
it) is kept as an id-only item (empty title and description) with its reviews, and the
validation report counts these items ("N items without metadata kept as id-only
items"). A directory of review files alone is then accepted. Off
(``--no-id-only-items``): such reviews are quarantined ("item not in the item table"),
and a directory without any metadata file is an error naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema as S
from ..formats import DEFAULT_CHUNK_ROWS, FILE, concat_chunks, read_jsonl
from ..schema import Tables
from ..validation import RawTables, liked_from_rating, scenario_choice

SCENARIO_CHOICES = ("file", "category", "none")  # first: the default
RATING_RANGE = (1.0, 5.0)
REVIEW_FIELDS = {"reviewerID": S.USER_ID, "asin": S.ITEM_ID, "overall": S.RATING, "unixReviewTime": S.TIMESTAMP}
_SUFFIX = re.compile(r"(_5)?\.(json|jsonl)(\.gz)?$", re.IGNORECASE)


def category_of_file(path) -> str:
    """'Musical_Instruments_5.json.gz' -> 'Musical_Instruments'."""
    name = Path(path).name
    name = name.removeprefix("meta_")
    return _SUFFIX.sub("", name)


def amazon_files(directory) -> tuple:
    """(review files, metadata files) of an Amazon 2018 download directory."""
    files = sorted(p for p in Path(directory).iterdir() if p.is_file() and _SUFFIX.search(p.name))
    meta = [p for p in files if p.name.startswith("meta_")]
    reviews = [p for p in files if not p.name.startswith("meta_")]
    return reviews, meta


def _text(value) -> str:
    """Metadata text fields are strings or lists of paragraphs."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return " ".join(str(v) for v in value if v is not None and str(v).strip())
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _first(value) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return str(value[0]) if len(value) else ""
    return _text(value)


def _column(frame, name) -> pd.Series:
    return frame[name] if name in frame.columns else pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _items(meta_files) -> pd.DataFrame:
    frames = []
    for path in meta_files:
        raw = concat_chunks(read_jsonl(path))
        main_cat = _column(raw, "main_cat").map(_text)
        fallback = _column(raw, "category").map(_first)
        frame = pd.DataFrame({
            S.ITEM_ID: _column(raw, "asin").to_numpy(object),
            S.TITLE: _column(raw, "title").map(_text).to_numpy(object),
            S.DESCRIPTION: _column(raw, "description").map(_text).to_numpy(object),
            "brand": _column(raw, "brand").map(_text).to_numpy(object),
            "category": np.where(main_cat != "", main_cat, fallback).astype(object),
        })
        for col in [c for c in raw.columns if c.startswith("_")]:
            frame[col] = raw[col].to_numpy()
        frame[FILE] = str(path)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _reviews(review_files, items, scenario_from, liked_threshold, chunk_rows) -> Iterator[pd.DataFrame]:
    category = None
    if scenario_from == "category":
        if items is None:  # no metadata: no category (validation reports the empty scenarios)
            items = pd.DataFrame({S.ITEM_ID: pd.Series([], dtype=object), "category": pd.Series([], dtype=object)})
        unique = items.drop_duplicates(S.ITEM_ID)
        category = pd.Series(unique["category"].to_numpy(object), index=unique[S.ITEM_ID].astype(str))
    for path in review_files:
        for raw in read_jsonl(path, chunk_rows):
            chunk = pd.DataFrame({new: _column(raw, old).to_numpy(object) for old, new in REVIEW_FIELDS.items()})
            for col in [c for c in raw.columns if c.startswith("_")]:
                chunk[col] = raw[col].to_numpy()
            chunk["liked"] = liked_from_rating(chunk[S.RATING], liked_threshold)
            if scenario_from == "file":
                chunk[S.SCENARIO] = category_of_file(path)
            elif scenario_from == "category":
                chunk[S.SCENARIO] = chunk[S.ITEM_ID].astype(str).map(category).to_numpy(object)
            else:
                chunk[S.SCENARIO] = S.DEFAULT_SCENARIO
            chunk[FILE] = str(path)
            yield chunk


def raw_amazon(directory, scenario_from="file", liked_threshold=4.0, chunk_rows=DEFAULT_CHUNK_ROWS,
               id_only_items=True) -> RawTables:
    """The Amazon 2018 review and metadata files in ``directory`` as raw tables.

    ``id_only_items``: keep reviews of items without metadata with id-only items (see the
    module doc); a directory with review files but no ``meta_*`` file is then accepted
    (every item id-only, no item table). Off, such a directory raises FileNotFoundError.
    """
    choice = scenario_choice(scenario_from, SCENARIO_CHOICES, "Amazon")
    reviews, meta = amazon_files(directory)
    if not reviews:
        raise FileNotFoundError(f"{directory}: no Amazon 2018 review files <Category>.json[.gz] or "
                                f"<Category>_5.json[.gz]; found metadata {[p.name for p in meta]}")
    if not meta and not id_only_items:
        raise FileNotFoundError(f"{directory}: no Amazon 2018 metadata files meta_<Category>.json[.gz] for the review "
                                f"files {[p.name for p in reviews]}; without metadata every review would be quarantined "
                                f"('item not in the item table'). Add the meta_* files, or pass --id-only-items to keep "
                                f"the reviews with id-only items (empty titles)")
    items = _items(meta) if meta else None
    return RawTables(
        interactions=_reviews(reviews, items, choice, liked_threshold, chunk_rows), items=items, users=None,
        files={"interactions": ", ".join(p.name for p in reviews), **({"items": ", ".join(p.name for p in meta)} if meta else {})},
        rating_range=RATING_RANGE, name="amazon", id_only_items=bool(id_only_items))


def load_amazon(directory, scenario_from="file", liked_threshold=4.0, quarantine_dir=None,
                id_only_items=True) -> Tables:
    """Amazon 2018 -> validated Tables (bad rows quarantined; see loading.load_tables for the report)."""
    raw = raw_amazon(directory, scenario_from, liked_threshold, id_only_items=id_only_items)
    return raw.validate(quarantine_dir=quarantine_dir)[0]
