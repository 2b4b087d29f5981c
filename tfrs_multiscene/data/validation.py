"""Validation that loses nothing: every row read is either used or quarantined with a reason.

Rules (each problem names table, file, row and field):

* missing required columns (the closest present column name is suggested): rows without
  an id are quarantined, a missing ``title`` column is an error that leaves titles empty;
  configured task columns that are absent; unknown columns that look like a misspelt known
  name are warnings; no ``scenario`` column is a warning (scenario ``default``);
* empty files (no rows);
* empty ids; duplicate item / user ids; duplicate interaction rows (identical in every column);
* wrong types: ids must be text or integers, ``timestamp`` integer seconds, ``rating`` /
  ``weight`` / ``true_p_*`` numbers, task labels 0/1 (``true``/``false`` accepted), and any
  column named in ``column_types``;
* values outside their range: labels not in {0, 1}, ``weight`` < 0, ``true_p_*`` outside
  [0, 1], ``rating`` outside ``rating_range`` when given, non-finite numbers;
* unknown scenarios (when the allowed ``scenarios`` are given);
* interactions whose item is absent from the item table (unless ``id_only_items``: then
  each such item joins the item table as an id-only item with empty text, counted in
  ``ValidationReport.id_only_items``; the Amazon adapter's default, for reviews without
  metadata);
* non-UTF-8 text and undecodable rows, as flagged by the readers (``_error`` column).

Rows failing any rule are quarantined (the first failing rule is the reason). For each
table ``read == used + quarantined`` holds by construction. Quarantined rows are written,
with their original values and ``file,row,field,reason,value`` columns, to
``<quarantine_dir>/quarantine_<table>.csv``.

Each problem has a ``reason`` (the full text, with row-specific details such as the row of
a duplicate's first occurrence: kept per row in the quarantine files) and a ``kind`` (the
reason without those details, :func:`reason_kind`); the summary counts problems by kind.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema as S
from .formats import BOOKKEEPING, ERROR, ERROR_FIELD, FILE, ROW

Chunks = pd.DataFrame | Iterable[pd.DataFrame] | None

QUARANTINE_COLUMNS = ("file", "row", "field", "reason", "value")
TEXT_COLUMNS = {"items": (S.TITLE, S.DESCRIPTION), "users": (S.PROFILE,), "interactions": ()}
KNOWN_COLUMNS = {
    "interactions": (S.USER_ID, S.ITEM_ID, S.SCENARIO, S.TIMESTAMP, S.RATING, S.WEIGHT) + S.KNOWN_TASKS,
    "items": (S.ITEM_ID, S.TITLE, S.DESCRIPTION, "category", "brand"),
    "users": (S.USER_ID, S.PROFILE),
}
REQUIRED = {"interactions": (S.USER_ID, S.ITEM_ID), "items": S.ITEM_REQUIRED, "users": S.USER_REQUIRED}
ID_COLUMN = {"items": S.ITEM_ID, "users": S.USER_ID}


class DataOptionError(ValueError):
    """An adapter option that does not apply to the data set (e.g. an unknown --scenario-from)."""


def scenario_choice(scenario_from, choices: tuple, dataset: str) -> str:
    """The adapter's ``--scenario-from`` value (``choices[0]`` when unset), or DataOptionError."""
    choice = (scenario_from or choices[0]).lower()
    if choice not in choices:
        raise DataOptionError(f"--scenario-from {scenario_from!r} is not available for {dataset}; choose one of {choices}")
    return choice


def liked_from_rating(ratings: pd.Series, threshold: float) -> pd.Series:
    """The derived ``liked`` label: 1 where rating >= threshold, 0 below, None where the
    rating is not a number (validation then reports the rating)."""
    nums, _, _ = as_numbers(ratings)
    return pd.Series(np.where(nums.isna(), None, (nums >= threshold).astype(int)), index=ratings.index, dtype=object)


# --------------------------------------------------------------------------- report

_ROW_SPECIFIC = (
    (re.compile(r"\s*\((?:bytes|got)\b[^)]*\)"), ""),                               # offending bytes / values
    (re.compile(r"\b(rows?|records?|columns?|lines?|found|got)\s+\d+"), r"\1 N"),     # row / column numbers
    (re.compile(r"\b(user|item)\s+(?:'[^']*'|\"[^\"]*\")"), r"\1 <id>"),            # quoted ids
)


