"""`evaluate`: a trained run against strong baselines, on the run's own held-out split.

For retrieval, the exported two-tower's scores (``RetrievalModel.score_fn``; the overall
scope queries with the "any scenario" row that scenario dropout trains) = query tower . candidate
tower, the same scores the ScaNN index serves, go through ``evaluate_retrieval`` beside popularity,
item-kNN, EASE (lambda tuned on the validation split), TF-IDF content and the TFRS tutorial
recipe, all fitted here on the same training split. Cold start is measured on a cold-item
split: the run's own when it was trained on one, otherwise a cold-item split of the same
data on which a second two-tower (same configuration) is trained under ``<run>/cold_start``.
For ranking, ``ranking.evaluate_ranking`` trains the pooled and separate baselines in the
same run and reads the oracle from the generator's true probabilities where present.

The JSON: ``{"split", "retrieval": {...}, "ranking": {...}, "model_architecture"}``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import pandas as pd

from tfrs_multiscene import config as C
from tfrs_multiscene.jsonsafe import dump_json, json_safe
from tfrs_multiscene.data.schema import Tables
from tfrs_multiscene.evaluation.protocol import HeldOutProtocol
from tfrs_multiscene.report import Report
from tfrs_multiscene.run import RunDir


def _positive_label(tables: Tables, model_cfg) -> Optional[str]:
    from tfrs_multiscene.retrieval.features import ALL_INTERACTIONS, POSITIVE_TASKS

    if getattr(model_cfg, "positive_task", None) == ALL_INTERACTIONS:
        return None
    if getattr(model_cfg, "positive_task", None):
        return model_cfg.positive_task
    return next((t for t in POSITIVE_TASKS if t in tables.interactions.columns), None)


def _item_texts(items: pd.DataFrame) -> list:
    from tfrs_multiscene.retrieval.features import item_texts

    return item_texts(items)


def _whole(split) -> Tables:
    parts = [p.interactions for p in (split.train, split.valid, split.test) if p is not None]
    return split.train.with_interactions(pd.concat(parts, ignore_index=True))


def evaluate_retrieval_run(run: RunDir, run_cfg: C.RunConfig, ecfg: C.EvaluateConfig, split,
                           log=print) -> dict:
    """Retrieval metrics of the run's model and the baselines on ``split`` (same run)."""
    from tfrs_multiscene.retrieval.checkpoints import load_retrieval

    model = load_retrieval(run.path)
    items = split.train.items
    protocol = HeldOutProtocol(split, _positive_label(split.train, model.cfg))
    log(f"fitting baselines {ecfg.baselines} on {protocol.train_matrix.nnz} training positives")
    fitted = protocol.fit_baselines(ecfg.baselines, _item_texts(items), ease_lambdas=ecfg.ease_lambdas)
    cold_items = split.info.get("test_items") if split.info.get("kind") == "cold_item" else None
    log("scoring the model and baselines on the test split")
    results = protocol.evaluate({"model": protocol.model_scores(model), **fitted}, ecfg.ks,
                                cold_items=cold_items, item_embeddings=_text_table(model, items))
    if "ease" in fitted:
        results["split"]["ease_lambda"] = float(fitted["ease"].lam)
        results["split"]["ease_lambda_tuned"] = bool(fitted["ease"].lambda_scores)
        if not fitted["ease"].lambda_scores:
            why = ("no validation part" if split.valid is None or split.valid.interactions.empty else
                   "no validation user with training history has a positive on an item unseen in training")
            log(f"EASE: lambda {fitted['ease'].lam:g}, untuned ({why})")
    if cold_items is None and ecfg.cold_start:
        results["retrieval"]["cold_start"] = cold_start_run(run, run_cfg, ecfg, split, log)
    return results


def _text_table(model, items: pd.DataFrame):
    """Item text embeddings aligned with ``items`` for intra-list diversity (None if no text)."""
    table = model.spec.item_text
    ids = model.spec.item_table_ids
    if table is None or ids is None:
        return None
    pos = pd.Index([str(i) for i in ids]).get_indexer(items["item_id"].astype(str))
    if (pos < 0).any():
        return None
    return np.asarray(table)[pos]


def cold_item_split(split, split_cfg: C.SplitConfig):
    """The cold-item split of ``split``'s data: a seeded ``test_fraction`` of the items held
    out with all their interactions (the test set); validation is a random
    ``valid_fraction`` of the other interactions, as a deployed model is validated on known
    items (epochs and the new-item offset are chosen there, never on the cold items)."""
    from tfrs_multiscene.data.splits import Split, make_split

    cold = make_split(_whole(split), dataclasses.replace(split_cfg, split="cold_item", valid_fraction=0.0))
    known = make_split(cold.train, dataclasses.replace(split_cfg, split="random", test_fraction=split_cfg.valid_fraction,
                                                       valid_fraction=0.0))
    return Split(known.train, known.test, cold.test, {**cold.info, "valid_kind": "random (known items)",
                                                      "valid_fraction": split_cfg.valid_fraction})


