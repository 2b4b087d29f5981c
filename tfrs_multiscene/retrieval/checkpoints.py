"""Where a retrieval model lives in a run directory, and how it is saved, resumed and warm-started.

Layout (``<run_dir>/retrieval/``)::

    config.json          the RetrievalConfig it was trained with
    feature_spec.json    vocabularies, item frequencies, table ids
    item_text.npy        frozen item text embeddings (when used), same for user_text.npy
    checkpoints/         tf.train.Checkpoint of model + optimizer + epoch, one per epoch
    history.json         per-epoch training history (loss, validation metrics, throughput)
    logs/                TensorBoard
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Optional

import tfrs_multiscene  # noqa: F401
import tensorflow as tf

from tfrs_multiscene.config import RetrievalConfig, from_dict, save_config
from tfrs_multiscene.retrieval.features import FeatureSpec
from tfrs_multiscene.retrieval.model import RetrievalModel
from tfrs_multiscene.retrieval.new_items import OffsetChoice
from tfrs_multiscene.retrieval.towers import IdEmbedding

SUBDIR = "retrieval"

#: Validation metric that picks the best epoch: the mean of validation Recall@K and NDCG@K
#: over RetrievalConfig.selection_ks (logged by retrieval.train.ValidationCallback).
MONITOR = "val_selection_score"

#: RetrievalConfig fields that shape the variables: a warm start keeps the base run's.
STRUCTURAL_FIELDS = ("embedding_dim", "feature_dim", "hidden_units", "use_user_id",
                     "share_item_embeddings", "l2_normalize", "history_length")


def model_dir(run_dir) -> Path:
    return Path(run_dir) / SUBDIR


def latest_checkpoint(run_dir) -> Optional[str]:
    """Path prefix of the run's latest retrieval checkpoint, or None."""
    return tf.train.latest_checkpoint(str(model_dir(run_dir) / "checkpoints"))


def save_definition(run_dir, model: RetrievalModel) -> None:
    """Write what rebuilding the model needs (config + feature spec + text tables)."""
    directory = model_dir(run_dir)
    model.spec.save(directory)
    save_config(model.cfg, directory / "config.json")


