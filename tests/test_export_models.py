"""export_from_models with the project's own retrieval and ranking models (untrained, tiny)."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfrs_multiscene
from tfrs_multiscene.config import ExportConfig, RankingConfig, RetrievalConfig
from tfrs_multiscene.data.schema import Tables
from tfrs_multiscene.export import metadata as metadata_lib
from tfrs_multiscene.export import servables

N_USERS, N_ITEMS = 30, 80


def tables(seed=0):
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(N_USERS)], "age_bucket": rng.choice(["18-24", "25-34"], N_USERS),
                          "profile": ["likes tents" if i % 2 else "likes pans" for i in range(N_USERS)]})
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)],
                          "title": [("camping tent" if i % 2 else "cooking pan") + f" {i}" for i in range(N_ITEMS)],
                          "category": ["outdoors" if i % 2 else "kitchen" for i in range(N_ITEMS)],
                          "price": rng.uniform(1, 100, N_ITEMS)})
    n = 600
    inter = pd.DataFrame({"user_id": [f"u{x}" for x in rng.integers(0, N_USERS, n)], "item_id": [f"i{x}" for x in rng.integers(0, N_ITEMS, n)],
                          "scenario": rng.choice(["home", "search"], n), "click": rng.integers(0, 2, n),
                          "conversion": rng.integers(0, 2, n) * 0})
    inter["conversion"] = inter["click"] * rng.integers(0, 2, n)
    return Tables(inter, items, users)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tfrs_multiscene.ranking import build_ranking_model
    from tfrs_multiscene.retrieval import build_retrieval_model

    tf.keras.utils.set_random_seed(0)
    t = tables()
    text = {"item_embeddings": np.random.default_rng(1).normal(size=(N_ITEMS, 6))}
    retrieval = build_retrieval_model(t, RetrievalConfig(embedding_dim=8, feature_dim=8, history_length=4), text)
    ranking = build_ranking_model(t, RankingConfig(), tasks=["click", "conversion"])
    from tfrs_multiscene.ranking.train import _dummy_inputs

    ranking(_dummy_inputs(ranking.spec))
    cfg = ExportConfig(index="scann", stock_index="brute_force", top_k=20, candidates=15, default_k=5, tuning_queries=60)
    base = tmp_path_factory.mktemp("models")
    users = t.users["user_id"].tolist()
    sample = retrieval.query_embeddings(retrieval.query_features(users * 2, ["home"] * N_USERS + ["search"] * N_USERS, t))
    paths = servables.export_from_models(base, retrieval, ranking, t.items, t.users, cfg, sample_queries=sample,
                                         metadata={"data_fingerprint": "fp1"})
    return t, retrieval, ranking, paths


def request():
    return {"user_id": tf.constant(["u1", "u2"]), "scenario": tf.constant(["home", "search"]),
            "history": tf.constant([["i3", "i5", "", ""], ["i8", "", "", ""]]), "age_bucket": tf.constant(["18-24", "25-34"])}


def test_all_servables_written_with_metadata(exported):
    _, _, _, paths = exported
    assert set(paths) == {"ranking", "retrieval", "recommender", "retrieval_stock", "recommender_stock"}
    for name, path in paths.items():
        record = metadata_lib.read_metadata(path)
        assert record["data_fingerprint"] == "fp1"
        assert record["op_audit"]["stock_servable"] == (name in ("ranking", "retrieval_stock", "recommender_stock"))
    tuning = metadata_lib.read_metadata(paths["retrieval"])["metrics"]["index_tuning"]
    assert tuning["recall"] >= 0.95 and tuning["latency_ms"] > 0


def test_retrieval_exports_match_in_memory_exact_top_k(exported):
    t, retrieval, _, paths = exported
    query = retrieval.query_model(request()).numpy()
    scores = query @ retrieval.candidate_embeddings(t.items).T
    exact = t.items["item_id"].to_numpy()[np.argsort(-scores, axis=1)[:, :5]]
    stock = tfrs_multiscene.load(paths["retrieval_stock"])("serving_default", **request())["ids"].numpy().astype(str)
    np.testing.assert_array_equal(stock, exact)  # brute force: exactly the in-memory top-K
    scann = tfrs_multiscene.load(paths["retrieval"])("serving_default", **request())["ids"].numpy().astype(str)
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(scann, exact)])
    assert overlap >= 0.8, f"ScaNN top-5 overlaps exact search by only {overlap}"


def test_ranking_and_recommender_agree_with_the_ranking_model(exported):
    paths = exported[3]
    rank = tfrs_multiscene.load(paths["ranking"])
    inputs = rank.metadata["signatures"]["serving_default"]["inputs"]
    assert "item_ids" in inputs and "title" not in inputs, "item features come from the item table, not the client"
    req = {k: v for k, v in request().items() if k in inputs}
    if "timestamp" in inputs:
        req["timestamp"] = tf.constant([0, 0], tf.int64)
    rec = tfrs_multiscene.load(paths["recommender_stock"])
    rec_inputs = rec.metadata["signatures"]["recommend"]["inputs"]
    full = {**request(), **({"timestamp": req["timestamp"]} if "timestamp" in rec_inputs else {})}
    out = rec("recommend", **full, k=tf.constant([4]), exclude_ids=tf.constant([["i3"], [""]]))
    ids = out["ids"].numpy().astype(str)
    assert ids.shape == (2, 4) and "i3" not in ids[0] and "" not in ids
    ranked = rank("serving_default", **req, item_ids=tf.constant(ids))
    np.testing.assert_allclose(ranked["click"].numpy(), out["click"].numpy(), rtol=1e-5)
    assert (np.diff(out["scores"].numpy(), axis=1) <= 1e-6).all()
    assert set(out["because_ids"].numpy().astype(str)[0]) <= {"i3", "i5"}


def test_an_ensemble_two_tower_exports_as_one_query_tower_and_index(tmp_path):
    """--ensemble N: the servable's query tower outputs the members' concatenated embeddings
    and the index holds the concatenated candidates, so serving gives the in-memory top-K;
    the ranking reads the first member's tower outputs (its feature towers)."""
    from tfrs_multiscene.ranking import build_ranking_model
    from tfrs_multiscene.ranking.train import _dummy_inputs
    from tfrs_multiscene.retrieval import build_retrieval_model

    t = tables()
    text = {"item_embeddings": np.random.default_rng(1).normal(size=(N_ITEMS, 6))}
    retrieval = build_retrieval_model(t, RetrievalConfig(embedding_dim=8, feature_dim=8, history_length=4, ensemble=2), text)
    ranking = build_ranking_model(t, RankingConfig(), {"query_embedding": 8, "candidate_embedding": 8},
                                  tasks=["click", "conversion"])
    ranking(_dummy_inputs(ranking.spec))
    cfg = ExportConfig(index="brute_force", stock_index="none", top_k=20, candidates=15, default_k=5, tuning_queries=60)
    paths = servables.export_from_models(tmp_path, retrieval, ranking, t.items, t.users, cfg)
    # the recommender ranks its candidates with member-1 features (8 wide), as the ranking was trained
    out = tfrs_multiscene.load(paths["recommender"])("recommend", **request(), k=tf.constant([4]),
                                                    exclude_ids=tf.constant([[""], [""]]))
    ids = out["ids"].numpy().astype(str)
    ranked = tfrs_multiscene.load(paths["ranking"])("serving_default", **request(), item_ids=tf.constant(ids))
    np.testing.assert_allclose(ranked["click"].numpy(), out["click"].numpy(), rtol=1e-5)
    query = retrieval.query_model(request()).numpy()
    assert query.shape == (2, 16)
    exact = t.items["item_id"].to_numpy()[np.argsort(-(query @ retrieval.candidate_embeddings(t.items).T), axis=1)[:, :5]]
    served = tfrs_multiscene.load(paths["retrieval"])("serving_default", **request())["ids"].numpy().astype(str)
    np.testing.assert_array_equal(served, exact)
