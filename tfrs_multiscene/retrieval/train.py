"""Training the two-tower model: tf.data from Tables, fit with checkpoints, resume, warm start.

``train_retrieval(split, cfg, run_dir)`` trains on ``split.train``'s positives, validates
Recall@K / NDCG@K on ``split.valid`` (seen items excluded), saves a checkpoint every epoch,
writes TensorBoard logs and ``history.json``, and resumes from the latest checkpoint when
``run_dir`` already holds an unfinished run. ``cfg.warm_start = RUN_DIR`` starts from that
run's weights, extending its vocabularies with the new ids.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

import tfrs_multiscene  # noqa: F401
import tensorflow as tf

from tfrs_multiscene.config import RetrievalConfig, TextConfig, differing_fields
from tfrs_multiscene.errors import RunConflict
from tfrs_multiscene.optimizers import adam, steps_per_epoch
from tfrs_multiscene.data import schema
from tfrs_multiscene.retrieval import checkpoints as C
from tfrs_multiscene.retrieval import features as F
from tfrs_multiscene.retrieval import new_items
from tfrs_multiscene.retrieval.model import (CANDIDATE, ITEM_ROW, KNOWN_ROWS, NEG_CANDIDATE, NEG_ITEM_ROW, NEG_PROBABILITY,
                                             PROBABILITY, QUERY, WEIGHT, RetrievalModel, build_retrieval_model)

log = logging.getLogger(__name__)

#: History rows kept per user when histories are sampled at random each epoch.
RANDOM_HISTORY_POOL = 200


@dataclasses.dataclass
class RetrievalResult:
    """What :func:`train_retrieval` returns.

    Attributes:
      model: the trained :class:`RetrievalModel`.
      history: per-epoch lists (``loss``, ``val_recall_at_10``, ``val_selection_score``,
        ``examples_per_second``, ...).
      info: facts of the run (examples, resumed_from_epoch, warm start counts, seconds, ...).
    """

    model: RetrievalModel
    history: dict
    info: dict


# ---------------------------------------------------------------------- data


def make_training_dataset(spec: F.FeatureSpec, train: schema.Tables, cfg: RetrievalConfig,
                          seed: int = 42, shuffle: bool = True) -> tuple:
    """(tf.data.Dataset of training batches, number of examples) from the positives.

    Each batch is ``{"query": {...}, "candidate": {...}, "weight": [B], "item_row": [B],
    "probability": [B]}``; the query's ``history`` [B, L] is the user's other training
    positives (the target excluded): the most recent ones, or a random subset re-drawn each
    epoch (``cfg.history_sampling == "random"``), each of them dropped with probability
    ``cfg.history_dropout`` (re-drawn every batch: a denoising history). With ``cfg.mixed_negatives = N`` each batch
    also has ``neg_candidate`` (candidate features of N items drawn uniformly from the item
    table), ``neg_item_row`` [N] and ``neg_probability`` [N]; ``probability`` is then the
    mixed (in-batch + uniform) column probability used for log-Q. With
    ``cfg.mask_known_positives`` each batch has ``known_rows`` [B, pool]: the user's other
    positives in the history pool (before dropout), which the loss masks out of the negatives.
    """
    pos = F.positive_interactions(train, cfg.positive_task)
    item_index = pd.Index(spec.item_table_ids)
    item_row = item_index.get_indexer(pos[F.ITEM_ID].astype(str))
    if (item_row < 0).any():
        raise ValueError(f"{int((item_row < 0).sum())} training interactions name items missing "
                         "from the item table")
    length = spec.history_length
    pool = length + 1 if cfg.history_sampling == "recent" else max(RANDOM_HISTORY_POOL, length + 1)
    histories = F.UserHistories(pos, spec.item_table_ids, pool)
    users = pos[F.USER_ID].astype(str).to_numpy()
    weights = (pos[schema.WEIGHT].to_numpy(np.float32) if schema.WEIGHT in pos.columns
               else np.ones(len(pos), np.float32))
    query = {F.USER_ID: users, F.SCENARIO: pos[F.SCENARIO].astype(str).to_numpy()}
    for col in spec.user_categorical:
        query[col] = F.column_values(train.users, F.USER_ID, users, col).astype(str)
    item_ids = pos[F.ITEM_ID].astype(str).to_numpy()
    candidate = {F.ITEM_ID: item_ids}
    for col in spec.item_categorical:
        candidate[col] = F.column_values(train.items, F.ITEM_ID, item_ids, col).astype(str)
    tensors = {
        QUERY: query, CANDIDATE: candidate, WEIGHT: weights,
        ITEM_ROW: item_row.astype(np.int64),
        PROBABILITY: spec.candidate_probability()[item_row],
        "_user_row": histories.rows(users),
    }
    hist_matrix = tf.constant(histories.matrix)
    strings = tf.constant(np.asarray([F.PAD] + list(spec.item_table_ids)))
    random_order = cfg.history_sampling == "random"
    # One generator whose state advances across epochs: a seeded tf.random op inside
    # Dataset.map restarts its sequence with every new iterator (every epoch of fit), so
    # each epoch would redraw the very same dropout masks, history subsets and negatives.
    rng = tf.random.Generator.from_seed(seed)
    keep_probability = 1.0 - float(cfg.history_dropout)
    mask_known = bool(cfg.mask_known_positives)

    def add_history(batch):
        rows = tf.gather(hist_matrix, tf.maximum(batch.pop("_user_row"), 0))
        valid = (rows >= 0) & tf.not_equal(rows, tf.cast(batch[ITEM_ROW], rows.dtype)[:, None])
        if mask_known:  # before dropout: every other known positive leaves the negatives
            batch[KNOWN_ROWS] = tf.where(valid, rows, -1)
        if keep_probability < 1.0:  # denoising: each history item kept with this probability
            valid &= rng.uniform(tf.shape(rows)) < keep_probability
        if random_order:
            keys = rng.uniform(tf.shape(rows))
        else:
            keys = tf.cast(tf.broadcast_to(tf.range(tf.shape(rows)[1]), tf.shape(rows)), tf.float32)
        keys = tf.where(valid, keys, tf.fill(tf.shape(keys), np.inf))
        order = tf.argsort(keys, axis=1, stable=True)[:, :length]
        picked = tf.gather(rows, order, batch_dims=1)
        ok = tf.gather(valid, order, batch_dims=1)
        batch[QUERY][F.HISTORY] = tf.gather(strings, tf.where(ok, picked + 1, 0))
        return batch

    negatives = MixedNegatives(spec, train.items, cfg) if cfg.mixed_negatives else None

    ds = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        ds = ds.shuffle(len(pos), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size).map(add_history, num_parallel_calls=tf.data.AUTOTUNE)
    if negatives is not None:
        ds = ds.map(lambda batch: negatives.add(batch, negatives.draw(rng)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE), len(pos)


class MixedNegatives:
    """Mixed negative sampling: ``cfg.mixed_negatives`` items drawn uniformly from the item
    table join every batch's in-batch negatives (they correct the in-batch popularity bias).

    ``add(batch, rows)`` puts the drawn rows' candidate features under ``neg_candidate``,
    ``neg_item_row`` [N] and ``neg_probability`` [N], and replaces ``probability`` by the
    mixed column probability that the log-Q correction needs: an item is a column of the
    mixed batch with probability (B * p_j + N / n_items) / (B + N).
    """

    def __init__(self, spec: F.FeatureSpec, items: pd.DataFrame, cfg: RetrievalConfig):
        ids = np.asarray(spec.item_table_ids, dtype=object).astype(str)
        # a catalogue no larger than the draw joins whole: each item once, the exact expectation
        # of the uniform draw without its duplicates (and fewer candidate-tower rows per step)
        self.whole = int(cfg.mixed_negatives) >= len(ids)
        self.count, self.n_items = min(int(cfg.mixed_negatives), len(ids)), len(ids)
        self.table = {F.ITEM_ID: tf.constant(ids)}
        for col in spec.item_categorical:
            self.table[col] = tf.constant(F.column_values(items, F.ITEM_ID, ids, col).astype(str))
        size = float(cfg.batch_size)
        mixed = (size * spec.candidate_probability() + self.count / self.n_items) / (size + self.count)
        self.probability = tf.constant(mixed.astype(np.float32))

    def draw(self, rng: tf.random.Generator) -> tf.Tensor:
        """``count`` uniform item-table rows from a generator (its state advances per call);
        every row once when the catalogue is no larger than ``count``."""
        if self.whole:
            return tf.range(self.n_items, dtype=tf.int64)
        return rng.uniform([self.count], 0, self.n_items, dtype=tf.int64)

    def draw_stateless(self, seed: int, step) -> tf.Tensor:
        """The same draw from a (seed, batch number) pair: for pipelines without a generator."""
        if self.whole:
            return tf.range(self.n_items, dtype=tf.int64)
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])
        return tf.random.stateless_uniform([self.count], key, 0, self.n_items, dtype=tf.int64)

    def add(self, batch: dict, rows: tf.Tensor) -> dict:
        batch[NEG_CANDIDATE] = {k: tf.gather(v, rows) for k, v in self.table.items()}
        batch[NEG_ITEM_ROW] = rows
        batch[NEG_PROBABILITY] = tf.gather(self.probability, rows)
        batch[PROBABILITY] = tf.gather(self.probability, tf.maximum(batch[ITEM_ROW], 0))
        return batch


# ---------------------------------------------------------------------- validation


def evaluate_model(model: RetrievalModel, train: schema.Tables, test: schema.Tables,
                   ks=(10,), max_queries: Optional[int] = None, candidates: Optional[Sequence[str]] = None) -> dict:
    """Recall@K / NDCG@K of ``model`` on ``test``'s positives, training items excluded.

    One query per (user, scenario) of the test positives; its relevant items are that
    user's test positives in that scenario; its history and seen items come from ``train``.
    ``candidates`` (item ids) restricts the ranked items, e.g. to the cold items of a
    cold-item split (:func:`cold_candidates`), as the cold-start evaluation ranks them.
    """
    from tfrs_multiscene.evaluation import metrics as M

    pos = F.positive_interactions(test, model.cfg.positive_task)
    if pos.empty:
        return {}
    pairs = pos[[F.USER_ID, F.SCENARIO]].astype(str).drop_duplicates()
    if max_queries is not None and len(pairs) > max_queries:
        pairs = pairs.sample(max_queries, random_state=0)
    items = pd.Index(train.items[F.ITEM_ID].astype(str))
    scores = model.score(pairs[F.USER_ID].tolist(), pairs[F.SCENARIO].tolist(), train)
    if candidates is not None:
        columns = items.get_indexer(pd.Index([str(c) for c in candidates]).unique())
        columns = np.sort(columns[columns >= 0])
        items, scores = items[columns], scores[:, columns]
    train_pos = F.positive_interactions(train, model.cfg.positive_task)
    seen = F.query_item_matrix(pairs, train_pos, items, by_scenario=False)
    relevant = F.query_item_matrix(pairs, pos, items, by_scenario=True)
    n = len(items)  # a K past a small catalogue ranks all of it
    ranked = M.top_k_excluding_seen(scores, seen, k=min(max(ks), n))
    out = {}
    for k in ks:
        out[f"recall_at_{k}"] = float(np.nanmean(M.recall_at_k(ranked, relevant, min(k, n))))
        out[f"ndcg_at_{k}"] = float(np.nanmean(M.ndcg_at_k(ranked, relevant, min(k, n))))
    return out


def cold_candidates(train: schema.Tables, valid: schema.Tables, positive_task=None) -> Optional[list]:
    """The items without a training positive, when every validation positive is one of them
    (a cold-item split: validating over all items would ask cold items to beat the warm
    ones, which they never do, and score every epoch 0); else None (rank all items)."""
    warm = set(F.positive_interactions(train, positive_task)[F.ITEM_ID].astype(str))
    valid_items = set(F.positive_interactions(valid, positive_task)[F.ITEM_ID].astype(str))
    if not valid_items or valid_items & warm:
        return None
    return [i for i in train.items[F.ITEM_ID].astype(str) if i not in warm]


def selection_score(metrics: dict, ks) -> Optional[float]:
    """Mean of ``recall_at_K`` and ``ndcg_at_K`` over ``ks``: the epoch-selection signal.

    Averaging several cut-offs and both metrics makes it far less noisy than Recall@10
    alone, which on a validation split of a few thousand positives moves by about as much
    between neighbouring epochs as the epochs really differ.
    """
    values = [metrics.get(f"{name}_at_{k}") for k in ks for name in ("recall", "ndcg")]
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


class ValidationCallback(tf.keras.callbacks.Callback):
    """Adds ``val_recall_at_K`` / ``val_ndcg_at_K`` (K in ``ks``) and ``val_selection_score``
    (their mean over ``selection_ks``, see :func:`selection_score`) to the logs every
    ``every`` epochs. On a cold-item split the candidates are the cold items
    (:func:`cold_candidates`)."""

    def __init__(self, model: RetrievalModel, train, valid, every: int = 1, selection_ks=(10, 20, 50),
                 max_queries: int = 5000):
        super().__init__()
        self.retrieval, self.train, self.valid = model, train, valid
        self.every, self.max_queries = every, max_queries
        self.candidates = None  # set when training begins (a streamed fit hands the model over late)
        self.selection_ks = tuple(int(k) for k in selection_ks) or (10,)
        self.ks = tuple(sorted(set(self.selection_ks) | {10}))

    def on_train_begin(self, logs=None):
        self.candidates = cold_candidates(self.train, self.valid, self.retrieval.cfg.positive_task)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.every <= 0 or (epoch + 1) % self.every:
            return
        result = evaluate_model(self.retrieval, self.train, self.valid, self.ks, self.max_queries, self.candidates)
        logs.update({f"val_{k}": v for k, v in result.items()})
        score = selection_score(result, self.selection_ks)
        if score is not None:
            logs["val_selection_score"] = score


def patience_exhausted(history: dict, patience: int, monitor: str = C.MONITOR) -> bool:
    """True when the last ``patience`` validated epochs of ``history`` brought no better
    ``monitor`` than the epochs before them (never when ``patience`` is 0)."""
    values = [v for v in history.get(monitor, []) if v is not None]
    return 0 < patience < len(values) and max(values[-patience:]) <= max(values[:-patience])


class PatienceStop(tf.keras.callbacks.Callback):
    """Stops ``fit`` once ``patience`` validated epochs in a row bring no better ``monitor``.

    Reads the run's whole ``history`` (which :class:`~.checkpoints.EpochCheckpoint` keeps,
    earlier interrupted fits included), so a resumed run counts its patience from the
    epochs it already trained. Put it after the EpochCheckpoint callback.
    """

    def __init__(self, history: dict, patience: int, monitor: str = C.MONITOR):
        super().__init__()
        self.history, self.patience, self.monitor = history, int(patience), monitor
        self.stopped_epoch: Optional[int] = None

    def on_epoch_end(self, epoch, logs=None):
        if patience_exhausted(self.history, self.patience, self.monitor):
            self.model.stop_training = True
            self.stopped_epoch = epoch + 1
            log.info("early stopping after epoch %d: %s has not improved for %d validated epochs",
                     epoch + 1, self.monitor, self.patience)


class Throughput(tf.keras.callbacks.Callback):
    """Adds ``examples_per_second`` (training examples / epoch wall time) to the logs.

    Put it first in the callback list: its ``on_epoch_end`` then runs before validation.
    """

    def __init__(self, examples: int):
        super().__init__()
        self.examples = examples

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["examples_per_second"] = self.examples / max(time.perf_counter() - self._start, 1e-9)


# ---------------------------------------------------------------------- text


def text_inputs(train: schema.Tables, text_cfg: Optional[TextConfig]) -> tuple:
    """(text dict for :func:`build_retrieval_model`, encoder_factory) from a TextConfig.

    Frozen: item and profile texts embedded once through the cache. Finetune: the raw
    texts and a factory of ``KerasHubLayer`` around the encoder. None / 'none': no text.
    """
    if text_cfg is None or text_cfg.text_encoder == "none":
        return None, None
    from tfrs_multiscene.text.factory import build_text_encoder

    items = F.item_texts(train.items)
    users = F.user_texts(train.users)
    encoder = build_text_encoder(text_cfg, train_texts=items + users)
    if encoder is None:
        return None, None
    if text_cfg.text_mode == "finetune":
        from tfrs_multiscene.text.bridge import KerasHubLayer

        text = {"item_texts": items}
        if users:
            text["user_texts"] = users
        return text, lambda: KerasHubLayer(encoder)
    from tfrs_multiscene.text.cache import EmbeddingCache

    cache = EmbeddingCache(text_cfg.cache_dir)
    text = {"item_embeddings": cache.get_or_compute(encoder, items, batch_size=text_cfg.embed_batch_size)}
    if users:
        text["user_embeddings"] = cache.get_or_compute(encoder, users, batch_size=text_cfg.embed_batch_size)
    return text, None


# ---------------------------------------------------------------------- training


def make_optimizer(cfg: RetrievalConfig, examples: int) -> tf.keras.optimizers.Optimizer:
    """Adam at ``cfg.learning_rate``, with ``cfg.ema_momentum`` its weight average written into
    the model at every epoch end (``tfrs_multiscene.optimizers.adam``)."""
    return adam(cfg.learning_rate, cfg.ema_momentum, steps_per_epoch(examples, cfg.batch_size))


#: RetrievalConfig fields that may change when a run is resumed (train longer, stop sooner).
RESUMABLE_FIELDS = ("epochs", "early_stopping", "new_item_warm_cost")


def train_retrieval(split, cfg: RetrievalConfig, run_dir, text_cfg: Optional[TextConfig] = None,
                    text: Optional[dict] = None, encoder_factory: Optional[Callable] = None,
                    seed: int = 42, verbose: int = 1, callbacks=()) -> RetrievalResult:
    """Train (or resume, or warm-start) the two-tower model on ``split.train``.

    Args:
      split: a :class:`~tfrs_multiscene.data.splits.Split` (``.valid`` used for validation
        metrics when present) or a bare training :class:`Tables`.
      cfg: model and training settings; ``cfg.warm_start`` names a base run directory.
      run_dir: where checkpoints, logs, ``history.json`` and the model definition go. If it
        already holds checkpoints of this model, training resumes after the last epoch.
      text_cfg / text / encoder_factory: text features, either from a TextConfig (encoded
        and cached here) or given directly (see :func:`build_retrieval_model`).
      callbacks: extra Keras callbacks.

    Afterwards the model's ``new_item_offset`` is chosen on ``split.valid``
    (:mod:`~tfrs_multiscene.retrieval.new_items`) and kept beside the checkpoints.
    """
    if int(cfg.ensemble) > 1:
        result = _train_ensemble(split, cfg, run_dir, text_cfg, text, encoder_factory, seed, verbose, callbacks)
    else:
        result = _train_single(split, cfg, run_dir, text_cfg, text, encoder_factory, seed, verbose, callbacks)
    valid = None if isinstance(split, schema.Tables) else split.valid
    train = split if isinstance(split, schema.Tables) else split.train
    result.info["new_items"] = set_new_item_offset(result.model, train, valid, run_dir)
    return result


def set_new_item_offset(model: RetrievalModel, train: schema.Tables, valid: Optional[schema.Tables], run_dir) -> dict:
    """Choose ``model.new_item_offset`` on ``valid`` within ``model.cfg.new_item_warm_cost``,
    save the choice beside the checkpoints and return a summary for the run's info."""
    cost = float(model.cfg.new_item_warm_cost or 0.0)
    choice = new_items.choose_new_item_offset(model, train, valid, warm_cost=cost) if cost > 0 else None
    model.new_item_offset = choice.offset if choice is not None else 0.0
    if choice is None:
        (C.model_dir(run_dir) / new_items.FILE_NAME).unlink(missing_ok=True)
        return {"offset": 0.0, "reason": "no warm cost allowed" if cost <= 0 else
                "no validation positives or no item without an id embedding"}
    choice.save(C.model_dir(run_dir))
    at = {row["offset"]: row for row in choice.curve}
    zero, chosen = choice.curve[0], at[choice.offset]
    log.info("new items: score offset %.3f for items without an id embedding (validation selection score of "
             "simulated new items %.4f -> %.4f, of known items %.4f -> %.4f; allowed cost %.0f%%)",
             choice.offset, zero["new"], chosen["new"], zero["warm"], chosen["warm"], 100 * cost)
    return {"offset": choice.offset, "warm_cost": cost, "validation_positives": choice.validation_positives,
            "warm": [zero["warm"], chosen["warm"]], "new": [zero["new"], chosen["new"]]}


