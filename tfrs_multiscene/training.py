"""`train`: data -> validation -> split -> retrieval -> ranking, into one run directory.

The stages are the packages' own functions (data.loading, data.splits,
retrieval.train_retrieval, ranking.train_ranking); this module sequences them, keeps the
run directory (tfrs_multiscene.run.RunDir) consistent and adds each stage to the report.

Re-running `train` into a run directory that holds checkpoints resumes: the saved split is
reused (not re-derived from possibly changed data) and each model continues after its last
completed epoch.

``--examples DIR`` (the output of `tfrs-multiscene preprocess`) trains retrieval by
streaming the TFRecords (``tfx.trainer.train_retrieval_from_examples``: sharded by worker,
interleaved, under ``distribute.strategy_from_env()``, so TF_CONFIG with several workers
gives MultiWorkerMirroredStrategy and only the chief writes). The split is then decided row
by row (``data.examples.HashedSplit``: a seeded hash of (user, item, timestamp, scenario)
for ``random``, of the item for ``cold_item``, timestamp cuts for ``temporal``; fractions
approximately the requested ones, exactly reproducible); the streamed training sees only
training rows. Limits: the saved split (the interaction columns of train / valid / test,
which ``evaluate`` reads) and the ranking model's data are built in memory on the chief;
the streamed retrieval model keeps its last epoch (no best-epoch restore) and is retrained
from scratch on a re-run. Without ``--examples`` training is single-process: a TF_CONFIG
naming several workers is refused with a pointer to ``--examples``.
"""

from __future__ import annotations

import dataclasses
import json
import time

from pathlib import Path

from tfrs_multiscene import config as C
from tfrs_multiscene.errors import DataRejected, RunConflict, UserError
from tfrs_multiscene.jsonsafe import json_safe
from tfrs_multiscene.report import Report, markdown_table, plot_history
from tfrs_multiscene.run import RunDir


#: The settings that decide a run's split (``load_tables`` reads the data ones, ``make_split``
#: the split section): a re-run into a run directory must ask for the same.
SPLIT_SETTINGS = {"data": ("data", "format", "scenario_from", "scenarios", "tasks", "liked_threshold", "id_only_items",
                           "hash_user_ids"),
                  "split": ("split", "test_fraction", "valid_fraction", "seed")}


def check_same_split_settings(run: RunDir, run_cfg: C.RunConfig) -> None:
    """Refuse (:class:`RunConflict`) a re-run whose data or split settings differ from those
    the run's saved split was made with: it would train on one split and say it used another.

    The split settings are read from the split's own info.json (``make_split`` records them, and
    it is written with the split, so they are known even when a first run stopped before writing
    config.json), the data settings from config.json."""
    if not (run.split_dir / "info.json").exists():
        return
    saved = run.load_config() if run.config_path.exists() else None
    recorded = json.loads((run.split_dir / "info.json").read_text()).get("info", {})
    changed = []
    for section, fields in SPLIT_SETTINGS.items():
        for field in fields:
            key = "kind" if field == "split" else field
            if section == "split" and key in recorded:
                before = recorded[key]
            elif saved is not None:
                before = getattr(getattr(saved, section), field)
            else:
                continue
            now = getattr(getattr(run_cfg, section), field)
            if field == "data" and before and now:
                before, now = str(Path(before).resolve()), str(Path(now).resolve())
            if before != now:
                changed.append(f"{section}.{field}: saved {before!r}, now {now!r}")
    if changed:
        raise RunConflict(f"{run.path} holds a split made with other settings ({'; '.join(changed)}); training on "
                          f"would mix two splits. Re-run with the saved settings to resume, or train into a new --run "
                          f"(or delete {run.path}) to start fresh")