def reason_kind(reason: str) -> str:
    """The kind of problem a reason describes: the reason without its row-specific parts
    (row, record, column and line numbers, quoted ids, offending bytes), so that problems
    of one kind can be counted together. ``"duplicate of the interaction at row 12"`` ->
    ``"duplicate of the interaction at row N"``."""
    kind = str(reason)
    for pattern, replacement in _ROW_SPECIFIC:
        kind = pattern.sub(replacement, kind)
    return kind.strip()


@dataclasses.dataclass
class Problem:
    """One finding. ``row`` is None for a problem of a whole file or column."""

    table: str
    file: str
    row: int | None
    field: str | None
    reason: str
    value: str = ""
    severity: str = "error"  # "error" (row quarantined / file unusable) or "warning"
    kind: str = ""  # the reason without row-specific parts (default: reason_kind(reason))

    def __post_init__(self):
        if not self.kind:
            self.kind = reason_kind(self.reason)

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.row is not None else self.file
        field = f" [{self.field}]" if self.field else ""
        value = f" (got {self.value!r})" if self.value != "" else ""
        return f"{self.severity}: {where}{field} {self.reason}{value}"


@dataclasses.dataclass
class TableCounts:
    read: int = 0
    used: int = 0
    quarantined: int = 0


@dataclasses.dataclass
class ValidationReport:
    """Counts per table, every problem found, and where quarantined rows were written."""

    counts: dict = dataclasses.field(default_factory=dict)        # table -> TableCounts
    files: dict = dataclasses.field(default_factory=dict)         # table -> source file(s)
    problems: list = dataclasses.field(default_factory=list)      # [Problem]
    quarantine_files: dict = dataclasses.field(default_factory=dict)  # table -> Path
    summary: dict = dataclasses.field(default_factory=dict)       # Tables.summary()
    id_only_items: int = 0  # items without an item-table row, kept with empty text (id_only_items)

    @property
    def errors(self) -> list:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def quarantined(self) -> int:
        """Quarantined rows over all tables."""
        return sum(c.quarantined for c in self.counts.values())

    @property
    def ok(self) -> bool:
        """True when nothing was quarantined and no file-level error was found."""
        return not self.errors and self.quarantined == 0

    @property
    def quarantine_path(self) -> Path | None:
        """The directory holding the quarantine files, or None when none was written."""
        paths = list(self.quarantine_files.values())
        return Path(paths[0]).parent if paths else None

    def exit_code(self, strict: bool = False) -> int:
        """What a command should exit with: 1 when no interaction is usable, or (``strict``)
        when anything was quarantined or a file-level error was found; else 0."""
        counts = self.counts.get("interactions")
        if counts is None or counts.used == 0:
            return 1
        return 1 if strict and not self.ok else 0

    def balanced(self) -> bool:
        """read == used + quarantined for every table."""
        return all(c.read == c.used + c.quarantined for c in self.counts.values())

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "counts": {t: dataclasses.asdict(c) for t, c in self.counts.items()},
            "files": dict(self.files),
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "reasons": self.reason_counts(),
            "reason_kinds": self.kind_counts(),
            "id_only_items": int(self.id_only_items),
            "quarantine_files": {t: str(p) for t, p in self.quarantine_files.items()},
            "summary": self.summary,
        }

    def reason_counts(self) -> dict:
        """{table: {reason: number of problems}} (warnings included), by the full reason text
        (as in the quarantine files' ``reason`` column)."""
        out: dict = {}
        for p in self.problems:
            out.setdefault(p.table, {}).setdefault(p.reason, 0)
            out[p.table][p.reason] += 1
        return out

    def kind_counts(self) -> dict:
        """{table: {kind: number of problems}} (warnings included), most frequent first: the
        reasons without their row-specific parts (``Problem.kind``)."""
        out: dict = {}
        for p in self.problems:
            out.setdefault(p.table, {}).setdefault(p.kind, 0)
            out[p.table][p.kind] += 1
        return {t: dict(sorted(kinds.items(), key=lambda kv: -kv[1])) for t, kinds in out.items()}

    def format_summary(self, max_problems: int = 20) -> str:
        """A human-readable table of counts, then the problems (first ``max_problems``)."""
        lines = [f"{'table':<13}{'file':<28}{'read':>10}{'used':>10}{'quarantined':>13}"]
        for table, c in self.counts.items():
            file = Path(str(self.files.get(table, ""))).name
            lines.append(f"{table:<13}{file[:27]:<28}{c.read:>10}{c.used:>10}{c.quarantined:>13}")
        if self.counts:
            total = TableCounts(*(sum(getattr(c, k) for c in self.counts.values()) for k in ("read", "used", "quarantined")))
            lines.append(f"read = used + quarantined: {total.read} = {total.used} + {total.quarantined}"
                         + ("" if self.balanced() else "  (MISMATCH: a row was lost)"))
        if self.summary:
            s = self.summary
            lines.append(
                f"usable: {s.get('interactions', 0)} interactions, {s.get('users', 0)} users, "
                f"{s.get('items', 0)} items ({s.get('items_with_title', 0)} with titles), "
                f"scenarios {s.get('scenarios', [])}, tasks {s.get('tasks', [])}")
        if self.id_only_items:
            lines.append(f"{self.id_only_items} items without metadata kept as id-only items (empty title)")
        if self.problems:
            lines.append(f"{len(self.errors)} error(s), {len(self.warnings)} warning(s):")
            lines.extend(f"  {p}" for p in self.problems[:max_problems])
            if len(self.problems) > max_problems:
                lines.append(f"  ... {len(self.problems) - max_problems} more; by kind of problem:")
                for table, kinds in self.kind_counts().items():
                    lines.extend(f"    {table}: {n} x {k}" for k, n in kinds.items())
        for table, path in self.quarantine_files.items():
            lines.append(f"quarantined {table} rows written to {path}")
        lines.append("OK" if self.ok else "NOT OK: rows were quarantined or files are unusable")
        return "\n".join(lines)


