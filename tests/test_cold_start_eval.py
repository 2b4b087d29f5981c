"""Cold-start evaluation when some users' only interactions are on the held-out cold items.

Such users have no training interaction, hence no row in the training index: they are left
out of the comparison and counted (``split.users_without_history``). Before this was handled,
``evaluate``'s cold-start step died with ``ValueError: N interactions of users not in the
index ... pass unknown_users='drop'`` (seen on Amazon 2018).
"""

import types

import numpy as np
import pandas as pd
from tfrs_multiscene import config as C
from tfrs_multiscene.data.schema import Tables
from tfrs_multiscene.data.splits import make_split
from tfrs_multiscene.evaluation.interactions import InteractionIndex
from tfrs_multiscene.evaluation.protocol import HeldOutProtocol
from tfrs_multiscene.evaluation.retrieval_eval import evaluate_retrieval

COLD_CFG = C.SplitConfig(split="cold_item", test_fraction=0.25, valid_fraction=0.2, seed=3)


def world() -> tuple:
    """(Tables, cold-item split info): 12 users with 4-6 items each over 16 items, plus
    'lonely_test' (all interactions on held-out test items) and 'lonely_valid' (one
    validation cold item and one test cold item: known history but no training row)."""
    rng = np.random.default_rng(0)
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(16)],
                          "title": [f"item {j} word{j % 4}" for j in range(16)]})
    rows = [(f"u{u}", f"i{j}", "s") for u in range(12)
            for j in rng.choice(16, size=int(rng.integers(4, 7)), replace=False)]
    base = Tables(pd.DataFrame(rows, columns=["user_id", "item_id", "scenario"]), items)
    info = make_split(base, COLD_CFG).info
    test_items, valid_items = info["test_items"], info["valid_items"]
    lonely = [("lonely_test", test_items[0], "s"), ("lonely_test", test_items[1], "s"),
              ("lonely_valid", valid_items[0], "s"), ("lonely_valid", test_items[0], "s")]
    inter = pd.concat([base.interactions, pd.DataFrame(lonely, columns=base.interactions.columns)],
                      ignore_index=True)
    return base.with_interactions(inter), info


def test_the_fixture_has_users_without_training_history():
    tables, info = world()
    cold = make_split(tables, COLD_CFG)
    assert cold.info["test_items"] == info["test_items"]  # the lonely users did not change the held-out items
    train_users = set(cold.train.interactions["user_id"])
    assert {"lonely_test", "lonely_valid"}.isdisjoint(train_users)
    assert "lonely_valid" in set(cold.valid.interactions["user_id"])


def test_protocol_cold_start_leaves_users_without_history_out_and_counts_them():
    tables, _ = world()
    cold = make_split(tables, COLD_CFG)
    protocol = HeldOutProtocol(cold, None)
    fitted = protocol.fit_baselines(["popularity", "tfidf"], cold.train.items["title"].tolist())
    out = protocol.evaluate(fitted, ks=(1, 2), cold_items=cold.info["test_items"])  # raised ValueError before
    split = out["split"]
    lonely_rows = cold.test.interactions["user_id"].isin(["lonely_test", "lonely_valid"]).sum()
    assert split["users_without_history"] == 2
    assert split["test_interactions_unknown_user"] == lonely_rows == 3
    assert split["known_interactions_without_history"] == 1  # lonely_valid's validation row
    scored = cold.test.interactions[~cold.test.interactions["user_id"].str.startswith("lonely")]["user_id"].nunique()
    assert out["retrieval"]["cold_start"]["popularity"]["users"] == scored
    assert split["test_users"] == scored


def test_evaluate_retrieval_with_known_users_outside_the_index():
    items = pd.DataFrame({"item_id": ["i0", "i1", "i2"], "title": ["a", "b", "c"]})
    train = Tables(pd.DataFrame([("u0", "i0", "s")], columns=["user_id", "item_id", "scenario"]), items)
    known = train.with_interactions(pd.concat([train.interactions, pd.DataFrame(
        [("new", "i1", "s")], columns=["user_id", "item_id", "scenario"])], ignore_index=True))
    test = train.with_interactions(pd.DataFrame([("u0", "i2", "s"), ("new", "i2", "s")],
                                                columns=["user_id", "item_id", "scenario"]))
    index = InteractionIndex.from_tables(train)
    res = evaluate_retrieval({"c": lambda rows, s: np.tile([0.0, 1.0, 2.0], (len(rows), 1))}, known, test, index,
                             ks=(1,), cold_items=["i2"])
    assert res["split"]["users_without_history"] == 1 and res["split"]["known_interactions_without_history"] == 1
    assert res["retrieval"]["cold_start"]["c"] == {"users": 1, "recall@1": 1.0, "recall_all@1": 1.0,
                                                   "cold_slot_share@1": 1.0}


class _StubModel:
    """Stands in for the trained two-tower: scores items by their column (no training)."""

    cfg = C.RetrievalConfig()

    def score_fn(self, known, item_ids, user_ids):
        n = len(item_ids)
        return lambda rows, scenario=None: np.tile(np.arange(n, dtype=np.float32), (len(rows), 1))


def test_cold_start_run_reports_users_without_history(monkeypatch, tmp_path):
    import tfrs_multiscene.retrieval.train as T
    from tfrs_multiscene.evaluation.run_evaluation import cold_start_run

    calls = []

    def fake_train(split, cfg, out_dir, **kwargs):
        calls.append(split)
        return types.SimpleNamespace(model=_StubModel(), info={})

    monkeypatch.setattr(T, "train_retrieval", fake_train)
    tables, info = world()
    run_split = make_split(tables, C.SplitConfig(split="random", seed=1))
    # the run's own split is random; cold_start_run makes the cold-item split with its fractions and seed
    run_cfg = C.RunConfig(split=C.SplitConfig(split="random", test_fraction=0.25, valid_fraction=0.2, seed=3))
    logged = []
    result = cold_start_run(types.SimpleNamespace(path=tmp_path), run_cfg, C.EvaluateConfig(ks=[1, 2]),
                            run_split, log=logged.append)
    assert calls and calls[0].info["test_items"] == info["test_items"]
    # validation is a random share of the known-item interactions: lonely_valid's row on
    # what was a validation cold item is now known, so only lonely_test lacks a history
    assert calls[0].info["valid_kind"] == "random (known items)"
    assert not set(calls[0].valid.interactions["item_id"]) & set(info["test_items"])
    assert result["split"]["users_without_history"] == 1
    assert result["split"]["test_interactions_without_history"] == 2
    assert {"model", "popularity", "tfidf"} <= set(result)
    assert any("1 users without training history" in line for line in logged)
