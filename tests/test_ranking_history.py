"""The user-history affinity feature: what it computes, that it uses no label and no future,
and that the ranking servable computes the same value the model was trained with."""

import numpy as np
import pandas as pd
import pytest

from tfrs_multiscene.ranking.history import (HISTORY_AFFINITY, UserHistoryAffinity, exposure_projection,
                                             interaction_log, principal_projection)

# three items on orthogonal-ish unit vectors: x and y at 60 degrees, z orthogonal to both
E = np.array([[1.0, 0.0, 0.0], [0.5, np.sqrt(3) / 2, 0.0], [0.0, 0.0, 1.0]])
ITEMS = ["x", "y", "z"]


def feature(log_users, log_items, log_times, users, items, times=None):
    h = UserHistoryAffinity(ITEMS, E, log_users, log_items, log_times)
    return h.affinity(users, items, times)


def test_cosine_with_what_the_user_was_shown_strictly_before():
    # user a saw x at t=1 and y at t=3; b saw z at t=2
    got = feature(["a", "a", "b"], ["x", "y", "z"], [1, 3, 2],
                  users=["a", "a", "a", "a", "b"], items=["y", "y", "x", "z", "z"], times=[2, 3, 1, 9, 5])
    # (a, y, 2): history {x} -> cos(x, y) = 0.5; (a, y, 3): still {x} (strictly before);
    # (a, x, 1): nothing earlier -> 0; (a, z, 9): {x, y} -> z is orthogonal -> 0; (b, z, 5): {z} -> 1
    np.testing.assert_allclose(got, [0.5, 0.5, 0.0, 0.0, 1.0], atol=1e-9)
    both = feature(["a", "a"], ["x", "y"], [1, 3], ["a"], ["x"], [10])
    mean = (E[0] + E[1]) / np.linalg.norm(E[0] + E[1])
    np.testing.assert_allclose(both, [mean @ E[0]], atol=1e-9)  # cos 30 degrees


def test_unknown_users_and_items_get_zero():
    got = feature(["a"], ["x"], [1], ["stranger", "a", "a"], ["x", "unknown_item", "x"], [5, 5, 5])
    np.testing.assert_allclose(got, [0.0, 0.0, 1.0])


def test_an_empty_log_gives_zero():
    np.testing.assert_array_equal(feature([], [], [], ["a"], ["x"], [1]), [0.0])
    np.testing.assert_array_equal(feature([], [], None, ["a"], ["x"]), [0.0])


def test_without_timestamps_the_item_itself_is_left_out():
    # a saw x twice and y once: for x the history is {y}; for z (never seen) it is {x, x, y}
    got = feature(["a", "a", "a"], ["x", "x", "y"], None, ["a", "a"], ["x", "z"])
    np.testing.assert_allclose(got, [0.5, 0.0], atol=1e-9)
    only_x = feature(["a"], ["x"], None, ["a"], ["x"])
    np.testing.assert_allclose(only_x, [0.0], atol=1e-9)  # nothing else seen: no history


def test_no_label_and_no_later_interaction_changes_the_feature():
    rng = np.random.default_rng(0)
    n = 300
    log = pd.DataFrame({"user_id": rng.choice(["a", "b", "c"], n), "item_id": rng.choice(ITEMS, n),
                        "timestamp": rng.integers(0, 1000, n), "click": rng.integers(0, 2, n)})
    h = UserHistoryAffinity.from_embeddings(ITEMS, E, log, dims=3)
    flipped = UserHistoryAffinity.from_embeddings(ITEMS, E, log.assign(click=1 - log["click"]), dims=3)
    frame = log.iloc[:50]
    np.testing.assert_array_equal(h(frame)[HISTORY_AFFINITY], flipped(frame)[HISTORY_AFFINITY])
    # a user's later impressions never enter an earlier feature (the projection is fitted once
    # per run, on the whole log, and held fixed)
    early = frame[frame["timestamp"] < 500]
    later = pd.concat([log, log.assign(timestamp=log["timestamp"] + 500)], ignore_index=True)
    with_later = UserHistoryAffinity(ITEMS, h.item_vectors, later["user_id"], later["item_id"], later["timestamp"])
    np.testing.assert_allclose(with_later(early)[HISTORY_AFFINITY], h(early)[HISTORY_AFFINITY], atol=1e-6)
    assert h(frame)[HISTORY_AFFINITY].shape == (50, 1) and h(frame)[HISTORY_AFFINITY].dtype == np.float32


