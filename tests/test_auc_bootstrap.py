"""Paired bootstrap of AUC differences: exact on unit weights, honest about noise."""

import numpy as np
import pytest

from tfrs_multiscene.evaluation import auc_bootstrap as AB
from tfrs_multiscene.evaluation.ranking_metrics import auc


def test_weighted_auc_with_unit_weights_is_the_auc_ties_included():
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.3).astype(float)
    s = np.round(y + rng.normal(size=500), 1)  # rounding makes many ties
    order, group = AB._sorted_groups(s)
    got = AB._weighted_auc(y[order], np.ones(500), group, int(group[-1]) + 1)
    assert got == pytest.approx(auc(y, s), abs=1e-12)


def world(n, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(float)
    return y, signal, rng


def test_a_real_difference_is_outside_the_noise_and_a_tiny_one_is_not():
    y, signal, rng = world(4000)
    strong, weak = signal + 0.3 * rng.normal(size=y.size), signal + 2.0 * rng.normal(size=y.size)
    draws = AB.bootstrap_aucs(y, {"model": strong, "pooled": weak, "same": strong.copy()}, n=200, seed=1)
    real = AB.difference(y, strong, weak, draws, "model", "pooled")
    assert real["ci95"][0] > 0 and real["estimate"] == pytest.approx(auc(y, strong) - auc(y, weak))
    same = AB.difference(y, strong, strong, draws, "model", "same")
    assert same["estimate"] == 0 and same["ci95"] == [0.0, 0.0]
    nudged = strong + 1e-3 * rng.normal(size=y.size)  # a difference far below the sampling noise
    draws = AB.bootstrap_aucs(y, {"model": strong, "other": nudged}, n=200, seed=2)
    tiny = AB.difference(y, strong, nudged, draws, "model", "other")
    assert tiny["ci95"][0] < 0 < tiny["ci95"][1] or tiny["ci95"] == [0.0, 0.0]


def test_gap_closed_is_one_when_the_model_is_the_oracle():
    y, signal, rng = world(2000, seed=3)
    pooled = rng.normal(size=y.size) + 0.2 * signal
    draws = AB.bootstrap_aucs(y, {"model": signal, "pooled": pooled, "oracle": signal}, n=50)
    closed = AB.gap_closed(y, signal, pooled, signal, draws)
    assert closed["estimate"] == pytest.approx(1.0) and closed["ci95"] == pytest.approx([1.0, 1.0])


def test_misaligned_scores_are_refused():
    with pytest.raises(ValueError, match="scores for"):
        AB.bootstrap_aucs([0, 1, 1], {"model": [0.1, 0.2]})
