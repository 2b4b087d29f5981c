"""Ranking examples: impression logs, positive-only logs with sampled negatives, derived labels."""

import numpy as np
import pytest

from test_ranking_fixtures import tiny_tables
from tfrs_multiscene.config import RankingConfig
from tfrs_multiscene.ranking import data as D


def test_impression_log_keeps_rows_and_joins_item_and_user_columns():
    tables = tiny_tables(n=50)
    assert D.is_impression_log(tables)
    assert D.ranking_tasks(tables) == ["click", "conversion"]
    frame = D.build_examples(tables, RankingConfig())
    assert len(frame) == 50
    assert {"category", "brand", "price", "title", "age_bucket", "profile"} <= set(frame.columns)
    assert (frame["click"].to_numpy() == tables.interactions["click"].to_numpy()).all()


def test_positive_only_log_gets_catalogue_negatives_never_seen_by_the_user():
    tables = tiny_tables(n=200, positives_only=True)
    assert not D.is_impression_log(tables)
    cfg = RankingConfig(negatives_per_positive=3)
    assert D.ranking_tasks(tables) == ["interaction", "liked", "rating"]
    frame = D.build_examples(tables, cfg, seed=1)
    n_pos = len(tables.interactions)
    assert len(frame) == 4 * n_pos
    neg = frame[frame["interaction"] == 0]
    assert len(neg) == 3 * n_pos
    seen = set(zip(tables.interactions["user_id"], tables.interactions["item_id"]))
    assert not any((u, i) in seen for u, i in zip(neg["user_id"], neg["item_id"]))
    pos = frame[frame["interaction"] == 1]
    assert ((pos["rating"] >= 4) == (pos["liked"] == 1)).all()  # liked = rating >= 4
    assert neg["liked"].isna().all()  # a sampled item was never rated: liked is unknown, not 0
    tg = D.targets(frame, ["interaction", "liked", "rating"], cfg)
    sampled = frame["interaction"].to_numpy() == 0
    for task in ("rating", "liked"):  # judgements of rated items: learnt on the rated rows only
        assert tg[f"mask/{task}"][sampled].sum() == 0
        assert tg[f"mask/{task}"][~sampled].min() == 1
    assert tg["mask/interaction"].min() == 1  # interaction learns rated vs sampled


def test_retrieval_hard_negatives_come_from_the_candidate_lists():
    tables = tiny_tables(n=200, positives_only=True)
    cfg = RankingConfig(negatives_per_positive=2, negative_source="retrieval")
    with pytest.raises(ValueError, match="candidate_fn"):
        D.build_examples(tables, cfg)
    hard = ["i1", "i2", "i3", "i4", "i5", "i6"]
    frame = D.build_examples(tables, cfg, candidate_fn=lambda rows: [hard] * len(rows))
    neg = frame[frame["interaction"] == 0]
    # a user who has seen every candidate falls back to the catalogue; others only get candidates
    seen = tables.interactions.groupby("user_id")["item_id"].agg(set)
    fine = neg[neg["user_id"].map(lambda u: len(set(hard) - seen[u]) >= 2)]
    assert len(fine) and fine["item_id"].isin(hard).all()


def test_model_inputs_types_and_missing_values():
    tables = tiny_tables(n=30)
    from tfrs_multiscene.ranking.features import build_feature_spec

    spec = build_feature_spec(tables, ["click"])
    assert spec.has_timestamp and "price" in spec.numeric and "category" in spec.vocabularies
    frame = D.build_examples(tables, RankingConfig())
    frame.loc[0, "price"] = np.nan
    inputs = D.model_inputs(frame, spec)
    assert inputs["user_id"].dtype == object and inputs["timestamp"].dtype == np.int64
    assert np.isnan(inputs["price"][0])
    assert set(inputs) == set(spec.input_names())


def test_skewed_positive_numerics_are_standardised_on_the_log_scale():
    import tensorflow as tf

    from tfrs_multiscene.ranking.features import FeatureEncoder, build_feature_spec

    tables = tiny_tables(n=60)
    tables.items["price"] = np.exp(np.linspace(0.0, 6.0, len(tables.items)))  # log-uniform: skewed
    spec = build_feature_spec(tables, ["click"], log_skewed=True)
    mean, std, kind = spec.numeric["price"]
    assert kind == "log" and abs(mean - 3.0) < 1e-6
    assert len(build_feature_spec(tables, ["click"]).numeric["price"]) == 2  # off by default
    tables.items["price"] = np.linspace(1.0, 100.0, len(tables.items))  # not skewed: left linear
    assert len(build_feature_spec(tables, ["click"], log_skewed=True).numeric["price"]) == 2
    spec.numeric = {"price": [mean, std, "log"]}
    enc = FeatureEncoder(spec, 4, dot_interactions=False)
    frame = D.build_examples(tables, RankingConfig())
    inputs = {k: tf.constant(v[:3]) for k, v in D.model_inputs(frame, spec).items()}
    inputs["price"] = tf.constant([np.exp(3.0), -1.0, np.nan], tf.float32)
    x = enc(inputs).numpy()
    col = x[:, -1]  # numerics come after the embedding fields
    np.testing.assert_allclose(col, [0.0, 0.0, 0.0], atol=1e-5)
    inputs["price"] = tf.constant([np.exp(3.0 + std)] * 3, tf.float32)
    np.testing.assert_allclose(enc(inputs).numpy()[:, -1], 1.0, rtol=1e-4)