def test_principal_projection_centres_and_normalises():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 10))
    p = principal_projection(x, 4)
    assert p.shape == (40, 4)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(principal_projection(x + 7.0, 4), p, atol=1e-9)  # a shared offset carries nothing
    assert principal_projection(x[:3], 32).shape == (3, 3)


def test_the_exposure_projection_keeps_the_directions_users_interests_follow_not_the_loudest():
    """Items of 3 topics whose text vectors carry the topic faintly (norm 1) and item-specific
    noise loudly (std 3 in 7 other directions); each user is shown mostly items of one topic.
    The principal directions are the noise; the exposure projection finds the topics, so its
    feature tells a user's topic's items from the others and the principal one barely does."""
    rng = np.random.default_rng(3)
    n_items, n_users = 120, 60
    topic = np.arange(n_items) % 3
    embeddings = np.hstack([np.eye(3)[topic], rng.normal(0.0, 3.0, size=(n_items, 7))])
    favourite = rng.integers(3, size=n_users)
    rows = []
    for u in range(n_users):
        own = np.flatnonzero(topic == favourite[u])
        shown = np.where(rng.random(30) < 0.8, rng.choice(own, 30), rng.integers(n_items, size=30))
        rows += [(f"u{u}", f"i{i}") for i in shown]
    log = pd.DataFrame(rows, columns=["user_id", "item_id"])
    items = [f"i{i}" for i in range(n_items)]
    probe_users = np.repeat(np.arange(n_users), n_items)
    probe = pd.DataFrame({"user_id": [f"u{u}" for u in probe_users], "item_id": items * n_users})
    truth = (favourite[probe_users] == np.tile(topic, n_users)).astype(float)

    def separation(vectors):
        f = UserHistoryAffinity(items, vectors, log["user_id"], log["item_id"]).affinity(probe["user_id"], probe["item_id"])
        return np.corrcoef(f, truth)[0, 1]

    exposure = exposure_projection(embeddings, log["user_id"], pd.Index(items).get_indexer(log["item_id"]), dims=2)
    assert exposure.shape == (n_items, 2)
    np.testing.assert_allclose(np.linalg.norm(exposure, axis=1), 1.0, atol=1e-9)
    assert separation(exposure) > 0.8
    assert separation(exposure) > separation(principal_projection(embeddings, 2)) + 0.3
    # the feature's own constructor uses it
    built = UserHistoryAffinity.from_embeddings(items, embeddings, log, dims=2)
    np.testing.assert_allclose(built.item_vectors, exposure, atol=1e-6)


def test_without_a_usable_log_the_projection_falls_back_to_principal_directions():
    x = np.random.default_rng(4).normal(size=(5, 6))
    np.testing.assert_allclose(exposure_projection(x, ["a", "b"], [0, 1], dims=2), principal_projection(x, 2))
    np.testing.assert_allclose(exposure_projection(x, [], [], dims=2), principal_projection(x, 2))


def test_user_vectors_are_the_whole_log_and_saving_keeps_the_feature(tmp_path):
    h = UserHistoryAffinity(ITEMS, E, ["a", "a", "b"], ["x", "y", "z"], [1, 3, 2])
    vectors = dict(zip(h.user_ids, h.user_vectors()))
    np.testing.assert_allclose(vectors["a"], (E[0] + E[1]) / np.linalg.norm(E[0] + E[1]), atol=1e-6)
    # the serving value (user vector . item vector) is the feature after the last logged time
    np.testing.assert_allclose(vectors["a"] @ E[1], h.affinity(["a"], ["y"], [100])[0], atol=1e-6)
    back = UserHistoryAffinity.load(h.save(tmp_path / "h.npz"))
    users, items, times = ["a", "a", "b", "c"], ["y", "z", "z", "x"], [2, 9, 5, 5]
    np.testing.assert_allclose(back.affinity(users, items, times), h.affinity(users, items, times))


