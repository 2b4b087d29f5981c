"""Apache Beam preprocessing: three tables -> validated, joined, sharded TFRecords + vocabularies.

``tfrs-multiscene preprocess --data DIR --out DIR [beam pipeline options]``

Stages (every one a Beam transform; nothing here is runner-specific)::

    items, users ──read+validate (whole table, one worker: the catalogue is a side input)──┐
    interactions ──read in chunks ─► Reshuffle ─► validate chunk (known items side input) ─┤
        ─► cross-chunk duplicate detection (hash buckets, GroupByKey) ─► drop duplicates   │
        ─► GroupByKey user bucket ─► join item/user features + history ─► tf.train.Example │
        ─► GroupByKey shard ─► GZIP TFRecord                                                │
        └─► partial statistics ─► CombineGlobally ─► vocab/, item_frequency.json,          │
                                      stats.json, features.json, quarantine/ ◄─────────────┘

Validation is the data layer's: each chunk goes through
:class:`tfrs_multiscene.data.validation.TableChecker` (the same rules and reasons as
``tfrs-multiscene validate`` / ``load_tables``); only the duplicate rule needs a global view,
so duplicates across chunks are found with a keyed shuffle of row hashes. Rows failing a rule
go to ``<out>/quarantine/quarantine_<table>.csv`` with file,row,field,reason,value, and
``stats.json`` holds read/used/quarantined counts and counts by reason, so
``read == used + quarantined`` per table.

Runs on the DirectRunner by default (``--direct_num_workers=2`` runs multi-process); any
other runner takes its standard options (``--runner=DataflowRunner --project ...
--temp_location gs://...``, ``--runner=FlinkRunner``, ``--runner=SparkRunner``): the input
tables must then be readable by the workers (a shared or mounted file system) and ``--out``
a location the runner can write (Beam file systems: local, gs://, s3://, hdfs://).

Output layout: see :mod:`tfrs_multiscene.data.examples`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tfrs_multiscene.config import DataConfig, add_arguments, apply_arguments, option
from tfrs_multiscene.data import examples as E
from tfrs_multiscene.data import schema as S

DUPLICATE_BUCKETS = 16


@dataclasses.dataclass
class PreprocessConfig:
    """`tfrs-multiscene preprocess` settings (Beam pipeline options go after them)."""

    data: str | None = option(None, "--data", "Data directory: interactions.*, items.*, users.* in any supported format, or a MovieLens/MIND/Amazon download.")
    out: str = option("data/preprocessed", "--out", "Output directory (TFRecord shards, vocabularies, statistics, quarantine).")
    format: str | None = option(None, "--format", "Input format or adapter (as `validate --format`). Default: from the files.")
    shards: int = option(8, "--shards", "Number of TFRecord shards written (>= the number of training workers).")
    chunk_rows: int = option(50_000, "--chunk-rows", "Rows per chunk: the unit of parallel work.")
    scenarios: list = option([], "--scenarios", "Allowed scenario names (others are quarantined). Default: any.")  # noqa: RUF009
    tasks: list = option([], "--tasks", "Label columns that are tasks. Default: the known label columns present.")  # noqa: RUF009
    history_length: int = option(20, "--history-length", "Recent positive items per example (the query tower's history feature); 0: none.")
    user_buckets: int = option(32, "--user-buckets", "Users are hashed into this many groups to compute histories (a group's rows must fit a worker's memory).")
    positive_task: str | None = option(None, "--positive-task", "Label marking a retrieval positive for item frequencies (default: click/liked/... when present, else every interaction).")


# --------------------------------------------------------------------------- reading + validation
# Every function below runs on Beam workers: module level, arguments picklable.


def _data_config(cfg: PreprocessConfig) -> DataConfig:
    return DataConfig(data=cfg.data, format=cfg.format, scenarios=list(cfg.scenarios),
                      tasks=list(cfg.tasks), chunk_rows=cfg.chunk_rows)


def _facts(raw, table: str) -> dict:
    """What a checker needs besides the rows: the cited file and adapter-specific checks."""
    return {"file": str(raw.files.get(table, table)), "rating_range": raw.rating_range,
            "column_types": raw.column_types.get(table)}


def _checker(table: str, facts: dict, cfg: PreprocessConfig, known_items=None):
    from tfrs_multiscene.data.validation import TableChecker

    inter = table == "interactions"
    return TableChecker(table, facts["file"], known_items=known_items,
                        scenarios=cfg.scenarios if inter else (), tasks=cfg.tasks if inter else (),
                        rating_range=facts["rating_range"], column_types=facts["column_types"])


def _report_part(table: str, checker, bad: pd.DataFrame | None) -> dict:
    """A partial report (merged by :class:`_MergeReports`) from one checked chunk/table."""
    c = checker.counts
    reasons = collections.Counter(bad["reason"].astype(str)) if bad is not None and len(bad) else collections.Counter()
    file_problems = {str(p) for p in checker.problems if p.row is None}
    return {"counts": {table: collections.Counter(read=c.read, used=c.used, quarantined=c.quarantined)},
            "reasons": {table: reasons}, "file_problems": file_problems,
            "quarantine": {table: [bad]} if bad is not None and len(bad) else {}}


def validate_whole_table(table: str, cfg: PreprocessConfig):
    """Read and validate the (small) items or users table on one worker.

    Returns ``(frame of valid rows or None, partial report)``.
    """
    from tfrs_multiscene.data.loading import read_raw
    from tfrs_multiscene.data.validation import _chunks

    raw = read_raw(_data_config(cfg))
    source = getattr(raw, table)
    if source is None:
        return None, {}
    checker = _checker(table, _facts(raw, table), cfg)
    for chunk in _chunks(source):
        checker.add(chunk)
    frame = checker.finish()
    return frame, _report_part(table, checker, checker.quarantined_rows())


def read_interaction_chunks(_, cfg: PreprocessConfig):
    """Yield ``(chunk index, DataFrame chunk, checker facts)`` of the interactions in file order."""
    from tfrs_multiscene.data.loading import read_raw
    from tfrs_multiscene.data.validation import _chunks

    raw = read_raw(_data_config(cfg))
    facts = _facts(raw, "interactions")
    for index, chunk in enumerate(_chunks(raw.interactions)):
        yield index, chunk, facts


def validate_chunk(element, cfg: PreprocessConfig, items: pd.DataFrame | None) -> dict:
    """Check one interaction chunk with the data layer's rules (in-chunk duplicates included).

    Returns ``{"index", "good" (typed valid rows), "rows" (their _row), "bad", "report"}``.
    """
    from tfrs_multiscene.data.formats import ROW

    index, chunk, facts = element
    known = pd.Index(items[S.ITEM_ID].astype(str).unique()) if items is not None and len(items) else pd.Index([])
    checker = _checker("interactions", facts, cfg, known_items=known)
    checker.add(chunk)
    rows = np.concatenate([g[ROW].to_numpy(np.int64) for g in checker.good]) if checker.good else np.zeros(0, np.int64)
    good = checker.finish() if checker.counts.used else None
    bad = checker.quarantined_rows()
    checker.known_items, checker.good, checker.bad, checker._seen = None, [], [], {}  # keep the element small
    return {"index": index, "good": good, "rows": rows, "bad": bad, "checker": checker}


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """uint64 hash of each row's values (as text): equal rows, equal hashes."""
    return pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy(np.uint64)


