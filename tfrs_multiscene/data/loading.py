"""load_tables: the one entry point from a ``--data`` path to validated Tables and a report.

``cfg.data`` is either the canonical directory (``interactions.*``, ``items.*`` and
optionally ``users.*``, each in any supported format, detected per file) or a public data
set's download directory (MovieLens-100K/1M, MIND, Amazon 2018). ``cfg.format`` may name the
adapter or force one table format for every file; without it, the layout decides.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..config import DataConfig
from .adapters import ADAPTERS, detect_adapter
from .formats import FORMATS, detect_format, find_table_file, read_table
from .privacy import hash_user_ids
from .schema import Tables
from .validation import DataOptionError, RawTables, ValidationReport


class DataLayoutError(ValueError):
    """The --data path holds neither the canonical layout nor a known download."""


def describe_source(cfg: DataConfig) -> str:
    """'canonical' or the adapter name that ``cfg`` reads (raises DataLayoutError)."""
    if not cfg.data:
        raise DataLayoutError("no --data given: pass a directory with interactions.*, items.*, users.* or a download directory")
    path = Path(cfg.data).expanduser()
    if not path.is_dir():
        raise DataLayoutError(f"--data {path}: not a directory (expected interactions.*, items.*, users.* or a download directory)")
    fmt = (cfg.format or "").lower() or None
    if fmt is not None and fmt not in ADAPTERS and fmt not in FORMATS:
        raise DataLayoutError(f"--format {cfg.format!r}: expected one of {list(FORMATS) + list(ADAPTERS)}")
    if fmt in ADAPTERS:
        return fmt
    if fmt is None and find_table_file(path, "interactions") is None:
        adapter = detect_adapter(path)
        if adapter:
            return adapter
    return "canonical"


def read_raw(cfg: DataConfig) -> RawTables:
    """The raw (not yet validated) tables that ``cfg`` points at."""
    source = describe_source(cfg)
    path = Path(cfg.data).expanduser()
    if source != "canonical":
        reader = ADAPTERS[source]
        kwargs = {"chunk_rows": cfg.chunk_rows}
        if cfg.scenario_from:
            kwargs["scenario_from"] = cfg.scenario_from
        parameters = inspect.signature(reader).parameters
        if "liked_threshold" in parameters:
            kwargs["liked_threshold"] = cfg.liked_threshold
        if "id_only_items" in parameters:  # adapters whose items may lack metadata (Amazon)
            kwargs["id_only_items"] = cfg.id_only_items
        try:
            return reader(path, **kwargs)
        except DataOptionError as err:  # e.g. an unknown --scenario-from for this data set
            raise DataLayoutError(str(err)) from None
    fmt = (cfg.format or "").lower() or None
    files = {t: find_table_file(path, t) for t in ("interactions", "items", "users")}
    missing = [t for t in ("interactions", "items") if files[t] is None]
    if missing:
        raise DataLayoutError(
            f"--data {path}: no {' or '.join(m + '.*' for m in missing)} file; expected interactions.<ext>, "
            f"items.<ext> (and optionally users.<ext>) with <ext> one of {list(FORMATS)}, or a MovieLens/MIND/Amazon "
            f"download (u.data; ratings.dat; behaviors.tsv; meta_*.json) or RecBole atomic files (<name>.inter)")
    if cfg.scenario_from not in (None, "", "none"):
        raise DataLayoutError("--scenario-from applies to adapters (movielens-100k, movielens-1m, mind, amazon, recbole); "
                              "canonical tables carry their own 'scenario' column")
    chunks = {t: (read_table(p, fmt, cfg.chunk_rows) if p is not None else None) for t, p in files.items()}
    typed = tuple(t for t, p in files.items() if p is not None and (fmt or detect_format(p)) not in ("csv", "tsv"))
    return RawTables(chunks["interactions"], chunks["items"], chunks["users"],
                     files={t: str(p) for t, p in files.items() if p is not None}, name=str(path), typed=typed)


def load_tables(cfg: DataConfig, quarantine_dir=None) -> tuple[Tables, ValidationReport]:
    """Read and validate the data ``cfg`` names -> (Tables of valid rows, ValidationReport).

    With ``cfg.hash_user_ids`` every user id is its salted hash from here on
    (:mod:`~tfrs_multiscene.data.privacy`). Quarantined rows go to ``<dir>/quarantine_<table>.csv`` where ``dir`` is
    ``cfg.quarantine_dir`` if set, else ``quarantine_dir`` (e.g. the run directory), else
    the data directory. ``cfg.strict`` is left to the caller: ``report.ok`` says whether
    anything was quarantined.
    """
    raw = read_raw(cfg)
    target: str | None = cfg.quarantine_dir or (str(quarantine_dir) if quarantine_dir else None) or cfg.data
    tables, report = raw.validate(scenarios=cfg.scenarios, tasks=cfg.tasks, quarantine_dir=target)
    if cfg.hash_user_ids:
        tables = hash_user_ids(tables, cfg.hash_user_ids)
    return tables, report
