"""One training worker for tests/test_multiworker.py (also runnable by hand).

Trains the project's TFRS two-tower (tfrs_multiscene.retrieval) on a small seeded synthetic
world under ``tfrs_multiscene.distribute.strategy_from_env()``: MultiWorkerMirroredStrategy
when TF_CONFIG names several workers, the default strategy otherwise. Every worker builds
the same data; tf.distribute shards it by worker. Writes a JSON result to ``--out``:
weight checksums after the first step and at the end, per-epoch loss, median step time,
and (on the chief) Recall@10 / NDCG@10 on a held-out split.

    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:P0", "127.0.0.1:P1"]},
                "task": {"type": "worker", "index": 0}}' \
        python tests/multiworker_worker.py --out w0.json --run RUN_DIR
"""

import argparse
import hashlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import tensorflow as tf

import tfrs_multiscene  # noqa: F401
from tfrs_multiscene import distribute
from tfrs_multiscene.config import GenerateConfig, RetrievalConfig, SplitConfig
from tfrs_multiscene.data.splits import make_split
from tfrs_multiscene.data.synthetic import generate
from tfrs_multiscene.retrieval.model import build_retrieval_model
from tfrs_multiscene.retrieval.train import evaluate_model, make_training_dataset


def checksum(model) -> str:
    """sha256 of every weight's bytes, in the model's weight order."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


class Recorder(tf.keras.callbacks.Callback):
    """Checksum after the first step and wall time of every step."""

    def __init__(self):
        super().__init__()
        self.first = None
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._t)
        if self.first is None:
            self.first = checksum(self.model)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128, help="global batch size")
    ap.add_argument("--impressions", type=int, default=8000)
    args = ap.parse_args(argv)
    try:  # two workers share 2 cores; impossible (and unneeded) once TF has started in-process
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass

    strategy = distribute.strategy_from_env()
    tables = generate(GenerateConfig(users=200, items=100, impressions=args.impressions, seed=5))
    split = make_split(tables, SplitConfig(split="random", test_fraction=0.2, valid_fraction=0.0, seed=1))
    cfg = RetrievalConfig(embedding_dim=16, feature_dim=16, batch_size=args.batch, epochs=args.epochs,
                          learning_rate=0.02, id_dropout=0.0, history_length=5)
    tf.keras.utils.set_random_seed(7)
    with strategy.scope():
        model = build_retrieval_model(split.train, cfg)
        model.compile(optimizer=tf.keras.optimizers.Adam(cfg.learning_rate))
    dataset, n = make_training_dataset(model.spec, split.train, cfg, seed=7, shuffle=False)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    steps = n // cfg.batch_size  # full global batches only: every worker runs the same steps
    rec = Recorder()
    history = model.fit(dataset.repeat(), epochs=cfg.epochs, steps_per_epoch=steps, callbacks=[rec], verbose=0)
    ckpt = tf.train.Checkpoint(model=model)
    saved = distribute.save_checkpoint(ckpt, args.run)
    result = {
        "task": distribute.task(), "chief": distribute.is_chief(), **distribute.describe(strategy),
        "steps_per_epoch": steps, "first_step_checksum": rec.first, "final_checksum": checksum(model),
        "loss": [float(x) for x in history.history["loss"]],
        "median_step_seconds": float(np.median(rec.times[2:])) if len(rec.times) > 2 else None,
        "checkpoint": saved,
    }
    if distribute.is_chief():
        result["eval"] = evaluate_model(model, split.train, split.test, ks=(10,))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