def duplicate_keys(result: dict):
    """Emit ``(bucket, (hashes, chunk index, position, _row))`` for the duplicate shuffle."""
    good = result["good"]
    if good is None or not len(good):
        return
    hashes = row_hashes(good)
    bucket = (hashes % np.uint64(DUPLICATE_BUCKETS)).astype(np.int64)
    positions = np.arange(len(good))
    for b in np.unique(bucket):
        m = bucket == b
        yield int(b), (hashes[m], np.full(m.sum(), result["index"]), positions[m], result["rows"][m])


def find_duplicates(element):
    """For one hash bucket: yield ``(chunk index, [(position, first _row), ...])`` of every
    row that repeats an earlier one (earlier = lower chunk index, then position)."""
    _, parts = element
    parts = list(parts)
    hashes = np.concatenate([p[0] for p in parts])
    chunk = np.concatenate([p[1] for p in parts])
    pos = np.concatenate([p[2] for p in parts])
    rows = np.concatenate([p[3] for p in parts])
    order = np.lexsort((pos, chunk, hashes))
    hashes, chunk, pos, rows = hashes[order], chunk[order], pos[order], rows[order]
    repeat = np.r_[False, hashes[1:] == hashes[:-1]]
    if not repeat.any():
        return
    first_of_group = np.maximum.accumulate(np.where(~repeat, np.arange(len(hashes)), 0))
    out = collections.defaultdict(list)
    for i in np.flatnonzero(repeat):
        out[int(chunk[i])].append((int(pos[i]), int(rows[first_of_group[i]])))
    yield from out.items()