def _train_single(split, cfg: RetrievalConfig, run_dir, text_cfg, text, encoder_factory, seed, verbose,
                  callbacks) -> RetrievalResult:
    """One two-tower (no ensemble): see :func:`train_retrieval`."""
    train = split if isinstance(split, schema.Tables) else split.train
    valid = None if isinstance(split, schema.Tables) else split.valid
    tf.keras.utils.set_random_seed(seed)
    info = {"resumed_from_epoch": 0, "warm_start": cfg.warm_start}
    started = time.perf_counter()

    resuming = C.latest_checkpoint(run_dir) is not None
    if resuming:  # rebuild exactly what was being trained
        saved = C.load_config(run_dir)
        asked = C.structural_config(cfg, saved) if saved.warm_start else cfg  # a warm start took the base's shapes
        changed = differing_fields(dataclasses.asdict(saved), asked, RESUMABLE_FIELDS)
        if changed:
            raise RunConflict(f"{C.model_dir(run_dir)} holds a retrieval model trained with another configuration "
                              f"({', '.join(changed)}); resuming needs the same settings: train into a new --run "
                              "(or pass the saved ones)")
        cfg = dataclasses.replace(saved, epochs=cfg.epochs, early_stopping=cfg.early_stopping)
        spec = F.FeatureSpec.load(C.model_dir(run_dir))
        model = RetrievalModel(spec, cfg, encoder_factory or C.finetune_encoder_factory(run_dir, spec)).build_towers()
    else:
        if text is None:
            text, factory = text_inputs(train, text_cfg)
            encoder_factory = encoder_factory or factory
        base = None
        if cfg.warm_start:
            base = C.load_retrieval(cfg.warm_start, encoder_factory)
            cfg = C.structural_config(cfg, base.cfg)
        model = build_retrieval_model(train, cfg, text, base.spec if base else None, encoder_factory)
        if base is not None:
            info["warm_start_transfer"] = C.transfer_weights(base, model)
        C.save_definition(run_dir, model)
        C.save_text_config(run_dir, text_cfg)

    dataset, n = make_training_dataset(model.spec, train, cfg, seed)
    info["examples"] = n
    optimizer = make_optimizer(cfg, n)
    optimizer.build(model.trainable_variables)
    model.compile(optimizer=optimizer)
    state = C.CheckpointState(run_dir, model, optimizer)
    done = state.restore()
    history = C.read_history(run_dir) if done else {}
    if done:
        history = {k: v[:done] for k, v in history.items()}
    info["resumed_from_epoch"] = done

    cbs = [Throughput(n)]
    if valid is not None and cfg.validate_every > 0:
        cbs.append(ValidationCallback(model, train, valid, cfg.validate_every, cfg.selection_ks))
        if 0.0 < cfg.plateau_lr_factor < 1.0:
            cbs.append(tf.keras.callbacks.ReduceLROnPlateau(C.MONITOR, factor=cfg.plateau_lr_factor, patience=1,
                                                            mode="max", min_delta=0.0, verbose=verbose))
    stopper = PatienceStop(history, cfg.early_stopping)
    cbs += [C.EpochCheckpoint(state, history, run_dir), stopper,
            tf.keras.callbacks.TensorBoard(str(C.model_dir(run_dir) / "logs"), profile_batch=0)]
    cbs += list(callbacks)
    if done < cfg.epochs and not patience_exhausted(history, cfg.early_stopping):
        model.fit(dataset, epochs=cfg.epochs, initial_epoch=done, callbacks=cbs, verbose=verbose)
    info["stopped_early_after_epoch"] = stopper.stopped_epoch
    final = C.final_checkpoint(state, cfg)
    if final is not None and final != state.latest:
        C.CheckpointState(run_dir, model).restore(final, expect_partial=True)
    info["final_checkpoint"] = final
    info["seconds"] = time.perf_counter() - started
    info["epochs"] = len(history.get("epoch", []))
    return RetrievalResult(model, history, info)