def check_same_model_settings(run: RunDir, run_cfg: C.RunConfig) -> None:
    """Refuse (:class:`RunConflict`) to go on training a stage whose model in ``run`` was
    trained with other settings (only more epochs or another patience may change): the run's
    config.json would describe a model it does not hold."""
    from tfrs_multiscene.ranking.train import RESUMABLE_FIELDS as RANKING_RESUMABLE
    from tfrs_multiscene.retrieval.train import RESUMABLE_FIELDS as RETRIEVAL_RESUMABLE

    if not run.config_path.exists():
        return
    saved = json.loads(run.config_path.read_text())
    stages = {"both": ("retrieval", "ranking")}.get(run_cfg.train.stages, (run_cfg.train.stages,))
    trained = {"retrieval": (run.retrieval_dir / "checkpoints", RETRIEVAL_RESUMABLE),
               "ranking": (run.ranking_dir / "checkpoints", RANKING_RESUMABLE)}
    for stage in stages:
        marker, resumable = trained[stage]
        if not marker.exists() or stage not in saved:
            continue
        changed = C.differing_fields(saved[stage], getattr(run_cfg, stage), resumable)
        if changed:
            raise RunConflict(f"{run.path} holds a {stage} model trained with other settings ({'; '.join(changed)}); "
                              f"re-run with the saved settings to resume (only {', '.join(resumable)} may change), "
                              f"or train into a new --run (or delete {run.path}) to start fresh")
    if "retrieval" in stages and (run.retrieval_dir / "checkpoints").exists() and "text" in saved:
        # the towers embed the text the encoder produced: another encoder is another model
        if saved["text"].get("text_encoder") != "none" or run_cfg.text.text_encoder != "none":
            changed = C.differing_fields(saved["text"], run_cfg.text, TEXT_SETTINGS_THAT_KEEP_THE_MODEL)
            if changed:
                raise RunConflict(f"{run.path} holds a retrieval model trained on other text features "
                                  f"({'; '.join('text.' + c for c in changed)}); re-run with the saved text settings, "
                                  f"or train into a new --run (or delete {run.path}) to start fresh")


#: Text settings that do not change the text features (where the cache lives, how many texts
#: are embedded at once).
TEXT_SETTINGS_THAT_KEEP_THE_MODEL = ("text_cache_dir", "embed_batch_size")


def keep_trained_sections(run: RunDir, run_cfg: C.RunConfig, log=print) -> C.RunConfig:
    """``run_cfg`` with the saved section of each stage this call does not train but the run
    holds a model of, so that config.json keeps describing that model (``--stages ranking``
    must not overwrite the retrieval settings with whatever the command line says)."""
    if not run.config_path.exists():
        return run_cfg
    saved = run.load_config()
    stages = {"both": ("retrieval", "ranking")}.get(run_cfg.train.stages, (run_cfg.train.stages,))
    markers = {"retrieval": run.retrieval_dir / "checkpoints", "ranking": run.ranking_dir / "checkpoints"}
    for stage, marker in markers.items():
        if stage in stages or not marker.exists():
            continue
        if getattr(saved, stage) != getattr(run_cfg, stage):
            log(f"{stage}: not trained in this call; config.json keeps the settings its model in {marker.parent} "
                f"was trained with")
        run_cfg = dataclasses.replace(run_cfg, **{stage: getattr(saved, stage)})
    return run_cfg


