"""Two-tower retrieval quality beside the baselines, on a random split and a cold-item split.

Recipe: generate a synthetic world, make a ``random`` split and a ``cold_item`` split of it,
train the two-tower (``train_retrieval``, frozen MiniLM text by default) on each, fit the
baselines (EASE lambda tuned on the validation split, TF-IDF content, popularity), evaluate
everything with ``evaluate_retrieval`` (positive label ``click``; on the cold split the cold
section uses ``cold_items = split.info["test_items"]``). The model's scores are the exported
two-tower's: ``model.score_fn`` = query tower . candidate tower, nothing blended.

Figures: standard-protocol R@10 / N@10 / R@50 per method (random split), cold-start
``recall@50`` (candidates = cold items) and ``recall_all@50`` per method (cold split), the
ratios model/EASE R@10 and model/TF-IDF cold recall@50, and training examples/s of the
text model against an id-only model (``--text-encoder none``) on the random split.

    .venv/bin/python benchmarks/bench_retrieval_quality.py --json benchmarks/out/retrieval_quality.json
    # variants: RetrievalConfig overrides as JSON, one model per variant
    .venv/bin/python benchmarks/bench_retrieval_quality.py --variant 'nouid={"use_user_id": false}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tfrs_multiscene  # noqa: E402,F401  (before TensorFlow)
from tfrs_multiscene.config import GenerateConfig, RetrievalConfig, SplitConfig, TextConfig  # noqa: E402


def _split_metrics(results: dict, method: str) -> dict:
    std = results["retrieval"]["standard"].get(method, {})
    return {k: std.get(k) for k in ("recall@10", "ndcg@10", "recall@50")}


def _cold_metrics(results: dict, method: str) -> dict:
    cold = results["retrieval"].get("cold_start", {}).get(method, {})
    return {k: cold.get(k) for k in ("recall@50", "recall_all@50", "users")}


def run_split(tables, kind: str, seed: int, variants: dict, text_cfg, base_cfg, work: Path,
              log=print) -> dict:
    from tfrs_multiscene.data.splits import make_split
    from tfrs_multiscene.evaluation.protocol import HeldOutProtocol
    from tfrs_multiscene.retrieval.features import item_texts
    from tfrs_multiscene.retrieval.train import train_retrieval

    split = make_split(tables, SplitConfig(split=kind, seed=seed))
    protocol = HeldOutProtocol(split, "click")  # `evaluate`'s protocol: fitted on train, train + valid known
    started = time.perf_counter()
    fns = dict(protocol.fit_baselines(["popularity", "ease", "tfidf"], item_texts(split.train.items)))
    log(f"[{kind} seed={seed}] baselines fitted in {time.perf_counter() - started:.1f}s "
        f"(EASE lambda {fns['ease'].lam:g})")
    info = {}
    for name, (overrides, tcfg) in variants.items():
        cfg = dataclasses.replace(base_cfg, **overrides)
        started = time.perf_counter()
        result = train_retrieval(split, cfg, work / f"{kind}_{seed}_{name}", text_cfg=tcfg, seed=seed, verbose=0)
        fns[name] = protocol.model_scores(result.model)
        eps = result.history.get("examples_per_second", [])
        info[name] = {"train_seconds": round(time.perf_counter() - started, 1),
                      "examples_per_second": float(sorted(eps)[len(eps) // 2]) if eps else None,
                      "val_recall_at_10": [round(float(v), 4) for v in result.history.get("val_recall_at_10", [])]}
        log(f"[{kind} seed={seed}] {name}: trained in {info[name]['train_seconds']}s, "
            f"val R@10 by epoch {info[name]['val_recall_at_10']}")
    cold = split.info.get("test_items") if kind == "cold_item" else None
    results = protocol.evaluate(fns, ks=(10, 50), cold_items=cold)
    out = {"ease_lambda": float(fns["ease"].lam), "training": info, "methods": {}}
    for method in fns:
        row = {"standard": _split_metrics(results, method)}
        if cold is not None:
            row["cold"] = _cold_metrics(results, method)
        out["methods"][method] = row
    return out


def _ratio(a, b):
    return None if a is None or b in (None, 0) else float(a) / float(b)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--impressions", type=int, default=400_000)
    parser.add_argument("--data-seed", type=int, default=42)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="split + training seeds")
    parser.add_argument("--splits", nargs="+", default=["random", "cold_item"])
    parser.add_argument("--epochs", type=int, default=None, help="override RetrievalConfig.epochs")
    parser.add_argument("--text-encoder", default="minilm")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=JSON RetrievalConfig overrides (default: one 'model' with the defaults)")
    parser.add_argument("--no-id-only", action="store_true", help="skip the id-only throughput reference")
    parser.add_argument("--json", default="benchmarks/out/retrieval_quality.json")
    args = parser.parse_args(argv)

    from tfrs_multiscene.data.synthetic import generate

    base_cfg = RetrievalConfig()
    if args.epochs is not None:
        base_cfg = dataclasses.replace(base_cfg, epochs=args.epochs)
    text_cfg = TextConfig(text_encoder=args.text_encoder)
    variants = {}
    for spec in args.variant or ["model={}"]:
        name, _, body = spec.partition("=")
        variants[name] = (json.loads(body or "{}"), text_cfg)
    gen = GenerateConfig(users=args.users, items=args.items, impressions=args.impressions, seed=args.data_seed)
    started = time.perf_counter()
    tables = generate(gen)
    print(f"generated {len(tables.interactions)} impressions, {len(tables.items)} items in "
          f"{time.perf_counter() - started:.1f}s", flush=True)

    out = {"world": {"users": gen.users, "items": gen.items, "impressions": gen.impressions, "seed": gen.seed},
           "text_encoder": args.text_encoder, "seeds": args.seeds, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for kind in args.splits:
                run_variants = dict(variants)
                if kind == "random" and not args.no_id_only:
                    run_variants["id_only"] = ({}, TextConfig(text_encoder="none"))
                out["runs"][f"{kind}/{seed}"] = run_split(tables, kind, seed, run_variants, text_cfg,
                                                          base_cfg, Path(tmp), log=lambda m: print(m, flush=True))

    # table + ratios
    summary = {}
    lines = [f"{'split/seed':<16} {'method':<14} {'R@10':>7} {'N@10':>7} {'R@50':>7} {'coldR@50':>9} {'coldRall@50':>11}"]
    for key, run in out["runs"].items():
        for method, row in run["methods"].items():
            s, c = row["standard"], row.get("cold", {})
            f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(f"{key:<16} {method:<14} {f(s['recall@10']):>7} {f(s['ndcg@10']):>7} {f(s['recall@50']):>7} "
                         f"{f(c.get('recall@50')):>9} {f(c.get('recall_all@50')):>11}")
        for name in variants:
            m = run["methods"][name]
            entry = summary.setdefault(key, {})
            if key.startswith("random"):
                entry[f"{name}/ease_recall@10"] = _ratio(m["standard"]["recall@10"], run["methods"]["ease"]["standard"]["recall@10"])
                if "id_only" in run["training"]:
                    entry[f"{name}/id_only_examples_per_second"] = _ratio(
                        run["training"][name]["examples_per_second"], run["training"]["id_only"]["examples_per_second"])
            if "cold" in m:
                entry[f"{name}/tfidf_cold_recall@50"] = _ratio(m["cold"]["recall@50"], run["methods"]["tfidf"]["cold"]["recall@50"])
                entry[f"{name}/tfidf_cold_recall_all@50"] = _ratio(m["cold"]["recall_all@50"], run["methods"]["tfidf"]["cold"]["recall_all@50"])
    out["ratios"] = summary
    print("\n".join(lines))
    for key, entry in summary.items():
        for name, value in entry.items():
            print(f"{key:<16} {name:<40} {'-' if value is None else f'{value:.3f}'}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
