"""Side-by-side ranking evaluation: the chosen architecture, pooled, separate and oracle.

In one run :func:`evaluate_ranking` trains

* ``model``: the configured architecture on all scenarios;
* ``pooled``: one scenario-blind model (no scenario feature, a single tower whose widths
  are multiplied by the number of scenarios, so the capacity is about the same);
* ``separate``: one model per scenario, each trained on that scenario's examples alone;
* optionally every architecture in ``compare_architectures`` (e.g. star, mmoe, ple);

and scores the test split. ``oracle`` is the generator's ``true_p_<task>`` (synthetic data).
For every binary task and scenario (and "overall") it computes AUC, GAUC (per user, weighted
by impressions), log loss and NDCG@10 of each user's impressions in that scenario. Where the
data has true probabilities it adds ``expected_auc``: the AUC expected under them
(:func:`~tfrs_multiscene.evaluation.ranking_metrics.expected_auc`), which judges the same
ordering without the label noise of the one test draw.

Result JSON::

  {TASK: {SCENARIO: {METHOD: {"auc", "gauc", "logloss", "ndcg@10", "impressions",
                              "positive_rate"[, "expected_auc"]}}},
   "model_architecture": "shared_bottom",
   "architectures": {ARCH: {TASK: {SCENARIO: {...}}}},   # the compared architectures
   "targets": {...}, "training": {METHOD: info}}

A ``rating`` task gets ``{"rmse": ...}`` per scenario and method instead.
"""

from __future__ import annotations

import dataclasses
import json
import math
import weakref
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrs_multiscene.data import schema
from tfrs_multiscene.evaluation import auc_bootstrap as AB
from tfrs_multiscene.evaluation import ranking_metrics as RM
from tfrs_multiscene.ranking import data as D
from tfrs_multiscene.ranking.features import scenario_blind_hook
from tfrs_multiscene.ranking.model import RankingModel
from tfrs_multiscene.jsonsafe import json_safe
from tfrs_multiscene.ranking.train import FeatureHook, train_ranking

METHODS = ("model", "pooled", "separate", "oracle")
METRICS = ("auc", "gauc", "logloss", "ndcg@10")
TABLE_COLUMNS = (*METRICS, "expected_auc", "rmse")
COLUMN_TITLES = {"expected_auc": "E[auc]"}
OVERALL = "overall"
RESERVED_KEYS = ("model_architecture", "architectures", "targets", "training", "skipped")
ONE_SCENARIO_SKIP = "one scenario: by construction the same model as the model itself, not trained again"


_PREDICT_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def predict(model: RankingModel, inputs: dict, batch_size: int = 4096) -> dict:
    """Model outputs for numpy inputs, batched: ``{output: np.ndarray [N]}``."""
    n = len(next(iter(inputs.values())))
    call = _PREDICT_FNS.get(model)
    if call is None:
        call = _PREDICT_FNS[model] = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    parts = {}
    for start in range(0, n, batch_size):
        out = call({k: tf.constant(v[start:start + batch_size]) for k, v in inputs.items()})
        for k, v in out.items():
            parts.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def _task_metrics(task, users, labels, preds, k=10) -> dict:
    if task == D.RATING_TASK:
        return {"rmse": float(np.sqrt(np.mean((labels - preds) ** 2))) if len(labels) else float("nan"),
                "impressions": int(len(labels))}
    return RM.summarize(users, labels, preds, k=k)


