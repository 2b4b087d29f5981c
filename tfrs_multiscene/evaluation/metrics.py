"""Top-K retrieval metrics as pure numpy functions.

Conventions shared by every function here:

* ``ranked`` is an int array ``[B, L]``: row ``b`` holds item columns in rank order (best
  first) for user ``b``; only the first ``k`` (``k <= L``) are used by an ``@k`` metric.
* ``relevant`` describes the held-out items of the same ``B`` users: either a
  ``scipy.sparse`` matrix ``[B, n_items]`` whose non-zeros mark relevant items, or a
  sequence of ``B`` iterables of item columns.
* Per-user metrics return ``np.ndarray[B]`` (float64); users without any relevant item get
  ``nan`` (callers drop them before averaging). Catalogue coverage is a single number.

Definitions (chosen because they reproduce the MovieLens-100K anchors of
``shared/ARCHITECTURE.md``, where Recall@10 ~= NDCG@10 for every method):

* Recall@K = hits in the top K / min(K, |relevant|). With the plain |relevant| denominator a
  MovieLens-100K user holds ~21 test items on average, so Recall@10 would be capped near
  0.5 and sit far below NDCG@10; the anchors (popularity R@10 0.216 vs N@10 0.217) only
  come out with min(K, |relevant|).
* NDCG@K: binary relevance, DCG = sum over hit ranks r (1-based) of 1 / log2(r + 1), divided
  by the ideal DCG of min(K, |relevant|) hits.
* HitRate@K: 1 if any relevant item is in the top K, else 0.
* MRR: 1 / rank of the first relevant item within the whole ranked list (length L), 0 if
  none is there (so MRR is MRR@L).
* TFRS top-K accuracy (``topk_accuracy``): per test interaction, 1 if its item is in the
  user's top K (over all items, seen ones included), averaged over interactions.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import scipy.sparse as sp

Relevant = Union[sp.spmatrix, sp.sparray, Sequence]


# --------------------------------------------------------------------------- helpers


def _check_ranked(ranked, k: int) -> np.ndarray:
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be 2-D [users, list_length], got shape {ranked.shape}")
    if k < 1 or k > ranked.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the list length {ranked.shape[1]}")
    return ranked


def relevance_csr(relevant: Relevant, n_rows: int, n_cols: int | None = None) -> sp.csr_matrix:
    """``relevant`` as a binary CSR matrix ``[n_rows, n_cols]`` (a sequence of index sets
    is converted; a sparse matrix is binarised)."""
    if sp.issparse(relevant):
        m = sp.csr_matrix(relevant, copy=True)
        if m.shape[0] != n_rows:
            raise ValueError(f"relevant has {m.shape[0]} rows, ranked has {n_rows}")
        m.data = (m.data != 0).astype(np.float64)
        m.eliminate_zeros()
        return m
    if len(relevant) != n_rows:
        raise ValueError(f"relevant has {len(relevant)} entries, ranked has {n_rows} rows")
    cols = [np.unique(np.asarray(list(r), dtype=np.int64)) for r in relevant]
    lengths = np.array([len(c) for c in cols], dtype=np.int64)
    flat = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    width = int(max(n_cols or 0, (flat.max() + 1) if flat.size else 0))
    rows = np.repeat(np.arange(n_rows), lengths)
    return sp.csr_matrix((np.ones(flat.size), (rows, flat)), shape=(n_rows, max(width, 1)))


def hit_matrix(ranked: np.ndarray, relevant: Relevant) -> np.ndarray:
    """``bool[B, L]``: whether ``ranked[b, j]`` is relevant for user ``b``.

    Negative entries of ``ranked`` (padding) are never hits."""
    ranked = np.asarray(ranked)
    rel = relevance_csr(relevant, ranked.shape[0], int(ranked.max(initial=0)) + 1)
    if ranked.size == 0:
        return np.zeros(ranked.shape, dtype=bool)
    safe = np.clip(ranked, 0, rel.shape[1] - 1)
    rows = np.broadcast_to(np.arange(ranked.shape[0])[:, None], ranked.shape)
    hits = np.asarray(rel[rows.ravel(), safe.ravel()]).reshape(ranked.shape) > 0
    return hits & (ranked >= 0) & (ranked < rel.shape[1])


def _n_relevant(relevant: Relevant, n_rows: int) -> np.ndarray:
    rel = relevance_csr(relevant, n_rows)
    return np.diff(rel.indptr).astype(np.float64)


def _per_user(values: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    out = values.astype(np.float64)
    out[n_rel == 0] = np.nan
    return out


# --------------------------------------------------------------------------- accuracy


def recall_at_k(ranked: np.ndarray, relevant: Relevant, k: int) -> np.ndarray:
    """Per-user Recall@K = hits in top K / min(K, |relevant|); ``[B]``."""
    ranked = _check_ranked(ranked, k)
    hits = hit_matrix(ranked[:, :k], relevant).sum(axis=1)
    n_rel = _n_relevant(relevant, ranked.shape[0])
    return _per_user(hits / np.maximum(np.minimum(k, n_rel), 1), n_rel)


def ndcg_at_k(ranked: np.ndarray, relevant: Relevant, k: int) -> np.ndarray:
    """Per-user NDCG@K with binary relevance, ideal DCG over min(K, |relevant|) hits; ``[B]``."""
    ranked = _check_ranked(ranked, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hit_matrix(ranked[:, :k], relevant) @ discounts
    n_rel = _n_relevant(relevant, ranked.shape[0])
    ideal_cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cum[np.minimum(k, n_rel).astype(np.int64)]
    return _per_user(dcg / np.where(idcg > 0, idcg, 1.0), n_rel)


def hit_rate_at_k(ranked: np.ndarray, relevant: Relevant, k: int) -> np.ndarray:
    """Per-user HitRate@K: 1.0 if any relevant item is in the top K; ``[B]``."""
    ranked = _check_ranked(ranked, k)
    hits = hit_matrix(ranked[:, :k], relevant).any(axis=1)
    return _per_user(hits, _n_relevant(relevant, ranked.shape[0]))


def mrr(ranked: np.ndarray, relevant: Relevant) -> np.ndarray:
    """Per-user reciprocal rank of the first relevant item in the whole list (0 if none); ``[B]``."""
    ranked = _check_ranked(ranked, 1)
    hits = hit_matrix(ranked, relevant)
    first = np.argmax(hits, axis=1)
    rr = np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)
    return _per_user(rr, _n_relevant(relevant, ranked.shape[0]))


def topk_accuracy(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    """TFRS FactorizedTopK top-K accuracy.

    Args:
      ranked: ``[N, L]`` the top items of the user of each test interaction, ranked over
        ALL items (items seen in training are not excluded).
      targets: ``[N]`` the item column of each test interaction.
      k: cut-off.
    Returns: the share of interactions whose item is within the first ``k`` of its row.
    """
    ranked = _check_ranked(ranked, k)
    targets = np.asarray(targets).reshape(-1)
    if targets.shape[0] != ranked.shape[0]:
        raise ValueError(f"{targets.shape[0]} targets for {ranked.shape[0]} ranked rows")
    if targets.size == 0:
        return float("nan")
    return float((ranked[:, :k] == targets[:, None]).any(axis=1).mean())


# --------------------------------------------------------------------------- top-K selection


def top_k_excluding_seen(scores: np.ndarray, seen=None, k: int = 100) -> np.ndarray:
    """Top ``k`` item columns per row of ``scores``, best first, skipping seen items.

    Args:
      scores: ``[B, I]`` float scores.
      seen: ``None`` (exclude nothing) or a sparse ``[B, I]`` matrix whose non-zeros are the
        items to exclude (e.g. the users' training items).
      k: list length; capped at ``I``.
    Returns: ``int64[B, min(k, I)]``. Uses ``argpartition`` (O(I) per row) then sorts the
    ``k`` survivors; a row with fewer than ``k`` unseen items ends with excluded ones
    (they score ``-inf`` and are never relevant in the standard protocol).
    """
    scores = np.array(scores, copy=True)
    scores = scores.astype(np.result_type(scores.dtype, np.float32), copy=False)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [users, items], got {scores.shape}")
    if seen is not None:
        seen = sp.csr_matrix(seen)
        if seen.shape != scores.shape:
            raise ValueError(f"seen has shape {seen.shape}, scores {scores.shape}")
        rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        scores[rows, seen.indices] = -np.inf
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(k), scores.shape).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    # Sort by score descending, ties by item column ascending (deterministic).
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


# --------------------------------------------------------------------------- beyond accuracy


def coverage_at_k(ranked: np.ndarray, n_items: int, k: int) -> float:
    """Catalogue coverage@K: distinct items appearing in any top-K list / ``n_items``."""
    ranked = _check_ranked(ranked, k)
    top = ranked[:, :k]
    return float(np.unique(top[top >= 0]).size / n_items)


def item_probabilities(train_matrix: sp.spmatrix) -> np.ndarray:
    """``[I]`` p(item) = (users who interacted with it + 1) / (users + 1).

    The share of users who consumed the item, add-one smoothed so that items without
    training interactions have a finite self-information."""
    m = sp.csr_matrix(train_matrix)
    users_per_item = np.diff(sp.csc_matrix(m).indptr)
    return (users_per_item + 1.0) / (m.shape[0] + 1.0)


def novelty(ranked: np.ndarray, item_prob: np.ndarray, k: int) -> np.ndarray:
    """Per-user novelty@K: mean self-information ``-log2 p(item)`` of the top-K items; ``[B]``."""
    ranked = _check_ranked(ranked, k)
    info = -np.log2(np.asarray(item_prob, dtype=np.float64))
    return info[ranked[:, :k]].mean(axis=1)


def intra_list_diversity(ranked: np.ndarray, item_embeddings, k: int) -> np.ndarray:
    """Per-user intra-list diversity@K: mean pairwise cosine distance ``1 - cos(e_i, e_j)``
    over the ``k (k - 1) / 2`` pairs of a top-K list; ``[B]``.

    ``item_embeddings`` is dense ``[I, D]`` or sparse (e.g. TF-IDF rows). Items with a zero
    vector count as cosine 0 to everything. Computed without the ``k x k`` Gram matrix:
    the sum of pairwise cosines is ``|sum_i u_i|^2 - sum_i |u_i|^2`` for unit vectors ``u``.
    """
    ranked = _check_ranked(ranked, k)
    if k < 2:
        return np.full(ranked.shape[0], np.nan)
    if sp.issparse(item_embeddings):
        emb = sp.csr_matrix(item_embeddings, dtype=np.float64)
        norms = np.sqrt(np.asarray(emb.multiply(emb).sum(axis=1)).ravel())
        unit = sp.diags(np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1), 0.0)) @ emb
    else:
        emb = np.asarray(item_embeddings, dtype=np.float64)
        norms = np.linalg.norm(emb, axis=1)
        unit = emb / np.where(norms > 0, norms, 1.0)[:, None]
    top = ranked[:, :k]
    b = top.shape[0]
    pick = sp.csr_matrix(
        (np.ones(top.size), (np.repeat(np.arange(b), k), top.ravel())), shape=(b, emb.shape[0])
    )
    summed = pick @ unit
    sq = np.asarray(summed.multiply(summed).sum(axis=1)).ravel() if sp.issparse(summed) else (summed ** 2).sum(axis=1)
    self_sim = (norms > 0).astype(np.float64)[top].sum(axis=1)
    mean_cos = (sq - self_sim) / (k * (k - 1))
    return 1.0 - mean_cos


__all__ = [
    "recall_at_k", "ndcg_at_k", "hit_rate_at_k", "mrr", "topk_accuracy",
    "top_k_excluding_seen", "coverage_at_k", "item_probabilities", "novelty",
    "intra_list_diversity", "hit_matrix", "relevance_csr",
]
