"""`train`: data -> validation -> split -> retrieval -> ranking, into one run directory.

The stages are the packages' own functions (data.loading, data.splits,
retrieval.train_retrieval, ranking.train_ranking); this module sequences them, keeps the
run directory (tfrs_multiscene.run.RunDir) consistent and adds each stage to the report.

Re-running `train` into a run directory that holds checkpoints resumes: the saved split is
reused (not re-derived from possibly changed data) and each model continues after its last
completed epoch.
"""

from __future__ import annotations

import json
import time

from tfrs_multiscene import config as C
from tfrs_multiscene.report import Report, markdown_table, plot_history
from tfrs_multiscene.run import RunDir


class DataRejected(Exception):
    """Validation found problems and the configuration asked for strictness."""


def prepare_split(run: RunDir, run_cfg: C.RunConfig, log=print):
    """The run's split: the saved one when resuming, else load, validate and split the data."""
    from tfrs_multiscene.data.loading import load_tables
    from tfrs_multiscene.data.splits import make_split

    if (run.split_dir / "info.json").exists():
        log(f"reusing the split saved in {run.split_dir}")
        return run.load_split()
    tables, report = load_tables(run_cfg.data, quarantine_dir=run.data_dir)
    run.data_dir.mkdir(parents=True, exist_ok=True)
    (run.data_dir / "validation.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    log(report.format_summary())
    Report(run.path).add("Data", "```\n" + report.format_summary() + "\n```", order=10)
    if report.exit_code(strict=run_cfg.data.strict):
        raise DataRejected(f"data rejected ({'strict mode, ' if run_cfg.data.strict else ''}"
                           f"{report.quarantined} row(s) quarantined); see {run.data_dir}")
    split = make_split(tables, run_cfg.split)
    run.save_split(split)
    counts = {name: (len(getattr(split, name).interactions) if getattr(split, name) is not None else 0)
              for name in ("train", "valid", "test")}
    log(f"split {run_cfg.split.split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return split


def train_run(run_cfg: C.RunConfig, verbose: int = 1, log=print) -> dict:
    """Train the stages ``run_cfg.train.stages`` asks for; returns a summary dict."""
    from tfrs_multiscene.ranking import load_ranking, retrieval_feature_hook, train_ranking  # noqa: F401
    from tfrs_multiscene.retrieval.checkpoints import load_retrieval
    from tfrs_multiscene.retrieval.train import train_retrieval

    run = RunDir(run_cfg.train.run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    run.save_config(run_cfg)
    report = Report(run.path)
    split = prepare_split(run, run_cfg, log)
    stages = run_cfg.train.stages
    summary = {"run_dir": str(run.path), "stages": stages}

    retrieval_model = None
    if stages in ("both", "retrieval"):
        log("training retrieval (TFRS two-tower)")
        started = time.time()
        result = train_retrieval(split, run_cfg.retrieval, run.path, text_cfg=run_cfg.text,
                                 seed=run_cfg.train.seed, verbose=verbose)
        retrieval_model = result.model
        summary["retrieval"] = {"seconds": round(time.time() - started, 1), **_jsonable(result.info)}
        figure = plot_history(_numeric(result.history), report.figure_path("retrieval_training.png"),
                              "retrieval")
        report.add("Retrieval training", _history_table(result.history) + "\n\n" +
                   f"examples: {result.info.get('examples')}, seconds: {summary['retrieval']['seconds']}",
                   [figure], order=20)
    if stages in ("both", "ranking"):
        if retrieval_model is None and (run.retrieval_dir / "config.json").exists():
            retrieval_model = load_retrieval(run.path)
        hook = retrieval_feature_hook(retrieval_model, split.train) if retrieval_model is not None else None
        log(f"training ranking ({run_cfg.ranking.architecture})")
        started = time.time()
        result = train_ranking(split, run_cfg.ranking, run.path, feature_hook=hook,
                               seed=run_cfg.train.seed, verbose=2 if verbose else 0)
        summary["ranking"] = {"seconds": round(time.time() - started, 1), **_jsonable(result.info)}
        figure = plot_history(_numeric(result.history), report.figure_path("ranking_training.png"), "ranking")
        report.add("Ranking training", _history_table(result.history) + "\n\n" +
                   f"architecture: {run_cfg.ranking.architecture}, seconds: {summary['ranking']['seconds']}",
                   [figure], order=30)
    (run.path / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _numeric(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "epoch" and v and isinstance(v[0], (int, float))}


def _history_table(history: dict) -> str:
    keys = list(_numeric(history))
    if not keys:
        return "(no epochs run)"
    n = max(len(history[k]) for k in keys)
    rows = [{"epoch": i + 1, **{k: history[k][i] for k in keys if i < len(history[k])}} for i in range(n)]
    return markdown_table(rows, ["epoch"] + keys)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))
