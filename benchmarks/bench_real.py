"""The real-data benchmark: every public data set under data/, trained and evaluated with the package defaults.

For each data set of the registry (``DATASETS``) whose directory exists, exactly what a user
runs, the CLI in subprocesses, with no tuning flags (only the data, its format, where the
scenarios come from, the split and the run directory; ``--quick`` adds ``--epochs 2
--ranking-epochs 2`` for a smoke run):

1. ``tfrs-multiscene train --data DIR --format F [--scenario-from COL] --split random
   --test-fraction 0.2 --seed 42 --run RUN``;
2. ``tfrs-multiscene evaluate --run RUN --json RUN/evaluation.json`` (baselines fitted in the
   same run on the same split, the cold-item run and the ranking baselines included);
3. where ``.venv-swr`` and ``data/peers/Scenario-Wise-Rec`` exist and the set has a binary label,
   ``benchmarks/peers_swr.py`` (Scenario-Wise-Rec's multi-domain CTR models, their trainer) on
   the same saved split, whose per-domain test AUC / log loss go beside ours (``--quick`` gives
   them ``--epochs 2`` as well; ``--no-peers`` leaves them out).

Each command's wall seconds and peak RSS are measured per process (``/usr/bin/time -v`` when
present, else psutil polling, else a tiny wrapper process reporting its child's ru_maxrss);
``RUN/train_summary.json`` gives the per-stage seconds and ``RUN/settings_from_data.json`` the
settings the package derived from the data.

Data sets whose directory is missing are reported as ``missing``; Scenario-Wise-Rec samples
that cannot be converted sensibly as ``skipped`` with the reason; a train / evaluate failure
as ``failed`` with the error text (the benchmark goes on with the next set).

The Scenario-Wise-Rec sample CSVs (data/scenario-wise-rec/, see data/SOURCES.md section 4)
are not in a layout the package reads; :func:`prepare_swr_sample` converts them into our
canonical tables under ``data/derived/swr-<name>/`` (interactions.csv: user_id, item_id,
scenario and the 0/1 label column; items.csv: item_id, title; users.csv where the sample has
user columns).

Output: one Markdown block per set and a summary table across sets on stdout and in
``benchmarks/out/real.md``; everything as JSON with ``--json``.

    .venv/bin/python benchmarks/bench_real.py --json benchmarks/out/bench_real.json
    .venv/bin/python benchmarks/bench_real.py --only amazon2018 --quick
    .venv/bin/python benchmarks/bench_real.py --only swr-douban swr-mind --no-peers
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
CLI = [sys.executable, "-m", "tfrs_multiscene.cli"]
SPLIT_ARGS = ["--split", "random", "--test-fraction", "0.2", "--seed", "42"]
QUICK_ARGS = ["--epochs", "2", "--ranking-epochs", "2"]
RETRIEVAL_METHODS = ("model", "ease", "item_knn", "popularity", "tfidf", "tfrs_tutorial")
RANKING_METHODS = ("model", "pooled", "separate")
RANKING_RESERVED = ("model_architecture", "architectures", "targets", "training", "skipped")
SWR_PYTHON = ROOT / ".venv-swr" / "bin" / "python"
SWR_DIR = DATA / "peers" / "Scenario-Wise-Rec"
PEERS_SCRIPT = ROOT / "benchmarks" / "peers_swr.py"
SWR_SAMPLES = DATA / "scenario-wise-rec"
DERIVED = DATA / "derived"
ENV = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")

# What the AUC of each ranking task measures (stated in every table header).
TASK_NOTES = {
    "liked": "`liked` (rating >= 4): judged among the rows users actually rated -- no sampled negatives (the hard one)",
    "click": "`click`: judged among real impressions (shown, clicked or not) -- no sampled negatives (the hard one)",
    "conversion": "`conversion`: judged among real impressions",
    "interaction": "`interaction`: observed interactions vs sampled catalogue negatives (much easier than liked / click)",
    "rating": "`rating`: regression (RMSE)",
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One entry of the registry: ``--data``, ``--format``, ``--scenario-from`` and what it is."""

    name: str
    directory: Path  # what must exist (the source for Scenario-Wise-Rec samples)
    format: str
    scenario_from: Optional[str]  # None: the format's own scenarios
    note: str = ""
    format_check: bool = False  # a mismatched / tiny sample: figures check the format, not the method
    swr_sample: Optional[str] = None  # a Scenario-Wise-Rec sample converted by prepare_swr_sample