def score_table(frame, tasks, predictions: dict, k: int = 10, true_probs: Optional[dict] = None) -> dict:
    """``{task: {scenario: {method: metrics}}}`` for per-method prediction arrays.

    ``predictions``: method -> {task: np.ndarray aligned with ``frame``}; NaN predictions
    (e.g. a separate model that does not cover a scenario) are excluded per method.
    ``true_probs``: task -> the true probabilities aligned with ``frame`` (synthetic data);
    each binary task that has them gets ``expected_auc`` for every method as well.
    """
    true_probs = true_probs or {}
    users = frame[schema.USER_ID].astype(str).to_numpy()
    scen = frame[schema.SCENARIO].astype(str).to_numpy()
    group = np.char.add(np.char.add(scen.astype(str), "|"), users.astype(str))
    out = {}
    for task in tasks:
        labels = frame[task].to_numpy(np.float64)
        mask_all = ~np.isnan(labels)
        if task in D.RATED_ONLY_TASKS and D.OBSERVED in frame.columns:
            mask_all &= frame[D.OBSERVED].to_numpy(np.float64) > 0  # among the rows users rated
        out[task] = {}
        for name in [OVERALL, *sorted(np.unique(scen))]:
            rows = mask_all & ((scen == name) if name != OVERALL else True)
            out[task][name] = {}
            for method, preds in predictions.items():
                if task not in preds:
                    continue
                p = np.asarray(preds[task], np.float64)
                keep = rows & ~np.isnan(p)
                if not keep.any():
                    continue
                groups = group[keep] if name == OVERALL else users[keep]
                metrics = _task_metrics(task, groups, labels[keep], p[keep], k)
                if task in true_probs and task != D.RATING_TASK:
                    truth = np.asarray(true_probs[task], np.float64)[keep]
                    known = ~np.isnan(truth)  # rows without a true probability are left out
                    metrics["expected_auc"] = RM.expected_auc(truth[known], p[keep][known]) if known.any() else float("nan")
                out[task][name][method] = metrics
    return out


def evaluate_ranking(split, cfg, run_dir, feature_hook: Optional[FeatureHook] = None, *,
                     methods: Sequence[str] = METHODS, compare_architectures: Sequence[str] = (),
                     seed: int = 42, verbose: int = 0, candidate_fn=None, report: bool = True,
                     log=None) -> dict:
    """Train the model and the baselines on ``split.train``, score ``split.test``.

    With one scenario the pooled and separate baselines are the model itself by construction:
    they are not trained, and ``results["skipped"]`` says why. ``log`` (e.g. ``print``) gets a
    line before every model that is trained.

    Writes ``<run_dir>/ranking/evaluation.json``, a table and a bar chart per task into the
    run's report, and returns the result dict (see the module docstring).
    """
    unknown = set(methods) - set(METHODS)
    if unknown or "model" not in methods:
        raise ValueError(f"methods must include 'model' and come from {METHODS}; got {list(methods)}")
    log = log or (lambda _line: None)
    skipped = {}
    if len(split.train.scenarios) == 1:
        skipped = {m: ONE_SCENARIO_SKIP for m in ("pooled", "separate") if m in methods}
        methods = [m for m in methods if m not in skipped]
    run_dir = Path(run_dir)
    common = dict(feature_hook=feature_hook, seed=seed, verbose=verbose, candidate_fn=candidate_fn)
    log(f"ranking: the model ({cfg.architecture})")
    main = train_ranking(split, cfg, run_dir, name="ranking", **common)
    spec = main.model.spec
    test = D.build_examples(split.test, cfg, seed=seed + 2, candidate_fn=candidate_fn, tasks=spec.tasks)
    extra = feature_hook(test) if feature_hook is not None else None
    tasks = list(spec.tasks)

    def preds_of(model, frame=test, extra_arrays=extra):
        return predict(model, D.model_inputs(frame, model.spec, extra_arrays))

    predictions = {"model": preds_of(main.model)}
    training = {"model": main.info}
    if "pooled" in methods:
        log("ranking: the pooled baseline (one scenario-blind model)")
        pooled = train_ranking(split, cfg, run_dir, name="pooled", pooled=True, **common)
        blind = scenario_blind_hook(feature_hook)
        predictions["pooled"] = preds_of(pooled.model, test, blind(test) if blind is not None else None)
        training["pooled"] = pooled.info
    if "separate" in methods:
        sep = {t: np.full(len(test), np.nan) for t in tasks}
        training["separate"] = {}
        for k, scenario in enumerate(split.train.scenarios):
            log(f"ranking: the separate baseline of scenario {scenario!r} ({k + 1} of {len(split.train.scenarios)})")
            res = train_ranking(split, cfg, run_dir, name=f"separate/{scenario}", scenario=scenario, **common)
            rows = (test[schema.SCENARIO].astype(str) == scenario).to_numpy()
            if rows.any():
                sub_extra = {k: v[rows] for k, v in extra.items()} if extra else None
                out = preds_of(res.model, test[rows], sub_extra)
                for t in tasks:
                    sep[t][rows] = out[t]
            training["separate"][scenario] = res.info
        predictions["separate"] = sep
    truth = {t: test[c].to_numpy(np.float64) for t, c in split.test.true_prob_columns.items()
             if t in tasks and c in test.columns}
    if "oracle" in methods and truth:
        predictions["oracle"] = truth
    results = score_table(test, tasks, predictions, true_probs=truth)
    results["model_architecture"] = cfg.architecture

    arch_results = {}
    for arch in compare_architectures:
        if arch == cfg.architecture:
            continue
        log(f"ranking: the compared architecture {arch}")
        res = train_ranking(split, dataclasses.replace(cfg, architecture=arch), run_dir, name=f"arch_{arch}", **common)
        arch_results[arch] = score_table(test, tasks, {arch: preds_of(res.model)}, true_probs=truth)
        training[f"arch_{arch}"] = res.info
    if arch_results:
        results["architectures"] = {a: {t: {s: m[a] for s, m in r[t].items() if a in m} for t in tasks}
                                    for a, r in arch_results.items()}
    task = target_task(tasks)
    if task is not None:
        results["targets"] = check_targets(results, task, paired_significance(test, task, predictions, seed=seed))
    results["training"] = training
    if skipped:
        results["skipped"] = skipped

    out_dir = run_dir / "ranking"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluation.json").write_text(json.dumps(json_safe(results), indent=1))
    if report:
        _write_report(results, run_dir)
    return results


