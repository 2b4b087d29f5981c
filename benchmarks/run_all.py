"""Run every benchmark in benchmarks/ and collect their figures into benchmarks/RESULTS.md.

Each ``bench_*.py`` is a standalone script that prints its figures and writes them as JSON
to the path given by ``--json``. This runner calls each one in its own process (so one
benchmark's memory does not colour the next), then flattens every JSON into rows of
``benchmark | figure | value`` in one Markdown table.

Usage: python benchmarks/run_all.py [--only NAME ...] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def flatten(data, prefix=""):
    """{"a": {"b": 1}} -> [("a.b", 1)]; lists of scalars are kept as text."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, (list, tuple)) and data and not all(isinstance(v, (int, float, str)) for v in data):
        for i, value in enumerate(data):
            yield from flatten(value, f"{prefix}[{i}]")
    else:
        yield prefix, data


def fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="Run only these benchmarks (file stems).")
    parser.add_argument("--out", default=str(HERE / "out"), help="Directory for the JSON files.")
    args = parser.parse_args(argv)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem in args.only or s.stem[len("bench_"):] in args.only]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    rows, failures = [], []
    for script in scripts:
        json_path = out_dir / f"{script.stem}.json"
        print(f"=== {script.stem}", flush=True)
        start = time.time()
        proc = subprocess.run([sys.executable, str(script), "--json", str(json_path)], env=env)
        elapsed = time.time() - start
        if proc.returncode != 0 or not json_path.exists():
            failures.append(script.stem)
            rows.append((script.stem, "FAILED", f"exit {proc.returncode}"))
            continue
        for key, value in flatten(json.loads(json_path.read_text())):
            rows.append((script.stem, key, fmt(value)))
        rows.append((script.stem, "wall_seconds", f"{elapsed:.1f}"))

    lines = [
        "# Benchmark results",
        "",
        f"Collected by `make bench` on {datetime.datetime.now().isoformat(timespec='seconds')} "
        f"({os.cpu_count()} cores). Each figure comes from the JSON its benchmark wrote to "
        f"`{os.path.relpath(out_dir, HERE.parent)}/`; ratios compare against a baseline run in "
        "the same process.",
        "",
        "Benchmarks in this table: " + ", ".join(s.stem for s in scripts)
        + (" (a partial run: `--only`)" if args.only else " (all)") + ".",
        "",
        "| benchmark | figure | value |",
        "|---|---|---|",
    ]
    lines += [f"| {b} | {k} | {v} |" for b, k, v in rows]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'} ({len(rows)} figures, {len(failures)} failed)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