def load_config(run_dir) -> RetrievalConfig:
    path = model_dir(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {run_dir} holds no retrieval model")
    return from_dict(RetrievalConfig, json.loads(path.read_text()), "retrieval config")


def structural_config(cfg: RetrievalConfig, base: RetrievalConfig) -> RetrievalConfig:
    """``cfg`` with the variable-shaping fields taken from ``base``."""
    return dataclasses.replace(cfg, **{f: getattr(base, f) for f in STRUCTURAL_FIELDS})


class CheckpointState:
    """Model + optimizer + finished-epoch counter, saved under ``<run>/retrieval/checkpoints``."""

    def __init__(self, run_dir, model: RetrievalModel, optimizer=None, max_to_keep: int = 3):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        objects = {"model": model, "epoch": self.epoch}
        if optimizer is not None:
            objects["optimizer"] = optimizer
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(model_dir(run_dir) / "checkpoints"), max_to_keep=max_to_keep)
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, str(model_dir(run_dir) / "best"), max_to_keep=1, checkpoint_name="best")

    @property
    def latest(self) -> Optional[str]:
        return self.manager.latest_checkpoint

    def restore(self, path: Optional[str] = None, expect_partial: bool = False) -> int:
        """Restore ``path`` (default: the latest); returns the epochs it had finished (0: none)."""
        path = path or self.latest
        if path is None:
            return 0
        status = self.checkpoint.restore(path)
        if expect_partial:
            status.expect_partial()
        return int(self.epoch.numpy())

    @property
    def best(self) -> Optional[str]:
        return self.best_manager.latest_checkpoint

    def save(self, epochs_done: int, best: bool = False) -> str:
        """Save after ``epochs_done`` epochs (also as the best one when ``best``)."""
        self.epoch.assign(epochs_done)
        if best:
            self.best_manager.save(checkpoint_number=epochs_done)
        return self.manager.save(checkpoint_number=epochs_done)


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Saves the checkpoint and ``history.json`` at the end of every epoch.

    ``history`` is the run's full history (from earlier, interrupted fits too); this
    callback appends each epoch's logs to it before saving, so a resumed run continues it.
    """

    def __init__(self, state: CheckpointState, history: dict, run_dir, monitor: str = MONITOR):
        super().__init__()
        self.state = state
        self.history = history
        self.monitor = monitor
        self.path = model_dir(run_dir) / "history.json"

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        earlier = [v for v in self.history.get(self.monitor, []) if v is not None]
        done = len(self.history.get("epoch", []))
        for key in set(self.history) | set(logs):  # one entry per epoch, None where not logged
            if key != "epoch":
                values = self.history.setdefault(key, [None] * done)
                values.append(float(logs[key]) if key in logs else None)
        self.history.setdefault("epoch", []).append(epoch + 1)
        value = logs.get(self.monitor)
        self.state.save(epoch + 1, best=value is not None and value > max(earlier, default=-1.0))
        write_history(self.path, self.history)


def write_history(path, history: dict) -> None:
    Path(path).write_text(json.dumps(history, indent=1))


def read_history(run_dir) -> dict:
    path = model_dir(run_dir) / "history.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_text_config(run_dir, text_cfg) -> None:
    if text_cfg is not None:
        save_config(text_cfg, model_dir(run_dir) / "text_config.json")


def finetune_encoder_factory(run_dir, spec: FeatureSpec) -> Optional[Callable]:
    """Finetune mode: a factory of ``KerasHubLayer`` around the run's text encoder, rebuilt
    from its saved TextConfig and texts (weights then come from the checkpoint); else None."""
    if spec.item_text_strings is None and spec.user_text_strings is None:
        return None
    path = model_dir(run_dir) / "text_config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass encoder_factory to rebuild the finetuned text tower")
    from tfrs_multiscene.config import TextConfig
    from tfrs_multiscene.text.bridge import KerasHubLayer
    from tfrs_multiscene.text.factory import build_text_encoder

    text_cfg = from_dict(TextConfig, json.loads(path.read_text()), "text config")
    encoder = build_text_encoder(text_cfg, train_texts=list(spec.item_text_strings or []) + list(spec.user_text_strings or []))
    return lambda: KerasHubLayer(encoder)


def load_retrieval(run_dir, encoder_factory: Optional[Callable] = None) -> RetrievalModel:
    """Rebuild the trained retrieval model of ``run_dir`` (best validated epoch, else latest).

    A finetune-mode model rebuilds its text encoder from the run's ``text_config.json``
    unless ``encoder_factory`` is given. Its ``new_item_offset`` is the one training chose.
    """
    cfg = load_config(run_dir)
    spec = FeatureSpec.load(model_dir(run_dir))
    encoder_factory = encoder_factory or finetune_encoder_factory(run_dir, spec)
    model = RetrievalModel(spec, cfg, encoder_factory).build_towers()
    state = CheckpointState(run_dir, model)
    if state.latest is None:
        raise FileNotFoundError(f"no checkpoint under {model_dir(run_dir) / 'checkpoints'}")
    state.restore(final_checkpoint(state, cfg), expect_partial=True)
    choice = OffsetChoice.load(model_dir(run_dir))
    model.new_item_offset = choice.offset if choice is not None else 0.0
    return model


def final_checkpoint(state: CheckpointState, cfg: RetrievalConfig) -> Optional[str]:
    """The checkpoint that is "the model": the best validated epoch, else the latest."""
    return state.best if cfg.restore_best and state.best else state.latest


def transfer_weights(old: RetrievalModel, new: RetrievalModel) -> dict:
    """Copy ``old``'s weights into ``new`` (warm start); returns counts of what was copied.

    Both were built with the same structure; ``new``'s id vocabularies extend ``old``'s
    (same order, new ids appended), so an id embedding keeps its old rows and new ids keep
    their fresh initialisation. Any other shape difference is an error.
    """
    grown = {id(layer.embedding.embeddings) for layer in new.submodules if isinstance(layer, IdEmbedding)}
    old_vars, new_vars = old.trainable_variables, new.trainable_variables
    if len(old_vars) != len(new_vars):
        raise ValueError(f"warm start: the base model has {len(old_vars)} trainable variables, the new "
                         f"one {len(new_vars)}: the features or the architecture changed")
    copied, extended, new_rows = 0, 0, 0
    for src, dst in zip(old_vars, new_vars):
        if src.shape == dst.shape:
            dst.assign(src)
            copied += 1
        elif id(dst) in grown and src.shape[1:] == dst.shape[1:] and src.shape[0] <= dst.shape[0]:
            n = src.shape[0]
            dst.assign(tf.concat([src, dst[n:]], axis=0))
            extended += 1
            new_rows += int(dst.shape[0] - n)
        else:
            raise ValueError(f"warm start: {dst.name} has shape {dst.shape}, the base model's "
                             f"{src.name} {src.shape}")
    return {"copied": copied, "extended": extended, "new_rows": new_rows}