def target_task(tasks) -> Optional[str]:
    """The task the targets are judged on: ``click``, else ``liked`` (rating-derived), else the
    first binary task."""
    binary = [t for t in tasks if t != D.RATING_TASK]
    return next((t for t in ("click", "liked") if t in binary), binary[0] if binary else None)


def paired_significance(frame, task: str, predictions: dict, n: int = AB.DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Per scenario, paired-bootstrap AUC differences of the model against ``pooled`` and
    ``separate`` and, with an oracle, the share of the pooled-oracle gap closed:
    ``{scenario: {"vs_pooled": {"estimate", "se", "ci95"}, "vs_separate": ..., "gap_closed_interval": ...}}``."""
    if task not in frame.columns or "model" not in predictions:
        return {}
    labels = frame[task].to_numpy(np.float64)
    scen = frame[schema.SCENARIO].astype(str).to_numpy()
    methods = [m for m in ("model", "pooled", "separate", "oracle") if task in predictions.get(m, {})]
    preds = {m: np.asarray(predictions[m][task], np.float64) for m in methods}
    out = {}
    for k, scenario in enumerate(sorted(np.unique(scen))):
        rows = (scen == scenario) & ~np.isnan(labels)
        for p in preds.values():
            rows &= ~np.isnan(p)
        y = labels[rows]
        if not rows.any() or y.min() == y.max():
            continue
        sub = {m: p[rows] for m, p in preds.items()}
        draws = AB.bootstrap_aucs(y, sub, n=n, seed=seed + k)
        row = {f"vs_{b}": AB.difference(y, sub["model"], sub[b], draws, "model", b)
               for b in ("pooled", "separate") if b in sub}
        if "oracle" in sub and "pooled" in sub:
            row["gap_closed_interval"] = AB.gap_closed(y, sub["model"], sub["pooled"], sub["oracle"], draws)
        row["resamples"] = n
        out[scenario] = row
    return out


def check_targets(results: dict, task: str = "click", significance: Optional[dict] = None) -> dict:
    """The issue's targets for ``task``: per scenario model AUC >= pooled and >= separate; the
    share of the pooled-to-oracle AUC gap the model closes on the scenario where it is widest.
    Where the results carry ``expected_auc`` (true probabilities known) the same share is also
    given on it (``gap_closed_expected``, ``widest_gap_closed_expected``): the low-noise
    figure of how much of the gap the model's ordering closes. So are the comparisons
    (``expected_beats_<base>``, ``model_beats_baselines_everywhere_expected``): a scenario
    where only the label AUC puts a baseline above the model is label noise.

    With ``significance`` (:func:`paired_significance`) each scenario also carries the paired
    bootstrap intervals, and ``below_<base>_beyond_noise`` says whether the model's AUC is
    below a baseline's with the whole 95% interval of the difference under zero."""
    if task not in results:
        return {}
    significance = significance or {}
    per = {s: m for s, m in results[task].items() if s != OVERALL}
    out = {"task": task, "per_scenario": {}}
    widest, widest_gap = None, -math.inf
    for s, m in per.items():
        auc = {k: v["auc"] for k, v in m.items()}
        expected = {k: v["expected_auc"] for k, v in m.items() if v.get("expected_auc") is not None}
        row = {"model_auc": auc.get("model")}
        for base in ("pooled", "separate"):
            if base in auc:
                row[f"beats_{base}"] = bool(auc["model"] >= auc[base])
            if base in expected and "model" in expected:
                row[f"expected_beats_{base}"] = bool(expected["model"] >= expected[base])
        if "oracle" in auc and "pooled" in auc:
            gap = auc["oracle"] - auc["pooled"]
            row["gap_closed"] = _share_of_gap_closed(auc)
            if all(k in expected for k in ("model", "pooled", "oracle")):
                row["gap_closed_expected"] = _share_of_gap_closed(expected)
            if gap > widest_gap:
                widest, widest_gap = s, gap
        for key, summary in significance.get(s, {}).items():
            row[key] = summary
            if key.startswith("vs_"):
                row[f"below_{key[3:]}_beyond_noise"] = bool(summary["ci95"][1] < 0)
        out["per_scenario"][s] = row
    if widest is not None:
        out["widest_gap_scenario"] = widest
        out["widest_gap_closed"] = out["per_scenario"][widest]["gap_closed"]
        if "gap_closed_expected" in out["per_scenario"][widest]:
            out["widest_gap_closed_expected"] = out["per_scenario"][widest]["gap_closed_expected"]
    checks = [v for r in out["per_scenario"].values() for k, v in r.items() if k.startswith("beats_")]
    out["model_beats_baselines_everywhere"] = bool(all(checks)) if checks else None
    expected_checks = [v for r in out["per_scenario"].values() for k, v in r.items() if k.startswith("expected_beats_")]
    if expected_checks:
        out["model_beats_baselines_everywhere_expected"] = bool(all(expected_checks))
    return out


def _share_of_gap_closed(score: dict):
    """``(model - pooled) / (oracle - pooled)`` of a ``{method: score}`` dict; None without a gap."""
    gap = score["oracle"] - score["pooled"]
    return (score["model"] - score["pooled"]) / gap if gap > 0 else None


def _rows(results: dict):
    """(task, scenario, method, metrics) for every cell, compared architectures last."""
    archs = results.get("architectures", {})
    for task, per in results.items():
        if task in RESERVED_KEYS:
            continue
        for scenario, methods in per.items():
            for method, metrics in methods.items():
                yield task, scenario, method, metrics
            for arch, r in archs.items():
                if scenario in r.get(task, {}):
                    yield task, scenario, arch, r[task][scenario]


def format_ranking_table(results: dict) -> str:
    """A plain-text table: one line per task, scenario and method."""
    lines = [f"ranking evaluation (model = {results.get('model_architecture')})",
             f"{'task':<11}{'scenario':<12}{'method':<15}"
             + "".join(f"{COLUMN_TITLES.get(m, m):>9}" for m in TABLE_COLUMNS) + f"{'n':>8}"]
    for task, scenario, method, m in _rows(results):
        cells = "".join(f"{m[k]:>9.4f}" if isinstance(m.get(k), float) and not math.isnan(m[k]) else f"{'-':>9}"
                        for k in TABLE_COLUMNS)
        lines.append(f"{task:<11}{scenario:<12}{method:<15}{cells}{m.get('impressions', 0):>8}")
    t = results.get("targets") or {}
    if t.get("widest_gap_scenario"):
        closed = t["widest_gap_closed"]
        closed_text = f"{closed:.1%}" if closed is not None else "n/a"
        lines.append(f"targets ({t['task']} AUC): model >= pooled and separate on every scenario: "
                     f"{t['model_beats_baselines_everywhere']}; share of the pooled-oracle gap closed on "
                     f"{t['widest_gap_scenario']} (the widest gap): {closed_text}"
                     + (f" (on the AUC expected under the true probabilities: {t['widest_gap_closed_expected']:.1%})"
                        if t.get("widest_gap_closed_expected") is not None else ""))
    if "model_beats_baselines_everywhere_expected" in t:
        lines.append(f"on the AUC expected under the true probabilities, model >= pooled and separate on every "
                     f"scenario: {t['model_beats_baselines_everywhere_expected']}")
    lines += _significance_lines(t)
    lines += [f"{method}: {why}" for method, why in (results.get("skipped") or {}).items()]
    return "\n".join(lines)


def _significance_lines(targets: dict) -> list:
    """Model-minus-baseline AUC per scenario with 95% paired-bootstrap intervals."""
    rows = [(s, r) for s, r in (targets.get("per_scenario") or {}).items() if "vs_pooled" in r or "vs_separate" in r]
    if not rows:
        return []

    def cell(summary, fmt="+.4f"):
        lo, hi = summary["ci95"]
        return f"{summary['estimate']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"

    n = rows[0][1].get("resamples")
    lines = [f"paired bootstrap ({n} resamples), {targets['task']} AUC of the model minus each baseline, 95% interval:"]
    for s, r in rows:
        parts = [f"vs {k[3:]} {cell(r[k])}" for k in ("vs_pooled", "vs_separate") if k in r]
        if "gap_closed_interval" in r:
            parts.append(f"gap closed {cell(r['gap_closed_interval'], '.1%')}")
        lines.append(f"  {s:<12}" + "; ".join(parts))
    return lines


def plot_ranking(results: dict, out_dir) -> list:
    """One grouped bar chart of AUC per scenario and method for each binary task (and a
    second panel of the AUC expected under the true probabilities where the data has them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    rows = list(_rows(results))
    for task in dict.fromkeys(r[0] for r in rows):
        cells = [(s, meth, m) for t, s, meth, m in rows if t == task and "auc" in m]
        if not cells:
            continue
        scenarios = list(dict.fromkeys(s for s, _, _ in cells))
        methods = list(dict.fromkeys(meth for _, meth, _ in cells))
        width = 0.8 / len(methods)
        panels = [("auc", "AUC", f"ranking {task} AUC by scenario")]
        if any("expected_auc" in m for _, _, m in cells):
            panels.append(("expected_auc", "expected AUC", "AUC expected under the true probabilities"))
        fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                                 figsize=(1.6 + 1.3 * len(scenarios) * max(1, len(methods) / 4), 3.8 * len(panels)))
        for ax, (key, label, title) in zip(axes[:, 0], panels):
            for j, meth in enumerate(methods):
                vals = [next((m.get(key, np.nan) for s2, me, m in cells if s2 == s and me == meth), np.nan)
                        for s in scenarios]
                ax.bar(np.arange(len(scenarios)) + (j - (len(methods) - 1) / 2) * width, vals, width, label=meth)
            finite = [m[key] for _, _, m in cells if key in m and not math.isnan(m[key])]
            if finite:
                ax.set_ylim(max(0.0, min(finite) - 0.05), min(1.0, max(finite) + 0.03))
            ax.set_xticks(np.arange(len(scenarios)), scenarios)
            ax.set(ylabel=label, title=title)
            ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = out_dir / f"ranking_{task}_auc.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _write_report(results: dict, run_dir: Path) -> None:
    from tfrs_multiscene.report import Report

    report = Report(run_dir)
    figures = plot_ranking(results, report.dir)
    text = "```\n" + format_ranking_table(results) + "\n```\n"
    curves = [Path(info["curves"]) for info in _infos(results.get("training", {})) if info.get("curves")]
    report.add("Ranking", text, figures=[*figures, *[c for c in curves if c.exists()][:3]], order=60)


def _infos(training: dict):
    for v in training.values():
        if isinstance(v, dict) and "name" in v:
            yield v
        elif isinstance(v, dict):
            yield from _infos(v)


