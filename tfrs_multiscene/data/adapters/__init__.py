"""Adapters: public data sets, as their users download them, -> raw tables for validation.

Each adapter has ``raw_<name>(directory, scenario_from, ...) -> RawTables`` (rows not yet
judged, with file names and line numbers) and ``load_<name>(...) -> Tables`` (validated).
``ADAPTERS`` maps the ``--format`` names to the raw readers; :func:`detect_adapter` tells a
download directory's data set from the files it holds.
"""

from __future__ import annotations

from pathlib import Path

from .amazon import amazon_files, load_amazon, raw_amazon
from .mind import load_mind, raw_mind
from .movielens import (
    load_movielens_1m,
    load_movielens_100k,
    raw_movielens_1m,
    raw_movielens_100k,
)
from .recbole import has_atomic_files, load_recbole, raw_recbole

ADAPTERS = {
    "movielens-100k": raw_movielens_100k,
    "movielens-1m": raw_movielens_1m,
    "mind": raw_mind,
    "amazon": raw_amazon,
    "recbole": raw_recbole,
}
# Files whose presence identifies a download directory.
SIGNATURES = {
    "movielens-100k": ("u.data", "u.item"),
    "movielens-1m": ("ratings.dat", "movies.dat"),
    "mind": ("behaviors.tsv", "news.tsv"),
}


def detect_adapter(directory) -> str | None:
    """The adapter name for a download directory, or None when it is not one we know."""
    directory = Path(directory)
    for name, files in SIGNATURES.items():
        if all((directory / f).is_file() for f in files):
            return name
    if has_atomic_files(directory):  # RecBole atomic files: <name>.inter (+ .item, .user)
        return "recbole"
    if directory.is_dir():
        reviews, meta = amazon_files(directory)
        if reviews and meta:
            return "amazon"
    return None


__all__ = [
    "ADAPTERS",
    "detect_adapter",
    "load_amazon",
    "load_mind",
    "load_movielens_1m",
    "load_movielens_100k",
    "load_recbole",
    "raw_amazon",
    "raw_mind",
    "raw_movielens_1m",
    "raw_movielens_100k",
    "raw_recbole",
]
