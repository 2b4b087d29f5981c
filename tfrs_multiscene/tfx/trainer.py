"""Training from preprocessed tf.train.Example TFRecords, and the TFX Trainer module (``run_fn``).

Two users:

* ``tfrs-multiscene train --examples DIR`` (and multi-worker training): the retrieval model
  streams the Beam output (:func:`train_retrieval_from_examples`), sharded by worker and
  interleaved, so the interactions never have to fit in memory; the item/user tables and
  vocabularies come from the preprocess directory.
* TFX: ``Trainer(module_file=tfrs_multiscene/tfx/user_module/tfrs_multiscene_trainer.py)``
  (a one-line module that re-exports :func:`run_fn`; see ``pipelines/tfx_pipeline.py``) or
  ``Trainer(run_fn="tfrs_multiscene.tfx.trainer.run_fn")`` calls :func:`run_fn`, which
  trains retrieval (streaming) and ranking from ExampleGen's splits and writes the
  end-to-end ``recommender`` SavedModel to ``fn_args.serving_model_dir`` and the run
  directory (checkpoints, the other servables) to ``fn_args.model_run_dir``.

This module never imports ``tfx`` (``fn_args`` is duck-typed: TFX's ``FnArgs`` or any object
with its fields), so it imports on machines without TFX.

``custom_config`` keys of :func:`run_fn`: ``preprocess_dir`` (required: vocabularies, items,
users), ``retrieval`` / ``ranking`` / ``text`` / ``export`` (dicts of the config sections'
fields), ``train_ranking`` (bool, default True).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import tfrs_multiscene  # noqa: F401  (Keras 2 before TensorFlow)
from tfrs_multiscene import distribute
from tfrs_multiscene.config import (
    ExportConfig,
    RankingConfig,
    RetrievalConfig,
    TextConfig,
    from_dict,
)
from tfrs_multiscene.data import examples as E
from tfrs_multiscene.data import schema as S

# --------------------------------------------------------------------------- retrieval from examples


def positive_key(features: dict, positive_task: str | None = None) -> str | None:
    """The label feature marking a retrieval positive (None: every example is one)."""
    from tfrs_multiscene.retrieval.features import POSITIVE_TASKS

    if positive_task:
        if positive_task not in features:
            raise ValueError(f"positive_task {positive_task!r} is not an example feature; have {sorted(features)}")
        return positive_task
    return next((t for t in POSITIVE_TASKS if t in features), None)


def _catalogue(items: pd.DataFrame, users: pd.DataFrame | None) -> S.Tables:
    """Tables with the item/user tables and no interactions (column kinds, text)."""
    return S.Tables(pd.DataFrame({c: pd.Series(dtype=str) for c in (S.USER_ID, S.ITEM_ID, S.SCENARIO)}), items, users)


def retrieval_spec(info: dict, items: pd.DataFrame, users: pd.DataFrame | None, history_length: int,
                   text: dict | None = None):
    """A retrieval ``FeatureSpec`` from the preprocess outputs instead of in-memory Tables:
    ids from the vocabularies (items: those with positives), categorical values from the
    item/user tables, log-Q frequencies from ``item_frequency.json``."""
    from tfrs_multiscene.retrieval.features import FeatureSpec

    catalogue = _catalogue(items, users)
    freq = info["item_frequency"]
    item_table_ids = items[S.ITEM_ID].astype(str).tolist()
    text = dict(text or {})

    def values(frame, column):
        return sorted({str(v) for v in frame[column].dropna()} - {""})

    return FeatureSpec(
        user_ids=sorted(info["vocab"].vocabulary(S.USER_ID)),
        item_ids=sorted(i for i in item_table_ids if freq.get(i, 0) > 0),
        scenarios=sorted(info["vocab"].vocabulary(S.SCENARIO)),
        user_categorical={c: values(users, c) for c in catalogue.user_categorical_columns()},
        item_categorical={c: values(items, c) for c in catalogue.item_categorical_columns()},
        item_table_ids=item_table_ids,
        user_table_ids=users[S.USER_ID].astype(str).tolist() if users is not None else [],
        item_frequency=[int(freq.get(i, 0)) for i in item_table_ids],
        history_length=int(history_length),
        item_text=text.get("item_embeddings"), user_text=text.get("user_embeddings"),
        item_text_strings=text.get("item_texts"), user_text_strings=text.get("user_texts"))


def training_filter(features: dict, positive_task: str | None = None, split: E.HashedSplit | None = None):
    """``example -> bool`` keeping the retrieval positives of the training part of ``split``
    (every positive without a split; None when that is every example)."""
    import tensorflow as tf

    pos = positive_key(features, positive_task)
    keep_train = split.filter_fn("train") if split is not None else None
    if pos is None and keep_train is None:
        return None
    if keep_train is None:
        return lambda ex: ex[pos] > 0
    if pos is None:
        return keep_train
    return lambda ex: tf.logical_and(ex[pos] > 0, keep_train(ex))


def train_item_frequency(out_dir, positive_task: str | None = None, split: E.HashedSplit | None = None,
                         files=None) -> dict:
    """item_id -> training positives (log-Q counts), streamed (the preprocess's
    ``item_frequency.json`` counts every row, held-out ones included)."""
    info = E.load_info(out_dir, need_shards=files is None)
    ids = E.read_column(out_dir, S.ITEM_ID, training_filter(info["features"], positive_task, split), files)
    values, counts = np.unique(np.asarray([i.decode("utf-8") for i in ids], dtype=object), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}


def retrieval_dataset(out_dir, spec, cfg: RetrievalConfig, input_context=None, files=None, seed: int = 42,
                      repeat: bool = False, shuffle: bool = True, split: E.HashedSplit | None = None,
                      items: pd.DataFrame | None = None):
    """Batches in the retrieval model's training format (``query``, ``candidate``,
    ``weight``, ``item_row``, ``probability``) streamed from the examples' positives (of
    ``split``'s training part when given: held-out rows never reach the model).

    The query ``history`` is the examples' ``history`` feature (the user's positives
    strictly before the interaction, written by the preprocess), else empty padding. With
    ``cfg.mixed_negatives`` each batch also gets uniform catalogue negatives, as in memory
    (``retrieval.train.MixedNegatives``), drawn from (seed + input pipeline, batch number);
    their features come from ``items`` (default: the item table in ``out_dir``). With
    ``cfg.mask_known_positives`` the stored history's items leave each query's negatives.
    """
    import tensorflow as tf

    from tfrs_multiscene.retrieval import features as F
    from tfrs_multiscene.retrieval.model import (
        CANDIDATE,
        ITEM_ROW,
        KNOWN_ROWS,
        PROBABILITY,
        QUERY,
        WEIGHT,
    )

    info = E.load_info(out_dir, need_shards=files is None)
    features = info["features"]
    ds, _ = E.read_examples(out_dir, batch_size=cfg.batch_size, shuffle=shuffle, seed=seed,
                            input_context=input_context, repeat=repeat, drop_remainder=repeat, files=files,
                            filter_fn=training_filter(features, cfg.positive_task, split))
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(spec.item_table_ids), tf.string), tf.range(len(spec.item_table_ids), dtype=tf.int64)), -1)
    probability = tf.constant(spec.candidate_probability())
    user_keys = {c: (f"user_{c}" if f"user_{c}" in features else c) for c in spec.user_categorical}
    length = max(1, spec.history_length)

    def to_training_batch(b):
        n = tf.shape(b[S.ITEM_ID])[0]
        rows = table.lookup(b[S.ITEM_ID])
        history = b[F.HISTORY] if F.HISTORY in b else tf.fill([n, length], F.PAD)
        query = {F.USER_ID: b[S.USER_ID], F.SCENARIO: b[S.SCENARIO], F.HISTORY: history}
        query.update({c: b[k] for c, k in user_keys.items()})
        candidate = {F.ITEM_ID: b[S.ITEM_ID], **{c: b[c] for c in spec.item_categorical}}
        weight = b[S.WEIGHT] if S.WEIGHT in b else tf.ones([n], tf.float32)
        batch = {QUERY: query, CANDIDATE: candidate, WEIGHT: weight, ITEM_ROW: rows,
                 PROBABILITY: tf.gather(probability, tf.maximum(rows, 0))}
        if cfg.mask_known_positives:  # the stored history is what the stream knows of the user
            batch[KNOWN_ROWS] = table.lookup(history)
        return batch

    ds = ds.map(to_training_batch, num_parallel_calls=tf.data.AUTOTUNE)
    if cfg.mixed_negatives:
        from tfrs_multiscene.retrieval.train import MixedNegatives

        negatives = MixedNegatives(spec, items if items is not None else E.load_frames(out_dir)[0], cfg)
        stream = seed + (input_context.input_pipeline_id if input_context is not None else 0)
        ds = ds.enumerate().map(lambda step, batch: negatives.add(batch, negatives.draw_stateless(stream, step)),
                                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def train_retrieval_from_examples(out_dir, cfg: RetrievalConfig, run_dir, *, files=None,
                                  text_cfg: TextConfig | None = None, strategy=None, seed: int = 42,
                                  steps_per_epoch: int | None = None, verbose: int = 0,
                                  split: E.HashedSplit | None = None, callbacks=()):
    """Train the two-tower model streaming the preprocessed examples under ``strategy``
    (default :func:`distribute.strategy_from_env`). Only the chief keeps the checkpoint and
    model definition, in the layout ``retrieval.checkpoints.load_retrieval(run_dir)`` reads.

    With ``split`` only its training rows are read (filtered inside ``tf.data``), and the
    item vocabulary, log-Q frequencies and steps per epoch come from those rows (one extra
    streamed pass over the item ids), as the in-memory trainer takes them from
    ``split.train``. ``callbacks``: extra Keras callbacks (e.g. validation).

    Returns ``(RetrievalModel, history dict, info dict)``.
    """
    import tensorflow as tf

    from tfrs_multiscene.optimizers import adam
    from tfrs_multiscene.retrieval import checkpoints as C
    from tfrs_multiscene.retrieval.model import RetrievalModel
    from tfrs_multiscene.retrieval.train import text_inputs

    strategy = strategy or distribute.strategy_from_env()
    info = E.load_info(out_dir, need_shards=files is None)
    if split is not None:
        info["item_frequency"] = train_item_frequency(out_dir, cfg.positive_task, split, files)
    items, users = E.load_frames(out_dir)
    text, factory = text_inputs(_catalogue(items, users), text_cfg)
    tf.keras.utils.set_random_seed(seed)
    positives = sum(info["item_frequency"].values())
    steps = steps_per_epoch or max(1, positives // cfg.batch_size)
    with strategy.scope():
        spec = retrieval_spec(info, items, users, cfg.history_length, text)
        model = RetrievalModel(spec, cfg, factory).build_towers()
        optimizer = adam(cfg.learning_rate, cfg.ema_momentum, steps)
        model.compile(optimizer=optimizer)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    dataset = distribute.distribute_dataset(
        strategy, lambda ctx: retrieval_dataset(out_dir, spec, cfg, ctx, files=files, seed=seed, repeat=True,
                                                split=split, items=items))
    history = model.fit(dataset, epochs=cfg.epochs, steps_per_epoch=steps, verbose=verbose,
                        callbacks=list(callbacks)).history
    epoch.assign(cfg.epochs)
    if distribute.is_chief():
        C.save_definition(run_dir, model)
        C.save_text_config(run_dir, text_cfg)
        C.write_history(C.model_dir(run_dir) / "history.json", history)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    path = distribute.save_checkpoint(checkpoint, C.model_dir(run_dir))
    return model, history, {"steps_per_epoch": steps, "examples": positives, "checkpoint": path,
                            **distribute.describe(strategy)}


# --------------------------------------------------------------------------- in-memory tables from examples


def examples_to_tables(out_dir, files=None, max_rows: int | None = None, filter_fn=None) -> S.Tables:
    """The interactions of the examples as in-memory Tables (for ranking and evaluation,
    which need them whole): the interaction columns only, items/users from ``out_dir``;
    ``filter_fn`` as :func:`~tfrs_multiscene.data.examples.read_examples`'s."""
    ds, info = E.read_examples(out_dir, batch_size=8192, shuffle=False, files=files, filter_fn=filter_fn)
    items, users = E.load_frames(out_dir)
    joined = set(items.columns) | set(users.columns if users is not None else ()) | {"user_" + c for c in (users.columns if users is not None else ())}
    keep = [k for k in info["features"] if k in (S.USER_ID, S.ITEM_ID, S.SCENARIO) or k not in joined]
    keep = [k for k in keep if not k.endswith("_idx") and not info["features"][k].get("shape")]
    columns = {k: [] for k in keep}
    rows = 0
    for batch in ds:
        for k in keep:
            columns[k].append(batch[k].numpy())
        rows += int(batch[S.ITEM_ID].shape[0])
        if max_rows and rows >= max_rows:
            break
    frame = pd.DataFrame({k: np.concatenate(v) if v else np.array([]) for k, v in columns.items()})
    for k in keep:
        if frame[k].dtype == object:
            frame[k] = frame[k].map(lambda b: b.decode("utf-8") if isinstance(b, bytes) else b)
    tasks = [t for t in S.KNOWN_TASKS if t in frame.columns]
    for t in tasks:
        frame[t] = frame[t].astype(np.int64)
    return S.Tables(frame, items, users, tuple(tasks))