# --------------------------------------------------------------------------- conversions


def _is_blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _id_text(value) -> str | None:
    """An id as text: integers (and integral floats) without a decimal point; None if blank."""
    if _is_blank(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple, np.ndarray)):
        return "\x00list"  # flagged below as a wrong type
    return str(value).strip()


def _text_kind(series: pd.Series) -> str:
    """pandas' inferred kind of values ('string', 'integer', 'mixed', ...), NA skipped."""
    return pd.api.types.infer_dtype(series, skipna=True)


def as_ids(series: pd.Series):
    """(ids as str Series with NA for blanks, mask of blanks, mask of wrong types)."""
    kind = _text_kind(series)
    if pd.api.types.is_integer_dtype(series.dtype):
        ids = series.astype("int64").astype(str).astype(object)
    elif kind in ("string", "empty"):  # fast path: text cells (None for missing)
        ids = series.astype(object).str.strip()
        ids = ids.where(ids.ne("").fillna(False), None).astype(object)
    else:
        ids = series.map(_id_text).astype(object)
    wrong = ids.eq("\x00list").fillna(False).to_numpy(bool)
    ids = ids.where(~wrong, None)
    blank = ids.isna().to_numpy()
    return ids, blank & ~wrong, wrong


_BOOL_TEXT = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0}


