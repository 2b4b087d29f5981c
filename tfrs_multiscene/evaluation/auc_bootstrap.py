"""Paired bootstrap of AUC: is a difference between two methods larger than the noise?

Every method is scored on the same test impressions, so their AUCs are correlated and the
question "does the model beat the pooled baseline on ads?" is about the *paired*
difference. :func:`bootstrap_aucs` draws ``n`` Poisson(1) weight vectors over the
impressions (the Poisson bootstrap: a resample without materialising it) and computes every
method's weighted AUC under each, so row ``r`` of every method saw the same resample.
:func:`difference` and :func:`gap_closed` summarise the draws as a point estimate (on the
full data), a standard error and a 95% percentile interval.

Weighted AUC with ties: sort once per method; within the sort, per group of equal scores,
AUC = sum_groups W+_g (W-_below_g + W-_g / 2) / (W+ W-), which is O(N) per resample.
"""

from __future__ import annotations

import numpy as np

from tfrs_multiscene.evaluation.ranking_metrics import auc

DEFAULT_RESAMPLES = 200


def _sorted_groups(scores: np.ndarray):
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    group = np.concatenate([[0], np.cumsum(s[1:] != s[:-1])])
    return order, group


def _weighted_auc(labels: np.ndarray, weights: np.ndarray, group: np.ndarray, n_groups: int) -> float:
    pos = np.bincount(group, weights * labels, minlength=n_groups)
    neg = np.bincount(group, weights * (1.0 - labels), minlength=n_groups)
    below = np.cumsum(neg) - neg
    total = pos.sum() * neg.sum()
    return float(np.sum(pos * (below + 0.5 * neg)) / total) if total > 0 else float("nan")


def bootstrap_aucs(labels, scores: dict, n: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """``{method: float[n]}``: each method's AUC on the same ``n`` Poisson-weighted resamples
    of the rows (``labels`` 0/1 ``[N]``, ``scores[method]`` ``[N]``, rows aligned)."""
    y = np.asarray(labels, np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    weights = rng.poisson(1.0, size=(n, y.size)).astype(np.float64)
    out = {}
    for method, s in scores.items():
        s = np.asarray(s, np.float64).reshape(-1)
        if s.shape != y.shape:
            raise ValueError(f"{method}: {s.size} scores for {y.size} labels")
        order, group = _sorted_groups(s)
        n_groups = int(group[-1]) + 1 if group.size else 0
        out[method] = np.array([_weighted_auc(y[order], w[order], group, n_groups) for w in weights])
    return out


def _summary(point: float, draws: np.ndarray) -> dict:
    draws = draws[np.isfinite(draws)]
    if draws.size < 2:
        return {"estimate": point, "se": float("nan"), "ci95": [float("nan"), float("nan")]}
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return {"estimate": point, "se": float(np.std(draws, ddof=1)), "ci95": [float(lo), float(hi)]}


def difference(labels, a, b, draws: dict, name_a: str, name_b: str) -> dict:
    """AUC(a) - AUC(b): estimate on all rows, bootstrap SE and 95% interval."""
    return _summary(auc(labels, a) - auc(labels, b), draws[name_a] - draws[name_b])


def gap_closed(labels, model, pooled, oracle, draws: dict) -> dict:
    """(AUC(model) - AUC(pooled)) / (AUC(oracle) - AUC(pooled)) with its bootstrap interval."""
    point_gap = auc(labels, oracle) - auc(labels, pooled)
    point = (auc(labels, model) - auc(labels, pooled)) / point_gap if point_gap > 0 else float("nan")
    gap = draws["oracle"] - draws["pooled"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(gap > 0, (draws["model"] - draws["pooled"]) / gap, np.nan)
    return _summary(point, ratio)