def examples_split(out_dir, rule: E.HashedSplit, files=None):
    """The run's :class:`~tfrs_multiscene.data.splits.Split` of the examples by ``rule``
    (one streamed pass; rows in (timestamp, user, item, scenario) order whatever the shard
    layout; the interaction columns of every part are kept in memory, as
    ``evaluate`` and the ranking trainer need them). ``info`` records the rule
    (``hashed_rule``, from which :meth:`HashedSplit.from_dict` rebuilds it), counts and
    actual fractions, and per kind the test/valid start timestamps or held-out items."""
    from tfrs_multiscene.data.splits import Split

    whole = examples_to_tables(out_dir, files=files)
    # a canonical row order: the examples' order depends on the shard layout and the runner
    order = [c for c in (S.TIMESTAMP, S.USER_ID, S.ITEM_ID, S.SCENARIO) if c in whole.interactions.columns]
    frame = whole.interactions.sort_values(order, kind="stable").reset_index(drop=True)
    part = rule.frame_part(frame)
    parts = {name: whole.with_interactions(frame[part == code].reset_index(drop=True))
             for name, code in E.PARTS.items()}
    counts = {name: len(t.interactions) for name, t in parts.items()}
    info = {"kind": rule.kind, "test_fraction": rule.test_fraction, "valid_fraction": rule.valid_fraction,
            "seed": rule.seed, "rule": "hashed (train --examples)", "hashed_rule": rule.to_dict(),
            "source": str(out_dir), "counts": counts,
            "actual_fractions": {k: v / max(len(frame), 1) for k, v in counts.items()}}
    if rule.kind == "temporal":
        for name, start in (("test", rule.test_start), ("valid", rule.valid_start)):
            if start is not None:
                info[f"{name}_start_timestamp"] = int(start)
    if rule.kind == "cold_item":
        for name in ("test", "valid"):
            info[f"{name}_items"] = sorted(parts[name].interactions[S.ITEM_ID].astype(str).unique().tolist())
    valid = parts["valid"] if counts["valid"] else None
    return Split(parts["train"], valid, parts["test"], info)