def as_numbers(series: pd.Series, booleans: bool = False):
    """(float Series, mask of blanks, mask of values that are not numbers)."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        nums = pd.to_numeric(series, errors="coerce").astype(float)
        blank = nums.isna().to_numpy()
        return nums, blank, np.zeros(len(series), bool)

    kind = _text_kind(series)
    if kind in ("integer", "floating", "mixed-integer-float", "boolean", "decimal"):
        blank = series.isna().to_numpy()
        nums = pd.to_numeric(series.where(~blank, None), errors="coerce").astype(float)
        return nums, blank, nums.isna().to_numpy() & ~blank

    def clean(v):
        if isinstance(v, str):
            v = v.strip()
            if booleans and v.lower() in _BOOL_TEXT:
                return _BOOL_TEXT[v.lower()]
            return v
        if isinstance(v, (list, tuple, dict, np.ndarray)):
            return "not a number"
        return v

    if kind in ("string", "empty"):  # fast path: text cells (None for missing)
        cleaned = series.astype(object).str.strip()
        if booleans:
            cleaned = cleaned.str.lower().map(_BOOL_TEXT).where(cleaned.str.lower().isin(list(_BOOL_TEXT)), cleaned)
        blank = (cleaned.isna() | cleaned.eq("")).to_numpy(bool)
    else:
        cleaned = series.map(clean)
        blank = cleaned.map(_is_blank).to_numpy(bool)
    nums = pd.to_numeric(cleaned.where(~blank, None), errors="coerce").astype(float)
    wrong = nums.isna().to_numpy() & ~blank
    return nums, blank, wrong


def closest_name(name: str, candidates) -> str | None:
    """The candidate most like ``name`` (case/underscore-insensitive first, then fuzzy)."""
    def norm(s):
        return re.sub(r"[^a-z0-9]", "", str(s).lower())

    candidates = [str(c) for c in candidates]
    for c in candidates:
        if norm(c) == norm(name):
            return c
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return match[0] if match else None


def infer_column(series: pd.Series, numbers_from_text: bool = True) -> pd.Series:
    """An optional column's final type: numeric when every non-blank value is a number,
    else text with blanks as ''. Lists are left as they are. ``numbers_from_text=False``
    (typed formats: Parquet, JSONL, TFRecord) keeps text that looks numeric as text, e.g. a
    zip code stored as a string."""
    if series.dtype != object and not pd.api.types.is_string_dtype(series.dtype):
        return series
    values = series.dropna()
    if any(isinstance(v, (list, tuple, np.ndarray, dict)) for v in values.head(1000)):
        return series
    if not numbers_from_text and _text_kind(series) in ("string", "empty"):
        return series.map(lambda v: "" if _is_blank(v) else str(v)).astype(str)
    nums, blank, wrong = as_numbers(series)
    if len(values) and not wrong.any() and not blank.all():
        if not blank.any() and (nums % 1 == 0).all():
            return nums.astype("int64")
        return nums
    return series.map(lambda v: "" if _is_blank(v) else str(v)).astype(str)


# --------------------------------------------------------------------------- checks


class _Flags:
    """First failing rule per row of one chunk: field, reason and offending value."""

    def __init__(self, n: int):
        self.bad = np.zeros(n, bool)
        self.field = np.full(n, None, object)
        self.reason = np.full(n, None, object)
        self.value = np.full(n, "", object)
        self.kind = np.full(n, None, object)

    def flag(self, mask, field: str | None, reason, values: pd.Series | None = None, kind: str | None = None):
        """Flag the rows of ``mask`` not flagged yet; ``reason`` is one text or per-row texts,
        ``kind`` the reason without row-specific parts (default: ``reason_kind`` of each)."""
        mask = np.asarray(mask, bool) & ~self.bad
        if not mask.any():
            return
        self.bad |= mask
        self.field[mask] = field
        self.reason[mask] = reason if isinstance(reason, str) else np.asarray(reason, object)[mask]
        if kind is not None:
            self.kind[mask] = kind
        if values is not None:
            self.value[mask] = [("" if _is_blank(v) else str(v))[:200] for v in np.asarray(values, object)[mask]]


class TableChecker:
    """Validates one table chunk by chunk; keeps converted good rows and quarantined rows."""

    def __init__(self, table: str, file: str, *, known_items=None, scenarios=(), tasks=(),
                 rating_range=None, column_types=None, numbers_from_text=True):
        self.table = table
        self.file = file
        self.known_items = known_items
        self.scenarios = set(map(str, scenarios or ()))
        self.tasks = tuple(tasks or ())
        self.rating_range = rating_range
        self.column_types = dict(column_types or {})
        self.numbers_from_text = numbers_from_text
        self.counts = TableCounts()
        self.problems: list = []
        self.good: list = []
        self.bad: list = []
        self._columns_checked = False
        self._missing: list = []  # required columns absent from the current chunk
        self._reported_missing: set = set()
        self._seen: dict = {}  # duplicate detection: key -> first row

    # ---- column-level checks (once, on the first chunk)

    def _check_required(self, frame: pd.DataFrame):
        """Required columns absent from this chunk (JSONL/TFRecord chunks may differ), each
        reported once with the closest present name."""
        present = [c for c in frame.columns if c not in BOOKKEEPING]
        absent = [c for c in REQUIRED[self.table] if c not in present]
        # An absent id column makes its rows unusable; an absent title leaves the titles empty.
        self._missing = [c for c in absent if c not in TEXT_COLUMNS[self.table]]
        for col in absent:
            if col in self._reported_missing:
                continue
            self._reported_missing.add(col)
            guess = closest_name(col, present)
            hint = f"; did you mean '{guess}'? (rename it to '{col}')" if guess else f"; columns found: {present}"
            effect = "" if col in self._missing else " (left empty)"
            self.problems.append(Problem(self.table, self.file, None, col,
                                         f"missing required column '{col}'{effect}{hint}"))

    def _check_columns(self, frame: pd.DataFrame):
        """Warnings about the columns of the first chunk: misspelt names, absent tasks."""
        self._columns_checked = True
        present = [c for c in frame.columns if c not in BOOKKEEPING]
        known = KNOWN_COLUMNS[self.table] + tuple(self.tasks)
        for col in present:
            if col in known or col.startswith(S.TRUE_PROB_PREFIX) or col in self.column_types:
                continue
            guess = closest_name(col, [k for k in known if k not in present])
            if guess:
                self.problems.append(Problem(self.table, self.file, None, col,
                                             f"unknown column '{col}' is kept as a feature; did you mean '{guess}'?",
                                             severity="warning"))
        for task in self.tasks:
            if task not in present:
                guess = closest_name(task, present)
                hint = f"; did you mean '{guess}'?" if guess else f"; columns found: {present}"
                self.problems.append(Problem(self.table, self.file, None, task,
                                             f"task label column '{task}' not found{hint}"))
        if self.table == "interactions" and S.SCENARIO not in present:
            self.problems.append(Problem(self.table, self.file, None, S.SCENARIO,
                                         f"no '{S.SCENARIO}' column: every interaction is in scenario '{S.DEFAULT_SCENARIO}'",
                                         severity="warning"))

    # ---- row-level checks

    def add(self, frame: pd.DataFrame):
        """Check one chunk (with a ``_row`` column) and keep its good and bad rows."""
        if not self._columns_checked:
            self._check_columns(frame)
        self._check_required(frame)
        frame = frame.reset_index(drop=True)
        n = len(frame)
        self.counts.read += n
        if n == 0:
            return
        flags = _Flags(n)
        out = frame.copy()
        if ERROR in frame.columns:
            self._reader_errors(frame, flags)
        for col in self._missing:
            flags.flag(np.ones(n, bool), col, f"missing required column '{col}'")
            out[col] = None
        self._check_ids(out, flags)
        if self.table == "interactions":
            self._check_interaction_values(out, flags)
        else:
            for col in TEXT_COLUMNS[self.table]:
                if col in out.columns:
                    out[col] = out[col].map(lambda v: "" if _is_blank(v) else str(v))
                elif col in REQUIRED[self.table]:
                    out[col] = ""
        for col, kind in self.column_types.items():
            if col in out.columns:
                self._check_number(out, flags, col, integer=(kind == "int"))
        self._check_duplicates(out, flags)
        self._keep(frame, out, flags)

    @staticmethod
    def _reader_errors(frame, flags):
        """Rows the reader or adapter could not interpret: their reason, field and value."""
        err = frame[ERROR].notna().to_numpy()
        flags.flag(err, None, frame[ERROR].to_numpy(object))
        fields = frame[ERROR_FIELD].to_numpy(object)
        flags.field[err] = fields[err]
        for i in np.flatnonzero(err):
            if isinstance(fields[i], str) and fields[i] in frame.columns:
                value = frame.at[i, fields[i]]
                flags.value[i] = "" if _is_blank(value) else str(value)[:200]

    def _check_ids(self, out, flags):
        id_cols = (S.USER_ID, S.ITEM_ID) if self.table == "interactions" else (ID_COLUMN[self.table],)
        for col in id_cols:
            if col in self._missing:
                continue
            raw = out[col]
            ids, blank, wrong = as_ids(raw)
            flags.flag(blank, col, f"empty {col}")
            flags.flag(wrong, col, f"{col} must be text or an integer", raw)
            out[col] = ids

    def _check_interaction_values(self, out, flags):
        if self.known_items is not None and S.ITEM_ID not in self._missing:
            unknown = ~out[S.ITEM_ID].isin(self.known_items).to_numpy() & out[S.ITEM_ID].notna().to_numpy()
            flags.flag(unknown, S.ITEM_ID, "item not in the item table", out[S.ITEM_ID])
        if S.SCENARIO in out.columns:
            scen, blank, wrong = as_ids(out[S.SCENARIO])
            flags.flag(blank, S.SCENARIO, "empty scenario")
            flags.flag(wrong, S.SCENARIO, "scenario must be text", out[S.SCENARIO])
            out[S.SCENARIO] = scen
        else:
            out[S.SCENARIO] = S.DEFAULT_SCENARIO
        if self.scenarios:
            bad = ~out[S.SCENARIO].isin(self.scenarios).to_numpy() & out[S.SCENARIO].notna().to_numpy()
            flags.flag(bad, S.SCENARIO, f"unknown scenario; allowed: {sorted(self.scenarios)}", out[S.SCENARIO])
        if S.TIMESTAMP in out.columns:
            self._check_number(out, flags, S.TIMESTAMP, integer=True, what="integer seconds since the epoch")
        if S.RATING in out.columns:
            self._check_number(out, flags, S.RATING, bounds=self.rating_range)
        if S.WEIGHT in out.columns:
            self._check_number(out, flags, S.WEIGHT, bounds=(0.0, math.inf))
        for col in self._label_columns(out):
            self._check_number(out, flags, col, integer=True, bounds=(0, 1), booleans=True, what="a 0/1 label")
        for col in [c for c in out.columns if c.startswith(S.TRUE_PROB_PREFIX)]:
            self._check_number(out, flags, col, bounds=(0.0, 1.0), what="a probability")

    def _label_columns(self, frame) -> list:
        tasks = self.tasks or S.KNOWN_TASKS
        return [c for c in tasks if c in frame.columns]

    def _check_number(self, out, flags, col, integer=False, bounds=None, booleans=False, what=None):
        raw = out[col]
        nums, blank, wrong = as_numbers(raw, booleans=booleans)
        what = what or ("an integer" if integer else "a number")
        flags.flag(blank, col, f"empty {col}: expected {what}")
        flags.flag(wrong, col, f"{col} must be {what}", raw)
        finite = np.isfinite(nums.fillna(0).to_numpy())
        flags.flag(~finite, col, f"{col} must be finite", raw)
        if integer:
            frac = (nums.fillna(0) % 1 != 0).to_numpy() & finite
            flags.flag(frac, col, f"{col} must be {what}", raw)
        if bounds is not None:
            lo, hi = bounds
            out_of = ((nums < lo) | (nums > hi)).to_numpy()
            rng = "{0, 1}" if (integer and (lo, hi) == (0, 1)) else f"[{lo}, {hi}]"
            flags.flag(out_of, col, f"{col} outside its range {rng}", raw)
        if integer:
            out[col] = nums.fillna(0).where(np.isfinite(nums.fillna(0)), 0).astype("int64")
        else:
            out[col] = nums

    def _check_duplicates(self, out, flags):
        if self.table == "interactions":
            cols = [c for c in out.columns if c not in BOOKKEEPING]
            hashable = pd.DataFrame({c: out[c].astype(str) if out[c].dtype == object else out[c] for c in cols})
            keys = pd.util.hash_pandas_object(hashable, index=False).to_numpy()
            what = "duplicate of the interaction at row"
            kind = "duplicate of an earlier interaction (identical in every column)"
            field = None
        else:
            col = ID_COLUMN[self.table]
            if col in self._missing:
                return
            keys = out[col].to_numpy(object)
            what = f"duplicate {col}; first at row"
            kind = f"duplicate {col}"
            field = col
        rows = out[ROW].to_numpy()
        live = np.flatnonzero(~flags.bad & pd.notna(keys))
        if not len(live):
            return
        k, r = keys[live], rows[live]
        earlier = np.array(list(map(self._seen.get, k.tolist())), dtype=object)  # None: not seen before
        in_chunk_first = pd.Series(r).groupby(k).transform("first").to_numpy()
        first = np.where(pd.isna(earlier), in_chunk_first, earlier)
        is_dup = first != r
        self._seen.update(zip(k[~is_dup].tolist(), r[~is_dup].tolist()))
        dup = np.zeros(len(out), bool)
        dup[live[is_dup]] = True
        reasons = np.full(len(out), None, object)
        reasons[live[is_dup]] = [f"{what} {f}" for f in first[is_dup]]
        flags.flag(dup, field, reasons, kind=kind)

    def _keep(self, frame, out, flags):
        good = out.loc[~flags.bad]
        self.good.append(good)
        self.counts.used += len(good)
        if flags.bad.any():
            bad = frame.loc[flags.bad].drop(columns=[c for c in (ERROR, ERROR_FIELD) if c in frame.columns])
            files = bad[FILE].to_numpy(object) if FILE in bad.columns else np.full(len(bad), self.file, object)
            columns = (files, bad[ROW].to_numpy(), flags.field[flags.bad], flags.reason[flags.bad],
                       flags.value[flags.bad])
            info = pd.DataFrame({name: pd.Series(col, dtype=object) for name, col in zip(QUARANTINE_COLUMNS, columns)})
            data = bad.drop(columns=[c for c in (ROW, FILE) if c in bad.columns]).reset_index(drop=True)
            self.bad.append(pd.concat([info, data.astype(object)], axis=1))
            self.counts.quarantined += len(bad)
            kinds = flags.kind[flags.bad]
            for (f, r, fld, why, val), kind in zip(info.itertuples(index=False), kinds):
                fld = None if _is_blank(fld) else str(fld)
                self.problems.append(Problem(self.table, str(f), int(r), fld, str(why), str(val),
                                             kind="" if kind is None else str(kind)))

    # ---- results

    def finish(self) -> pd.DataFrame:
        """The valid rows (bookkeeping dropped, optional columns typed)."""
        if self.counts.read == 0 and not any(p.row is None and p.severity == "error" for p in self.problems):
            self.problems.append(Problem(self.table, self.file, None, None, "empty file: no rows"))
        frames = [g for g in self.good if len(g)] or self.good[:1]
        if not frames:
            extra = (S.SCENARIO,) if self.table == "interactions" else ()
            return pd.DataFrame(columns=list(REQUIRED[self.table]) + list(extra))
        data = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        data = data.drop(columns=[c for c in BOOKKEEPING if c in data.columns])
        fixed = set(REQUIRED[self.table]) | set(TEXT_COLUMNS[self.table]) | set(self.column_types)
        if self.table == "interactions":
            fixed |= {S.SCENARIO, S.TIMESTAMP, S.RATING, S.WEIGHT} | set(self._label_columns(data))
            fixed |= {c for c in data.columns if c.startswith(S.TRUE_PROB_PREFIX)}
        for col in data.columns:
            if col in fixed:
                if col in (S.USER_ID, S.ITEM_ID, S.SCENARIO) or col in TEXT_COLUMNS[self.table]:
                    data[col] = data[col].astype(str)
            else:
                data[col] = infer_column(data[col], self.numbers_from_text)
        return data[self._ordered(data.columns)]

    def _ordered(self, columns) -> list:
        """Known columns in the schema's order first, then the others as they came."""
        known = {"interactions": (S.USER_ID, S.ITEM_ID, S.SCENARIO, S.TIMESTAMP) + tuple(self.tasks or S.KNOWN_TASKS)
                 + (S.RATING, S.WEIGHT), "items": (S.ITEM_ID, S.TITLE, S.DESCRIPTION),
                 "users": (S.USER_ID, S.PROFILE)}[self.table]
        first = [c for c in known if c in columns]
        return first + [c for c in columns if c not in first]

    def quarantined_rows(self) -> pd.DataFrame | None:
        return pd.concat(self.bad, ignore_index=True) if self.bad else None


