"""Probe: would a score offset for unknown-id items let cold items compete among all items?

Reads a run that `evaluate` gave a cold-start model (RUN/cold_start), rebuilds its
cold-item split, and scores the cold test items among ALL items (recall_all@K) with the
two-tower's scores plus a constant offset on every item the model has no id for, for a
grid of offsets; TF-IDF beside it. The offsets are read against the TEST split: this
measures the headroom of the mechanism, it chooses nothing (docs/experiments/cold-item-offset.md).

    .venv/bin/python scripts/cold_offset_probe.py runs/bench_real/amazon2018
"""
import dataclasses
import sys

import numpy as np

import tfrs_multiscene  # noqa: F401  (first: Keras 2 for TFRS)
from tfrs_multiscene.run import RunDir
from tfrs_multiscene.data.splits import make_split
from tfrs_multiscene.evaluation.run_evaluation import _whole, _positive_label, _item_texts
from tfrs_multiscene.evaluation.protocol import HeldOutProtocol
from tfrs_multiscene.retrieval.checkpoints import load_retrieval

run = RunDir(sys.argv[1])
cfg = run.load_config()
split = run.load_split()
cold = make_split(_whole(split), dataclasses.replace(cfg.split, split="cold_item"))
model = load_retrieval(run.path / "cold_start")
cold_items = set(map(str, cold.info["test_items"]))
label = _positive_label(cold.train, model.cfg)
known_vocab = set(map(str, model.spec.item_ids))
protocol = HeldOutProtocol(cold, label)
base_fn = protocol.model_scores(model)
oov = np.array([str(i) not in known_vocab for i in protocol.index.item_ids])
print("unknown-id columns", oov.sum(), "of", len(oov), "; cold test items", len(cold_items))
fits = protocol.fit_baselines(["tfidf"], _item_texts(cold.train.items))


def with_offset(delta):
    return lambda rows, scenario=None: base_fn(rows, scenario) + delta * oov[None, :]


for name, delta in [("model", 0.0)] + [(f"offset {d}", d) for d in (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)]:
    fn = with_offset(delta)
    out = protocol.evaluate({name: fn}, [10, 50], cold_items=cold.info["test_items"])
    row = out["retrieval"]["cold_start"][name]
    print(name, round(float(delta), 4), {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}, flush=True)
out = protocol.evaluate(fits, [10, 50], cold_items=cold.info["test_items"])
print("tfidf", {k: round(v, 4) for k, v in out["retrieval"]["cold_start"]["tfidf"].items() if isinstance(v, float)})