# --------------------------------------------------------------------------- TFX run_fn


def _section(cls, custom: dict, key: str):
    return from_dict(cls, custom.get(key) or {}, f"custom_config.{key}")


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (generic trainer, ``GenericExecutor``).

    Reads the ``FnArgs`` fields of TFX 1.21 (``tfx/components/trainer/fn_args_utils.py``):
    ``train_files`` / ``eval_files`` (lists of *glob patterns*, ``<split uri>/*``, over
    ExampleGen's GZIP TFRecords of the preprocess examples), ``train_steps`` (None unless
    ``TrainArgs.num_steps``), ``custom_config`` (see the module docstring; None when unset),
    ``model_run_dir`` and ``serving_model_dir`` (``<Model uri>/Format-Serving``, which the
    executor requires to exist afterwards). ``schema_path`` / ``data_accessor`` /
    ``transform_graph_path`` are not used: the parsing spec is the preprocess's
    ``features.json``. Trains retrieval (streaming, under the strategy TF_CONFIG asks for)
    and ranking, exports the servables into the run directory, and copies the end-to-end
    ``recommender`` into ``serving_model_dir``. Remote (gs://) artifact URIs are written
    through a local staging directory.
    """
    from tfrs_multiscene.data.splits import Split
    from tfrs_multiscene.export.servables import export_from_models
    from tfrs_multiscene.tfx import fsutil

    custom = dict(getattr(fn_args, "custom_config", None) or {})
    if not custom.get("preprocess_dir"):
        raise ValueError("custom_config['preprocess_dir'] must name the `tfrs-multiscene preprocess` output "
                         "(vocabularies, items, users)")
    train_files = list(getattr(fn_args, "train_files", None) or [])
    eval_files = list(getattr(fn_args, "eval_files", None) or [])
    if not train_files:
        raise ValueError("fn_args.train_files is empty: the Trainer needs ExampleGen's 'train' split")
    pre = custom["preprocess_dir"]
    retrieval_cfg = _section(RetrievalConfig, custom, "retrieval")
    text_cfg = _section(TextConfig, {"text": {"text_encoder": "none", **(custom.get("text") or {})}}, "text")
    export_cfg = _section(ExportConfig, {"export": {"index": "brute_force", "stock_index": "none",
                                                   **(custom.get("export") or {})}}, "export")
    total = getattr(fn_args, "train_steps", None)  # TFX counts steps over the whole run
    steps = max(1, int(total) // max(1, retrieval_cfg.epochs)) if total else None
    remote = fsutil.is_remote(fn_args.model_run_dir) or fsutil.is_remote(fn_args.serving_model_dir)
    with tempfile.TemporaryDirectory() as staging:
        run_dir = Path(staging) / "run" if remote else Path(fsutil.local_path(fn_args.model_run_dir))
        model, history, info = train_retrieval_from_examples(pre, retrieval_cfg, run_dir, files=train_files,
                                                             text_cfg=text_cfg, steps_per_epoch=steps)
        if not distribute.is_chief():
            # TFX's GenericExecutor raises "run_fn failed to generate model" when serving_model_dir
            # is missing after run_fn, on every worker; only the chief writes the model into it.
            fsutil.makedirs(fn_args.serving_model_dir)
            return
        ranking_model = None
        items, users = E.load_frames(pre)
        if custom.get("train_ranking", True):
            from tfrs_multiscene.ranking.train import train_ranking

            train = examples_to_tables(pre, files=train_files)
            valid = examples_to_tables(pre, files=eval_files) if eval_files else None
            ranking = train_ranking(Split(train, valid, valid or train, {}), _section(RankingConfig, custom, "ranking"),
                                    run_dir, verbose=0, tensorboard=False)
            ranking_model = ranking.model
        summary = {"retrieval": {"history": history, **info}}
        if ranking_model is not None:
            with tempfile.TemporaryDirectory() as tmp:
                paths = export_from_models(Path(tmp) / "models", model, ranking_model, items, users, export_cfg)
                shutil.copytree(Path(tmp) / "models", run_dir / "models", dirs_exist_ok=True)
            serving = run_dir / "models" / "recommender" / Path(paths["recommender"]).name
            summary["servables"] = {k: str(run_dir / "models" / k / Path(v).name) for k, v in paths.items()}
        else:
            serving = _export_retrieval_only(model, items, export_cfg, run_dir)
            summary["servables"] = {"retrieval": str(serving)}
        (run_dir / "tfx_trainer.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
        fsutil.copy_tree(serving, fn_args.serving_model_dir)
        if remote:
            fsutil.copy_tree(run_dir, fn_args.model_run_dir)


def _export_retrieval_only(model, items: pd.DataFrame, export_cfg: ExportConfig, run_dir: Path) -> Path:
    """Export the retrieval servable (stock-op brute force index) under ``run_dir/models``."""
    import tensorflow as tf

    from tfrs_multiscene.export.index import build_index
    from tfrs_multiscene.export.servables import export_retrieval
    from tfrs_multiscene.retrieval.new_items import index_towers

    ids = items[S.ITEM_ID].astype(str).to_numpy()
    depth = int(min(export_cfg.top_k, len(ids)))
    query_model, candidates = index_towers(model, items)
    index = build_index("brute_force", query_model, ids, candidates, depth)
    spec = {k: tf.TensorSpec([None], tf.string) for k in (S.USER_ID, S.SCENARIO, *model.spec.user_categorical)}
    spec["history"] = tf.TensorSpec([None, None], tf.string)
    return export_retrieval(run_dir / "models", query_model, index, spec,
                            default_k=min(export_cfg.default_k, depth))