DATASETS = (
    Dataset("movielens-100k", DATA / "movielens-100k", "recbole", "age_group",
            "RecBole's ML-100K atomic files; scenarios = age groups (under_25, 25_44, 45_plus)"),
    Dataset("movielens-1m", DATA / "movielens-1m", "movielens-1m", "age_group",
            "a 487,650-rating SUBSET of ML-1M (all ratings of users 1-2999); scenarios = age groups"),
    Dataset("amazon2018", DATA / "amazon2018", "amazon", None,
            "Amazon Reviews 2018 5-core, two categories (Gift_Cards, Magazine_Subscriptions), each a scenario"),
    Dataset("mind", DATA / "mind", "mind", None,
            "FORMAT CHECK: 5000 behaviors / 2000 news lines of MINDsmall_train sampled independently "
            "(most impressed news are not in news.tsv and are quarantined); scenarios = news categories",
            format_check=True),
    Dataset("swr-douban", SWR_SAMPLES / "douban", "csv", None,
            "Scenario-Wise-Rec Douban sample (3000 rows); scenarios = book / movie / music; label liked (their rating > 3)",
            swr_sample="douban"),
    Dataset("swr-mind", SWR_SAMPLES / "mind", "csv", None,
            "Scenario-Wise-Rec MIND sample (8000 impressions, 7892 users: nearly every test user is new); "
            "scenarios = news / lifestyle / sports / finance; label click; no titles (item text = category + subcategory)",
            format_check=True, swr_sample="mind"),
    Dataset("swr-ali-ccp", SWR_SAMPLES / "ali-ccp", "csv", None,
            "Scenario-Wise-Rec Ali-CCP sample (100 / 50 / 50 rows); scenarios = field 301", swr_sample="ali-ccp"),
    Dataset("swr-kuairand", SWR_SAMPLES / "kuairand", "csv", None,
            "Scenario-Wise-Rec KuaiRand-1K sample (200 rows); scenarios = tab", swr_sample="kuairand"),
)
BY_NAME = {d.name: d for d in DATASETS}


class Skip(Exception):
    """A data set that is present but not usable sensibly; the message says why."""


# --------------------------------------------------------------------------- Scenario-Wise-Rec samples


def _write_csv(path: Path, header: list, rows) -> int:
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow(row)
            n += 1
    return n


def _read_csv(path: Path) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def prepare_swr_sample(name: str) -> Path:
    """Convert the Scenario-Wise-Rec sample ``name`` (douban, mind, ali-ccp, kuairand) into our tables.

    Writes ``data/derived/swr-<name>/interactions.csv`` (user_id, item_id, scenario, label),
    ``items.csv`` (item_id, title, ...) and, where the sample has user columns, ``users.csv``;
    returns that directory. Raises :class:`Skip` with the reason where a sample cannot be
    converted sensibly, FileNotFoundError where the sample is absent. Domains follow their
    ``run_*_multi_domain.py`` definitions (data/SOURCES.md section 4).
    """
    name = name.removeprefix("swr-")
    src = SWR_SAMPLES / name
    out = DERIVED / f"swr-{name}"
    if name == "douban":
        rows = _read_csv(src / "douban_sample.csv")  # user_id,item_id,rating,domain,living_place,join_time,time_bin
        out.mkdir(parents=True, exist_ok=True)
        # their rating is already binarised (1 if rating > 3): our `liked`; domain = source file
        _write_csv(out / "interactions.csv", ["user_id", "item_id", "scenario", "liked"],
                   ((f"u{r['user_id']}", f"i{r['item_id']}", r["domain"], int(r["rating"])) for r in rows))
        items = {}
        for r in rows:  # no item text: the id (with its domain, which is a property of the item: ids are offset per domain)
            items.setdefault(f"i{r['item_id']}", (f"{r['domain']} {r['item_id']}", r["domain"]))
        _write_csv(out / "items.csv", ["item_id", "title", "domain"], ((k, t, d) for k, (t, d) in items.items()))
        users = {}
        for r in rows:
            users.setdefault(f"u{r['user_id']}", (r["living_place"] or "unknown", f"t{r['time_bin']}"))
        _write_csv(out / "users.csv", ["user_id", "living_place", "time_bin"], ((k, lp, tb) for k, (lp, tb) in users.items()))
        return out
    if name == "mind":
        rows = _read_csv(src / "mind_sample.csv")  # User_ID,News_ID,label,Category,SubCategory
        out.mkdir(parents=True, exist_ok=True)
        _write_csv(out / "interactions.csv", ["user_id", "item_id", "scenario", "click"],
                   ((r["User_ID"], r["News_ID"], r["Category"], int(r["label"])) for r in rows))
        items = {}
        for r in rows:  # no title in the sample: the category and subcategory are the only text
            sub = r["SubCategory"]
            items.setdefault(r["News_ID"], (f"{r['Category']} {sub.replace('_', ' ').replace('-', ' ')}", sub))
        _write_csv(out / "items.csv", ["item_id", "title", "subcategory"], ((k, t, s) for k, (t, s) in items.items()))
        return out
    if name == "ali-ccp":
        parts = [src / f"ali_ccp_{p}_sample.csv" for p in ("train", "val", "test")]
        for p in parts:
            if not p.exists():
                raise FileNotFoundError(p)
        rows = [r for p in parts for r in _read_csv(p)]
        users = {r["101"] for r in rows}
        rare = sum(r["205"] == "0" for r in rows)
        raise Skip(f"no user / item identity: the user field 101 takes {len(users)} value(s) over all {len(rows)} rows "
                   f"and {rare} of {len(rows)} item ids (field 205) are their rare-value bucket 0 (their preprocessing "
                   "label-encodes ids and maps values seen < 10 times to 0); nothing to retrieve per user")
    if name == "kuairand":
        rows = _read_csv(src / "kuairand_sample.csv")
        tabs = sorted({r["tab"] for r in rows})
        if len(tabs) < 2:
            raise Skip(f"one domain only: the {len(rows)}-row sample holds tab {', '.join(tabs)} alone "
                       f"({sum(r['is_click'] == '1' for r in rows)} clicks); no multi-scenario comparison, "
                       "and pooled / separate are the model itself")
        raise Skip("KuaiRand conversion not implemented for several tabs")  # not reached with the shipped sample
    raise ValueError(f"unknown Scenario-Wise-Rec sample {name!r}")


