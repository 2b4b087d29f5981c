"""Training the ranking model: one loop for the main model and for both baselines.

Files under ``<run_dir>/<name>/`` (name ``ranking`` for the main model):

  spec.json, config.json    vocabularies / tasks, and the RankingConfig
  checkpoints/              model + optimizer + epochs done, written every epoch (resume)
  final/                    the weights kept at the end (best validation epoch)
  history.json, curves_<name>.png  per-epoch losses (train and validation)
  curves_<name>_wide.png    the wide part's own fit (``cfg.wide``), before the deep part
  tensorboard/              TensorBoard event files

Re-running with the same ``run_dir`` resumes from the last epoch checkpoint; a finished run
(all requested epochs, or stopped early) is loaded instead of trained again unless more
epochs are requested.
``cfg.warm_start`` (another run directory) starts from that run's weights and vocabularies.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_multiscene.config import RankingConfig, differing_fields, from_dict, save_config
from tfrs_multiscene.data import schema
from tfrs_multiscene.errors import RunConflict
from tfrs_multiscene.optimizers import adam, steps_per_epoch
from tfrs_multiscene.ranking import data as D
from tfrs_multiscene.ranking.features import FeatureSpec, build_feature_spec, scenario_blind_hook
from tfrs_multiscene.ranking.finetune import finetune_scenarios, should_finetune
from tfrs_multiscene.ranking.model import POOLED_SCENARIO, RankingModel
from tfrs_multiscene.ranking.wide_fit import fit_wide

FeatureHook = Callable[[pd.DataFrame], dict]   # example frame -> {name: float32 [N, d]}


@dataclasses.dataclass
class RankingResult:
    """A trained model, its per-epoch history and facts about the training run."""

    model: RankingModel
    history: dict
    info: dict


@dataclasses.dataclass
class PreparedExamples:
    """An example frame and the arrays fed to the model."""

    frame: pd.DataFrame
    inputs: dict
    targets: dict
    weights: np.ndarray


def prepare(tables: schema.Tables, spec: FeatureSpec, cfg: RankingConfig, feature_hook: Optional[FeatureHook] = None,
            seed: int = 0, candidate_fn=None) -> PreparedExamples:
    """Examples of ``tables`` as model inputs, targets and weights for ``spec``'s tasks."""
    frame = D.build_examples(tables, cfg, seed=seed, candidate_fn=candidate_fn, tasks=spec.tasks)
    extra = feature_hook(frame) if feature_hook is not None else None
    return PreparedExamples(frame, D.model_inputs(frame, spec, extra), D.targets(frame, spec.tasks, cfg),
                            D.example_weights(frame, cfg))


def only_scenario(tables: Optional[schema.Tables], scenario: Optional[str]) -> Optional[schema.Tables]:
    if tables is None or scenario is None:
        return tables
    inter = tables.interactions
    return tables.with_interactions(inter[inter[schema.SCENARIO].astype(str) == scenario])


def _extra_dims(tables, cfg, feature_hook, seed) -> dict:
    if feature_hook is None:
        return {}
    head = tables.with_interactions(tables.interactions.head(8))
    frame = D.build_examples(head, dataclasses.replace(cfg, negative_source="catalogue"), seed=seed)
    return {k: int(np.asarray(v).reshape(len(frame), -1).shape[1]) for k, v in feature_hook(frame).items()}