# --------------------------------------------------------------------------- entry point


@dataclasses.dataclass
class RawTables:
    """Tables as read (or as an adapter built them), before validation.

    Each table is a DataFrame or an iterable of chunks with ``_row`` (and optionally
    ``_error``, ``_error_field``, ``_file``) columns; ``files`` maps table -> the file cited
    in problems; ``rating_range`` and ``column_types`` add adapter-specific checks.
    ``id_only_items``: interactions with items absent from the item table (or all of them,
    when ``items`` is None) are kept with id-only items instead of being quarantined.
    """

    interactions: Chunks
    items: Chunks
    users: Chunks = None
    files: dict = dataclasses.field(default_factory=dict)
    rating_range: tuple | None = None
    column_types: dict = dataclasses.field(default_factory=dict)
    name: str = ""
    typed: tuple = ()  # tables read from typed formats: their numeric-looking text stays text
    id_only_items: bool = False

    def validate(self, scenarios=(), tasks=(), quarantine_dir=None):
        """:func:`validate_tables` on these tables -> ``(Tables, ValidationReport)``."""
        return validate_tables(self.interactions, self.items, self.users, files=self.files, scenarios=scenarios,
                               tasks=tasks, rating_range=self.rating_range, column_types=self.column_types,
                               quarantine_dir=quarantine_dir, name=self.name, typed=self.typed,
                               id_only_items=self.id_only_items)


