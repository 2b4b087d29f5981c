"""`demo`: the product end to end on an embedded synthetic world.

generate -> validate -> train (retrieval with the pretrained MiniLM text tower, then
multi-scenario ranking) -> evaluate beside the baselines -> export SavedModels -> serve them
over TF Serving's REST and gRPC protocols -> one recommendation request each -> print.

Everything lands under ``--out``: ``data/``, ``run/`` (with ``report/report.md``),
``models/`` (TF Serving layout + ``serving_config/``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from tfrs_multiscene import config as C


def demo_configs(demo: C.DemoConfig) -> C.RunConfig:
    """The run configuration of the demo (smaller with ``quick``)."""
    out = Path(demo.out)
    generate = C.GenerateConfig(out=str(out / "data"))
    retrieval = C.RetrievalConfig()
    ranking = C.RankingConfig()
    if demo.quick:
        generate = dataclasses.replace(generate, users=400, items=300, impressions=12_000)
        retrieval = dataclasses.replace(retrieval, epochs=3)
        ranking = dataclasses.replace(ranking, epochs=2)
    return C.RunConfig(
        data=C.DataConfig(data=generate.out),
        generate=generate,
        split=C.SplitConfig(),
        text=C.TextConfig(cache_dir=str(out / "text_cache")),
        retrieval=retrieval,
        ranking=ranking,
        train=C.TrainConfig(run_dir=str(out / "run")),
    )


def _step(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.time()


def run_demo(demo: C.DemoConfig) -> dict:
    from tfrs_multiscene.data import synthetic
    from tfrs_multiscene.data.formats import write_tables
    from tfrs_multiscene.evaluation.run_evaluation import evaluate_run
    from tfrs_multiscene.serving.client import GrpcClient, RestClient
    from tfrs_multiscene.serving.recommend import recommend
    from tfrs_multiscene.serving.server import ModelServer
    from tfrs_multiscene.training import train_run
    from tfrs_multiscene.export.run_export import export_run

    run_cfg = demo_configs(demo)
    timings = {}
    started = _step(f"1/6 generate a synthetic multi-scenario world -> {run_cfg.generate.out}")
    tables = synthetic.generate(run_cfg.generate)
    write_tables(tables, run_cfg.generate.out, "csv")
    print(json.dumps(tables.summary()))
    timings["generate"] = time.time() - started

    started = _step("2/6 validate and train (retrieval: TFRS two-tower + MiniLM; ranking: shared bottom)")
    for stale in (Path(run_cfg.train.run_dir), Path(demo.out) / "models"):  # the demo always starts afresh
        if stale.exists():
            shutil.rmtree(stale)
            print(f"removed the previous demo's {stale}")
    quick_fields = {"retrieval.epochs", "ranking.epochs"} if demo.quick else set()
    summary = train_run(run_cfg, verbose=1, explicit=quick_fields)
    timings["train"] = time.time() - started

    started = _step("3/6 evaluate beside popularity, item-kNN, EASE, TF-IDF and the TFRS tutorial recipe")
    ecfg = C.EvaluateConfig(run_dir=run_cfg.train.run_dir, cold_start=not demo.quick)
    results = evaluate_run(ecfg)
    timings["evaluate"] = time.time() - started

    started = _step("4/6 export SavedModels in TF Serving's layout")
    models = str(Path(demo.out) / "models")
    export = export_run(C.ExportConfig(run_dir=run_cfg.train.run_dir, model_base=models, index=demo.index))
    timings["export"] = time.time() - started

    started = _step("5/6 serve over TF Serving's REST and gRPC APIs and ask for recommendations")
    server = ModelServer(C.ServeConfig(model_base=models, rest_port=0, grpc_port=0))
    ports = server.start()
    try:
        user, scenario, history = _example_user(tables)
        # Items the user already clicked are excluded, as a feed would.
        rest = recommend(RestClient(f"http://127.0.0.1:{ports['rest']}"), "recommender", user, scenario, 5,
                         exclude=history, history=history)
        grpc = recommend(GrpcClient(f"127.0.0.1:{ports['grpc']}"), "recommender", user, scenario, 5,
                         exclude=history, history=history)
    finally:
        server.stop()
    timings["serve"] = time.time() - started
    titles = dict(zip(tables.items["item_id"].astype(str), tables.items["title"].astype(str)))
    print(f"user {user} in scenario {scenario!r}; recent history: {[titles.get(h, h) for h in history[-3:]]}")
    for rank, (item, score) in enumerate(zip(rest["ids"], rest["scores"]), 1):
        because = rest.get("because", [""] * 5)[rank - 1]
        print(f"  {rank}. {item} {titles.get(item, '')!r:<50} score {score:.3f}"
              + (f"   because you liked {titles.get(because, because)!r}" if because else ""))
    print(f"REST and gRPC agree: {rest['ids'] == grpc['ids']}")

    _step("6/6 results")
    _print_headline(results)
    print(f"report: {Path(run_cfg.train.run_dir) / 'report' / 'report.md'}")
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    return {"train": summary, "evaluation": results, "export": export, "rest": rest, "grpc": grpc,
            "timings": timings}


def _example_user(tables):
    """A user with a few clicks, their busiest scenario, and their recent history."""
    inter = tables.interactions
    positives = inter[inter[tables.tasks[0]] > 0] if tables.tasks else inter
    counts = positives["user_id"].value_counts()
    user = str(counts.index[len(counts) // 4])
    mine = positives[positives["user_id"].astype(str) == user].sort_values("timestamp")
    scenario = str(mine["scenario"].value_counts().index[0])
    return user, scenario, mine["item_id"].astype(str).tolist()[-10:]


def _print_headline(results: dict) -> None:
    standard = results.get("retrieval", {}).get("standard", {})
    if standard:
        print("retrieval, standard protocol (items the user had in training or validation excluded):")
        print(f"  {'method':<15}{'recall@10':>10}{'ndcg@10':>10}{'recall@100':>11}")
        for method, m in standard.items():
            print(f"  {method:<15}{m.get('recall@10', float('nan')):>10.4f}{m.get('ndcg@10', float('nan')):>10.4f}"
                  f"{m.get('recall@100', float('nan')):>11.4f}")
    cold = results.get("retrieval", {}).get("cold_start", {})
    if cold:
        print("cold start (items never seen in training): " + ", ".join(
            f"{k} recall@50 {v.get('recall@50', float('nan')):.4f}" for k, v in cold.items() if isinstance(v, dict)
            and "recall@50" in v))
    click = results.get("ranking", {}).get("click", {})
    if click:
        print("ranking, click AUC by scenario:")
        methods = ["model", "pooled", "separate", "oracle"]
        print(f"  {'scenario':<12}" + "".join(f"{m:>10}" for m in methods))
        for scenario, by_method in click.items():
            print(f"  {scenario:<12}" + "".join(
                f"{(by_method.get(m) or {}).get('auc') or float('nan'):>10.4f}" for m in methods))
        targets = results["ranking"].get("targets") or {}
        widest = targets.get("widest_gap_scenario")
        interval = (targets.get("per_scenario", {}).get(widest) or {}).get("gap_closed_interval")
        if interval:
            lo, hi = interval["ci95"]
            print(f"  share of the pooled-oracle gap the model closes on {widest}: {interval['estimate']:.1%} "
                  f"(95% paired-bootstrap interval {lo:.1%} to {hi:.1%})")
        if targets.get("widest_gap_closed_expected") is not None:
            print(f"  the same share on the AUC expected under the true probabilities (no label noise): "
                  f"{targets['widest_gap_closed_expected']:.1%}")
