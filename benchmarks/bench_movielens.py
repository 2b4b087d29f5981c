"""The issue targets on the real MovieLens-100K: two-tower vs EASE, shared bottom vs pooled/separate.

Recipe, exactly what a user runs (the CLI, in subprocesses):

1. ``scripts/fetch_movielens_100k.py data/movielens-100k`` (RecBole's copy of ML-100K, fetched
   through pip and checked; skipped when present);
2. ``tfrs-multiscene train --config configs/movielens-100k.yaml --data data/movielens-100k
   --stages both ...`` (the preset: age-group scenarios, random 80/20 split seed 42, every
   rating a retrieval positive as in the TFRS tutorials and the published EASE figures, the
   retrieval settings chosen on validation; ranking learns ``liked`` = rating >= 4);
3. ``tfrs-multiscene evaluate --run RUN --json OUT`` (baselines fitted in the same run on the
   same split; ``--cold-start`` adds the cold-item comparison).

Figures: standard protocol (training + validation items excluded) Recall@10 / NDCG@10 / Recall@100 of the
model and every baseline, the ratios model/EASE, the TFRS protocol top-100 accuracy, cold-item
Recall@50 model vs TF-IDF (with ``--cold-start``), and the ranking ``liked`` AUC / GAUC per
scenario for model, pooled and separate.

    .venv/bin/python benchmarks/bench_movielens.py --json benchmarks/out/movielens.json
    .venv/bin/python benchmarks/bench_movielens.py --train-args "--history-dropout 0.5" --cold-start
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "tfrs_multiscene.cli"]
BASE_TRAIN_ARGS = ["--config", str(ROOT / "configs" / "movielens-100k.yaml"), "--stages", "both"]
RETRIEVAL_METHODS = ("model", "ease", "item_knn", "popularity", "tfidf", "tfrs_tutorial")


def run(cmd: list, log_path: Path) -> float:
    """Run ``cmd`` with its output in ``log_path``; seconds taken (raises on failure)."""
    started = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{shlex.join(cmd)} failed ({done.returncode}); see {log_path}")
    return time.perf_counter() - started


def summarise(results: dict) -> dict:
    """The figures of the issue targets from an ``evaluate --json`` result."""
    retrieval = results.get("retrieval", {})
    standard = retrieval.get("standard", {})
    out = {"retrieval": {m: {k: standard[m].get(k) for k in ("recall@10", "ndcg@10", "recall@100")}
                         for m in RETRIEVAL_METHODS if m in standard},
           "tfrs_top@100": {m: v.get("top@100") for m, v in retrieval.get("tfrs", {}).items() if isinstance(v, dict)},
           "ease_lambda": results.get("split", {}).get("ease_lambda")}
    model, ease = out["retrieval"].get("model", {}), out["retrieval"].get("ease", {})
    if model and ease:
        out["model_over_ease"] = {k: model[k] / ease[k] for k in ("recall@10", "ndcg@10") if ease.get(k)}
    cold = retrieval.get("cold_start", {})
    if cold:
        out["cold_start"] = {m: cold[m].get("recall@50") for m in ("model", "tfidf", "popularity", "oracle_popularity") if m in cold}
        if out["cold_start"].get("tfidf"):
            out["cold_model_over_tfidf"] = out["cold_start"].get("model", 0.0) / out["cold_start"]["tfidf"]
    ranking = results.get("ranking", {}).get("liked", {})
    out["ranking_liked"] = {
        scenario: {method: {k: v.get(k) for k in ("auc", "gauc", "logloss")} for method, v in methods.items()
                   if isinstance(v, dict) and method in ("model", "pooled", "separate")}
        for scenario, methods in ranking.items() if isinstance(methods, dict)}
    return out


def print_summary(summary: dict) -> None:
    print("\nretrieval, standard protocol (training + validation items excluded), ML-100K random 80/20 seed 42")
    print(f"{'method':<14} {'R@10':>7} {'N@10':>7} {'R@100':>7}")
    for method, m in summary["retrieval"].items():
        print(f"{method:<14} {m['recall@10']:7.4f} {m['ndcg@10']:7.4f} {m['recall@100']:7.4f}")
    print("model / EASE:", {k: round(v, 3) for k, v in summary.get("model_over_ease", {}).items()},
          f"(EASE lambda {summary.get('ease_lambda')})")
    print("TFRS protocol top@100:", {k: round(v, 3) for k, v in summary["tfrs_top@100"].items() if v is not None})
    if "cold_start" in summary:
        print("cold items, recall@50:", summary["cold_start"],
              f"model/TF-IDF {summary.get('cold_model_over_tfidf', float('nan')):.2f}")
    print("\nranking, liked (rating >= 4), AUC / GAUC by age-group scenario")
    for scenario, methods in sorted(summary["ranking_liked"].items()):
        cells = "  ".join(f"{m} {v['auc']:.4f}/{v['gauc']:.4f}" for m, v in methods.items() if v.get("auc") is not None)
        print(f"  {scenario:<10} {cells}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "movielens-100k"))
    parser.add_argument("--run", default=None, help="run directory (default: a temporary one)")
    parser.add_argument("--train-args", default="", help="extra `train` flags, e.g. '--history-dropout 0.5'")
    parser.add_argument("--cold-start", action="store_true", help="also train on a cold-item split and compare")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    run_dir = Path(args.run or tempfile.mkdtemp(prefix="bench_movielens_"))
    run_dir.mkdir(parents=True, exist_ok=True)
    seconds = {"fetch": run([sys.executable, str(ROOT / "scripts" / "fetch_movielens_100k.py"), args.data],
                            run_dir / "fetch.log")}
    train = CLI + ["train", "--data", args.data, "--run", str(run_dir / "run")] + BASE_TRAIN_ARGS + shlex.split(args.train_args)
    seconds["train"] = run(train, run_dir / "train.log")
    out_json = run_dir / "evaluation.json"
    evaluate = CLI + ["evaluate", "--run", str(run_dir / "run"), "--json", str(out_json)]
    evaluate += [] if args.cold_start else ["--no-cold-start"]
    seconds["evaluate"] = run(evaluate, run_dir / "evaluate.log")
    summary = summarise(json.loads(out_json.read_text()))
    summary["commands"] = [shlex.join(train), shlex.join(evaluate)]
    summary["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    print_summary(summary)
    print(f"\nrun directory: {run_dir}; seconds: {summary['seconds']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
