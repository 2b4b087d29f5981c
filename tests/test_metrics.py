"""Retrieval and ranking metrics against hand-computed examples."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from tfrs_multiscene.evaluation import metrics as M
from tfrs_multiscene.evaluation import ranking_metrics as R

L2 = math.log2
# user 0: hits at ranks 2 and 5 of 5, two relevant; user 1: three relevant, hits at 1..3;
# user 2: nothing relevant (nan everywhere).
RANKED = np.array([[3, 1, 4, 0, 2], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
RELEVANT = [{1, 2}, {0, 1, 2}, set()]


def test_recall_uses_min_k_denominator():
    r2 = M.recall_at_k(RANKED, RELEVANT, 2)
    assert r2[0] == pytest.approx(0.5)
    assert r2[1] == pytest.approx(1.0)  # 2 hits / min(2, 3), not 2 / 3
    assert np.isnan(r2[2])
    assert M.recall_at_k(RANKED, RELEVANT, 5)[:2] == pytest.approx([1.0, 1.0])
    assert M.recall_at_k(RANKED, RELEVANT, 1)[:2] == pytest.approx([0.0, 1.0])


def test_ndcg_hand_computed():
    n2 = M.ndcg_at_k(RANKED, RELEVANT, 2)
    assert n2[0] == pytest.approx((1 / L2(3)) / (1 + 1 / L2(3)))
    assert n2[1] == pytest.approx(1.0)
    n5 = M.ndcg_at_k(RANKED, RELEVANT, 5)
    assert n5[0] == pytest.approx((1 / L2(3) + 1 / L2(6)) / (1 + 1 / L2(3)))
    assert np.isnan(n5[2])


def test_hit_rate_and_mrr():
    assert M.hit_rate_at_k(RANKED, RELEVANT, 1)[:2] == pytest.approx([0.0, 1.0])
    assert M.hit_rate_at_k(RANKED, RELEVANT, 2)[:2] == pytest.approx([1.0, 1.0])
    rr = M.mrr(RANKED, RELEVANT)
    assert rr[:2] == pytest.approx([0.5, 1.0]) and np.isnan(rr[2])
    assert M.mrr(np.array([[7, 8]]), [{1}])[0] == 0.0


def test_sparse_relevance_equals_sets():
    rel = sp.csr_matrix(np.array([[0, 1, 1, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]))
    for fn in (M.recall_at_k, M.ndcg_at_k, M.hit_rate_at_k):
        np.testing.assert_allclose(fn(RANKED, rel, 3), fn(RANKED, RELEVANT, 3))


def test_bad_k_is_rejected():
    with pytest.raises(ValueError):
        M.recall_at_k(RANKED, RELEVANT, 6)


def test_topk_accuracy_tfrs_protocol():
    ranked = np.array([[5, 3, 1], [2, 4, 0]])
    targets = np.array([3, 0])
    assert M.topk_accuracy(ranked, targets, 1) == 0.0
    assert M.topk_accuracy(ranked, targets, 2) == 0.5
    assert M.topk_accuracy(ranked, targets, 3) == 1.0


def test_top_k_excluding_seen():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [1, 2, 3, 4]], dtype=np.float32)
    seen = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 0, 1]]))
    np.testing.assert_array_equal(M.top_k_excluding_seen(scores, seen, 2), [[3, 2], [2, 1]])
    np.testing.assert_array_equal(M.top_k_excluding_seen(scores, None, 2), [[1, 3], [3, 2]])
    np.testing.assert_array_equal(M.top_k_excluding_seen(np.ones((1, 3)), None, 2), [[0, 1]])
    assert M.top_k_excluding_seen(scores, None, 10).shape == (2, 4)  # capped at n_items
    with pytest.raises(ValueError):
        M.top_k_excluding_seen(scores, sp.csr_matrix((2, 3)), 2)


def test_top_k_matches_full_sort():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 50))
    expected = np.argsort(-scores, axis=1)[:, :7]
    np.testing.assert_array_equal(M.top_k_excluding_seen(scores, None, 7), expected)


def test_coverage_and_novelty():
    ranked = np.array([[0, 1], [1, 2]])
    assert M.coverage_at_k(ranked, 10, 1) == pytest.approx(0.2)
    assert M.coverage_at_k(ranked, 10, 2) == pytest.approx(0.3)
    prob = np.array([0.5, 0.25, 0.125])
    np.testing.assert_allclose(M.novelty(np.array([[0, 1], [2, 2]]), prob, 2), [1.5, 3.0])
    train = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 0]]))
    np.testing.assert_allclose(M.item_probabilities(train), [3 / 4, 1 / 4])


def test_intra_list_diversity_hand_computed():
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    ild = M.intra_list_diversity(np.array([[0, 1, 2], [0, 3, 1]]), emb, 3)
    assert ild[0] == pytest.approx(1 - (0 + 2 / math.sqrt(2)) / 3)
    assert ild[1] == pytest.approx(1.0)  # zero vector: cosine 0 to everything
    np.testing.assert_allclose(M.intra_list_diversity(np.array([[0, 2], [0, 1]]), emb, 2), [1 - 1 / math.sqrt(2), 1.0])


def test_intra_list_diversity_sparse_equals_bruteforce():
    rng = np.random.default_rng(1)
    emb = rng.random((20, 6)) * (rng.random((20, 6)) > 0.5)
    ranked = np.stack([rng.choice(20, 5, replace=False) for _ in range(4)])
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    brute = []
    for row in ranked:
        g = unit[row] @ unit[row].T
        brute.append(1 - (g.sum() - np.trace(g)) / (5 * 4))
    np.testing.assert_allclose(M.intra_list_diversity(ranked, emb, 5), brute)
    np.testing.assert_allclose(M.intra_list_diversity(ranked, sp.csr_matrix(emb), 5), brute)


# --------------------------------------------------------------------------- ranking metrics


def test_auc_hand_computed():
    assert R.auc([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]) == pytest.approx(0.75)
    assert R.auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert np.isnan(R.auc([1, 1], [0.2, 0.3]))


def test_expected_auc_hand_computed_ties_included():
    p = np.array([0.9, 0.2, 0.5])
    s = np.array([3.0, 1.0, 1.0])  # rows 1 and 2 tie
    q = 1 - p
    # ordered pairs (i positive, j negative), i != j: i above j counts 1, a tie 1/2, below 0
    num = p[0] * q[1] + p[0] * q[2] + 0.5 * (p[1] * q[2] + p[2] * q[1])
    den = sum(p[i] * q[j] for i in range(3) for j in range(3) if i != j)
    assert R.expected_auc(p, s) == pytest.approx(num / den)
    reversed_num = p[1] * q[0] + p[2] * q[0] + 0.5 * (p[1] * q[2] + p[2] * q[1])
    assert R.expected_auc(p, -s) == pytest.approx(reversed_num / den)
    assert np.isnan(R.expected_auc([1.0, 1.0], [0.1, 0.2]))


def test_expected_auc_is_the_mean_label_auc_over_label_draws_and_equals_auc_on_0_1_labels():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.6, size=300)
    scores = p + rng.normal(0, 0.15, size=300)
    labels = rng.random((4000, 300)) < p
    aucs = [R.auc(y, scores) for y in labels]
    # a ratio of expectations, so close to (not exactly) the mean over draws at this size
    assert R.expected_auc(p, scores) == pytest.approx(np.mean(aucs), abs=2e-3)
    assert np.std(aucs) > 0.02  # what one draw's AUC is exposed to
    y = labels[0].astype(float)
    assert R.expected_auc(y, scores) == pytest.approx(R.auc(y, scores))
    # the true probabilities order themselves best
    assert R.expected_auc(p, p) > R.expected_auc(p, scores)


def test_gauc_weights_by_impressions_and_skips_one_class_users():
    users = ["a", "a", "a", "b", "b", "c", "c"]
    labels = [1, 0, 0, 1, 0, 1, 1]
    scores = [0.2, 0.5, 0.1, 0.9, 0.1, 0.3, 0.4]
    assert R.gauc(users, labels, scores) == pytest.approx((0.5 * 3 + 1.0 * 2) / 5)
    assert np.isnan(R.gauc(["a"], [1], [0.3]))


def test_logloss_hand_computed():
    assert R.logloss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert np.isfinite(R.logloss([1], [0.0]))  # clipped


def test_ndcg_from_scores_hand_computed():
    groups = ["g1", "g1", "g1", "g2", "g2", "g3"]
    labels = [0, 1, 1, 1, 0, 0]
    scores = [0.9, 0.8, 0.1, 0.3, 0.2, 0.5]
    g1 = (1 / L2(3) + 1 / L2(4)) / (1 + 1 / L2(3))
    assert R.ndcg_from_scores(groups, labels, scores, 10) == pytest.approx((g1 + 1.0) / 2)
    assert R.ndcg_from_scores(groups, labels, scores, 1) == pytest.approx(0.5)


def test_by_scenario_summary():
    out = R.by_scenario(["x", "x", "y", "y"], ["u", "u", "v", "v"], [1, 0, 0, 1], [0.9, 0.1, 0.8, 0.2])
    assert out["x"]["auc"] == 1.0 and out["y"]["auc"] == 0.0
    assert out["overall"]["impressions"] == 4 and set(out["x"]) >= {"auc", "gauc", "logloss", "ndcg@10"}


def test_ranking_report_per_task_with_oracle():
    import pandas as pd
    frame = pd.DataFrame({"user_id": ["u", "u", "v", "v"], "scenario": ["x", "x", "y", "y"],
                          "click": [1, 0, 0, 1], "true_p_click": [0.9, 0.1, 0.2, 0.8]})
    out = R.ranking_report(frame, {"click": np.array([0.9, 0.1, 0.8, 0.2])})
    assert out["click"]["x"]["auc"] == 1.0 and out["click"]["y"]["auc"] == 0.0
    assert out["click"]["y"]["oracle_auc"] == 1.0 and out["click"]["overall"]["oracle_gauc"] == 1.0
    with pytest.raises(ValueError):
        R.ranking_report(frame, {"conversion": np.zeros(4)})
