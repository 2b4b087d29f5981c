"""evaluate_retrieval on a hand-computed case and on a block-structured toy world."""

import json

import numpy as np
import pandas as pd
import pytest

from tfrs_multiscene.data.schema import Tables
from tfrs_multiscene.evaluation import baselines as B
from tfrs_multiscene.evaluation.interactions import InteractionIndex
from tfrs_multiscene.evaluation.retrieval_eval import (
    activity_groups, evaluate_retrieval, format_table, plot_retrieval, popularity_groups)

ITEMS = pd.DataFrame({"item_id": ["i0", "i1", "i2", "i3"], "title": ["a", "b", "c", "d"]})


def tables(rows, items=ITEMS):
    return Tables(pd.DataFrame(rows, columns=["user_id", "item_id", "scenario"]), items)


# --------------------------------------------------------------------------- hand-computed case

TRAIN = tables([("u0", "i0", "a"), ("u1", "i0", "a"), ("u1", "i1", "b")])
TEST = tables([("u0", "i1", "a"), ("u0", "i2", "b"), ("u0", "i0", "a"), ("u1", "i2", "a"),
               ("ghost", "i1", "a")])
BASE = np.array([4.0, 1.0, 2.0, 3.0])  # rank i0, i3, i2, i1


def fixed_scores(calls):
    def fn(rows, scenario):
        calls.append(scenario)
        s = np.tile(BASE, (len(rows), 1))
        if scenario == "b":
            s[:, 2] = 10.0  # scenario b puts i2 first
        return s
    return fn


def test_index_and_matrix():
    index = InteractionIndex.from_tables(TRAIN)
    assert list(index.user_ids) == ["u0", "u1"] and index.n_items == 4
    np.testing.assert_array_equal(index.matrix(TRAIN).toarray(), [[1, 0, 0, 0], [1, 1, 0, 0]])
    with pytest.raises(ValueError, match="not in the index"):
        index.matrix(TEST)
    counts = index.matrix(TEST, "count", unknown_users="drop", scenario="a")
    np.testing.assert_array_equal(counts.toarray(), [[1, 1, 0, 0], [0, 0, 1, 0]])
    with pytest.raises(ValueError, match="items not in the index"):
        index.matrix(tables([("u0", "zz", "a")]))


def test_hand_computed_protocols():
    calls = []
    index = InteractionIndex.from_tables(TRAIN)
    res = evaluate_retrieval({"fixed": fixed_scores(calls)}, TRAIN, TEST, index, ks=(1, 2, 3),
                             cold_items=["i2", "i3"])
    r = res["retrieval"]
    std = r["standard"]["fixed"]
    # u0: list [i3, i2, i1], relevant {i1, i2}; u1: list [i3, i2, .], relevant {i2}
    assert std["recall@1"] == 0.0 and std["recall@2"] == pytest.approx(0.75) and std["recall@3"] == 1.0
    assert std["mrr"] == pytest.approx((0.5 + 0.5) / 2) and std["users"] == 2
    # tfrs: all-items list [i0, i3, i2, i1]; interactions (u0,i1) (u0,i2) (u0,i0) (u1,i2)
    assert r["tfrs"]["fixed"]["top@1"] == 0.25 and r["tfrs"]["fixed"]["top@3"] == 0.75
    assert r["tfrs"]["fixed"]["interactions"] == 4
    # cold items {i2, i3}: candidates [i3, i2]; relevant cold = {i2} for both users
    cold = r["cold_start"]["fixed"]
    assert cold["recall@1"] == 0.0 and cold["recall@2"] == 1.0 and cold["recall_all@2"] == 1.0
    # scenario b: only (u0, i2); the score function saw the scenario and put i2 first
    assert "b" in calls and r["by_scenario"]["b"]["standard"]["fixed"]["recall@1"] == 1.0
    assert r["by_scenario"]["a"]["tfrs"]["fixed"]["interactions"] == 3
    # popularity: i0 head, i1 torso, i2/i3 tail; both top-1 lists hold i3
    assert r["popularity_share"]["fixed"]["tail@1"] == 1.0
    assert r["by_activity"]["fixed"]["light"]["users"] == 1 and r["by_activity"]["fixed"]["heavy"]["users"] == 1
    assert res["split"]["test_interactions_unknown_user"] == 1
    json.dumps(res, allow_nan=False)


def test_popularity_and_activity_groups():
    import scipy.sparse as sp
    m = sp.csr_matrix(np.array([[5, 2, 1, 1, 1, 0]], dtype=float))  # total 10
    # shares before each item: 0, .5, .7, .8, .9 -> head i0; tail i3, i4 and unseen i5
    np.testing.assert_array_equal(popularity_groups(m), [0, 1, 1, 2, 2, 2])
    groups, (q1, q2) = activity_groups(np.array([1, 2, 3, 4, 5, 6]))
    np.testing.assert_array_equal(groups, [0, 0, 1, 1, 2, 2])


def test_scenario_without_known_users_gives_empty_results():
    test = tables([("u0", "i1", "a"), ("ghost", "i2", "z")])
    index = InteractionIndex.from_tables(TRAIN)
    res = evaluate_retrieval({"fixed": fixed_scores([])}, TRAIN, test, index, ks=(1, 2), cold_items=["i3"])
    z = res["retrieval"]["by_scenario"]["z"]
    assert z["standard"]["fixed"]["users"] == 0 and z["standard"]["fixed"]["recall@1"] is None
    assert z["tfrs"]["fixed"]["interactions"] == 0
    json.dumps(res, allow_nan=False)


