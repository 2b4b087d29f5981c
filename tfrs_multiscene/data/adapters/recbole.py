"""RecBole "atomic files" (``<name>.inter``, ``.item``, ``.user``) -> the three tables.

RecBole (https://recbole.io/docs/user_guide/data/atomic_files.html) publishes dozens of
public data sets in one layout: a directory ``<name>/`` with tab-separated files whose
header names each column and its type, ``name:type`` with type ``token`` (a categorical
value), ``token_seq`` (space-separated tokens, e.g. a title or genres), ``float`` or
``float_seq``. ``<name>.inter`` is required; ``<name>.item`` and ``<name>.user`` are
optional (other files such as ``.kg`` / ``.link`` are ignored). The data set name is the
directory's name when ``<dir>/<dir name>.inter`` exists, else the stem of the single
``*.inter`` file.

Mapping (generic data sets):

* interactions: ``user_id``, ``item_id`` (the fields of those names, else the first token
  field of ``.user`` / ``.item`` that ``.inter`` also has), ``timestamp`` (float field
  ``timestamp``, ``time`` or ``date``), ``rating`` (``rating`` or ``stars``) and then
  ``liked = rating >= liked_threshold``, label fields named like a known task (``click``,
  ``purchase``...) and ``weight``; other ``.inter`` fields are not carried.
* items: ``item_id``; ``title`` from the first of ``movie_title``, ``title``, ``name``
  (empty when there is none); ``description``: the other ``token_seq`` fields as text (a
  genre-like field's tokens joined with ``", "``, fields joined with ``"; "``); ``genre``:
  the first token of ``class`` / ``genre`` / ``genres`` / ``categories`` when present
  (``unknown`` when empty); other ``token`` fields as categorical (text) columns, ``float``
  fields as numbers; ``float_seq`` fields are not carried. Without a ``.item`` file the
  item table is the item ids seen in ``.inter`` with empty titles.
* users: ``user_id``, ``token`` fields as categorical columns, ``float`` fields as numbers,
  and ``profile``: ``"<field> <value>, ..."`` over the token and token_seq fields.

MovieLens (a ``.user`` with ``age``, ``gender``, ``occupation`` and a ``.item`` with
``movie_title`` and ``class`` or ``genre``, as RecBole's ml-100k / ml-1m): the tables are
those of :mod:`.movielens`, built with its functions: titles get their year back
(``Toy Story`` + ``1995`` -> ``Toy Story (1995)``), genres become ``description`` and
``genre``, users get ``age_group`` and the same ``profile``; ``rating`` must be 1-5 and
``scenario_from`` is one of none | age_group | gender | occupation | genre. ML-1M's numeric
occupation codes are turned into names as the MovieLens-1M adapter does.

``scenario_from`` for other data sets: ``none`` (default) or the name of any user or item
categorical column (a token field, or ``genre``); a user column wins when both have it.

Rows are not judged here: every row goes through :mod:`..validation` with its file and
line number (the header is line 1). A float field that is not a number marks its row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema as S
from ..formats import (
    BOOKKEEPING,
    DEFAULT_CHUNK_ROWS,
    ERROR_FIELD,
    ROW,
    FormatError,
    clean_text,
    concat_chunks,
    mark_error,
    read_delimited,
)
from ..schema import Tables
from ..validation import RawTables, as_numbers, liked_from_rating, scenario_choice
from . import movielens as ML

TYPES = ("token", "token_seq", "float", "float_seq")
SUFFIXES = ("inter", "item", "user")
TITLE_FIELDS = ("movie_title", "title", "name")
GENRE_FIELDS = ("class", "genre", "genres", "categories")
RATING_FIELDS = ("rating", "stars")
TIME_FIELDS = ("timestamp", "time", "date")
LABEL_FIELDS = S.KNOWN_TASKS + (S.WEIGHT,)
_YEAR = re.compile(r"\d{4}")


# --------------------------------------------------------------------------- files and headers


def recbole_files(directory) -> dict:
    """``{"inter": path, "item": path | None, "user": path | None, "name": name}`` for a
    directory of atomic files; FileNotFoundError naming the directory and the expected file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory (expected RecBole atomic files <name>.inter, ...)")
    name = directory.name
    if not (directory / f"{name}.inter").is_file():
        found = sorted(p.name for p in directory.glob("*.inter") if p.is_file())
        if len(found) > 1:
            raise FileNotFoundError(
                f"{directory}: several RecBole interaction files {found} and none named {name}.inter; "
                f"keep one, or rename the one to use to {name}.inter")
        if not found:
            raise FileNotFoundError(
                f"{directory}: RecBole atomic file {name}.inter not found (expected {directory / (name + '.inter')}, "
                f"tab-separated with a 'field:type' header; {name}.item and {name}.user are optional)")
        name = found[0][: -len(".inter")]
    paths = {s: directory / f"{name}.{s}" for s in SUFFIXES}
    return {"name": name, **{s: (p if p.is_file() else None) for s, p in paths.items()}}


