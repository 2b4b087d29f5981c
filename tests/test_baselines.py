"""Baselines on tiny matrices whose right answer is known."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from tfrs_multiscene.evaluation import baselines as B
from tfrs_multiscene.evaluation import metrics as M

# users x items: item 0 by user 0; item 1 by all; item 2 by user 2.
X = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0], [0, 1, 1]], dtype=float))


def block_matrix(n_blocks=3, users_per_block=20, items_per_block=10, p_in=0.6, p_out=0.03, seed=0):
    """Binary [users, items]: users of block b mostly consume items of block b."""
    rng = np.random.default_rng(seed)
    ub = np.repeat(np.arange(n_blocks), users_per_block)
    ib = np.repeat(np.arange(n_blocks), items_per_block)
    p = np.where(ub[:, None] == ib[None, :], p_in, p_out)
    return sp.csr_matrix((rng.random(p.shape) < p).astype(float)), ub, ib


def test_popularity_counts_users():
    s = B.Popularity().fit(X * 3).score(np.array([0, 2]))  # weights are binarised
    assert s.dtype == np.float32 and s.shape == (2, 3)
    np.testing.assert_array_equal(s, [[1, 3, 1], [1, 3, 1]])


def test_score_before_fit_and_bad_rows():
    with pytest.raises(RuntimeError):
        B.Popularity().score(np.array([0]))
    with pytest.raises(IndexError):
        B.Popularity().fit(X).score(np.array([3]))


def test_item_knn_cosine_hand_computed():
    c = 1 / math.sqrt(3)
    knn = B.ItemKNN(k=None).fit(X)
    np.testing.assert_allclose(knn.similarity.toarray(), [[0, c, 0], [c, 0, c], [0, c, 0]], rtol=1e-6)
    np.testing.assert_allclose(knn.score(np.array([1])), [[c, 0, c]], rtol=1e-6)
    # user 0 holds items 0 and 1: s(0) = sim(1,0), s(1) = sim(0,1) + sim(1,1) = c + 0, s(2) = sim(1,2)
    np.testing.assert_allclose(knn.score(np.array([0])), [[c, c, c]], rtol=1e-6)


def test_item_knn_blocks_and_pruning():
    x, _, _ = block_matrix()
    full = B.ItemKNN(k=5).fit(x)
    tiny_blocks = B.ItemKNN(k=5, block_floats=30).fit(x)  # one item column per block
    np.testing.assert_allclose(full.similarity.toarray(), tiny_blocks.similarity.toarray())
    assert np.diff(sp.csc_matrix(full.similarity).indptr).max() <= 5


def ridge_column(x, lam, j):
    """EASE column j = ridge regression of item j on the other items (independent check)."""
    others = [i for i in range(x.shape[1]) if i != j]
    a = x[:, others]
    w = np.linalg.solve(a.T @ a + lam * np.eye(len(others)), a.T @ x[:, j])
    col = np.zeros(x.shape[1])
    col[others] = w
    return col


def test_ease_equals_per_item_ridge_regression():
    x, _, _ = block_matrix(n_blocks=2, users_per_block=8, items_per_block=4)
    dense = x.toarray()
    model = B.EASE(lam=5.0).fit(x)
    expected = np.stack([ridge_column(dense, 5.0, j) for j in range(dense.shape[1])], axis=1)
    np.testing.assert_allclose(model.weights, expected[np.ix_(model.active, model.active)], atol=1e-5)
    np.testing.assert_allclose(model.score(np.arange(3)), dense[:3] @ expected, atol=1e-5)


def test_ease_cold_items_score_zero_and_memory_guard():
    x = sp.hstack([X, sp.csr_matrix((3, 2))]).tocsr()  # two items never seen
    model = B.EASE(lam=1.0).fit(x)
    assert model.score(np.arange(3))[:, 3:].max() == 0.0
    with pytest.raises(ValueError, match="max_items"):
        B.EASE(max_items=2).fit(x)


def test_tune_ease_lambda_picks_from_grid():
    x, _, _ = block_matrix(seed=1)
    mask = np.random.default_rng(2).random(x.nnz) < 0.2
    coo = x.tocoo()
    valid = sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=x.shape)
    train = sp.csr_matrix((coo.data[~mask], (coo.row[~mask], coo.col[~mask])), shape=x.shape)
    best, scores = B.tune_ease_lambda(train, valid, (1.0, 10.0, 1e6), k=5, return_scores=True)
    assert best in (1.0, 10.0, 1e6) and scores[best] == max(scores.values())


def test_tfidf_hand_computed_and_cold_items():
    texts = ["red apple", "red car", "blue sky", ""]
    x = sp.csr_matrix(np.array([[1, 0, 0, 0]], dtype=float))  # item 1..3 never in training
    model = B.TfidfContent(texts).fit(x)
    red, apple = math.log(5 / 3) + 1, math.log(5 / 2) + 1
    expected = red ** 2 / (red ** 2 + apple ** 2)
    np.testing.assert_allclose(model.score(np.array([0])), [[1.0, expected, 0.0, 0.0]], rtol=1e-6)
    with pytest.raises(ValueError):
        B.TfidfContent(texts[:2]).fit(x)


def test_tfidf_profile_is_mean_of_history():
    texts = ["a", "b", "a b"]
    model = B.TfidfContent(texts).fit(sp.csr_matrix(np.array([[1.0, 1.0, 0.0]])))
    # mean of unit vectors (1,0) and (0,1) -> cosine 1 with "a b" (equal idf)
    assert model.score(np.array([0]))[0, 2] == pytest.approx(1.0)


def test_with_history_scores_from_known_items_keeping_fitted_weights():
    x, _, _ = block_matrix(n_blocks=2, users_per_block=8, items_per_block=4)
    extra = sp.csr_matrix(([1.0], ([0], [7])), shape=x.shape)  # user 0 also knows item 7
    known = (x + extra).tocsr()
    ease = B.EASE(lam=5.0).fit(x)
    weights = ease.weights.copy()
    before = ease.score(np.arange(3))
    ease.with_history(known)
    np.testing.assert_array_equal(ease.weights, weights)  # nothing refitted
    expected = np.zeros((3, x.shape[1]))
    expected[:, ease.active] = known.toarray()[:3, ease.active] @ weights
    np.testing.assert_allclose(ease.score(np.arange(3)), expected, atol=1e-5)
    np.testing.assert_allclose(ease.score(np.arange(1, 3)), before[1:], atol=1e-6)  # other users unchanged
    knn = B.ItemKNN(k=None).fit(x).with_history(known)
    np.testing.assert_allclose(knn.score(np.array([0])), known[0] @ knn.similarity.toarray(), rtol=1e-6)
    fitted = B.fit_baselines(x, methods=("popularity", "ease"), history_matrix=known)
    default = B.EASE().fit(x).with_history(known)  # fit_baselines' lambda without validation: 300
    np.testing.assert_allclose(fitted["ease"].score(np.array([0])), default.score(np.array([0])), atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        ease.with_history(known[:, :3])
    with pytest.raises(RuntimeError, match="before fit"):
        B.EASE().with_history(known)


def test_fit_baselines_by_name():
    x, _, _ = block_matrix()
    fitted = B.fit_baselines(x, methods=("popularity", "item_knn", "ease", "tfidf"))
    assert set(fitted) == {"popularity", "item_knn", "ease"}  # tfidf needs texts
    assert fitted["ease"].lam == 300.0
    with pytest.raises(ValueError):
        B.fit_baselines(x, methods=("nope",))


def test_tfrs_tutorial_learns_blocks_and_matches_factorized_topk():
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    x, ub, ib = block_matrix(n_blocks=3, users_per_block=30, items_per_block=10, p_in=0.7, p_out=0.0)
    model = B.TfrsTutorial(epochs=30, dim=8, lr=0.5, batch=256).fit(x)
    scores = model.score(np.arange(x.shape[0]))
    assert scores.shape == x.shape and scores.dtype == np.float32
    same = ub[:, None] == ib[None, :]
    assert scores[same].mean() > scores[~same].mean()

    # Our TFRS-protocol top-K accuracy equals tfrs.metrics.FactorizedTopK on the same pairs.
    coo = x.tocoo()
    ranked = M.top_k_excluding_seen(scores, None, 10)
    ours = [M.topk_accuracy(ranked[coo.row], coo.col, k) for k in (1, 5, 10)]
    # (id-based: TFRS's score-based mode re-computes the positive's score with reduce_sum, and
    # float rounding can push the item just below its own index entry, undercounting.)
    index = tfrs.layers.factorized_top_k.BruteForce(k=10)
    index.index(tf.constant(model.item_embeddings), identifiers=tf.range(x.shape[1]))
    metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=(1, 5, 10))
    metric.update_state(tf.constant(model.user_embeddings[coo.row]), tf.constant(model.item_embeddings[coo.col]),
                        true_candidate_ids=tf.constant(coo.col, dtype=tf.int32))
    theirs = [float(v) for v in metric.result()]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