def test_validation_items_are_known_at_test_time():
    """The 80/20 protocol: validation interactions are history and excluded, never misses."""
    from tfrs_multiscene.data.splits import Split
    from tfrs_multiscene.evaluation.protocol import known_info, known_interactions

    valid = tables([("u0", "i3", "a")])
    split = Split(TRAIN, valid, TEST, {})
    known = known_interactions(split)
    assert len(known.interactions) == 4 and known_info(split, known)["known_from"] == "train+valid"
    index = InteractionIndex.from_tables(TRAIN)
    res = evaluate_retrieval({"fixed": fixed_scores([])}, known, TEST, index, ks=(1,))
    # u0's scores rank i0 (seen), i3 (validation), i2, i1: with i3 known the top 1 is i2, a hit
    by_train_only = evaluate_retrieval({"fixed": fixed_scores([])}, TRAIN, TEST, index, ks=(1,))
    assert res["retrieval"]["standard"]["fixed"]["hit_rate@1"] > by_train_only["retrieval"]["standard"]["fixed"]["hit_rate@1"]
    assert known_interactions(Split(TRAIN, None, TEST, {})) is TRAIN


def test_score_shape_is_checked():
    index = InteractionIndex.from_tables(TRAIN)
    with pytest.raises(ValueError, match="shape"):
        evaluate_retrieval({"bad": lambda rows, s: np.zeros((len(rows), 3))}, TRAIN, TEST, index, ks=(1,))


# --------------------------------------------------------------------------- toy world


def block_world(n_blocks=4, users_per_block=25, items_per_block=15, seed=0):
    """Users of block b like items of block b (popularity decaying inside the block);
    item titles name their block; two cold items per block appear only in test."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({
        "item_id": [f"i{b}_{j}" for b in range(n_blocks) for j in range(items_per_block)],
        "title": [f"topic{b} thing{j}" for b in range(n_blocks) for j in range(items_per_block)],
    })
    rows = []
    for b in range(n_blocks):
        for u in range(users_per_block):
            for b2 in range(n_blocks):
                for j in range(items_per_block):
                    p = 0.7 / (1 + 0.3 * j) if b2 == b else 0.03 * (1 + b2)
                    if rng.random() < p:
                        rows.append((f"u{b}_{u}", f"i{b2}_{j}", rng.choice(["feed", "search"])))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "scenario"])
    cold = [f"i{b}_{j}" for b in range(n_blocks) for j in (3, 4)]
    is_test = (rng.random(len(inter)) < 0.2) | inter["item_id"].isin(cold)
    return Tables(inter[~is_test], items), Tables(inter[is_test], items), cold


@pytest.fixture(scope="module")
def toy_results(tmp_path_factory):
    train, test, cold = block_world()
    index = InteractionIndex.from_tables(train)
    x = index.matrix(train)
    fitted = B.fit_baselines(x, item_texts=train.items["title"].tolist(),
                             tfrs_kwargs={"epochs": 3, "batch": 512})
    texts = B.tfidf_matrix(train.items["title"].tolist())
    res = evaluate_retrieval(fitted, train, test, index, ks=(5, 10, 20), item_embeddings=texts,
                             cold_items=cold, split_info={"kind": "toy"}, batch_users=32)
    return res, tmp_path_factory.mktemp("plots")


def test_toy_ease_and_knn_beat_popularity(toy_results):
    res, _ = toy_results
    std = res["retrieval"]["standard"]
    for metric in ("recall@10", "ndcg@10"):
        assert std["ease"][metric] > std["popularity"][metric]
        assert std["item_knn"][metric] > std["popularity"][metric]
    assert set(std) == {"popularity", "item_knn", "ease", "tfidf", "tfrs_tutorial"}
    # popularity recommends only the most popular items -> least coverage, most head items
    assert std["popularity"]["coverage@10"] == min(v["coverage@10"] for v in std.values())
    assert std["popularity"]["novelty@10"] < std["ease"]["novelty@10"]
    assert 0.0 <= std["ease"]["diversity@10"] <= 1.0


def test_toy_cold_start_content_beats_popularity(toy_results):
    res, _ = toy_results
    cold = res["retrieval"]["cold_start"]
    assert cold["tfidf"]["recall_all@10"] > cold["popularity"]["recall_all@10"]
    assert cold["tfidf"]["recall@5"] > 0.5  # cold items of the user's topic come first
    # the popularity ceiling read from the test labels: cold items have no training popularity
    assert cold["oracle_popularity"]["recall@5"] > cold["popularity"]["recall@5"]
    assert cold["oracle_popularity"]["users"] == cold["tfidf"]["users"]


def test_toy_json_shape_table_and_plots(toy_results):
    res, out_dir = toy_results
    r = res["retrieval"]
    assert set(r["by_scenario"]) == {"feed", "search"} and res["split"]["kind"] == "toy"
    assert set(r["by_activity"]["ease"]) == {"light", "medium", "heavy"}
    share = r["popularity_share"]["ease"]
    assert share["head@10"] + share["torso@10"] + share["tail@10"] == pytest.approx(1.0)
    json.dumps(res, allow_nan=False)
    table = format_table(res)
    assert "tfrs_tutorial" in table and "recall@10" in table and "scenario search" in table
    paths = plot_retrieval(res, str(out_dir))
    assert len(paths) == 5 and all(p.endswith(".png") for p in paths)
