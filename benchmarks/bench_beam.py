"""Beam preprocessing throughput against plain pandas on the same data, in the same run.

    python benchmarks/bench_beam.py [--rows 1000000] [--workers 2] [--json out.json]

Generates ``--rows`` synthetic interactions (CSV), then times:

* ``beam``: ``pipelines.beam_preprocess.run_preprocess`` on the DirectRunner (``--workers``
  processes): read, validate, quarantine, join, vocabularies, statistics, GZIP TFRecords;
* ``pandas``: ``pandas.read_csv`` of the three tables, the same item/user join, and a
  compressed Parquet write: the floor of reading and writing the data, no validation;
* ``pandas_validated``: ``load_tables`` (the data layer's chunked validation) + the join +
  Parquet: the single-process equivalent of what Beam does (without TFRecord encoding).

Reports rows per second for each (interactions rows / wall seconds) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tfrs_multiscene  # noqa: F401


def _generate(rows: int, directory: Path) -> None:
    from tfrs_multiscene.config import GenerateConfig
    from tfrs_multiscene.data.formats import write_tables
    from tfrs_multiscene.data.synthetic import generate

    users, items = max(100, rows // 50), max(50, rows // 1000)  # generation cost grows with items
    write_tables(generate(GenerateConfig(users=users, items=items, impressions=rows, seed=11)), directory, "csv")


def _pandas(data: Path, out: Path) -> int:
    import pandas as pd

    inter = pd.read_csv(data / "interactions.csv", dtype={"user_id": str, "item_id": str})
    items = pd.read_csv(data / "items.csv", dtype={"item_id": str})
    users = pd.read_csv(data / "users.csv", dtype={"user_id": str})
    users = users.rename(columns={c: "user_" + c for c in users.columns if c != "user_id" and c in items.columns})
    joined = inter.merge(items, on="item_id", how="left").merge(users, on="user_id", how="left")
    joined.to_parquet(out / "joined.parquet", index=False, compression="gzip")
    return len(joined)


def _pandas_validated(data: Path, out: Path) -> int:
    from tfrs_multiscene.config import DataConfig
    from tfrs_multiscene.data.loading import load_tables
    from tfrs_multiscene.data.pipeline import interaction_features

    tables, _ = load_tables(DataConfig(data=str(data)), quarantine_dir=out)
    import pandas as pd

    features = interaction_features(tables)
    pd.DataFrame(features).to_parquet(out / "features.parquet", index=False, compression="gzip")
    return len(tables.interactions)


def _timed(fn, *args) -> dict:
    print(f"[bench_beam] {fn.__name__.strip('_')} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    rows = fn(*args)
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="synthetic interactions (default 1M)")
    ap.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--json", default="benchmarks/out/beam.json", help="where the JSON result goes")
    ap.add_argument("--keep", default=None, help="keep the data and outputs in this directory")
    args = ap.parse_args(argv)
    from pipelines.beam_preprocess import run_preprocess

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_beam_"))
    data = work / "data"
    try:
        t0 = time.perf_counter()
        print(f"[bench_beam] generating {args.rows} rows ...", file=sys.stderr, flush=True)
        _generate(args.rows, data)
        gen_seconds = time.perf_counter() - t0
        for sub in ("pandas", "pandas_validated"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        result = {"rows": args.rows, "cpu_count": os.cpu_count(), "generate_seconds": round(gen_seconds, 1),
                  "input_mb": round(sum(f.stat().st_size for f in data.iterdir()) / 1e6, 1)}
        result["pandas"] = _timed(_pandas, data, work / "pandas")
        result["pandas_validated"] = _timed(_pandas_validated, data, work / "pandas_validated")
        beam_args = [f"--direct_num_workers={args.workers}"] if args.workers > 1 else []
        print("[bench_beam] beam ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        stats = run_preprocess(data, work / "beam", beam_args=beam_args, shards=args.shards)
        seconds = time.perf_counter() - start
        result["beam"] = {"rows": stats["examples"], "seconds": round(seconds, 2),
                          "rows_per_second": round(args.rows / seconds, 1), "workers": args.workers,
                          "shards": stats["shards"], "quarantined": stats["counts"]["interactions"]["quarantined"],
                          "output_mb": round(sum(f.stat().st_size for f in (work / "beam" / "examples").iterdir()) / 1e6, 1)}
        result["beam_vs_pandas"] = round(result["beam"]["rows_per_second"] / result["pandas"]["rows_per_second"], 3)
        result["beam_vs_pandas_validated"] = round(
            result["beam"]["rows_per_second"] / result["pandas_validated"]["rows_per_second"], 3)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