# --------------------------------------------------------------------------- measured subprocesses

_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(str(kb))\n"
    "sys.exit(rc)\n"
)


def _rss_method() -> str:
    if Path("/usr/bin/time").exists():
        try:
            probe = subprocess.run(["/usr/bin/time", "-v", "true"], capture_output=True, text=True)
            if "Maximum resident set size" in probe.stderr:
                return "/usr/bin/time -v"
        except OSError:
            pass
    try:
        import psutil  # noqa: F401

        return "psutil polling"
    except ImportError:
        return "ru_maxrss wrapper"


RSS_METHOD = _rss_method()


def measured(cmd: list, log_path: Path, timeout: Optional[float] = None) -> dict:
    """Run ``cmd`` (output to ``log_path``); ``{"rc", "seconds", "peak_rss_mb", "error"}``."""
    rss_file = log_path.with_suffix(".rss")
    rss_file.unlink(missing_ok=True)
    if RSS_METHOD == "/usr/bin/time -v":
        full = ["/usr/bin/time", "-v", "-o", str(rss_file)] + cmd
    elif RSS_METHOD == "ru_maxrss wrapper":
        full = [sys.executable, "-c", _RSS_WRAPPER, str(rss_file)] + cmd
    else:
        full = cmd
    peak = [0]
    started = time.perf_counter()
    rc = None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=ENV)
        poller = None
        if RSS_METHOD == "psutil polling":
            import psutil

            def poll():
                try:
                    p = psutil.Process(proc.pid)
                    while proc.poll() is None:
                        rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                        peak[0] = max(peak[0], rss // 1024)
                        time.sleep(0.2)
                except psutil.Error:
                    pass

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "timeout"
        if poller is not None:
            poller.join(timeout=1)
    seconds = time.perf_counter() - started
    kb = None
    if RSS_METHOD == "/usr/bin/time -v" and rss_file.exists():
        for line in rss_file.read_text().splitlines():
            if "Maximum resident set size" in line:
                kb = int(line.rsplit(":", 1)[1])
    elif RSS_METHOD == "ru_maxrss wrapper" and rss_file.exists():
        kb = int(rss_file.read_text().strip() or 0)
    elif peak[0]:
        kb = peak[0]
    out = {"rc": rc, "seconds": round(seconds, 1), "peak_rss_mb": round(kb / 1024, 1) if kb else None,
           "log": str(log_path.relative_to(ROOT) if log_path.is_relative_to(ROOT) else log_path)}
    if rc != 0:
        out["error"] = error_text(log_path, rc, timeout)
    return out


def error_text(log_path: Path, rc, timeout=None) -> str:
    """The end of a failed command's log: from its last traceback, else the last lines."""
    if rc == "timeout":
        return f"timed out after {timeout} s"
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
    tail = lines[starts[-1]:] if starts else lines
    tail = [line for line in tail if line.strip()]
    if len(tail) > 14:
        tail = tail[:1] + ["  ..."] + tail[-12:]
    return f"exit {rc}:\n" + "\n".join(tail)


# --------------------------------------------------------------------------- summarising evaluation.json


def _num(v):
    return v if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) else None


def _ratio(a, b):
    a, b = _num(a), _num(b)
    return a / b if a is not None and b else None


def retrieval_table(results: dict) -> dict:
    standard = (results.get("retrieval") or {}).get("standard") or {}
    rows = {m: {k: _num(standard[m].get(k)) for k in ("recall@10", "ndcg@10", "recall@100")}
            for m in RETRIEVAL_METHODS if isinstance(standard.get(m), dict)}
    model = rows.get("model", {})
    ratios = {}
    for base, key in (("ease", "model/EASE"), ("item_knn", "model/item-kNN")):
        if base in rows:
            ratios[key] = {k: _ratio(model.get(k), rows[base].get(k)) for k in ("recall@10", "ndcg@10", "recall@100")}
    return {"methods": rows, "ratios": ratios, "ease_lambda": (results.get("split") or {}).get("ease_lambda")}


def cold_table(results: dict) -> dict:
    cold = (results.get("retrieval") or {}).get("cold_start") or {}
    if not cold:
        return {}
    methods = {}
    for m, v in cold.items():
        if not isinstance(v, dict) or m in ("split", "new_item_offset"):
            continue
        row = {k: _num(v.get(k)) for k in ("recall@50", "recall_all@50")}
        row.update({k: v[k] for k in v if ("share" in k or "slot" in k) and _num(v[k]) is not None})
        if "users" in v:
            row["users"] = v["users"]
        methods[m] = row
    return {"methods": methods, "split": cold.get("split"), "new_item_offset": cold.get("new_item_offset"),
            "extra": {k: v for k, v in cold.items() if not isinstance(v, dict) and ("share" in k or "slot" in k)}}


