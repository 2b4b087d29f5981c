"""Per-scenario fine-tuning after joint training (shared pre-training, then scenario fine-tuning).

Joint training early-stops on ONE validation loss summed over all scenarios, so the epoch it
keeps suits the large scenarios; a small scenario's own tower may still be under-trained
(its "separate" baseline, which early-stops on its own validation loss, trains longer).

:func:`finetune_scenarios` therefore continues, for every scenario s in turn, with

* only the weights scenario s owns trainable (``architecture.scenario_owned(s)``: its tower,
  wide weights and FiLM rows for shared_bottom; gates / specific experts / towers for
  MMoE-PLE; the ``*_s`` rows for STAR). The feature encoder and every shared weight are
  frozen, and for row-owned variables (e.g. FiLM ``gamma[l]``) only row s receives gradient;
* scenario s's training examples only, a fresh Adam optimizer
  (``cfg.scenario_finetune_lr``, default the joint learning rate);
* early stopping on scenario s's OWN validation loss (patience ``cfg.early_stopping``, at
  most ``cfg.scenario_finetune_epochs`` epochs); the best epoch's weights are kept, and if
  no epoch beats the joint model's validation loss the joint weights stay.

Routing (scenario s's logits use only shared weights and s's own) makes this well defined:
fine-tuning s cannot change any other scenario's predictions.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from tfrs_multiscene.data import schema
from tfrs_multiscene.ranking import data as D


def owned_trainables(model, scenario: int) -> list:
    """``(variable, row)`` pairs scenario ``scenario`` owns that are trainable (row None =
    the whole variable)."""
    trainable = {id(v) for v in model.trainable_variables}
    return [(v, r) for v, r in model.architecture.scenario_owned(scenario) if id(v) in trainable]


def _subset(prepared, rows: np.ndarray):
    inputs = {k: v[rows] for k, v in prepared.inputs.items()}  # a RowsOf stays one (rows of its table)
    targets = {k: np.asarray(v)[rows] for k, v in prepared.targets.items()}
    return inputs, targets, np.asarray(prepared.weights)[rows]


def _snapshot(pairs) -> list:
    return [tf.identity(v) if r is None else tf.identity(v[r]) for v, r in pairs]


def _restore(pairs, values) -> None:
    for (v, r), value in zip(pairs, values):
        if r is None:
            v.assign(value)
        else:
            v.scatter_nd_update([[r]], value[None])


def _mean_loss(model, ds) -> float:
    """Example-weighted validation loss of ``ds`` (sum of per-task masked means, per batch
    averaged with the batch's weight mass, like Keras' per-batch mean up to batch sizes)."""
    total, mass = 0.0, 0.0
    for inputs, targets in ds:
        loss, _ = model.loss_of_outputs(targets, model(inputs, training=False))
        m = float(tf.reduce_sum(targets["weight"]))
        total += float(loss) * m
        mass += m
    return total / mass if mass else float("nan")


def _train_step(model, variables, masks, optimizer):
    """A compiled step updating only ``variables`` (gradients times ``masks`` where given)."""

    @tf.function
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            total, _ = model.loss_of_outputs(targets, model(inputs, training=True))
            if model.losses:
                total = total + tf.add_n(model.losses)
        grads = tape.gradient(total, variables)
        optimizer.apply_gradients([(g if m is None else g * m, v)
                                   for g, m, v in zip(grads, masks, variables) if g is not None])
        return total

    return step


def finetune_scenarios(model, train, valid, cfg, *, seed: int = 0, scenarios=None, log=None) -> dict:
    """Fine-tune each scenario's own weights on its own examples (see the module docstring).

    Args:
      model: a built multi-scenario RankingModel (after joint training).
      train, valid: ``PreparedExamples`` of the joint training / validation split (valid may
        be None: then a fixed ``scenario_finetune_epochs`` epochs are run, no selection).
      cfg: RankingConfig (``scenario_finetune_epochs``, ``scenario_finetune_lr``,
        ``early_stopping``, ``batch_size``).
      scenarios: the scenario names to fine-tune (default: all of the model's).
    Returns ``{scenario: {"epochs", "best_epoch", "val_loss": [before, after epoch 1, ...]}}``.
    """
    epochs = int(cfg.scenario_finetune_epochs)
    lr = float(cfg.scenario_finetune_lr or cfg.learning_rate)
    patience = int(cfg.early_stopping) if cfg.early_stopping > 0 else epochs
    report = {}
    tr_scen = train.frame[schema.SCENARIO].astype(str).to_numpy()
    va_scen = valid.frame[schema.SCENARIO].astype(str).to_numpy() if valid is not None else None
    for s_idx, scenario in enumerate(model.spec.scenarios):
        if scenarios is not None and scenario not in scenarios:
            continue
        rows = np.flatnonzero(tr_scen == scenario)
        pairs = owned_trainables(model, s_idx)
        if not len(rows) or not pairs or epochs <= 0:
            continue
        ds = D.make_dataset(*_subset(train, rows), cfg.batch_size, shuffle=True, seed=seed + s_idx)
        vrows = np.flatnonzero(va_scen == scenario) if va_scen is not None else np.zeros(0, int)
        vds = D.make_dataset(*_subset(valid, vrows), 4 * cfg.batch_size) if len(vrows) else None
        variables = [v for v, _ in pairs]
        masks = []
        for v, r in pairs:
            if r is None:
                masks.append(None)
            else:
                m = np.zeros([int(v.shape[0])] + [1] * (len(v.shape) - 1), np.float32)
                m[r] = 1.0
                masks.append(tf.constant(m))
        step = _train_step(model, variables, masks, tf.keras.optimizers.Adam(lr))
        best = _snapshot(pairs)
        history = [_mean_loss(model, vds)] if vds is not None else []
        best_loss, best_epoch, waited, done = (history[0] if history else np.inf), 0, 0, 0
        for epoch in range(1, epochs + 1):
            for inputs, targets in ds:
                step(inputs, targets)
            done = epoch
            if vds is None:
                best, best_epoch = _snapshot(pairs), epoch
                continue
            loss = _mean_loss(model, vds)
            history.append(loss)
            if loss < best_loss:
                best_loss, best_epoch, waited, best = loss, epoch, 0, _snapshot(pairs)
            else:
                waited += 1
                if waited >= patience:
                    break
        _restore(pairs, best)
        report[scenario] = {"epochs": done, "best_epoch": best_epoch,
                            "val_loss": [round(float(x), 5) for x in history]}
        if log is not None:
            log(f"fine-tuned scenario {scenario}: {done} epoch(s), kept epoch {best_epoch}, "
                f"validation loss {history[0] if history else float('nan'):.4f} -> "
                f"{best_loss if history else float('nan'):.4f}")
    return report


def should_finetune(cfg, pooled: bool, scenario: Optional[str], num_scenarios: int) -> bool:
    """Only the multi-scenario model is fine-tuned (pooled / separate models have one scenario)."""
    return int(getattr(cfg, "scenario_finetune_epochs", 0) or 0) > 0 and not pooled and scenario is None \
        and num_scenarios > 1