def drop_duplicates(result: dict, duplicates: dict) -> dict:
    """Move the chunk's cross-chunk duplicates from good to quarantined (reason as the
    validator words it) and attach the chunk's partial report."""
    found = duplicates.get(result["index"], [])
    checker = result["checker"]
    good, bad = result["good"], result["bad"]
    if found:
        pos = np.array([p for p, _ in found])
        first = np.array([r for _, r in found])
        keep = np.ones(len(good), bool)
        keep[pos] = False
        dup = good.iloc[pos].reset_index(drop=True)
        info = pd.DataFrame({"file": checker.file, "row": result["rows"][pos], "field": None,
                             "reason": [f"duplicate of the interaction at row {r}" for r in first], "value": ""})
        dup_bad = pd.concat([info, dup.astype(object)], axis=1)
        bad = dup_bad if bad is None else pd.concat([bad, dup_bad], ignore_index=True)
        good = good.loc[keep].reset_index(drop=True)
        checker.counts.used -= len(pos)
        checker.counts.quarantined += len(pos)
    return {"index": result["index"], "good": good, "report": _report_part("interactions", checker, bad)}


# --------------------------------------------------------------------------- join + examples + stats


def _tables(good: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame | None, cfg) -> S.Tables:
    return S.Tables(good, items, users, tuple(cfg.tasks or ()))


def vocab_counts(tables: S.Tables) -> dict:
    """{vocabulary name: Counter of values} counted as ``Vocabularies.from_tables`` counts
    (one value per interaction; item/user columns through the interaction's item/user)."""
    from tfrs_multiscene.data.vocab import categorical_features

    inter = tables.interactions
    columns = {S.USER_ID: inter[S.USER_ID], S.ITEM_ID: inter[S.ITEM_ID], S.SCENARIO: inter[S.SCENARIO]}
    for name, (table, column) in categorical_features(tables).items():
        key = S.ITEM_ID if table == "items" else S.USER_ID
        frame = getattr(tables, table).drop_duplicates(key).set_index(key)[column]
        columns[name] = inter[key].map(frame)
    return {name: collections.Counter(values.dropna().astype(str).value_counts().to_dict())
            for name, values in columns.items()}


def scenario_stats(tables: S.Tables, positives: pd.DataFrame) -> dict:
    """Partial per-scenario statistics of one chunk (sums and id sets; see finish_stats)."""
    inter = tables.interactions
    out = {}
    pos_count = positives[S.SCENARIO].value_counts()
    for scen, frame in inter.groupby(S.SCENARIO, sort=False):
        out[str(scen)] = {
            "interactions": len(frame), "positives": int(pos_count.get(scen, 0)),
            "users": set(frame[S.USER_ID].astype(str)), "items": set(frame[S.ITEM_ID].astype(str)),
            "label_sums": {t: float(frame[t].sum()) for t in tables.tasks if t in frame.columns},
        }
    return out


def chunk_report(result: dict, items: pd.DataFrame, users: pd.DataFrame | None, cfg: PreprocessConfig) -> dict:
    """The chunk's partial report: validation counts plus vocabulary counts, item
    frequencies (retrieval positives) and per-scenario statistics of its valid rows."""
    from tfrs_multiscene.retrieval.features import positive_interactions

    report = dict(result["report"])
    good = result["good"]
    if good is not None and len(good):
        tables = _tables(good, items, users, cfg)
        positives = positive_interactions(tables, cfg.positive_task)
        report.update(vocab=vocab_counts(tables),
                      item_frequency=collections.Counter(positives[S.ITEM_ID].astype(str).value_counts().to_dict()),
                      scenarios=scenario_stats(tables, positives), examples=len(good))
    return report


def by_user_bucket(result: dict, buckets: int):
    """Split the chunk's valid rows by user (hash of user_id mod ``buckets``), so that a
    bucket holds ALL interactions of its users: the unit of the history computation."""
    good = result["good"]
    if good is None or not len(good):
        return
    bucket = pd.util.hash_array(good[S.USER_ID].astype(str).to_numpy(object)) % np.uint64(buckets)
    for b, frame in good.groupby(bucket.astype(np.int64), sort=False):
        yield int(b), frame


def history_label(columns, cfg: PreprocessConfig) -> str | None:
    """The label whose 1s are the history's positives: the retrieval positive."""
    from tfrs_multiscene.retrieval.features import POSITIVE_TASKS

    return cfg.positive_task or next((t for t in POSITIVE_TASKS if t in columns), None)