def ranking_tables(results: dict) -> dict:
    ranking = results.get("ranking") or {}
    if not isinstance(ranking, dict):
        return {}
    archs = ranking.get("architectures") or {}
    tasks = {}
    for task, per in ranking.items():
        if task in RANKING_RESERVED or not isinstance(per, dict):
            continue
        table = {}
        for scenario, methods in per.items():
            if not isinstance(methods, dict):
                continue
            row = {}
            for m in RANKING_METHODS:
                if isinstance(methods.get(m), dict):
                    row[m] = {k: _num(methods[m].get(k)) for k in ("auc", "gauc", "logloss", "rmse") if k in methods[m]}
            for arch, by_task in archs.items():
                v = ((by_task or {}).get(task) or {}).get(scenario)
                if isinstance(v, dict):
                    row[f"arch:{arch}"] = {k: _num(v.get(k)) for k in ("auc", "gauc", "logloss", "rmse") if k in v}
            first = next((v for v in methods.values() if isinstance(v, dict)), {})
            n = next((first[k] for k in ("impressions", "n", "rows", "examples") if k in first), None)
            table[scenario] = {"methods": row, "n": n, "positive_rate": _num(first.get("positive_rate"))}
        tasks[task] = table
    targets = ranking.get("targets") or {}
    intervals = {}
    for scenario, row in (targets.get("per_scenario") or {}).items():
        intervals[scenario] = {k: {"estimate": _num(row[k].get("estimate")), "ci95": row[k].get("ci95")}
                               for k in ("vs_pooled", "vs_separate") if isinstance(row.get(k), dict)}
    margin = None
    target = targets.get("task")
    if target in tasks:
        diffs = []
        for scenario, cell in tasks[target].items():
            if scenario == "overall":
                continue
            m = cell["methods"]
            base = [m[b]["auc"] for b in ("pooled", "separate") if b in m and m[b].get("auc") is not None]
            if base and m.get("model", {}).get("auc") is not None:
                diffs.append((m["model"]["auc"] - max(base), scenario))
        if diffs:
            worst = min(diffs)
            margin = {"value": worst[0], "scenario": worst[1]}
    return {"tasks": tasks, "target_task": target, "intervals": intervals, "min_margin": margin,
            "model_beats_baselines_everywhere": targets.get("model_beats_baselines_everywhere"),
            "skipped": ranking.get("skipped"), "architecture": ranking.get("model_architecture")}


def label_task(ranking: dict) -> Optional[str]:
    """The binary label the peers can learn: ``liked`` or ``click`` (not the sampled ``interaction``)."""
    tasks = (ranking or {}).get("tasks") or {}
    return next((t for t in ("liked", "click") if t in tasks), None)


# --------------------------------------------------------------------------- peers


def peers_available() -> Optional[str]:
    """None when the peers can run, else why not."""
    if not SWR_PYTHON.exists() or not SWR_DIR.is_dir():
        return "not run (make swr-env; see benchmarks/peers_swr.py)"
    return None


def run_peers(ds: Dataset, run_dir: Path, label: str, args) -> dict:
    """Scenario-Wise-Rec's models on the run's saved split; ``{"status", "models": {NAME: {domain: {auc, logloss}}}}``."""
    out_json = run_dir / "peers_swr.json"
    flags = ["--run", str(run_dir), "--swr-dir", str(SWR_DIR), "--out", str(out_json)]
    if args.peer_models:
        flags += ["--models", *args.peer_models]
    if args.quick:
        flags += ["--epochs", "2"]
    if label == "liked":
        cmd = [str(SWR_PYTHON), str(PEERS_SCRIPT), *flags]
    else:  # peers_swr.py reads the label from its module constant LABEL ("liked"); same script, our label
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import peers_swr; "
                f"peers_swr.LABEL = {label!r}; sys.exit(peers_swr.main(sys.argv[2:]))")
        cmd = [str(SWR_PYTHON), "-c", code, str(PEERS_SCRIPT.parent), *flags]
    out_json.unlink(missing_ok=True)
    m = measured(cmd, run_dir / "peers_swr.log", args.timeout)
    res = {"command": shlex.join(cmd), "label": label, "seconds": m["seconds"], "peak_rss_mb": m["peak_rss_mb"]}
    if not out_json.exists():
        res.update(status="failed", error=m.get("error", "no JSON written"))
        return res
    data = json.loads(out_json.read_text())
    res["status"] = "ok" if m["rc"] == 0 else "partial"
    if m["rc"] != 0:
        res["error"] = m.get("error")
    res["models"] = {}
    for name, r in (data.get("models") or {}).items():
        if "error" in r:
            res["models"][name] = {"error": r["error"]}
            continue
        res["models"][name] = {"domains": {d: {"auc": _num(v.get("auc")), "logloss": _num(v.get("logloss")), "n": v.get("n")}
                                           for d, v in (r.get("domains") or {}).items()},
                               "overall": {k: _num((r.get("overall") or {}).get(k)) for k in ("auc", "logloss")},
                               "epochs": r.get("epochs"), "train_seconds": r.get("train_seconds")}
    res["swr_commit"] = (data.get("settings") or {}).get("swr_commit")
    return res