def train_ranking(split, cfg: RankingConfig, run_dir, feature_hook: Optional[FeatureHook] = None, *,
                  name: str = "ranking", pooled: bool = False, scenario: Optional[str] = None,
                  seed: int = 42, verbose: int = 2, candidate_fn=None, tensorboard: bool = True) -> RankingResult:
    """Train a ranking model on ``split.train`` (validation on ``split.valid`` when present).

    Args:
      split: a ``Split`` (``train``, ``valid`` Tables).
      cfg: RankingConfig.
      run_dir: the run directory; files go to ``<run_dir>/<name>/``.
      feature_hook: ``frame -> {name: [N, d]}`` extra dense features (e.g. the retrieval
        model's ``query_embedding`` / ``candidate_embedding``); applied to every split.
      pooled: train the scenario-blind baseline (one tower, scenario ignored, tower widths
        times the number of scenarios so the capacity matches).
      scenario: train only on this scenario's examples (the "separate" baseline).
      candidate_fn: retrieval top-N per row, for ``cfg.negative_source == "retrieval"``.
    """
    tf.keras.utils.set_random_seed(seed)
    out = Path(run_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    train = only_scenario(split.train, scenario)
    valid = only_scenario(getattr(split, "valid", None), scenario)
    if not len(train.interactions):
        raise ValueError(f"no training interactions{' for scenario ' + repr(scenario) if scenario else ''}")
    if pooled:
        widen = len(split.train.scenarios)
        cfg = dataclasses.replace(cfg, tower_units=[int(u) * widen for u in cfg.tower_units])
        feature_hook = scenario_blind_hook(feature_hook)  # it must not see the scenario through its features

    resume = (out / "checkpoints" / "checkpoint").exists() and (out / "spec.json").exists()
    warm_dir = Path(cfg.warm_start) / "ranking" if cfg.warm_start else None
    if resume:
        _check_same_config(out, cfg)
        spec = FeatureSpec.load(out / "spec.json")
    elif warm_dir is not None:
        if not (warm_dir / "spec.json").exists():
            raise FileNotFoundError(f"warm start: no ranking model in {cfg.warm_start} (missing {warm_dir / 'spec.json'})")
        spec = FeatureSpec.load(warm_dir / "spec.json")
    else:
        tasks = D.ranking_tasks(train, cfg.rating_task)
        spec = build_feature_spec(train, tasks, _extra_dims(train, cfg, feature_hook, seed),
                                  scenarios=[POOLED_SCENARIO] if pooled else None, log_skewed=cfg.log_numeric)
    spec.save(out / "spec.json")
    save_config(cfg, out / "config.json")

    tr = prepare(train, spec, cfg, feature_hook, seed, candidate_fn)
    va = prepare(valid, spec, cfg, feature_hook, seed + 1, candidate_fn) if valid is not None and len(valid.interactions) else None

    model = RankingModel(spec, cfg, pooled=pooled, name="ranking")
    optimizer = adam(cfg.learning_rate, cfg.ema_momentum, steps_per_epoch(len(tr.frame), cfg.batch_size))
    model.compile(optimizer=optimizer)
    model({k: v[:2] for k, v in tr.inputs.items()})  # build the variables
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(ckpt, str(out / "checkpoints"), max_to_keep=2)
    history = _read_history(out) if resume else {}
    previous = json.loads((out / "info.json").read_text()) if resume and (out / "info.json").exists() else {}
    finished = resume and previous.get("epochs_requested", -1) >= cfg.epochs and (out / "final" / "model.index").exists()
    if finished:  # a completed run (possibly stopped early): keep its final weights
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        final = tf.train.Checkpoint(model=model).read(str(out / "final" / "model"))
        try:
            final.assert_existing_objects_matched()
        except AssertionError as err:
            raise ValueError(f"{out}: the saved ranking model does not match this version's model "
                             f"(trained by an older tfrs_multiscene?); train into a new --run. ({err})") from None
        epoch.assign(cfg.epochs)
    elif resume:
        ckpt.restore(manager.latest_checkpoint)
    elif warm_dir is not None:
        tf.train.Checkpoint(model=model).read(str(warm_dir / "final" / "model")).expect_partial()

    callbacks = [_EpochCheckpoint(manager, epoch)]
    if tensorboard:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=str(out / "tensorboard"), write_graph=False))
    if va is not None and cfg.early_stopping > 0:
        callbacks.append(tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.early_stopping,
                                                          restore_best_weights=True))
    start = time.time()
    ds = D.make_dataset(tr.inputs, tr.targets, tr.weights, cfg.batch_size, shuffle=True, seed=seed)
    vds = D.make_dataset(va.inputs, va.targets, va.weights, 4 * cfg.batch_size) if va is not None else None
    initial = int(epoch.numpy())
    finetune = previous.get("scenario_finetune") if finished else None
    wide = previous.get("wide") if resume else None
    warm_config = warm_dir / "config.json" if warm_dir is not None else None
    warm_has_wide = bool(warm_config and warm_config.exists() and json.loads(warm_config.read_text()).get("wide", False))
    if model.wide is not None and not resume and not warm_has_wide:  # resumed / warm models keep theirs
        wide = fit_wide(model, tr, va, cfg, seed=seed, log=print if verbose else None)
        curve = _plot_curves({"loss": wide["train_loss"], "val_loss": wide["val_loss"]},
                             out / f"curves_{name.replace('/', '_')}_wide.png", f"{name} (wide part)")
        wide["curves"] = str(curve) if curve else None
    if initial < cfg.epochs:
        fit = model.fit(ds, validation_data=vds, epochs=cfg.epochs, initial_epoch=initial,
                        callbacks=callbacks, verbose=verbose)
        for k, v in fit.history.items():
            history.setdefault(k, []).extend(float(x) for x in v)
        if should_finetune(cfg, pooled, scenario, len(spec.scenarios)):
            finetune = finetune_scenarios(model, tr, va, cfg, seed=seed, log=print if verbose else None)
    if not finished:  # a finished run's final weights stay as they were written
        tf.train.Checkpoint(model=model).write(str(out / "final" / "model"))
    (out / "history.json").write_text(json.dumps(history, indent=1))
    curves = _plot_curves(history, out / f"curves_{name.replace('/', '_')}.png", name)
    info = {
        "name": name, "architecture": cfg.architecture, "pooled": pooled, "scenario": scenario,
        "tasks": list(spec.tasks), "scenarios": list(spec.scenarios),
        "train_examples": int(len(tr.frame)), "valid_examples": int(len(va.frame)) if va is not None else 0,
        "parameters": model.parameter_count(), "epochs_done": int(epoch.numpy()), "epochs_requested": cfg.epochs,
        "resumed_from_epoch": initial if resume else None, "warm_start": cfg.warm_start,
        "scenario_finetune": finetune, "wide": wide,
        "seconds": round(time.time() - start, 2), "curves": str(curves) if curves else None,
        "scenario_weights": D.scenario_weights(tr.frame[schema.SCENARIO], cfg.scenario_weight_power)
        if cfg.balance_scenarios else None,
    }
    (out / "info.json").write_text(json.dumps(info, indent=1, default=str))
    return RankingResult(model, history, info)


