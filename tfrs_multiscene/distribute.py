"""tf.distribute for training: a strategy from the environment, the chief, sharded input.

* :func:`strategy_from_env` -> ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names
  several workers (synchronous data parallelism, gradients all-reduced every step),
  ``MirroredStrategy`` on one machine with several GPUs, else the default strategy.
  Build and compile the model under ``strategy.scope()``.
* :func:`is_chief` -> True on the task that writes checkpoints, exports and reports (the
  ``chief`` task, else ``worker`` 0; always True without TF_CONFIG).
* :func:`distribute_dataset` -> a dataset sharded by worker: each worker's input pipeline
  reads its own part (:func:`tfrs_multiscene.data.examples.read_examples` shards the
  TFRecord files by ``input_context``; in-memory datasets are sharded by element).
* :func:`checkpoint_dir` / :func:`save_checkpoint`: under MultiWorkerMirroredStrategy every
  worker must take part in a save (it is a collective), but only the chief's copy is kept;
  the others write to a temporary directory that is deleted.

``TF_CONFIG`` example (two workers on one host; each process sets its own ``index``)::

    {"cluster": {"worker": ["127.0.0.1:20001", "127.0.0.1:20002"]},
     "task": {"type": "worker", "index": 0}}

See docs/DISTRIBUTED.md for ParameterServerStrategy and the TFRS/TF limits.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import tfrs_multiscene  # noqa: F401  (Keras 2 before TensorFlow)


def tf_config(env: dict | None = None) -> dict:
    """The parsed ``TF_CONFIG`` ({} when unset). Raises ValueError on malformed JSON."""
    raw = (os.environ if env is None else env).get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        cfg = json.loads(raw)
    except ValueError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from None
    if not isinstance(cfg, dict) or ("cluster" in cfg and not isinstance(cfg["cluster"], dict)):
        raise ValueError("TF_CONFIG must be a JSON object with a 'cluster' mapping and a 'task'")
    return cfg


def worker_count(cfg: dict | None = None) -> int:
    """Number of training workers (chief + worker tasks) in ``TF_CONFIG`` (1 without it)."""
    cfg = tf_config() if cfg is None else cfg
    cluster = cfg.get("cluster", {})
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def task(cfg: dict | None = None) -> tuple:
    """``(task type, index)`` of this process (``("worker", 0)`` without TF_CONFIG)."""
    cfg = tf_config() if cfg is None else cfg
    t = cfg.get("task", {})
    return str(t.get("type", "worker")), int(t.get("index", 0))


def is_chief(cfg: dict | None = None) -> bool:
    """True on the task that writes checkpoints and exports: ``chief``, else ``worker`` 0."""
    cfg = tf_config() if cfg is None else cfg
    kind, index = task(cfg)
    if kind == "chief":
        return True
    has_chief = bool(cfg.get("cluster", {}).get("chief"))
    return kind == "worker" and index == 0 and not has_chief


def strategy_from_env(env: dict | None = None):
    """The tf.distribute strategy the environment asks for (see the module docstring).

    A cluster with ``ps`` tasks is refused here with a pointer to docs/DISTRIBUTED.md:
    ParameterServerStrategy needs a coordinator-driven training loop, not ``model.fit`` on
    every task.
    """
    import tensorflow as tf

    cfg = tf_config(env)
    cluster = cfg.get("cluster", {})
    if cluster.get("ps"):
        raise ValueError("TF_CONFIG names 'ps' tasks: ParameterServerStrategy is not started by "
                         "strategy_from_env (see docs/DISTRIBUTED.md, 'Embedding tables larger than one machine')")
    if worker_count(cfg) > 1:
        if env is not None and "TF_CONFIG" in env:
            os.environ["TF_CONFIG"] = env["TF_CONFIG"]
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def describe(strategy) -> dict:
    """What a run records about its distribution (strategy class, replicas, workers, task)."""
    kind, index = task()
    return {"strategy": type(strategy).__name__, "replicas": int(strategy.num_replicas_in_sync),
            "workers": worker_count(), "task_type": kind, "task_index": index, "chief": is_chief()}


def distribute_dataset(strategy, dataset_fn: Callable):
    """``strategy.distribute_datasets_from_function(dataset_fn)``: ``dataset_fn(input_context)``
    builds this worker's part (shard files or elements by ``input_context``) and batches by
    ``input_context.get_per_replica_batch_size(global_batch)``. Use with a custom loop or
    ``model.fit`` (with ``steps_per_epoch``)."""
    return strategy.distribute_datasets_from_function(dataset_fn)


def shard_dataset(dataset, input_context=None, num_workers: int | None = None, index: int | None = None):
    """Element-wise shard of an unbatched ``dataset`` for this worker (by ``input_context``,
    else by ``TF_CONFIG``): worker i keeps elements i, i+n, i+2n, ..."""
    if input_context is not None:
        num_workers, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    if num_workers is None:
        num_workers = worker_count()
        index = worker_index()
    return dataset.shard(num_workers, index) if num_workers > 1 else dataset


def worker_index(cfg: dict | None = None) -> int:
    """0-based position of this task among the training workers (the chief first)."""
    cfg = tf_config() if cfg is None else cfg
    kind, index = task(cfg)
    has_chief = bool(cfg.get("cluster", {}).get("chief"))
    return index + 1 if (kind == "worker" and has_chief) else (0 if kind == "chief" else index)


def checkpoint_dir(run_dir, cfg: dict | None = None) -> Path:
    """Where this task writes checkpoints: ``<run_dir>/checkpoints`` on the chief, a
    per-worker temporary directory elsewhere (delete it with :func:`cleanup_checkpoint_dir`)."""
    base = Path(run_dir) / "checkpoints"
    if is_chief(cfg):
        return base
    kind, index = task(cfg)
    return Path(run_dir) / f".tmp_checkpoints_{kind}_{index}"


def cleanup_checkpoint_dir(run_dir, cfg: dict | None = None) -> None:
    """Remove a non-chief task's temporary checkpoint directory (no-op on the chief)."""
    if not is_chief(cfg):
        shutil.rmtree(checkpoint_dir(run_dir, cfg), ignore_errors=True)


def save_checkpoint(checkpoint, run_dir, cfg: dict | None = None) -> str | None:
    """Save ``checkpoint`` (a ``tf.train.Checkpoint``) from every task, keep the chief's.

    Every worker must call this at the same point (the save is a collective under
    MultiWorkerMirroredStrategy). Returns the chief's checkpoint path (None elsewhere).
    """
    directory = checkpoint_dir(run_dir, cfg)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint.save(str(directory / "ckpt"))
    if is_chief(cfg):
        return path
    cleanup_checkpoint_dir(run_dir, cfg)
    return None