def has_atomic_files(directory) -> bool:
    """True when ``directory`` holds a ``*.inter`` file (used by adapter detection)."""
    directory = Path(directory)
    return directory.is_dir() and any(p.is_file() for p in directory.glob("*.inter"))


def parse_header(path) -> dict:
    """``{field: type}`` (in file order) from an atomic file's ``name:type`` header line."""
    with open(path, "rb") as f:
        line = f.readline().decode("utf-8", "surrogateescape")
    line = line.rstrip("\r\n").lstrip("\ufeff")
    if not line.strip():
        raise FormatError(f"{path}: empty header: a RecBole atomic file starts with 'field:type' names "
                          f"separated by tabs (types {', '.join(TYPES)})")
    fields: dict = {}
    for i, raw in enumerate(line.split("\t"), start=1):
        text = clean_text(raw)[0].strip()
        name, sep, kind = text.rpartition(":")
        if not sep or not name or kind not in TYPES:
            raise FormatError(f"{path}: header column {i} is {text!r}; expected 'field:type' with type one of "
                              f"{', '.join(TYPES)} (RecBole atomic file)")
        if name in fields:
            raise FormatError(f"{path}: header names field {name!r} twice")
        fields[name] = kind
    return fields


def read_atomic(path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple:
    """``(fields, chunks)``: the typed header and the rows as str chunks whose columns are the
    bare field names (``_row`` = line number; the header is line 1)."""
    fields = parse_header(path)
    rename = dict(zip((f"{n}:{t}" for n, t in fields.items()), fields))

    def chunks() -> Iterator[pd.DataFrame]:
        for chunk in read_delimited(path, "\t", names=None, quoting=False, chunk_rows=chunk_rows):
            if ERROR_FIELD in chunk.columns:  # the reader names fields by their header text
                chunk[ERROR_FIELD] = chunk[ERROR_FIELD].map(lambda f: rename.get(f, f))
            yield chunk.rename(columns=rename)

    return fields, chunks()


def _first_present(candidates, fields, kinds=None):
    for c in candidates:
        if c in fields and (kinds is None or fields[c] in kinds):
            return c
    return None


def _key(inter_fields: dict, side_fields: dict | None, canonical: str, path) -> str:
    """The ``.inter`` field joining to a side table (``user_id`` / ``item_id`` by default)."""
    if canonical in inter_fields:
        return canonical
    for field, kind in (side_fields or {}).items():
        if kind == "token" and field in inter_fields:
            return field
    raise FormatError(f"{path}: no '{canonical}' field (header fields: {list(inter_fields)}), and no token field "
                      f"shared with the {'.user' if canonical == S.USER_ID else '.item'} file to use instead")


# --------------------------------------------------------------------------- side tables


def _numbers(frame: pd.DataFrame, fields: dict) -> None:
    """Float fields -> numbers in place; a value that is not one marks its row."""
    for field, kind in fields.items():
        if kind != "float" or field not in frame.columns:
            continue
        nums, _, wrong = as_numbers(frame[field])
        mark_error(frame, wrong, field, f"{field} must be a number (RecBole type float)")
        frame[field] = nums.astype(float).to_numpy()


def _tokens(value) -> list:
    return value.split() if isinstance(value, str) else []


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _bookkeeping(frame: pd.DataFrame) -> list:
    return [c for c in frame.columns if c in BOOKKEEPING]


def _side_fields(fields: dict, key: str, canonical: str, path, inter_path) -> dict:
    """A side file's fields with its join key renamed to ``canonical`` (FormatError without one)."""
    if key not in fields:
        raise FormatError(f"{path}: no {key!r} field to join with {Path(inter_path).name} (header fields: {list(fields)})")
    return {(canonical if f == key else f): k for f, k in fields.items() if not (f == canonical and key != canonical)}


def _renamed(frame: pd.DataFrame, key: str, canonical: str) -> pd.DataFrame:
    if key != canonical:
        frame = frame.drop(columns=[canonical], errors="ignore").rename(columns={key: canonical})
    return frame


def _movielens_items(raw: pd.DataFrame, genre_field: str) -> pd.DataFrame:
    """Items as the MovieLens adapter builds them: ``Title (year)``, genres as text, first genre."""
    years = raw["release_year"] if "release_year" in raw.columns else pd.Series([None] * len(raw), index=raw.index)
    titles = [f"{_text(t)} ({y.strip()})" if isinstance(y, str) and _YEAR.fullmatch(y.strip()) else _text(t)
              for t, y in zip(raw["movie_title"], years)]
    raw = raw.copy()
    raw[S.TITLE] = titles
    return ML._item_frame(raw, [_tokens(g) for g in raw[genre_field]])


def _generic_items(raw: pd.DataFrame, fields: dict) -> pd.DataFrame:
    title = _first_present(TITLE_FIELDS, fields, ("token", "token_seq"))
    genre = _first_present(GENRE_FIELDS, fields, ("token", "token_seq"))
    _numbers(raw, fields)
    items = pd.DataFrame({S.ITEM_ID: raw[S.ITEM_ID].to_numpy(object)}, index=raw.index)
    items[S.TITLE] = raw[title].map(_text).to_numpy(object) if title else ""
    texts = [f for f, k in fields.items() if k == "token_seq" and f not in (title, S.ITEM_ID)]
    parts = [raw[f].map(lambda v: ", ".join(_tokens(v))) if f == genre else raw[f].map(_text) for f in texts]
    items[S.DESCRIPTION] = ["; ".join(p for p in row if p) for row in zip(*parts)] if parts else ""
    if genre:
        items["genre"] = [(_tokens(v) or ["unknown"])[0] for v in raw[genre]]
    for field, kind in fields.items():
        if field not in items.columns and field not in (title, genre) and kind in ("token", "float"):
            items[field] = raw[field].to_numpy(object) if kind == "token" else raw[field].to_numpy()
    for col in _bookkeeping(raw):
        items[col] = raw[col].to_numpy()
    return items


def _generic_users(raw: pd.DataFrame, fields: dict) -> pd.DataFrame:
    _numbers(raw, fields)
    users = pd.DataFrame({S.USER_ID: raw[S.USER_ID].to_numpy(object)}, index=raw.index)
    described = [f for f, k in fields.items() if k in ("token", "token_seq") and f != S.USER_ID]
    for field, kind in fields.items():
        if field != S.USER_ID and field not in (S.PROFILE,) and kind in ("token", "float"):
            users[field] = raw[field].to_numpy(object) if kind == "token" else raw[field].to_numpy()
    users[S.PROFILE] = [", ".join(f"{f} {_text(v)}" for f, v in zip(described, row) if _text(v))
                        for row in zip(*(raw[f] for f in described))] if described else ""
    for col in _bookkeeping(raw):
        users[col] = raw[col].to_numpy()
    return users


def _items_from_interactions(path, key: str, chunk_rows: int) -> pd.DataFrame:
    """No ``.item`` file: the distinct item ids of ``.inter`` (first line cited), empty titles."""
    ids, rows = [], []
    _, chunks = read_atomic(path, chunk_rows)
    for chunk in chunks:
        keep = chunk[key].map(_text).to_numpy(object)
        ok = keep != ""
        ids.extend(keep[ok])
        rows.extend(chunk[ROW].to_numpy()[ok])
    frame = pd.DataFrame({S.ITEM_ID: pd.Series(ids, dtype=object), ROW: np.asarray(rows, np.int64)})
    frame = frame.drop_duplicates(S.ITEM_ID, ignore_index=True)
    frame[S.TITLE] = ""
    return frame[[S.ITEM_ID, S.TITLE, ROW]]


# --------------------------------------------------------------------------- interactions


def _interaction_columns(fields: dict, user_key: str, item_key: str) -> dict:
    """``{inter field: canonical column}`` of the fields carried into the interactions."""
    columns = {user_key: S.USER_ID, item_key: S.ITEM_ID}
    rating = _first_present(RATING_FIELDS, fields, ("float", "token"))
    when = _first_present(TIME_FIELDS, fields, ("float", "token"))
    if rating:
        columns[rating] = S.RATING
    if when:
        columns[when] = S.TIMESTAMP
    for field in LABEL_FIELDS:
        if field in fields and field not in columns:
            columns[field] = field
    return columns


def _canonical_chunks(chunks, columns: dict) -> Iterator[pd.DataFrame]:
    for chunk in chunks:
        keep = list(columns) + _bookkeeping(chunk)
        yield chunk[keep].rename(columns=columns)


def _with_labels(chunks, liked_threshold) -> Iterator[pd.DataFrame]:
    for chunk in chunks:
        if S.RATING in chunk.columns:
            chunk["liked"] = liked_from_rating(chunk[S.RATING], liked_threshold)
        yield chunk


def _with_scenarios(chunks, scenario_from, users, items, files) -> Iterator[pd.DataFrame]:
    """The generic scenario column: ``default``, or a user (else item) column's value."""
    for chunk in chunks:
        if scenario_from == "none":
            chunk[S.SCENARIO] = S.DEFAULT_SCENARIO
        elif users is not None and scenario_from in users.columns:
            values = ML._lookup(chunk[S.USER_ID], users, S.USER_ID, scenario_from)
            chunk[S.SCENARIO] = values.to_numpy(object)
            missing = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
            reasons = [f"cannot derive scenario from {scenario_from}: user {u!r} has no {scenario_from} in {files['users']}"
                       for u in chunk[S.USER_ID]]
            mark_error(chunk, missing & chunk[S.USER_ID].notna().to_numpy(), S.SCENARIO, reasons)
        else:
            values = ML._lookup(chunk[S.ITEM_ID], items, S.ITEM_ID, scenario_from)
            chunk[S.SCENARIO] = values.to_numpy(object)
            # An item absent from the item table is left to validation ("item not in the item table").
            empty = values.notna().to_numpy() & (values.astype(str).str.strip() == "").to_numpy()
            reasons = [f"cannot derive scenario from {scenario_from}: item {i!r} has an empty {scenario_from} in "
                       f"{files['items']}" for i in chunk[S.ITEM_ID]]
            mark_error(chunk, empty, S.SCENARIO, reasons)
        yield chunk


# --------------------------------------------------------------------------- entry points


def is_movielens(item_fields: dict | None, user_fields: dict | None) -> bool:
    """RecBole's MovieLens sets: users with age/gender/occupation, items with movie_title and genres."""
    return (bool(user_fields) and bool(item_fields) and {"age", "gender", "occupation"} <= set(user_fields)
            and "movie_title" in item_fields and any(g in item_fields for g in ("class", "genre")))


def _categorical(frame: pd.DataFrame | None, exclude) -> list:
    if frame is None:
        return []
    return [c for c in frame.columns if c not in exclude and c not in BOOKKEEPING
            and not pd.api.types.is_numeric_dtype(frame[c])]


def raw_recbole(directory, scenario_from=None, liked_threshold=4.0, chunk_rows=DEFAULT_CHUNK_ROWS) -> RawTables:
    """The RecBole atomic files in ``directory`` as raw tables awaiting validation."""
    paths = recbole_files(directory)
    inter_fields, inter_chunks = read_atomic(paths["inter"], chunk_rows)
    item_fields = parse_header(paths["item"]) if paths["item"] else None
    user_fields = parse_header(paths["user"]) if paths["user"] else None
    user_key = _key(inter_fields, user_fields, S.USER_ID, paths["inter"])
    item_key = _key(inter_fields, item_fields, S.ITEM_ID, paths["inter"])
    files = {"interactions": str(paths["inter"])}

    items = users = None
    if paths["item"]:
        item_fields = _side_fields(item_fields, item_key, S.ITEM_ID, paths["item"], paths["inter"])
        items = _renamed(concat_chunks(read_atomic(paths["item"], chunk_rows)[1]), item_key, S.ITEM_ID)
        files["items"] = str(paths["item"])
    if paths["user"]:
        user_fields = _side_fields(user_fields, user_key, S.USER_ID, paths["user"], paths["inter"])
        users = _renamed(concat_chunks(read_atomic(paths["user"], chunk_rows)[1]), user_key, S.USER_ID)
        files["users"] = str(paths["user"])
    columns = _interaction_columns(inter_fields, user_key, item_key)
    chunks = _canonical_chunks(inter_chunks, columns)
    dataset = f"recbole/{paths['name']}"

    if is_movielens(item_fields, user_fields) and S.RATING in columns.values():
        choice = scenario_choice(scenario_from, ML.SCENARIO_CHOICES, f"MovieLens (RecBole {paths['name']})")
        items = _movielens_items(items, "class" if "class" in item_fields else "genre")
        occupations = users["occupation"].dropna().astype(str).str.strip()
        ml1m = bool(len(occupations)) and bool(occupations.str.fullmatch(r"\d+").all())  # ML-1M codes 0-20
        users = ML._users(users, ml1m=ml1m)
        chunks = ML._ratings(chunks, users, items, choice, liked_threshold, files["users"])  # liked + scenario
        return RawTables(interactions=chunks, items=items, users=users, files=files,
                         rating_range=ML.RATING_RANGE, column_types={"users": {"age": "int"}}, name=dataset)

    if items is None:
        items = _items_from_interactions(paths["inter"], item_key, chunk_rows)
        files["items"] = str(paths["inter"])
    else:
        items = _generic_items(items, item_fields)
    if users is not None:
        users = _generic_users(users, user_fields)
    # Any user (first) or item categorical column; matched case-insensitively like the other adapters.
    columns = list(dict.fromkeys(_categorical(users, (S.USER_ID, S.PROFILE))
                                 + _categorical(items, (S.ITEM_ID, S.TITLE, S.DESCRIPTION))))
    by_lower = {"none": "none", **{c.lower(): c for c in reversed(columns)}}
    choice = by_lower[scenario_choice(scenario_from, tuple(by_lower), f"RecBole data set {paths['name']!r}")]
    chunks = _with_scenarios(_with_labels(chunks, liked_threshold), choice, users, items, files)
    return RawTables(interactions=chunks, items=items, users=users, files=files, name=dataset,
                     typed=("items", "users"))


def load_recbole(directory, scenario_from=None, liked_threshold=4.0, quarantine_dir=None) -> Tables:
    """RecBole atomic files -> validated Tables (bad rows quarantined; see loading.load_tables for the report)."""
    return raw_recbole(directory, scenario_from, liked_threshold).validate(quarantine_dir=quarantine_dir)[0]


__all__ = ["is_movielens", "load_recbole", "parse_header", "raw_recbole", "read_atomic", "recbole_files"]
