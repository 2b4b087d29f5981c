"""Experiment: what does each allowed warm cost buy new items, read on the test splits?

For a run that ``evaluate`` gave a cold-start model (RUN/cold_start), for each allowed warm
cost: the new-item offset each model chooses on its own validation split (as training
does), then on the test splits the known-item accuracy of the run's model (Recall@10,
NDCG@10 of the random split) and the cold items' recall among all items of the
cold-start model (recall_all@50 and their share of the top-50 slots), TF-IDF beside it.
The costs are compared, not chosen, here (docs/experiments/cold-item-offset.md).

    .venv/bin/python scripts/new_item_frontier.py runs/bench_real/amazon2018
"""
import json
import sys

import tfrs_multiscene  # noqa: F401  (first: Keras 2 for TFRS)
from tfrs_multiscene.evaluation.protocol import HeldOutProtocol
from tfrs_multiscene.evaluation.run_evaluation import _item_texts, _positive_label, cold_item_split
from tfrs_multiscene.retrieval.checkpoints import load_retrieval
from tfrs_multiscene.retrieval.new_items import choose_new_item_offset
from tfrs_multiscene.run import RunDir

COSTS = (0.0, 0.01, 0.02, 0.05, 0.10, 0.20)

run = RunDir(sys.argv[1])
cfg = run.load_config()
split = run.load_split()
cold = cold_item_split(split, cfg.split)
warm_model, cold_model = load_retrieval(run.path), load_retrieval(run.path / "cold_start")
warm_protocol = HeldOutProtocol(split, _positive_label(split.train, warm_model.cfg))
cold_protocol = HeldOutProtocol(cold, _positive_label(cold.train, cold_model.cfg))
rows = []
for cost in COSTS:
    row = {"warm_cost": cost}
    for name, model, part in (("warm", warm_model, split), ("cold", cold_model, cold)):
        choice = choose_new_item_offset(model, part.train, part.valid, warm_cost=cost) if cost > 0 else None
        model.new_item_offset = choice.offset if choice is not None else 0.0
        row[f"{name}_offset"] = model.new_item_offset
    std = warm_protocol.evaluate({"model": warm_protocol.model_scores(warm_model)}, [10])["retrieval"]["standard"]["model"]
    out = cold_protocol.evaluate({"model": cold_protocol.model_scores(cold_model)}, [50], cold_items=cold.info["test_items"])
    c = out["retrieval"]["cold_start"]["model"]
    row.update({"recall@10": std["recall@10"], "ndcg@10": std["ndcg@10"], "cold recall_all@50": c["recall_all@50"],
                "cold_slot_share@50": c["cold_slot_share@50"]})
    print(json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
    rows.append(row)
tfidf = cold_protocol.fit_baselines(["tfidf"], _item_texts(cold.train.items))
c = cold_protocol.evaluate(tfidf, [50], cold_items=cold.info["test_items"])["retrieval"]["cold_start"]["tfidf"]
ease = warm_protocol.fit_baselines(["ease"], None)
e = warm_protocol.evaluate(ease, [10])["retrieval"]["standard"]["ease"]
print(json.dumps({"tfidf cold recall_all@50": round(c["recall_all@50"], 4),
                  "tfidf cold_slot_share@50": round(c["cold_slot_share@50"], 4),
                  "ease recall@10": round(e["recall@10"], 4), "ease ndcg@10": round(e["ndcg@10"], 4),
                  "cold_interaction_share": round(len(cold.test.interactions) / sum(
                      len(p.interactions) for p in (cold.train, cold.valid, cold.test)), 4)}))