def _with_id_only_items(items: pd.DataFrame | None, interactions: pd.DataFrame) -> tuple:
    """``(items + one id-only row per interaction item absent from items, number added)``;
    id-only rows have empty text columns (and empty / missing other columns)."""
    columns = list(items.columns) if items is not None else list(REQUIRED["items"]) + [S.DESCRIPTION]
    present = pd.Index([]) if items is None or not len(items) else pd.Index(items[S.ITEM_ID].astype(str))
    used = pd.unique(interactions[S.ITEM_ID].astype(str)) if S.ITEM_ID in interactions.columns else []
    missing = [i for i, known in zip(used, pd.Index(used).isin(present)) if not known]
    if items is None:
        items = pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    if not missing:
        return items, 0
    extra = {}
    for col in columns:
        if col == S.ITEM_ID:
            extra[col] = pd.Series(missing, dtype=object)
        elif pd.api.types.is_numeric_dtype(items[col].dtype) and not pd.api.types.is_bool_dtype(items[col].dtype):
            extra[col] = pd.Series(np.nan, index=range(len(missing)), dtype=float)
        else:
            extra[col] = pd.Series("", index=range(len(missing)), dtype=object)
    added = pd.DataFrame(extra, columns=columns)
    combined = pd.concat([items, added], ignore_index=True) if len(items) else added
    for col in (S.ITEM_ID,) + TEXT_COLUMNS["items"]:
        if col in combined.columns:
            combined[col] = combined[col].astype(str)
    return combined, len(missing)


