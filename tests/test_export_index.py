"""Indexes (brute force, ScaNN, stock-op IVF) and their tuning against exact search."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_multiscene.export import index as index_lib
from tfrs_multiscene.export import scann_tuning


def clustered(n, dim, seed, clusters=40):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    x = centers[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


N, DIM = 6000, 16
EMB = clustered(N, DIM, 0)
QUERIES = clustered(200, DIM, 1)
IDS = np.array([f"item{i}" for i in range(N)])


@pytest.fixture(scope="module")
def scann_tuned():
    return scann_tuning.tune_scann(EMB, QUERIES, k=10, target_recall=0.95, depth=50, latency_queries=50)


@pytest.fixture(scope="module")
def ivf_tuned():
    return scann_tuning.tune_ivf(EMB, QUERIES, k=10, target_recall=0.95, depth=50, latency_queries=50)


def test_exact_top_k_matches_full_sort():
    exact = scann_tuning.exact_top_k(EMB, QUERIES[:5], 7)
    full = np.argsort(-(QUERIES[:5] @ EMB.T), axis=1)[:, :7]
    np.testing.assert_array_equal(exact, full)
    assert scann_tuning.recall_at_k(full, exact, 7) == 1.0
    assert scann_tuning.recall_at_k(full[:, ::-1] + 1, exact, 7) < 1.0


def test_brute_force_is_exact_and_pads_when_k_exceeds_candidates():
    index = index_lib.build_index("brute_force", None, IDS, EMB, k=20)
    scores, ids = index.search(QUERIES[:4], 10)
    exact = scann_tuning.exact_top_k(EMB, QUERIES[:4], 10)
    np.testing.assert_array_equal(ids.numpy().astype(str), IDS[exact])
    small = index_lib.build_index("brute_force", None, ["a", "b"], np.eye(2, dtype=np.float32), k=5)
    scores, ids = small.search([[1.0, 0.5]], 4)
    assert ids.numpy().astype(str).tolist() == [["a", "b", "", ""]]
    assert np.isinf(scores.numpy()[0, 2:]).all()


def test_exclusions_remove_items_and_keep_k():
    index = index_lib.build_index("brute_force", None, IDS, EMB, k=20)
    _, top = index.search(QUERIES[:2], 5)
    banned = top.numpy()[:, :2]
    _, ids = index.search_excluding(QUERIES[:2], 5, tf.constant(banned))
    ids = ids.numpy()
    assert ids.shape == (2, 5)
    for row, excluded in zip(ids, banned):
        assert not set(row) & set(excluded)
    np.testing.assert_array_equal(ids[:, :3], top.numpy()[:, 2:])


def test_unknown_kind_and_missing_params_are_clear_errors():
    with pytest.raises(ValueError, match="unknown index kind"):
        index_lib.build_index("annoy", None, IDS, EMB, k=10)
    with pytest.raises(ValueError, match="scann_params"):
        index_lib.build_index("scann", None, IDS, EMB, k=10)
    with pytest.raises(ValueError, match="one row per candidate"):
        index_lib.build_index("brute_force", None, IDS[:10], EMB, k=10)


def test_tuned_scann_reaches_target_and_records_trials(scann_tuned):
    result = scann_tuned
    assert result.reached_target and result.recall >= 0.95
    assert result.latency_ms > 0
    assert {"num_leaves", "num_leaves_to_search", "num_reordering_candidates"} <= set(result.params)
    assert result.params["num_reordering_candidates"] >= 50  # never below the built depth
    assert any(t["recall"] < 0.95 for t in result.tried), "the sweep should start below the target"
    index = index_lib.build_index("scann", None, IDS, EMB, k=50, scann_params=result.params, searcher=result.searcher)
    _, ids = index.search(QUERIES, 10)
    rows = np.array([[int(s[4:]) for s in row] for row in ids.numpy().astype(str)])
    assert scann_tuning.recall_at_k(rows, scann_tuning.exact_top_k(EMB, QUERIES, 10), 10) >= 0.95
    assert result.to_dict()["params"] == result.params and "searcher" not in result.to_dict()


def test_unreachable_target_is_reported_not_hidden():
    result = scann_tuning.tune_ivf(EMB, QUERIES[:50], k=10, target_recall=1.01, leaves_grid=[1, 2], latency_queries=10)
    assert not result.reached_target and result.params["num_leaves_to_search"] == 2


def test_stock_ivf_index_reaches_target(ivf_tuned):
    assert ivf_tuned.reached_target and ivf_tuned.recall >= 0.95
    index = index_lib.build_index("ivf", None, IDS, EMB, k=50, scann_params=ivf_tuned.params, partition=ivf_tuned.searcher)
    _, ids = index.search(QUERIES, 10)
    rows = np.array([[int(s[4:]) for s in row] for row in ids.numpy().astype(str)])
    assert scann_tuning.recall_at_k(rows, scann_tuning.exact_top_k(EMB, QUERIES, 10), 10) >= 0.95
    full = index_lib.IVFIndex(IDS, EMB, 10, ivf_tuned.searcher, leaves_to_search=10**6)
    _, ids = full.search(QUERIES[:3], 10)  # probing every leaf is exact
    np.testing.assert_array_equal(ids.numpy().astype(str), IDS[scann_tuning.exact_top_k(EMB, QUERIES[:3], 10)])