def encode_bucket(element, items: pd.DataFrame, users: pd.DataFrame | None, cfg: PreprocessConfig):
    """Join item and user features onto one user bucket's interactions, add each row's
    leak-free ``history`` (the user's positives strictly before it, most recent last,
    ``data.pipeline.history_features``), and yield ``(shard, [serialized Example])`` (row
    i to shard i mod N) plus, tagged ``stats``, the feature spec."""
    import apache_beam as beam

    from tfrs_multiscene.data.pipeline import history_features, interaction_features

    _, frames = element
    good = pd.concat(list(frames), ignore_index=True)
    tables = _tables(good, items, users, cfg)
    features = interaction_features(tables)
    for col in good.columns:
        if col.startswith(S.TRUE_PROB_PREFIX):
            features[col] = good[col].to_numpy(np.float32)
    if cfg.history_length > 0:
        features[E.HISTORY] = history_features(tables, cfg.history_length, label=history_label(good.columns, cfg))
    records = E.encode_examples(features)
    for shard in range(min(cfg.shards, len(records))):
        yield shard, records[shard::cfg.shards]
    yield beam.pvalue.TaggedOutput("stats", {"features": E.feature_spec(features)})


def shard_path(out: str, shard: int, shards: int) -> str:
    return str(Path(out) / E.EXAMPLES_DIR / f"part-{shard:05d}-of-{shards:05d}.tfrecord.gz")


def write_shard(element, out: str, shards: int) -> tuple:
    """Write every record of one shard to its GZIP TFRecord file -> (shard, records).

    Uses TensorFlow's writer, so ``out`` may be any file system TensorFlow reads (local,
    gs://, s3:// with tensorflow-io, hdfs://); rewriting a shard on a retry is idempotent."""
    import tensorflow as tf

    shard, blocks = element
    path = shard_path(out, shard, shards)
    tf.io.gfile.makedirs(str(Path(path).parent))
    n = 0
    with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for block in blocks:
            for record in block:
                writer.write(record)
            n += len(block)
    return shard, n


def write_empty_shards(written: list, out: str, shards: int) -> int:
    """Create the shards no row went to (fewer rows than shards), so there are always N."""
    done = {s for s, _ in written}
    for shard in range(shards):
        if shard not in done:
            write_shard((shard, []), out, shards)
    return sum(n for _, n in written)


# --------------------------------------------------------------------------- merging


def _merge_into(acc: dict, part: dict) -> dict:
    for key, value in part.items():
        if key in ("counts", "reasons", "vocab"):
            for name, counter in value.items():
                acc.setdefault(key, {}).setdefault(name, collections.Counter()).update(counter)
        elif key == "quarantine":
            for table, frames in value.items():
                acc.setdefault(key, {}).setdefault(table, []).extend(frames)
        elif key == "file_problems":
            acc.setdefault(key, set()).update(value)
        elif key == "item_frequency":
            acc.setdefault(key, collections.Counter()).update(value)
        elif key == "examples":
            acc[key] = acc.get(key, 0) + value
        elif key == "features":
            seen = acc.setdefault(key, {})
            for name, spec in value.items():
                if seen.setdefault(name, spec) != spec:
                    raise ValueError(f"feature {name!r} has type {spec} in one chunk and {seen[name]} in another")
        elif key == "scenarios":
            for scen, s in value.items():
                a = acc.setdefault(key, {}).setdefault(scen, {"interactions": 0, "positives": 0, "users": set(),
                                                             "items": set(), "label_sums": collections.Counter()})
                a["interactions"] += s["interactions"]
                a["positives"] += s["positives"]
                a["users"] |= s["users"]
                a["items"] |= s["items"]
                a["label_sums"].update(s["label_sums"])
    return acc


def merge_reports(parts) -> dict:
    """Merge partial reports (a plain function so it works as ``beam.CombineGlobally``)."""
    acc: dict = {}
    for part in parts:
        _merge_into(acc, part)
    return acc


def ordered_vocabulary(counter: collections.Counter) -> list:
    """Values most frequent first, ties by value: the order of ``Vocabularies.from_tables``."""
    return [v for v, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]


