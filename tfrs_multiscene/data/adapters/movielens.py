"""MovieLens-100K and MovieLens-1M, as downloaded from GroupLens, -> the three tables.

MovieLens-100K (``ml-100k/``): ``u.data`` (tab: user, item, rating, timestamp), ``u.item``
(pipe, Latin-1: id, title, release date, video date, URL, 19 genre flags), ``u.user``
(pipe: id, age, gender, occupation, zip). MovieLens-1M (``ml-1m/``): ``ratings.dat``,
``movies.dat`` (Latin-1, genres joined by ``|``) and ``users.dat`` separated by ``::``;
ages there are the published codes 1, 18, 25, 35, 45, 50, 56 and occupations codes 0-20.

Output: items ``item_id, title, description`` (the genres as text), ``genre`` (first genre);
users ``user_id, profile`` (age, gender, occupation as text), ``age``, ``age_group``,
``gender``, ``occupation``; interactions ``user_id, item_id, scenario, timestamp, rating,
liked`` with ``liked = rating >= liked_threshold``.

``scenario_from``: ``none`` (one scenario, ``default``), ``age_group`` (three groups as in
multi-domain papers on MovieLens-1M: ``under_25`` (< 25, ML-1M codes 1 and 18),
``25_44`` (ML-1M codes 25 and 35) and ``45_plus`` (codes 45, 50, 56)), ``gender``,
``occupation`` (user columns) or ``genre`` (the item's first genre).

Rows are not judged here: every raw row goes through :mod:`..validation` (with the file's
name and line number), so a corrupted ``u.data`` line is reported and quarantined.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema as S
from ..formats import DEFAULT_CHUNK_ROWS, concat_chunks, mark_error, read_delimited
from ..schema import Tables
from ..validation import RawTables, as_numbers, liked_from_rating, scenario_choice

GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western")
OCCUPATIONS_1M = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                  "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                  "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                  "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
AGES_1M = {1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
SCENARIO_CHOICES = ("none", "age_group", "gender", "occupation", "genre")  # first: the default
USER_SCENARIO_COLUMNS = ("age_group", "gender", "occupation")
RATING_RANGE = (1.0, 5.0)
RATING_COLUMNS = [S.USER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP]


def age_group(age: float) -> str:
    """The three age groups used as scenarios: under_25, 25_44, 45_plus ('' if unknown)."""
    if age is None or not np.isfinite(age):
        return ""
    return "under_25" if age < 25 else ("25_44" if age < 45 else "45_plus")


def _require(directory: Path, names) -> dict:
    paths = {n: directory / n for n in names}
    missing = [n for n, p in paths.items() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{directory}: MovieLens files {missing} not found (expected {list(names)})")
    return paths


# --------------------------------------------------------------------------- items and users


def _items_100k(path: Path) -> pd.DataFrame:
    names = [S.ITEM_ID, S.TITLE, "release_date", "video_release_date", "url"] + [f"g:{g}" for g in GENRES_100K]
    raw = concat_chunks(read_delimited(path, "|", names=names, encoding="latin-1", quoting=False))
    flags = raw[[f"g:{g}" for g in GENRES_100K]]
    for g in GENRES_100K:
        col = flags[f"g:{g}"]
        bad = ~col.isin(["0", "1"]).to_numpy() & col.notna().to_numpy()
        mark_error(raw, bad, f"genre flag '{g}'", "genre flag must be 0 or 1")
    on = flags.to_numpy(object) == "1"
    genres = [[GENRES_100K[j] for j in np.flatnonzero(row)] for row in on]
    return _item_frame(raw, genres)


def _items_1m(path: Path) -> pd.DataFrame:
    raw = concat_chunks(read_delimited(path, "::", names=[S.ITEM_ID, S.TITLE, "genres"], encoding="latin-1"))
    genres = [str(g).split("|") if isinstance(g, str) and g else [] for g in raw["genres"]]
    return _item_frame(raw, genres)


def _item_frame(raw: pd.DataFrame, genres: list) -> pd.DataFrame:
    keep = [c for c in raw.columns if c in (S.ITEM_ID, S.TITLE) or c.startswith("_")]
    items = raw[keep].copy()
    items[S.DESCRIPTION] = [", ".join(g) for g in genres]
    items["genre"] = [g[0] if g else "unknown" for g in genres]
    return items


def _users(raw: pd.DataFrame, ml1m: bool) -> pd.DataFrame:
    ages, _, _ = as_numbers(raw["age"])
    occupation = raw["occupation"]
    if ml1m:
        codes, _, _ = as_numbers(occupation)
        occupation = pd.Series([OCCUPATIONS_1M[int(c)] if np.isfinite(c) and 0 <= c < len(OCCUPATIONS_1M) else o
                                for c, o in zip(codes, raw["occupation"])], dtype=object)
        bad = ~np.isin(codes.to_numpy(), np.arange(len(OCCUPATIONS_1M)))
        mark_error(raw, bad, "occupation", "occupation must be a code 0-20")
        bad_age = ~np.isin(ages.to_numpy(), list(AGES_1M))
        mark_error(raw, bad_age & ages.notna().to_numpy(), "age", f"age must be one of the MovieLens-1M codes {list(AGES_1M)}")
    users = raw[[S.USER_ID, "age", "gender"] + [c for c in raw.columns if c.startswith("_")]].copy()
    users["occupation"] = occupation.to_numpy()
    users["age_group"] = [age_group(a) for a in ages]
    age_text = [AGES_1M.get(int(a), str(a)) if ml1m and np.isfinite(a) else str(r) for a, r in zip(ages, raw["age"])]
    gender = {"M": "male", "F": "female"}
    users[S.PROFILE] = [f"age {a}, {gender.get(str(g), g)}, {o}" for a, g, o in zip(age_text, raw["gender"], occupation)]
    return users


def _users_100k(path: Path) -> pd.DataFrame:
    names = [S.USER_ID, "age", "gender", "occupation", "zip_code"]
    return _users(concat_chunks(read_delimited(path, "|", names=names, quoting=False)), ml1m=False)


def _users_1m(path: Path) -> pd.DataFrame:
    names = [S.USER_ID, "gender", "age", "occupation", "zip_code"]
    return _users(concat_chunks(read_delimited(path, "::", names=names)), ml1m=True)


# --------------------------------------------------------------------------- ratings


def _lookup(keys: pd.Series, frame: pd.DataFrame, key: str, column: str) -> pd.Series:
    """``frame[column]`` for each of ``keys`` (matched on ``frame[key]``), NaN where absent."""
    table = frame.drop_duplicates(key).set_index(frame.drop_duplicates(key)[key].astype(str).str.strip())[column]
    return keys.astype(str).str.strip().map(table)


def _ratings(chunks, users, items, scenario_from, liked_threshold, users_file) -> Iterator[pd.DataFrame]:
    for chunk in chunks:
        chunk["liked"] = liked_from_rating(chunk[S.RATING], liked_threshold)
        if scenario_from == "none":
            chunk[S.SCENARIO] = S.DEFAULT_SCENARIO
        elif scenario_from == "genre":
            chunk[S.SCENARIO] = _lookup(chunk[S.ITEM_ID], items, S.ITEM_ID, "genre").to_numpy(object)
        else:
            values = _lookup(chunk[S.USER_ID], users, S.USER_ID, scenario_from)
            chunk[S.SCENARIO] = values.to_numpy(object)
            missing = values.isna().to_numpy() | (values.astype(str) == "").to_numpy()
            reasons = [f"cannot derive scenario from {scenario_from}: user {u!r} has no valid row in {users_file}"
                       for u in chunk[S.USER_ID]]
            mark_error(chunk, missing & chunk[S.USER_ID].notna().to_numpy(), S.SCENARIO, reasons)
        yield chunk


def _raw(name, paths, items, users, sep, scenario_from, liked_threshold, chunk_rows) -> RawTables:
    """Raw tables from the item and user frames and the ratings file ``paths[0]``."""
    scenario_from = scenario_choice(scenario_from, SCENARIO_CHOICES, "MovieLens")
    data_path, items_file, users_file = (str(p) for p in paths)
    chunks = read_delimited(data_path, sep, names=RATING_COLUMNS, quoting=False, chunk_rows=chunk_rows)
    return RawTables(
        interactions=_ratings(chunks, users, items, scenario_from, liked_threshold, users_file),
        items=items, users=users,
        files={"interactions": data_path, "items": items_file, "users": users_file},
        rating_range=RATING_RANGE, column_types={"users": {"age": "int"}}, name=name,
    )


def raw_movielens_100k(directory, scenario_from="none", liked_threshold=4.0, chunk_rows=DEFAULT_CHUNK_ROWS) -> RawTables:
    """The MovieLens-100K download in ``directory`` as raw tables awaiting validation."""
    paths = _require(Path(directory), ("u.data", "u.item", "u.user"))
    items, users = _items_100k(paths["u.item"]), _users_100k(paths["u.user"])
    files = (paths["u.data"], paths["u.item"], paths["u.user"])
    return _raw("movielens-100k", files, items, users, "\t", scenario_from, liked_threshold, chunk_rows)


def raw_movielens_1m(directory, scenario_from="none", liked_threshold=4.0, chunk_rows=DEFAULT_CHUNK_ROWS) -> RawTables:
    """The MovieLens-1M download in ``directory`` as raw tables awaiting validation."""
    paths = _require(Path(directory), ("ratings.dat", "movies.dat", "users.dat"))
    items, users = _items_1m(paths["movies.dat"]), _users_1m(paths["users.dat"])
    files = (paths["ratings.dat"], paths["movies.dat"], paths["users.dat"])
    return _raw("movielens-1m", files, items, users, "::", scenario_from, liked_threshold, chunk_rows)


def load_movielens_100k(directory, scenario_from="none", liked_threshold=4.0, quarantine_dir=None) -> Tables:
    """MovieLens-100K -> validated Tables (bad rows quarantined; see loading.load_tables for the report)."""
    return raw_movielens_100k(directory, scenario_from, liked_threshold).validate(quarantine_dir=quarantine_dir)[0]


def load_movielens_1m(directory, scenario_from="none", liked_threshold=4.0, quarantine_dir=None) -> Tables:
    """MovieLens-1M -> validated Tables (bad rows quarantined; see loading.load_tables for the report)."""
    return raw_movielens_1m(directory, scenario_from, liked_threshold).validate(quarantine_dir=quarantine_dir)[0]