# ---------------------------------------------------------------------- ensembles


def member_run_dir(run_dir, k: int) -> Path:
    """Run directory of ensemble member ``k`` (0-based): ``<run>/retrieval/members/<k+1>``."""
    return C.model_dir(run_dir) / "members" / str(k + 1)


def _train_ensemble(split, cfg: RetrievalConfig, run_dir, text_cfg, text, encoder_factory, seed, verbose,
                    callbacks) -> RetrievalResult:
    """``cfg.ensemble`` members, each a whole single-model training of its own (seed
    ``seed + k``, its own batch order, validation, early stopping and checkpoints, resumable)
    in :func:`member_run_dir`; then one :class:`RetrievalModel` whose
    :class:`~tfrs_multiscene.retrieval.towers.EnsembleTower` members take their weights,
    saved as the run's model. Independent trainings make the members differ more than side
    by side training on the same batches does, and the ensemble gains more from that.

    A warm start gives member ``k`` the base run's member ``k`` when the base is an ensemble,
    else the base model itself.
    """
    started = time.perf_counter()
    train = split if isinstance(split, schema.Tables) else split.train
    valid = None if isinstance(split, schema.Tables) else split.valid
    if text is None:
        text, factory = text_inputs(train, text_cfg)
        encoder_factory = encoder_factory or factory
    members = []
    for k in range(int(cfg.ensemble)):
        warm = cfg.warm_start
        if warm and member_run_dir(warm, k).exists():
            warm = str(member_run_dir(warm, k))
        member_cfg = dataclasses.replace(cfg, ensemble=1, warm_start=warm)
        log.info("ensemble member %d of %d (seed %d)", k + 1, cfg.ensemble, seed + k)
        members.append(_train_single(split, member_cfg, member_run_dir(run_dir, k), text_cfg, text,
                                     encoder_factory, seed=seed + k, verbose=verbose, callbacks=callbacks))
    model = RetrievalModel(members[0].model.spec, cfg, encoder_factory).build_towers()
    for (query_tower, candidate_tower), member in zip(model.member_towers, members):
        for dst, src in ((query_tower, member.model.query_model), (candidate_tower, member.model.candidate_model)):
            for a, b in zip(dst.variables, src.variables, strict=True):
                a.assign(b)
    C.save_definition(run_dir, model)
    C.save_text_config(run_dir, text_cfg)
    epochs = max(m.info["epochs"] for m in members)
    history = {"epoch": list(range(1, epochs + 1))}
    for k, member in enumerate(members):
        for key in ("loss", C.MONITOR):
            if key in member.history:
                history[f"member{k + 1}_{key}"] = member.history[key]
    info = {"members": [m.info for m in members], "epochs": epochs, "warm_start": cfg.warm_start,
            "examples": members[0].info["examples"], "resumed_from_epoch": members[0].info["resumed_from_epoch"]}
    if valid is not None and cfg.validate_every > 0:
        metrics = evaluate_model(model, train, valid, cfg.selection_ks)
        info["val_selection_score"] = selection_score(metrics, cfg.selection_ks)
        info["member_val_selection_scores"] = [max((v for v in m.history.get(C.MONITOR, []) if v is not None),
                                                   default=None) for m in members]
    state = C.CheckpointState(run_dir, model)
    info["final_checkpoint"] = state.save(epochs)
    C.write_history(C.model_dir(run_dir) / "history.json", history)
    info["seconds"] = time.perf_counter() - started
    return RetrievalResult(model, history, info)