def finish_stats(report: dict) -> dict:
    """The JSON-able ``stats.json`` content from the merged report."""
    scenarios = {}
    for scen, s in sorted(report.get("scenarios", {}).items()):
        n = s["interactions"]
        scenarios[scen] = {"interactions": n, "positives": s["positives"], "users": len(s["users"]),
                           "items": len(s["items"]),
                           "label_rates": {t: v / n for t, v in sorted(s["label_sums"].items())} if n else {}}
    counts = {t: dict(c) for t, c in report.get("counts", {}).items()}
    if "interactions" not in counts:  # an empty interactions file yields no chunk at all
        counts["interactions"] = {"read": 0, "used": 0, "quarantined": 0}
        report.setdefault("file_problems", set()).add("error: interactions: empty file: no rows")
    return {"counts": counts,
            "balanced": all(c["read"] == c["used"] + c["quarantined"] for c in counts.values()),
            "reasons": {t: dict(r) for t, r in report.get("reasons", {}).items() if r},
            "file_problems": sorted(report.get("file_problems", ())),
            "examples": report.get("examples", 0), "scenarios": scenarios,
            "vocabulary_sizes": {n: len(c) + 1 for n, c in sorted(report.get("vocab", {}).items())}}


def write_outputs(report: dict, items, users, out: str, written: list, shards: int) -> dict:
    """Write vocab/, item_frequency.json, features.json, stats.json, quarantine/ and the
    validated items/users tables. Runs once, on the merged report, after the shards
    (``written``: their ``(shard, records)``) are written."""
    records = write_empty_shards(written, out, shards)
    if records != report.get("examples", 0):
        raise RuntimeError(f"wrote {records} examples but validated {report.get('examples', 0)} rows")
    from tfrs_multiscene.data.validation import write_quarantine
    from tfrs_multiscene.data.vocab import Vocabularies

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    Vocabularies({n: ordered_vocabulary(c) for n, c in report.get("vocab", {}).items()}).save(out_dir / E.VOCAB_DIR)
    freq = report.get("item_frequency", collections.Counter())
    (out_dir / E.ITEM_FREQUENCY_FILE).write_text(json.dumps(dict(sorted(freq.items())), indent=0) + "\n")
    (out_dir / E.FEATURES_FILE).write_text(json.dumps(report.get("features", {}), indent=1, sort_keys=True) + "\n")
    stats = finish_stats(report)
    stats["quarantine_files"] = {}
    for table, frames in report.get("quarantine", {}).items():
        path = write_quarantine(pd.concat(frames, ignore_index=True), out_dir / "quarantine" / f"quarantine_{table}.csv")
        stats["quarantine_files"][table] = str(path)
    if items is not None:
        items.to_parquet(out_dir / "items.parquet", index=False)
    if users is not None:
        users.to_parquet(out_dir / "users.parquet", index=False)
    (out_dir / E.STATS_FILE).write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")
    return stats


# --------------------------------------------------------------------------- the pipeline


def build_pipeline(p, cfg: PreprocessConfig):
    """Add the preprocessing transforms to Beam pipeline ``p``."""
    import apache_beam as beam

    small = {}
    for table in ("items", "users"):
        validated = (p | f"Start{table}" >> beam.Create([table])
                     | f"Validate{table}" >> beam.Map(validate_whole_table, cfg))
        small[table] = validated
    items = beam.pvalue.AsSingleton(small["items"] | "ItemsFrame" >> beam.Map(lambda r: r[0]))
    users = beam.pvalue.AsSingleton(small["users"] | "UsersFrame" >> beam.Map(lambda r: r[0]))

    checked = (p | "StartInteractions" >> beam.Create([None])
               | "ReadChunks" >> beam.FlatMap(read_interaction_chunks, cfg)
               | "Spread" >> beam.Reshuffle()
               | "ValidateChunks" >> beam.Map(validate_chunk, cfg, items))
    duplicates = (checked | "HashRows" >> beam.FlatMap(duplicate_keys)
                  | "GroupHashes" >> beam.GroupByKey()
                  | "FindDuplicates" >> beam.FlatMap(find_duplicates)
                  | "GroupByChunk" >> beam.CombinePerKey(lambda lists: [x for lst in lists for x in lst]))
    clean = checked | "DropDuplicates" >> beam.Map(drop_duplicates, beam.pvalue.AsDict(duplicates))
    chunk_reports = clean | "ChunkStatistics" >> beam.Map(chunk_report, items, users, cfg)
    encoded = (clean | "ByUserBucket" >> beam.FlatMap(by_user_bucket, cfg.user_buckets)
               | "GroupUsers" >> beam.GroupByKey()
               | "JoinHistoryEncode" >> beam.FlatMap(encode_bucket, items, users, cfg).with_outputs("stats", main="examples"))
    written = (encoded.examples | "GroupShards" >> beam.GroupByKey()
               | "WriteShards" >> beam.Map(write_shard, cfg.out, cfg.shards))
    small_reports = [small[t] | f"{t}Report" >> beam.Map(lambda r: r[1]) for t in ("items", "users")]
    report = ((small_reports + [chunk_reports, encoded.stats]) | "AllReports" >> beam.Flatten()
              | "MergeReports" >> beam.CombineGlobally(merge_reports))
    return report | "WriteOutputs" >> beam.Map(write_outputs, items, users, cfg.out,
                                               beam.pvalue.AsList(written), cfg.shards)


