"""Run every benchmark in benchmarks/ and collect their figures into benchmarks/RESULTS.md.

Each ``bench_*.py`` is a standalone script that prints its figures and writes them as JSON
to the path given by ``--json``. This runner calls each one in its own process (so one
benchmark's memory does not colour the next), then flattens every JSON into rows of
``benchmark | figure | value`` in one Markdown table. A benchmark that writes its own
Markdown report (``REPORTS``: the real-data benchmark's tables per data set) gets that
report as a section instead of flattened rows. With ``--only`` the other benchmarks' rows
and sections of the existing RESULTS.md are kept. Arguments after ``--`` go to every
benchmark that runs (e.g. ``--only bench_real -- --reuse``).

Usage: python benchmarks/run_all.py [--only NAME ...] [--out benchmarks/out] [-- ARGS]
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
REPORTS = {"bench_real": "real.md"}   # benchmark -> its Markdown report under --out


def previous_results(path: Path) -> tuple:
    """``(rows, sections)`` of an existing RESULTS.md: table rows ``(benchmark, figure, value)``
    and ``{benchmark: section text}`` of the ``## bench_*`` sections."""
    if not path.exists():
        return [], {}
    rows, sections, current = [], {}, None
    for line in path.read_text().splitlines():
        if line.startswith("## bench_"):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
        elif line.startswith("| bench_"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 3:
                rows.append(tuple(cells))
    return rows, {k: "\n".join(v).strip() for k, v in sections.items()}


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
    argv = list(sys.argv[1:] if argv is None else argv)
    passed = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem in args.only or s.stem[len("bench_"):] in args.only]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    rows, failures, sections = [], [], {}
    for script in scripts:
        json_path = out_dir / f"{script.stem}.json"
        print(f"=== {script.stem}", flush=True)
        start = time.time()
        proc = subprocess.run([sys.executable, str(script), "--json", str(json_path), *passed], env=env)
        elapsed = time.time() - start
        if proc.returncode != 0 or not json_path.exists():
            failures.append(script.stem)
            rows.append((script.stem, "FAILED", f"exit {proc.returncode}"))
            continue
        report = out_dir / REPORTS[script.stem] if script.stem in REPORTS else None
        if report is not None and report.exists():
            sections[script.stem] = report.read_text().strip()
        else:
            for key, value in flatten(json.loads(json_path.read_text())):
                rows.append((script.stem, key, fmt(value)))
        rows.append((script.stem, "wall_seconds", f"{elapsed:.1f}"))
    ran = {s.stem for s in scripts}
    if args.only:  # keep what the other benchmarks measured last time
        old_rows, old_sections = previous_results(HERE / "RESULTS.md")
        rows = [r for r in old_rows if r[0] not in ran] + rows
        sections = {**{k: v for k, v in old_sections.items() if k not in ran}, **sections}

    lines = [
        "# Benchmark results",
        "",
        f"Collected by `make bench` on {datetime.datetime.now().isoformat(timespec='seconds')} "
        f"({os.cpu_count()} cores). Each figure comes from the JSON its benchmark wrote to "
        f"`{os.path.relpath(out_dir, HERE.parent)}/`; ratios compare against a baseline run in "
        "the same process.",
        "",
        "Benchmarks run this time: " + ", ".join(s.stem for s in scripts)
        + (" (a partial run: `--only`; the other benchmarks' figures are from their last run)"
           if args.only else " (all)") + ".",
        "",
        "| benchmark | figure | value |",
        "|---|---|---|",
    ]
    lines += [f"| {b} | {k} | {v} |" for b, k, v in rows]
    for name, text in sorted(sections.items()):
        lines += ["", f"## {name}", "", text]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'} ({len(rows)} figures, {len(failures)} failed)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