#: RankingConfig fields that may change when a run is resumed.
RESUMABLE_FIELDS = ("epochs", "early_stopping", "warm_start")


def _check_same_config(out: Path, cfg: RankingConfig) -> None:
    """Refuse to resume ``out`` with a configuration other than the one it was trained with."""
    path = out / "config.json"
    if not path.exists():
        return
    changed = differing_fields(json.loads(path.read_text()), cfg, RESUMABLE_FIELDS)
    if changed:
        raise RunConflict(f"{out} holds a ranking model trained with another configuration ({', '.join(changed)}); "
                          "resuming needs the same settings: train into a new --run (or pass the saved ones)")


class _EpochCheckpoint(tf.keras.callbacks.Callback):
    """Save model + optimizer + epochs done after every epoch."""

    def __init__(self, manager, epoch):
        super().__init__()
        self.manager, self.epoch = manager, epoch

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


def _read_history(out: Path) -> dict:
    path = out / "history.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _plot_curves(history: dict, path: Path, title: str):
    if not history:
        return None
    from tfrs_multiscene.report import plot_history

    return plot_history(history, path, title)


def load_ranking(run_dir, name: str = "ranking") -> RankingModel:
    """The trained ranking model of a run (weights of ``final/``, else the last checkpoint)."""
    out = Path(run_dir) / name
    if not (out / "spec.json").exists():
        raise FileNotFoundError(f"no ranking model in {run_dir} (missing {out / 'spec.json'})")
    spec = FeatureSpec.load(out / "spec.json")
    cfg = from_dict(RankingConfig, json.loads((out / "config.json").read_text()), "ranking config")
    info = json.loads((out / "info.json").read_text()) if (out / "info.json").exists() else {}
    model = RankingModel(spec, cfg, pooled=bool(info.get("pooled")), name="ranking")
    model(_dummy_inputs(spec))
    final = out / "final" / "model.index"
    if final.exists():
        tf.train.Checkpoint(model=model).read(str(out / "final" / "model")).expect_partial()
    else:
        latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
        if latest is None:
            raise FileNotFoundError(f"no ranking weights in {out}")
        tf.train.Checkpoint(model=model).read(latest).expect_partial()
    return model


def _dummy_inputs(spec: FeatureSpec) -> dict:
    out = {}
    for name, sig in spec.input_signature().items():
        shape = [1] + [d for d in sig.shape[1:]]
        if sig.dtype == tf.string:
            value = spec.scenarios[0] if name == schema.SCENARIO else ""
            out[name] = tf.fill(shape, value)
        else:
            out[name] = tf.zeros(shape, sig.dtype)
    return out