def pipeline_options(beam_args):
    """Beam PipelineOptions from standard Beam flags; DirectRunner with
    ``--direct_num_workers > 1`` runs multi-process unless a running mode is given."""
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_args or ())
    if any(a.startswith("--direct_num_workers") for a in args) and not any(
            a.startswith("--direct_running_mode") for a in args):
        args.append("--direct_running_mode=multi_processing")
    return PipelineOptions(args)


def run_preprocess(data_dir, out_dir, fmt: str | None = None, beam_args=(), shards: int = 8,
                   cfg: PreprocessConfig | None = None) -> dict:
    """Run the pipeline to completion and return ``stats.json`` plus ``seconds``.

    ``cfg`` overrides every other setting when given (``data_dir``/``out_dir``/``fmt``/
    ``shards`` fill a default :class:`PreprocessConfig` otherwise). Raises
    ``tfrs_multiscene.data.loading.DataLayoutError`` before starting when ``data_dir`` is
    not a readable layout.
    """
    import apache_beam as beam

    from tfrs_multiscene.data.loading import describe_source

    cfg = cfg or PreprocessConfig(data=str(data_dir), out=str(out_dir), format=fmt, shards=shards)
    for name in ("shards", "user_buckets", "chunk_rows"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.history_length < 0:
        raise ValueError(f"--history-length must be >= 0, got {cfg.history_length}")
    describe_source(_data_config(cfg))  # clear error now rather than inside a worker
    out = Path(cfg.out)
    if (out / E.EXAMPLES_DIR).is_dir():  # stale shards of an earlier run would be read back
        shutil.rmtree(out / E.EXAMPLES_DIR)
    started = time.perf_counter()
    with beam.Pipeline(options=pipeline_options(beam_args)) as p:
        build_pipeline(p, cfg)
    stats = json.loads((out / E.STATS_FILE).read_text())
    stats["seconds"] = time.perf_counter() - started
    stats["shards"] = len(list((out / E.EXAMPLES_DIR).glob(E.SHARD_PATTERN)))
    return stats


def main(argv=None) -> int:
    """`tfrs-multiscene preprocess --data DIR --out DIR [--shards N ...] [beam options]`.

    Exit status 0 when every row was used, 1 when some were quarantined (the output is still
    written), 2 on a usage or data-layout error.
    """
    from tfrs_multiscene.data.formats import FormatError
    from tfrs_multiscene.data.loading import DataLayoutError

    parser = argparse.ArgumentParser(prog="tfrs-multiscene preprocess", description=__doc__.splitlines()[0],
                                     epilog="Unknown flags are Beam pipeline options, e.g. --direct_num_workers=2, "
                                            "--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp")
    add_arguments(parser, PreprocessConfig, "pre")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `tfrs-multiscene preprocess -- --data ...` passes the separator on
        argv = argv[1:]
    args, beam_args = parser.parse_known_args(argv)
    cfg = apply_arguments(PreprocessConfig(), args, "pre")
    if not cfg.data:
        parser.error("--data is required")
    try:
        stats = run_preprocess(cfg.data, cfg.out, beam_args=beam_args, cfg=cfg)
    except (DataLayoutError, FormatError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for table, c in stats["counts"].items():
        print(f"{table:<13} read {c['read']:>10}  used {c['used']:>10}  quarantined {c['quarantined']:>8}")
    for table, reasons in stats["reasons"].items():
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:10]:
            print(f"  {table}: {n} x {reason}")
    print(f"{stats['examples']} examples in {stats['shards']} shard(s) under {Path(cfg.out) / E.EXAMPLES_DIR} "
          f"({stats['seconds']:.1f} s)")
    return 0 if all(c["quarantined"] == 0 for c in stats["counts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
