"""Ranking losses and example weights on hand-computed cases."""

import math

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrs_multiscene.config import RankingConfig
from tfrs_multiscene.ranking import data as D
from tfrs_multiscene.ranking.model import ranking_loss


def bce(y, p):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def t(x):
    return tf.constant(x, tf.float32)


def test_weighted_masked_binary_cross_entropy():
    targets = {"label/click": t([1, 0, 1]), "mask/click": t([1, 1, 0]), "weight": t([2, 1, 5])}
    total, per = ranking_loss(targets, {"click": t([0.8, 0.4, 0.1])}, ["click"])
    expected = (2 * bce(1, 0.8) + 1 * bce(0, 0.4)) / 3  # third example masked out
    assert per["click"].numpy() == pytest.approx(expected, rel=1e-5)
    assert total.numpy() == pytest.approx(expected, rel=1e-5)


def test_esmm_and_clicks_only_conversion_losses():
    outputs = {"click": t([0.5, 0.2]), "conversion_given_click": t([0.6, 0.3])}
    outputs["conversion"] = outputs["click"] * outputs["conversion_given_click"]
    frame = pd.DataFrame({"click": [1, 0], "conversion": [1, 0]})
    for mode in ("esmm", "clicks_only"):
        cfg = RankingConfig(conversion_mode=mode)
        targets = {k: t(v) for k, v in D.targets(frame, ["click", "conversion"], cfg).items()}
        targets["weight"] = t([1, 1])
        _, per = ranking_loss(targets, outputs, ["click", "conversion"], conversion_mode=mode)
        if mode == "esmm":  # P(click & convert) = 0.3 and 0.06 on all impressions
            expected = (bce(1, 0.3) + bce(0, 0.06)) / 2
        else:  # pCVR on the clicked impression only
            expected = bce(1, 0.6)
        assert per["conversion"].numpy() == pytest.approx(expected, rel=1e-5), mode


def test_rating_mse_masked_on_sampled_negatives_and_task_weights():
    targets = {"label/rating": t([4, 2, 0]), "mask/rating": t([1, 1, 0]), "label/liked": t([1, 0, 0]),
               "mask/liked": t([1, 1, 1]), "weight": t([1, 1, 1])}
    outputs = {"rating": t([3.0, 2.5, 9.0]), "liked": t([0.9, 0.2, 0.5])}
    total, per = ranking_loss(targets, outputs, ["liked", "rating"], task_weights={"rating": 0.5})
    mse = (1.0 + 0.25) / 2
    ce = (bce(1, 0.9) + bce(0, 0.2) + bce(0, 0.5)) / 3
    assert per["rating"].numpy() == pytest.approx(mse, rel=1e-5)
    assert total.numpy() == pytest.approx(ce + 0.5 * mse, rel=1e-5)


def test_bad_loss_options_are_refused():
    targets = {"label/click": t([1]), "mask/click": t([1]), "weight": t([1])}
    with pytest.raises(ValueError, match="unknown task"):
        ranking_loss(targets, {"click": t([0.5])}, ["click"], task_weights={"clik": 1.0})
    with pytest.raises(ValueError, match="conversion_mode"):
        ranking_loss(targets, {"click": t([0.5])}, ["click"], conversion_mode="cvr")


def test_scenario_weights_balance_totals():
    scen = pd.Series(["big"] * 6 + ["small"] * 2)
    w = D.scenario_weights(scen, power=1.0)
    assert w["big"] * 6 == pytest.approx(w["small"] * 2)  # equal total weight per scenario
    assert (w["big"] * 6 + w["small"] * 2) / 8 == pytest.approx(1.0)  # mean weight 1
    half = D.scenario_weights(scen, power=0.5)
    assert half["small"] / half["big"] == pytest.approx(math.sqrt(3))
    frame = pd.DataFrame({"scenario": scen, "weight": [2.0] + [1.0] * 7})
    ew = D.example_weights(frame, RankingConfig(balance_scenarios=True, scenario_weight_power=1.0))
    assert ew[0] == pytest.approx(2 * w["big"]) and ew[-1] == pytest.approx(w["small"])
    assert np.allclose(D.example_weights(frame, RankingConfig(balance_scenarios=False))[1:], 1.0)