def cold_start_run(run: RunDir, run_cfg: C.RunConfig, ecfg: C.EvaluateConfig, split, log=print) -> dict:
    """Train the same two-tower on a cold-item split of the run's data; compare on cold items.

    The held-out items' interactions are the test set; validation is a random share of the
    other interactions (a deployment validates on known items), and the model's new-item
    offset is chosen there as in any training, so recall among all items shows what a live
    index gives new items.

    Users whose every interaction is on held-out (test or validation) cold items have no
    training history and no row in the training index: they are left out of the comparison
    (no method scores them) and counted in ``split.users_without_history`` (their test
    interactions in ``split.test_interactions_without_history``), see ``retrieval_eval``.
    """
    from tfrs_multiscene.retrieval.train import train_retrieval

    cold = cold_item_split(split, run_cfg.split)
    cold_dir = run.path / "cold_start"
    log(f"cold start: training the two-tower on a cold-item split ({len(cold.info.get('test_items', []))} "
        f"held-out items) in {cold_dir}")
    result = train_retrieval(cold, run_cfg.retrieval, cold_dir, text_cfg=run_cfg.text,
                             seed=run_cfg.train.seed, verbose=0)
    model = result.model
    protocol = HeldOutProtocol(cold, _positive_label(cold.train, model.cfg))
    fitted = protocol.fit_baselines(["popularity", "tfidf"], _item_texts(cold.train.items))
    out = protocol.evaluate({"model": protocol.model_scores(model), **fitted}, ecfg.ks,
                            cold_items=cold.info["test_items"])
    cold_start = out["retrieval"].get("cold_start", {})
    cold_start["new_item_offset"] = result.info.get("new_items", {})
    total = sum(len(part.interactions) for part in (cold.train, cold.valid, cold.test))
    cold_start["split"] = {"kind": "cold_item", "held_out_items": len(cold.info["test_items"]),
                           "cold_interaction_share": len(cold.test.interactions) / max(total, 1),
                           "seed": run_cfg.split.seed, "test_fraction": run_cfg.split.test_fraction,
                           "users_without_history": out["split"]["users_without_history"],
                           "test_interactions_without_history": out["split"]["test_interactions_unknown_user"]}
    if cold_start["split"]["users_without_history"]:
        log(f"cold start: {cold_start['split']['users_without_history']} users without training history "
            f"(every interaction on a held-out item) left out of the comparison")
    return cold_start


def evaluate_run(ecfg: C.EvaluateConfig, log=print) -> dict:
    """Evaluate the run in ``ecfg.run_dir``; writes evaluation.json, prints and reports tables."""
    from tfrs_multiscene.evaluation.retrieval_eval import format_table, plot_retrieval

    run = RunDir(ecfg.run_dir)
    run_cfg = run.load_config()
    split = run.load_split()
    results: dict = {"split": dict(split.info)}
    report = Report(run.path)
    if (run.retrieval_dir / "config.json").exists():
        retrieval = evaluate_retrieval_run(run, run_cfg, ecfg, split, log)
        results["split"].update(retrieval.get("split", {}))
        results["retrieval"] = retrieval["retrieval"]
        table = format_table(retrieval)
        log(table)
        figures = plot_retrieval(retrieval, str(report.dir))
        report.add("Retrieval evaluation", "```\n" + table + "\n```", figures, order=40)
    if ecfg.ranking and (run.ranking_dir / "spec.json").exists():
        results.update(evaluate_ranking_run(run, run_cfg, split, log, ecfg.compare_architectures))
    results = json_safe(results)
    dump_json(results, run.evaluation_path)
    return results


def evaluate_ranking_run(run: RunDir, run_cfg: C.RunConfig, split, log=print, compare_architectures=()) -> dict:
    """Ranking metrics of the run's architecture beside pooled, separate and oracle (and the
    ``compare_architectures``, trained now with the run's ranking settings)."""
    from tfrs_multiscene.ranking import evaluate_ranking, format_ranking_table, history, retrieval_feature_hook
    from tfrs_multiscene.ranking.features import combined_hook
    from tfrs_multiscene.retrieval.checkpoints import load_retrieval

    hook = None
    if (run.retrieval_dir / "config.json").exists():
        hook = retrieval_feature_hook(load_retrieval(run.path), split.train)
    hook = combined_hook(hook, history.load_run_history(run.path))
    log("ranking: evaluating the model beside pooled and separate baselines (trained now) and the oracle")
    ranking = evaluate_ranking(split, run_cfg.ranking, run.path, feature_hook=hook, seed=run_cfg.train.seed,
                               compare_architectures=tuple(compare_architectures), log=log)
    log(format_ranking_table(ranking))
    architecture = ranking.get("model_architecture", run_cfg.ranking.architecture)
    return {"ranking": ranking, "model_architecture": architecture}