# --------------------------------------------------------------------------- one data set


def benchmark_set(ds: Dataset, args) -> dict:
    name = ds.name
    rec = {"name": name, "directory": str(ds.directory.relative_to(ROOT)), "format": ds.format,
           "scenario_from": ds.scenario_from, "note": ds.note, "format_check": ds.format_check}
    if not ds.directory.is_dir():
        print(f"[{name}] missing: {ds.directory.relative_to(ROOT)}", flush=True)
        return {**rec, "status": "missing", "reason": f"{rec['directory']} does not exist"}
    data_dir = ds.directory
    if ds.swr_sample:
        print(f"[{name}] convert the Scenario-Wise-Rec sample ...", flush=True)
        try:
            data_dir = prepare_swr_sample(ds.swr_sample)
        except Skip as e:
            print(f"[{name}] skipped: {e}", flush=True)
            return {**rec, "status": "skipped", "reason": str(e)}
        except FileNotFoundError as e:
            return {**rec, "status": "missing", "reason": f"{e}"}
        rec["data"] = str(data_dir.relative_to(ROOT))
    run_dir = Path(args.runs) / name
    rec["run_dir"] = str(run_dir)
    train = CLI + ["train", "--data", str(data_dir), "--format", ds.format]
    train += ["--scenario-from", ds.scenario_from] if ds.scenario_from else []
    train += SPLIT_ARGS + ["--run", str(run_dir)] + (QUICK_ARGS if args.quick else [])
    evaluate = CLI + ["evaluate", "--run", str(run_dir), "--json", str(run_dir / "evaluation.json")]
    rec["commands"] = {"train": shlex.join(train), "evaluate": shlex.join(evaluate)}
    timing_file = run_dir / "bench_timing.json"
    if args.reuse and (run_dir / "evaluation.json").exists() and timing_file.exists():
        print(f"[{name}] reuse {run_dir}/evaluation.json", flush=True)
        rec.update(json.loads(timing_file.read_text()))
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # `train` into an existing run resumes it: start clean
        run_dir.mkdir(parents=True)
        for stage, cmd in (("train", train), ("evaluate", evaluate)):
            print(f"[{name}] {stage} ...", flush=True)
            m = measured(cmd, run_dir / f"{stage}.log", args.timeout)
            rec[stage] = m
            print(f"[{name}] {stage}: exit {m['rc']}, {m['seconds']} s, peak RSS {m['peak_rss_mb']} MB", flush=True)
            if m["rc"] != 0:
                print(f"[{name}] {stage} FAILED:\n{m['error']}", flush=True)
                return {**rec, "status": "failed", "failed_stage": stage, "error": m["error"]}
        timing_file.write_text(json.dumps({k: rec[k] for k in ("train", "evaluate")}, indent=1))
    summary_file = run_dir / "train_summary.json"
    if summary_file.exists():
        summary = json.loads(summary_file.read_text())
        rec["stage_seconds"] = {s: (summary.get(s) or {}).get("seconds") for s in ("retrieval", "ranking")
                                if isinstance(summary.get(s), dict)}
    settings_file = run_dir / "settings_from_data.json"
    if settings_file.exists():
        rec["settings_from_data"] = json.loads(settings_file.read_text())
    results = json.loads((run_dir / "evaluation.json").read_text())
    split = results.get("split") or {}
    rec["split"] = {k: split[k] for k in ("kind", "seed", "counts", "users", "items", "scenarios", "positive_label",
                                          "test_users", "test_interactions_unknown_user", "ease_lambda") if k in split}
    rec["retrieval"] = retrieval_table(results)
    rec["cold_start"] = cold_table(results)
    rec["ranking"] = ranking_tables(results)
    label = label_task(rec["ranking"])
    why_not = peers_available()
    if args.no_peers:
        rec["peers"] = {"status": "not run (--no-peers)"}
    elif why_not:
        rec["peers"] = {"status": why_not}
    elif label is None:
        rec["peers"] = {"status": "not run (no binary liked / click label: their models need one)"}
    else:
        print(f"[{name}] peers (Scenario-Wise-Rec, label {label}) ...", flush=True)
        rec["peers"] = run_peers(ds, run_dir, label, args)
        print(f"[{name}] peers: {rec['peers']['status']}, {rec['peers']['seconds']} s", flush=True)
    rec["status"] = "ok"
    return rec


# --------------------------------------------------------------------------- Markdown


def f4(v) -> str:
    return "-" if _num(v) is None else f"{v:.4f}"


def f3(v) -> str:
    return "-" if _num(v) is None else f"{v:.3f}"


def ci(v) -> str:
    if not v or _num(v.get("estimate")) is None:
        return "-"
    lo, hi = (v.get("ci95") or [None, None])[:2]
    return f"{v['estimate']:+.4f} [{f4(lo)}, {f4(hi)}]"