def prepare_split(run: RunDir, run_cfg: C.RunConfig, report: Report, log=print):
    """The run's split: the saved one when resuming, else load, validate and split the data."""
    from tfrs_multiscene.data.loading import load_tables
    from tfrs_multiscene.data.splits import make_split

    if (run.split_dir / "info.json").exists():
        checked = run.data_dir / "validation.json"
        saved = json.loads(checked.read_text()) if checked.exists() else {}
        if run_cfg.data.strict and not saved.get("ok", True):  # the saved split keeps the rows it was made from
            files = list(saved.get("quarantine_files", {}).values())
            raise _rejected(True, sum(c.get("quarantined", 0) for c in saved.get("counts", {}).values()),
                            Path(files[0]).parent if files else run.data_dir)
        log(f"reusing the split saved in {run.split_dir}")
        return run.load_split()
    tables, validation = load_tables(run_cfg.data, quarantine_dir=run.data_dir)
    run.data_dir.mkdir(parents=True, exist_ok=True)
    (run.data_dir / "validation.json").write_text(json.dumps(validation.to_dict(), indent=2, default=str))
    log(validation.format_summary())
    report.add("Data", "```\n" + validation.format_summary() + "\n```", order=10)
    if validation.exit_code(strict=run_cfg.data.strict):  # --quarantine-dir may have put the rows elsewhere
        raise _rejected(run_cfg.data.strict, validation.quarantined, validation.quarantine_path or run.data_dir)
    split = make_split(tables, run_cfg.split)
    run.save_split(split)
    counts = {name: (len(getattr(split, name).interactions) if getattr(split, name) is not None else 0)
              for name in ("train", "valid", "test")}
    log(f"split {run_cfg.split.split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return split


def _rejected(strict: bool, quarantined: int, where) -> DataRejected:
    return DataRejected(f"data rejected ({'--strict: ' if strict else ''}{quarantined} row(s) quarantined, "
                        f"nothing trained); the rows and their reasons are in {where}")


def train_run(run_cfg: C.RunConfig, verbose: int = 1, log=print, explicit=None) -> dict:
    """Train the stages ``run_cfg.train.stages`` asks for; returns a summary dict.

    Settings the data decides (``settings_from_data``) are derived from the training split
    unless ``explicit`` is None; ``explicit`` names the ``"section.field"`` settings the
    user set, which keep their values. The effective configuration goes to
    ``RUN/config.json``, the choices and their reasons to ``RUN/settings_from_data.json``
    and the report.
    """
    from tfrs_multiscene import distribute
    from tfrs_multiscene.retrieval.train import train_retrieval

    if run_cfg.train.examples:
        return train_run_from_examples(run_cfg, verbose, log)
    if distribute.worker_count() > 1:
        raise UserError("TF_CONFIG names several workers: multi-worker training streams preprocessed "
                        "examples; run `tfrs-multiscene preprocess --shards N` and `train --examples DIR` "
                        "(see docs/DISTRIBUTED.md)")
    run = RunDir(run_cfg.train.run_dir)
    check_same_split_settings(run, run_cfg)
    run.path.mkdir(parents=True, exist_ok=True)
    report = Report(run.path)
    split = prepare_split(run, run_cfg, report, log)
    summary = {"run_dir": str(run.path), "stages": run_cfg.train.stages}
    if explicit is not None:  # it checks the derived settings against the run before it writes them
        run_cfg, summary["settings_from_data"] = settings_from_data(run, run_cfg, split, explicit, report, log)
    else:
        check_same_model_settings(run, run_cfg)
    run_cfg = keep_trained_sections(run, run_cfg, log)
    run.save_config(run_cfg)  # the effective configuration, once nothing contradicts it
    stages = run_cfg.train.stages

    retrieval_model = None
    if stages in ("both", "retrieval"):
        log("training retrieval (TFRS two-tower)")
        started = time.time()
        result = train_retrieval(split, run_cfg.retrieval, run.path, text_cfg=run_cfg.text,
                                 seed=run_cfg.train.seed, verbose=verbose)
        retrieval_model = result.model
        summary["retrieval"] = {"seconds": round(time.time() - started, 1), **json_safe(result.info)}
        _say_if_reused(summary["retrieval"], result.info["resumed_from_epoch"] or 0, result.info["epochs"],
                       run.retrieval_dir, log)
        figure = plot_history(_numeric(result.history), report.figure_path("retrieval_training.png"),
                              "retrieval")
        report.add("Retrieval training", _history_table(result.history) + "\n\n" +
                   f"examples: {result.info.get('examples')}, seconds: {summary['retrieval']['seconds']}",
                   [figure], order=20)
        _report_new_item_offset(run, report)
    if stages in ("both", "ranking"):
        _ranking_stage(run, run_cfg, split, retrieval_model, summary, report, verbose, log)
    (run.path / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _report_new_item_offset(run: RunDir, report: Report) -> None:
    """The new-item offset's validation curve, plotted into the run's report (when chosen)."""
    from tfrs_multiscene.report import plot_offset_curve
    from tfrs_multiscene.retrieval.new_items import OffsetChoice

    choice = OffsetChoice.load(run.retrieval_dir)
    if choice is None:
        return
    figure = plot_offset_curve(choice.curve, choice.offset, choice.floor, report.figure_path("new_item_offset.png"))
    report.add("New items", f"score offset {choice.offset:g} for items without an id embedding, chosen on "
               f"{choice.validation_positives} validation positives within a {100 * choice.warm_cost:g}% cost in "
               "known-item accuracy (retrieval.new_item_warm_cost)", [figure], order=21)


def settings_from_data(run: RunDir, run_cfg: C.RunConfig, split, explicit, report: Report, log=print):
    """``(effective RunConfig, [choice dicts])`` for ``split.train``; the choices are saved into
    the run (``settings_from_data.json``, the report)."""
    from tfrs_multiscene.settings_from_data import DataProfile, derive_settings, format_choices

    profile = DataProfile.of(split.train, run_cfg.retrieval.positive_task, run_cfg.ranking.negatives_per_positive)
    run_cfg, choices = derive_settings(run_cfg, profile, explicit)
    check_same_model_settings(run, run_cfg)  # before the choices describe a model the run does not hold
    text = format_choices(choices)
    log(text)
    record = {"profile": profile.to_dict(), "choices": [c.to_dict() for c in choices]}
    (run.path / "settings_from_data.json").write_text(json.dumps(json_safe(record), indent=2))
    report.add("Settings from the data", "```\n" + text + "\n```", order=15)
    return run_cfg, record["choices"]


def _ranking_stage(run: RunDir, run_cfg: C.RunConfig, split, retrieval_model, summary: dict, report: Report,
                   verbose: int, log) -> None:
    """Train the ranking model on ``split`` (in memory) into ``run``; fills ``summary``."""
    from tfrs_multiscene.ranking import history as H
    from tfrs_multiscene.ranking import retrieval_feature_hook, train_ranking
    from tfrs_multiscene.ranking.features import combined_hook
    from tfrs_multiscene.retrieval.checkpoints import load_retrieval

    if retrieval_model is None and (run.retrieval_dir / "config.json").exists():
        retrieval_model = load_retrieval(run.path)
    history = None
    if run_cfg.ranking.history_affinity:
        history = H.build_history_affinity(split, run_cfg.text, run_cfg.ranking.history_affinity_dims, log)
    if history is None:
        H.history_path(run.path).unlink(missing_ok=True)  # a stale one from an earlier training
        history_text = "no user-history affinity"
    else:
        history.save(H.history_path(run.path))
        history_text = (f"user-history affinity from {history.log_size} logged interactions "
                        f"({history.dims} text dimensions)")
        log("ranking: " + history_text)
    hook = combined_hook(retrieval_feature_hook(retrieval_model, split.train) if retrieval_model is not None else None,
                         history)
    log(f"training ranking ({run_cfg.ranking.architecture})")
    started = time.time()
    result = train_ranking(split, run_cfg.ranking, run.path, feature_hook=hook,
                           seed=run_cfg.train.seed, verbose=2 if verbose else 0)
    summary["ranking"] = {"seconds": round(time.time() - started, 1), **json_safe(result.info),
                          "history_affinity": {"log_size": history.log_size, "dims": history.dims} if history else None}
    _say_if_reused(summary["ranking"], result.info["resumed_from_epoch"] or 0, result.info["epochs_requested"],
                   run.ranking_dir, log)
    figure = plot_history(_numeric(result.history), report.figure_path("ranking_training.png"), "ranking")
    wide = result.info.get("wide")
    wide_line = ""
    if wide:
        losses = wide.get("val_loss") or wide.get("train_loss")
        steps = "iterations" if wide.get("solver") == "lbfgs" else "epochs"
        wide_line = (f", wide part fitted first: {wide['epochs']} {steps}, best {wide['best_epoch']} "
                     f"(loss {losses[wide['best_epoch'] - 1]:.4f})")
    report.add("Ranking training", _history_table(result.history) + "\n\n" +
               f"architecture: {run_cfg.ranking.architecture}, seconds: {summary['ranking']['seconds']}"
               + wide_line + ", " + history_text, [figure, *([wide["curves"]] if wide and wide.get("curves") else [])], order=30)


def _say_if_reused(stage_summary: dict, resumed_from: int, epochs: int, where, log) -> None:
    """A model that was already finished (resumed after its last epoch) is reused as it is: say so."""
    stage_summary["reused_finished_model"] = reused = 0 < epochs <= resumed_from
    if reused:
        log(f"{Path(where).name}: reusing the finished model in {where} ({resumed_from} epochs), nothing trained")


def examples_split(run: RunDir, run_cfg: C.RunConfig, log=print):
    """``(HashedSplit, Split or None)`` of ``--examples`` for this run.

    The rule is derived from the configuration on every worker (no worker waits for
    another's files); the chief also builds the in-memory split, saves it (or reuses the
    saved one, refusing a saved split made by another rule) and returns it; other workers
    get None.
    """
    from tfrs_multiscene import distribute
    from tfrs_multiscene.data import examples as E
    from tfrs_multiscene.tfx.trainer import examples_split as split_examples

    pre = run_cfg.train.examples
    E.load_info(pre)  # a clear error now when DIR is not a preprocess output
    rule = E.HashedSplit.from_config(run_cfg.split, pre)
    if not distribute.is_chief():
        return rule, None
    if (run.split_dir / "info.json").exists():
        split = run.load_split()
        saved = split.info.get("hashed_rule")
        if saved != rule.to_dict():
            raise RunConflict(f"{run.split_dir} holds a split made by another rule ({saved or 'not --examples'}); "
                               f"this configuration gives {rule.to_dict()}: train into a new --run")
        log(f"reusing the split saved in {run.split_dir}")
        return rule, split
    split = split_examples(pre, rule)
    run.save_split(split)
    counts = split.info["counts"]
    log(f"split {rule.kind} (hashed per row, from {pre}): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    Report(run.path).add("Data", f"examples: `{pre}`; split {rule.kind} decided per row (hashed rule): "
                         + ", ".join(f"{k} {v}" for k, v in counts.items()), order=10)
    return rule, split


def train_run_from_examples(run_cfg: C.RunConfig, verbose: int = 1, log=print) -> dict:
    """`train --examples DIR`: streamed retrieval (every worker), then ranking (chief, in memory)."""
    import shutil

    from tfrs_multiscene import distribute
    from tfrs_multiscene.tfx.trainer import train_retrieval_from_examples

    if run_cfg.data.hash_user_ids:
        raise UserError("--hash-user-ids hashes user ids as `train` reads tables; the examples of --examples were "
                        "written by the Beam preprocessing with the ids they had: train from the tables instead")
    # first: MultiWorkerMirroredStrategy must be created before any other TensorFlow op runs
    strategy = distribute.strategy_from_env() if stages_train_retrieval(run_cfg) else None
    chief = distribute.is_chief()
    run = RunDir(run_cfg.train.run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    if chief:
        run.save_config(run_cfg)
    rule, split = examples_split(run, run_cfg, log)
    stages = run_cfg.train.stages
    summary = {"run_dir": str(run.path), "stages": stages, "examples": run_cfg.train.examples,
               "split_rule": rule.to_dict()}
    report = Report(run.path) if chief else None
    retrieval_model = None
    if stages in ("both", "retrieval"):
        log("training retrieval (TFRS two-tower) streaming the examples' training rows")
        callbacks = []
        if chief and distribute.worker_count() == 1 and split.valid is not None and run_cfg.retrieval.validate_every > 0:
            callbacks.append(_StreamValidation(split.train, split.valid, run_cfg.retrieval.validate_every,
                                               run_cfg.retrieval.selection_ks))
        if chief:
            shutil.rmtree(run.retrieval_dir / "best", ignore_errors=True)  # a stale best epoch would win at load
        started = time.time()
        model, history, info = train_retrieval_from_examples(
            run_cfg.train.examples, run_cfg.retrieval, run.path, text_cfg=run_cfg.text,
            seed=run_cfg.train.seed, verbose=verbose, split=rule, callbacks=callbacks, strategy=strategy)
        retrieval_model = model
        summary["retrieval"] = {"seconds": round(time.time() - started, 1), **json_safe(info)}
        if chief:
            history = {**history, "epoch": list(range(1, len(history.get("loss", [])) + 1))}
            figure = plot_history(_numeric(history), report.figure_path("retrieval_training.png"), "retrieval")
            report.add("Retrieval training", _history_table(history) + "\n\n" +
                       f"streamed from `{run_cfg.train.examples}` ({info.get('strategy')}, "
                       f"{info.get('workers')} worker(s)), training positives: {info.get('examples')}, "
                       f"seconds: {summary['retrieval']['seconds']}", [figure], order=20)
    if not chief:
        return summary
    if stages in ("both", "ranking"):
        _ranking_stage(run, run_cfg, split, retrieval_model, summary, report, verbose, log)
    (run.path / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def stages_train_retrieval(run_cfg: C.RunConfig) -> bool:
    return run_cfg.train.stages in ("both", "retrieval")


def _stream_validation_class():
    from tfrs_multiscene.retrieval.train import ValidationCallback

    class StreamValidation(ValidationCallback):
        """Validation Recall@K of the model being fitted (``fit`` hands it over)."""

        def __init__(self, train, valid, every, selection_ks):
            super().__init__(None, train, valid, every, selection_ks)

        def set_model(self, model):
            super().set_model(model)
            self.retrieval = model

    return StreamValidation


def _StreamValidation(train, valid, every, selection_ks):  # noqa: N802  (a factory: retrieval is imported late)
    return _stream_validation_class()(train, valid, every, selection_ks)


def _numeric(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "epoch" and v and isinstance(v[0], (int, float))}


def _history_table(history: dict) -> str:
    keys = list(_numeric(history))
    if not keys:
        return "(no epochs run)"
    n = max(len(history[k]) for k in keys)
    rows = [{"epoch": i + 1, **{k: history[k][i] for k in keys if i < len(history[k])}} for i in range(n)]
    return markdown_table(rows, ["epoch"] + keys)