def _chunks(source: Chunks):
    if source is None:
        return []
    if isinstance(source, pd.DataFrame):
        frame = source
        if ROW not in frame.columns:
            frame = frame.copy()
            frame[ROW] = np.arange(1, len(frame) + 1, dtype=np.int64)
        return [frame]
    return source


def write_quarantine(rows: pd.DataFrame, path) -> Path:
    """Write quarantined rows as CSV (undecodable text shown with backslash escapes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(path, index=False, encoding="utf-8", errors="backslashreplace")
    return path


def validate_tables(interactions: Chunks, items: Chunks, users: Chunks = None, *, files: dict | None = None,
                    scenarios=(), tasks=(), rating_range=None, column_types: dict | None = None,
                    quarantine_dir=None, name: str = "", typed=(), id_only_items: bool = False):
    """Check the three tables and split every row into used or quarantined.

    Each table is a DataFrame or an iterable of chunks as :func:`formats.read_table`
    yields them (``_row`` numbers; optional ``_error``/``_error_field`` from the reader and
    ``_file`` per row). ``users=None`` means there is no user table. ``files`` maps table ->
    the file name cited in problems. ``column_types`` maps table -> {column: "int"|"float"}
    for adapter-specific typed columns. Optional text columns whose every value is a number
    become numeric, except in the ``typed`` tables (read from Parquet/JSONL/TFRecord).
    ``id_only_items``: an interaction whose item is not in the item table (every interaction
    when ``items`` is None: no item table) is kept, and its item is added to the item table
    with empty text (``report.id_only_items`` counts them); otherwise it is quarantined.
    Returns ``(Tables, ValidationReport)``; the Tables hold only the valid rows (plus the
    id-only items).
    """
    files = dict(files or {})
    column_types = column_types or {}
    report = ValidationReport()
    checkers = {}
    order = [("items", items), ("users", users), ("interactions", interactions)]
    known_items = None
    items_frame = None
    for table, source in order:
        if source is None:
            continue
        file = str(files.get(table, table))
        check_items = table == "interactions" and not id_only_items
        checker = TableChecker(table, file, known_items=known_items if check_items else None,
                               scenarios=scenarios if table == "interactions" else (),
                               tasks=tasks if table == "interactions" else (),
                               rating_range=rating_range, column_types=column_types.get(table),
                               numbers_from_text=table not in typed)
        for chunk in _chunks(source):
            checker.add(chunk)
        checkers[table] = checker
        if table == "items":
            items_frame = checker.finish()
            known_items = pd.Index(items_frame[S.ITEM_ID].astype(str).unique()) if len(items_frame) else pd.Index([])
    frames = {}
    for table in ("interactions", "items", "users"):
        if table not in checkers:
            continue
        checker = checkers[table]
        frames[table] = items_frame if table == "items" else checker.finish()
        report.counts[table] = checker.counts
        report.files[table] = files.get(table, table)
        report.problems.extend(checker.problems)
        bad = checker.quarantined_rows()
        if bad is not None and quarantine_dir is not None:
            report.quarantine_files[table] = write_quarantine(bad, Path(quarantine_dir) / f"quarantine_{table}.csv")
    if id_only_items:
        frames["items"], report.id_only_items = _with_id_only_items(frames.get("items"), frames["interactions"])
    present_tasks = tuple(t for t in (tasks or ()) if t in frames["interactions"].columns)
    result = S.Tables(frames["interactions"], frames["items"], frames.get("users"), present_tasks, name)
    report.summary = result.summary() if len(result.interactions.columns) else {}
    return result, report