def markdown_set(rec: dict) -> str:
    name = rec["name"]
    head = f"### {name}"
    meta = f"`{rec['directory']}`, `--format {rec['format']}`" + (
        f", `--scenario-from {rec['scenario_from']}`" if rec.get("scenario_from") else "")
    lines = [head, "", f"{rec.get('note', '')}", "", meta + "."]
    if rec.get("format_check"):
        lines += ["", "**Format check only**: the sample is too small or mismatched for its figures to judge the method."]
    status = rec.get("status")
    if status in ("missing", "skipped"):
        return "\n".join(lines + ["", f"**{status}**: {rec.get('reason')}", ""])
    if status == "failed":
        lines += ["", f"**failed** in `{rec['failed_stage']}` (command: `{rec['commands'][rec['failed_stage']]}`):", "",
                  "```", rec["error"], "```", ""]
        return "\n".join(lines)
    t, e = rec.get("train", {}), rec.get("evaluate", {})
    split = rec.get("split") or {}
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in (rec.get("stage_seconds") or {}).items() if _num(v) is not None)
    counts = split.get("counts") or {}
    lines += ["", f"train {t.get('seconds')} s ({stages or 'stages -'}), peak RSS {t.get('peak_rss_mb')} MB; "
              f"evaluate {e.get('seconds')} s, peak RSS {e.get('peak_rss_mb')} MB ({RSS_METHOD}, per process). "
              f"Split {split.get('kind')} seed {split.get('seed')}: " + " / ".join(f"{k} {v}" for k, v in counts.items())
              + f" interactions, {split.get('users')} users, {split.get('items')} items, scenarios "
              f"{', '.join(split.get('scenarios') or []) or '-'}, retrieval positives `{split.get('positive_label')}`."]
    choices = (rec.get("settings_from_data") or {}).get("choices") or []
    if choices:
        parts = [f"{c.get('field', c.get('name', '?'))} = {c.get('value')}" + (" (user's value kept)" if c.get("kept_user_value") else "")
                 for c in choices if isinstance(c, dict)]
        lines += ["", "Settings from the data: " + "; ".join(parts) + "."]

    r = rec.get("retrieval") or {}
    lines += ["", "Retrieval, standard protocol (training + validation items excluded)"
              + (f", EASE lambda {r.get('ease_lambda')}" if r.get("ease_lambda") is not None else "") + ":", "",
              "| method | R@10 | N@10 | R@100 |", "|---|---|---|---|"]
    for m, v in (r.get("methods") or {}).items():
        lines.append(f"| {m} | {f4(v['recall@10'])} | {f4(v['ndcg@10'])} | {f4(v['recall@100'])} |")
    for key, v in (r.get("ratios") or {}).items():
        lines.append(f"| *{key}* | {f3(v['recall@10'])} | {f3(v['ndcg@10'])} | {f3(v['recall@100'])} |")

    c = rec.get("cold_start") or {}
    if c.get("methods"):
        sp = c.get("split") or {}
        extra_cols = sorted({k for v in c["methods"].values() for k in v if k not in ("recall@50", "recall_all@50", "users")})
        offset = (c.get("new_item_offset") or {}).get("offset")
        share = sp.get("cold_interaction_share")
        lines += ["", f"Cold items (a cold-item split: {sp.get('held_out_items')} held-out items holding "
                  f"{f3(share)} of the interactions; recall@50 among the cold items only, recall_all@50 among all "
                  f"items; cold_slot_share@50: their share of the top-50 slots; the model's new-item offset "
                  f"{f3(offset)}, chosen on known-item validation):", "",
                  "| method | recall@50 | recall_all@50 | " + " | ".join(extra_cols) + (" |" if extra_cols else "").rstrip(),
                  "|---|---|---|" + "---|" * len(extra_cols)]
        lines[-2] = lines[-2].rstrip(" |") + " |"
        for m, v in c["methods"].items():
            cells = [f4(v.get("recall@50")), f4(v.get("recall_all@50"))] + [f4(v.get(k)) for k in extra_cols]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        for k, v in (c.get("extra") or {}).items():
            lines.append(f"\n{k}: {v}")

    rk = rec.get("ranking") or {}
    for task, table in (rk.get("tasks") or {}).items():
        note = TASK_NOTES.get(task, f"`{task}`: a binary task column")
        methods = []
        for cell in table.values():
            methods += [m for m in cell["methods"] if m not in methods]
        regression = any("rmse" in v for cell in table.values() for v in cell["methods"].values())
        keys = ("rmse",) if regression else ("auc", "gauc", "logloss")
        lines += ["", f"Ranking, task {note}; per scenario {' / '.join(k.upper() if k != 'logloss' else 'log loss' for k in keys)}"
                  f" (architecture {rk.get('architecture')}):", ""]
        header = ["scenario", "n", "pos. rate"] + [f"{m} {k}" for m in methods for k in keys]
        interval = task == rk.get("target_task") and rk.get("intervals")
        if interval:
            header += ["model - pooled AUC [95% CI]", "model - separate AUC [95% CI]"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for scenario, cell in table.items():
            row = [scenario, str(cell.get("n") if cell.get("n") is not None else "-"), f3(cell.get("positive_rate"))]
            row += [f4((cell["methods"].get(m) or {}).get(k)) for m in methods for k in keys]
            if interval:
                iv = rk["intervals"].get(scenario) or {}
                row += [ci(iv.get("vs_pooled")), ci(iv.get("vs_separate"))]
            lines.append("| " + " | ".join(row) + " |")
    if rk.get("min_margin"):
        mm = rk["min_margin"]
        lines += ["", f"Target task `{rk.get('target_task')}`: min over scenarios of model AUC - max(pooled, separate) = "
                  f"{mm['value']:+.4f} ({mm['scenario']}); model beats both everywhere: {rk.get('model_beats_baselines_everywhere')}."]
    if rk.get("skipped"):
        lines += ["", "Ranking skipped: " + "; ".join(f"{k}: {v}" for k, v in rk["skipped"].items())]

    p = rec.get("peers") or {}
    if p.get("models"):
        label = p.get("label")
        ours = ((rk.get("tasks") or {}).get(label) or {})
        domains = [s for s in ours if s != "overall"] or sorted({d for v in p["models"].values() for d in (v.get("domains") or {})})
        lines += ["", f"Peers: Scenario-Wise-Rec models (their trainer, same train / valid / test rows, label `{label}`), "
                  f"test AUC / log loss per domain beside ours ({p.get('seconds')} s, peak RSS {p.get('peak_rss_mb')} MB"
                  + (f", their commit {p['swr_commit'][:10]}" if p.get("swr_commit") else "") + "):", "",
                  "| model | " + " | ".join(domains) + " | overall |", "|---|" + "---|" * (len(domains) + 1)]
        for m in RANKING_METHODS:
            cells = [f"{f4(((ours.get(d) or {}).get('methods', {}).get(m) or {}).get('auc'))} / "
                     f"{f4(((ours.get(d) or {}).get('methods', {}).get(m) or {}).get('logloss'))}" for d in domains + ["overall"]]
            if any(c != "- / -" for c in cells):
                lines.append(f"| ours: {m} | " + " | ".join(cells) + " |")
        n_row = [str((ours.get(d) or {}).get("n", "-")) + " / " + "/".join(sorted(
            {str((v.get("domains", {}).get(d) or {}).get("n", "-")) for v in p["models"].values() if "domains" in v})) for d in domains]
        lines.append("| *test rows: ours / peers* | " + " | ".join(n_row) + " |  |")
        for name_, v in p["models"].items():
            if "error" in v:
                lines.append(f"| {name_} | error: {v['error']} |")
                continue
            cells = [f"{f4((v['domains'].get(d) or {}).get('auc'))} / {f4((v['domains'].get(d) or {}).get('logloss'))}" for d in domains]
            cells.append(f"{f4(v['overall'].get('auc'))} / {f4(v['overall'].get('logloss'))}")
            lines.append(f"| {name_} | " + " | ".join(cells) + " |")
        if p.get("error"):
            lines += ["", f"peers exit: {p['error']}"]
    else:
        lines += ["", f"peers: {p.get('status')}" + (f" -- {p['error']}" if p.get("error") else "")]
    return "\n".join(lines) + "\n"


def summary_row(rec: dict) -> dict:
    """The figures of the cross-set summary."""
    out = {"status": rec.get("status")}
    if rec.get("status") != "ok":
        return out
    ratios = (rec.get("retrieval") or {}).get("ratios", {}).get("model/EASE", {})
    out["model/EASE R@10"] = ratios.get("recall@10")
    out["model/EASE N@10"] = ratios.get("ndcg@10")
    cold = (rec.get("cold_start") or {}).get("methods") or {}
    out["cold recall_all@50 model"] = (cold.get("model") or {}).get("recall_all@50")
    out["cold recall_all@50 tfidf"] = (cold.get("tfidf") or {}).get("recall_all@50")
    rk = rec.get("ranking") or {}
    out["ranking target task"] = rk.get("target_task")
    out["min(model - max(pooled, separate)) AUC"] = (rk.get("min_margin") or {}).get("value")
    peers = rec.get("peers") or {}
    if peers.get("models"):
        ours = ((rk.get("tasks") or {}).get(peers["label"]) or {})
        per_domain = {}
        for d, cell in ours.items():
            if d == "overall":
                continue
            best = max(((v["domains"].get(d) or {}).get("auc") or -1, n) for n, v in peers["models"].items() if "domains" in v) \
                if any("domains" in v for v in peers["models"].values()) else (None, None)
            per_domain[d] = {"best_peer": best[1], "best_peer_auc": best[0] if best[0] != -1 else None,
                             "ours_auc": (cell["methods"].get("model") or {}).get("auc")}
        out["peers"] = per_domain
    else:
        out["peers"] = peers.get("status")
    out["train s"] = (rec.get("train") or {}).get("seconds")
    out["evaluate s"] = (rec.get("evaluate") or {}).get("seconds")
    rss = [x for x in ((rec.get("train") or {}).get("peak_rss_mb"), (rec.get("evaluate") or {}).get("peak_rss_mb")) if x]
    out["peak RSS MB"] = max(rss) if rss else None
    return out


def markdown_summary(records: list) -> str:
    lines = ["### Summary", "",
             "| set | status | model/EASE R@10 | model/EASE N@10 | cold recall_all@50 model vs tfidf | "
             "min over scenarios of model AUC - max(pooled, separate) | best peer AUC vs ours (per domain) | "
             "train s | evaluate s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for rec in records:
        s = rec["summary"]
        if s["status"] != "ok":
            why = rec.get("reason") or (f"{rec.get('failed_stage')}: " + (rec.get("error") or "").splitlines()[-1]
                                        if rec.get("error") else "")
            lines.append(f"| {rec['name']} | {s['status']}: {why.replace('|', '/')} |  |  |  |  |  |  |  |  |")
            continue
        if isinstance(s.get("peers"), dict):
            peers = "; ".join(f"{d}: {f3(v['best_peer_auc'])} ({v['best_peer']}) vs {f3(v['ours_auc'])}" for d, v in s["peers"].items())
        else:
            peers = str(s.get("peers"))
        margin = s.get("min(model - max(pooled, separate)) AUC")
        lines.append(
            f"| {rec['name']}{' (format check)' if rec.get('format_check') else ''} | ok | {f3(s['model/EASE R@10'])} | "
            f"{f3(s['model/EASE N@10'])} | {f4(s['cold recall_all@50 model'])} vs {f4(s['cold recall_all@50 tfidf'])} | "
            f"{'-' if margin is None else f'{margin:+.4f}'} ({s.get('ranking target task')}) | {peers} | "
            f"{s['train s']} | {s['evaluate s']} | {s['peak RSS MB']} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def one_line_strings(data):
    """Multi-line strings (error texts) as lists of lines, so that run_all.py's flat table keeps one row each."""
    if isinstance(data, dict):
        return {k: one_line_strings(v) for k, v in data.items()}
    if isinstance(data, list):
        return [one_line_strings(v) for v in data]
    if isinstance(data, str) and "\n" in data:
        return data.splitlines()
    return data


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help=f"of {', '.join(BY_NAME)}")
    parser.add_argument("--quick", action="store_true", help="smoke run: train with " + " ".join(QUICK_ARGS))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench_real"), help="parent of the run directories")
    parser.add_argument("--reuse", action="store_true", help="reuse a set's evaluation.json from an earlier run of this script")
    parser.add_argument("--no-peers", action="store_true", help="do not run the Scenario-Wise-Rec peers")
    parser.add_argument("--peer-models", nargs="+", default=None, help="peers_swr.py --models (default: its six)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per command (default: none)")
    parser.add_argument("--markdown", default=str(ROOT / "benchmarks" / "out" / "real.md"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.only:
        unknown = [n for n in args.only if n not in BY_NAME]
        if unknown:
            parser.error(f"unknown data set(s) {unknown}; choose from {', '.join(BY_NAME)}")
    chosen = [d for d in DATASETS if not args.only or d.name in args.only]

    started = time.time()
    records = []
    for ds in chosen:
        try:
            rec = benchmark_set(ds, args)
        except Exception as e:  # a bug in reading one set's output must not lose the others
            import traceback

            rec = {"name": ds.name, "directory": str(ds.directory.relative_to(ROOT)), "format": ds.format,
                   "status": "failed", "failed_stage": "benchmark", "error": traceback.format_exc(limit=3),
                   "note": ds.note, "scenario_from": ds.scenario_from, "commands": {"benchmark": "bench_real.py"}}
            print(f"[{ds.name}] benchmark FAILED: {type(e).__name__}: {e}", flush=True)
        rec["summary"] = summary_row(rec)
        records.append(rec)
        print("\n" + markdown_set(rec), flush=True)

    blocks = [markdown_set(r) for r in records]
    summary = markdown_summary(records)
    header = [
        "# Real-data benchmark", "",
        f"`benchmarks/bench_real.py{' --quick' if args.quick else ''}"
        f"{' --only ' + ' '.join(args.only) if args.only else ''}` on "
        f"{datetime.datetime.now().isoformat(timespec='seconds')} ({os.cpu_count()} cores, Python {platform.python_version()}). "
        "Package defaults: only the data, its format, the scenario source, `" + " ".join(SPLIT_ARGS) + "` and the run "
        "directory are given" + (f" (plus `{' '.join(QUICK_ARGS)}`: a smoke run, not the figures)" if args.quick else "") + ".",
        "", f"Peak RSS by {RSS_METHOD}, per process.", ""]
    text = "\n".join(header) + "\n" + summary + "\n" + "\n".join(blocks)
    print(summary, flush=True)
    md = Path(args.markdown)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    print(f"wrote {md}", flush=True)
    out = {"quick": args.quick, "rss_method": RSS_METHOD, "seconds": round(time.time() - started, 1),
           "sets": {r["name"]: r for r in records},
           "statuses": {r["name"]: r["status"] for r in records}}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(one_line_strings(out), indent=2, default=str))
        print(f"wrote {args.json}", flush=True)
    return out


if __name__ == "__main__":
    main()