def test_the_log_counts_a_shared_validation_and_test_part_once():
    from tfrs_multiscene.data.schema import Tables

    inter = pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "timestamp": [1]})
    train, other = Tables(inter, pd.DataFrame({"item_id": ITEMS}), None), Tables(inter.copy(), None, None)
    assert len(interaction_log([train, other, other])) == 2


def test_the_ranking_servable_computes_the_trained_feature(tmp_path):
    """A ranking model reading history_affinity, exported with its feature: the servable's
    scores equal the in-memory model's on the feature after the whole log; a user the log does
    not know gets the feature 0; and the feature moves the scores (the test would notice a
    servable that fed it a constant)."""
    import tensorflow as tf

    import tfrs_multiscene
    from tfrs_multiscene.config import RankingConfig
    from tfrs_multiscene.export.servables import PointwiseRanker, export_ranking
    from tfrs_multiscene.ranking import build_ranking_model
    from tfrs_multiscene.ranking import data as D
    from tfrs_multiscene.ranking.evaluate import predict
    from tfrs_multiscene.ranking.train import _dummy_inputs
    from test_export_models import N_ITEMS, tables

    tf.keras.utils.set_random_seed(0)
    t = tables()
    rng = np.random.default_rng(2)
    log = t.interactions.assign(timestamp=rng.integers(0, 1000, len(t.interactions)))
    history = UserHistoryAffinity.from_embeddings(t.items["item_id"], rng.normal(size=(N_ITEMS, 12)), log, dims=6)
    ranking = build_ranking_model(t, RankingConfig(), {HISTORY_AFFINITY: 1}, tasks=["click", "conversion"])
    ranking(_dummy_inputs(ranking.spec))
    item_columns = {c: t.items[c].to_numpy() for c in t.items.columns if c != "item_id"}
    user_columns = {c: t.users[c].to_numpy() for c in t.users.columns if c != "user_id"}
    ranker = PointwiseRanker(ranking, ranking.spec.input_signature(), ranking.tasks, t.items["item_id"], item_columns,
                             t.users["user_id"], user_columns, history=history)
    assert HISTORY_AFFINITY not in ranker.request_spec, "the servable computes the feature, the client does not send it"
    path = export_ranking(tmp_path, ranker, ranker.request_spec, ranker.tasks, name="ranking")
    served = tfrs_multiscene.load(path)

    users, items = ["u1", "u2", "nobody"], [["i3", "i4", "i7"], ["i0", "i1", "i2"], ["i5", "i6", "i8"]]
    request = {"user_id": tf.constant(users), "scenario": tf.constant(["home", "search", "home"]),
               "item_ids": tf.constant(items)}
    if "timestamp" in ranker.request_spec:
        request["timestamp"] = tf.constant([0, 0, 0], tf.int64)
    got = served("serving_default", **{k: v for k, v in request.items() if k in ranker.request_spec})["click"].numpy()

    frame = pd.DataFrame({"user_id": np.repeat(users, 3), "item_id": np.ravel(items),
                          "scenario": np.repeat(["home", "search", "home"], 3), "timestamp": 0})
    frame = D.join_features(frame, t)
    value = history.affinity(frame["user_id"], frame["item_id"], np.full(len(frame), 10**6))
    assert np.all(value[6:] == 0) and np.abs(value[:6]).min() > 0
    expected = predict(ranking, D.model_inputs(frame, ranking.spec, {HISTORY_AFFINITY: value[:, None]}))["click"]
    np.testing.assert_allclose(got.ravel(), expected, rtol=1e-4, atol=1e-6)
    blank = predict(ranking, D.model_inputs(frame, ranking.spec, {HISTORY_AFFINITY: np.zeros((len(frame), 1))}))["click"]
    assert np.abs(blank[:6] - expected[:6]).max() > 1e-4
    with pytest.raises(ValueError, match="history_affinity"):
        PointwiseRanker(ranking, ranking.spec.input_signature(), ranking.tasks, t.items["item_id"], item_columns,
                        t.users["user_id"], user_columns)
