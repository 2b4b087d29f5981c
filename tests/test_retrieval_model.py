"""The two towers: inputs driven by the data, shapes, cold ids, text modes, raw query features."""

import numpy as np
import pandas as pd
import pytest

import tensorflow as tf

from tfrs_multiscene.config import RetrievalConfig
from tfrs_multiscene.data.schema import Tables
from tfrs_multiscene.retrieval import features as F
from tfrs_multiscene.retrieval.model import build_retrieval_model
from tfrs_multiscene.retrieval.towers import FinetuneTextEmbedding, FrozenTextEmbedding

TEXT_DIM = 8


def tiny_tables(with_users=True):
    inter = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
        "item_id": ["i1", "i2", "i3", "i2", "i4", "i1"],
        "scenario": ["feed", "search", "feed", "feed", "feed", "search"],
        "timestamp": [1, 3, 2, 5, 6, 7],
    })
    items = pd.DataFrame({
        "item_id": ["i1", "i2", "i3", "i4", "i5", "i6"],  # i5, i6: never interacted (cold)
        "title": ["red shoe", "blue shoe", "green hat", "red hat", "gold ring", "iron pan"],
        "category": ["shoes", "shoes", "hats", "hats", "jewelry", "jewelry"],
        "price": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    })
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "profile": ["a", "b", "c", "d"],
                          "age_bucket": ["18-24", "25-34", "18-24", "35-44"]}) if with_users else None
    return Tables(inter, items, users)


def text_for(tables, seed=0):
    rng = np.random.default_rng(seed)
    text = {"item_embeddings": rng.normal(size=(len(tables.items), TEXT_DIM))}
    if tables.users is not None:
        text["user_embeddings"] = rng.normal(size=(len(tables.users), TEXT_DIM))
    return text


CFG = RetrievalConfig(embedding_dim=16, feature_dim=8, history_length=3)


def test_towers_output_unit_vectors_of_embedding_dim():
    tables = tiny_tables()
    model = build_retrieval_model(tables, CFG, text_for(tables))
    q = model.query_embeddings(model.query_features(["u1", "u2"], "feed", tables))
    c = model.candidate_embeddings(tables.items)
    assert q.shape == (2, 16) and c.shape == (6, 16)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, rtol=1e-5)
    assert model.score(["u1"], "feed", tables).shape == (1, 6)


def test_an_ensemble_is_one_two_tower_scoring_the_mean_of_its_independent_members():
    tables = tiny_tables()
    model = build_retrieval_model(tables, RetrievalConfig(**{**CFG.__dict__, "ensemble": 3}), text_for(tables))
    feats = model.query_features(["u1", "u2"], "feed", tables)
    q, c = model.query_embeddings(feats), model.candidate_embeddings(tables.items)
    assert q.shape == (2, 48) and c.shape == (6, 48)  # 3 members x 16, still unit vectors
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, rtol=1e-5)
    members = model.member_towers
    assert len(members) == 3
    raw_query = {k: tf.constant(np.asarray(v).astype(str)) for k, v in feats.items()}
    raw_items = F.candidate_features(tables.items, ["category"])
    member_scores = [qm(raw_query).numpy() @ cm(raw_items).numpy().T for qm, cm in members]
    np.testing.assert_allclose(q @ c.T, np.mean(member_scores, axis=0), atol=1e-5)
    # independently initialised (an ensemble, not three copies), each trained by its own loss
    first, second = (cm.item_id.embedding.embeddings.numpy() for _, cm in members[:2])
    assert not np.allclose(first, second)
    # other models (ranking) read the first member's towers: one two-tower's width and meaning
    from tfrs_multiscene.ranking import retrieval_feature_hook

    frame = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i2", "i5"], "scenario": ["feed", "feed"]})
    extras = retrieval_feature_hook(model, tables)(frame)
    first_query, first_candidate = members[0]
    np.testing.assert_allclose(extras["query_embedding"], first_query(raw_query).numpy(), atol=1e-6)
    np.testing.assert_allclose(extras["candidate_embedding"], first_candidate(raw_items).numpy()[[1, 4]], atol=1e-6)
    with pytest.raises(ValueError, match="ensemble"):
        build_retrieval_model(tables, RetrievalConfig(**{**CFG.__dict__, "ensemble": 0}), text_for(tables))


def test_features_follow_the_data():
    tables = tiny_tables()
    model = build_retrieval_model(tables, CFG, text_for(tables))
    assert set(model.candidate_model.categorical) == {"category"}  # numeric price is not categorical
    assert set(model.query_model.categorical) == {"age_bucket"}
    assert isinstance(model.candidate_model.text, FrozenTextEmbedding)
    assert isinstance(model.query_model.text, FrozenTextEmbedding)
    assert model.query_model.user_id is None  # off by default
    with_id = build_retrieval_model(tables, RetrievalConfig(**{**CFG.__dict__, "use_user_id": True}), None)
    assert with_id.query_model.user_id.vocabulary == ["u1", "u2", "u3"]
    assert model.spec.item_ids == ["i1", "i2", "i3", "i4"]  # ids of training positives
    assert model.spec.item_table_ids == tables.items.item_id.tolist()  # text rows: every item

    bare = tiny_tables(with_users=False)
    bare.items = bare.items.drop(columns=["category"])
    plain = build_retrieval_model(bare, CFG, None)
    assert plain.candidate_model.categorical == {} and plain.candidate_model.text is None
    assert plain.query_model.categorical == {} and plain.query_model.text is None
    feats = plain.query_features(["u1"], "feed", bare)
    assert set(feats) == {"user_id", "scenario", "history"}
    assert plain.query_embeddings(feats).shape == (1, 16)


def test_cold_items_are_represented_by_their_text():
    tables = tiny_tables()
    text = text_for(tables)
    model = build_retrieval_model(tables, CFG, text)
    cold = tables.items[tables.items.item_id.isin(["i5", "i6"])]  # same category, other text
    emb = model.candidate_embeddings(cold)
    assert np.isfinite(emb).all()
    assert not np.allclose(emb[0], emb[1], atol=1e-4)

    no_text = build_retrieval_model(tables, CFG, None)
    emb = no_text.candidate_embeddings(cold)
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)  # only OOV id + same category


def test_unseen_user_uses_history_and_features():
    tables = tiny_tables()
    model = build_retrieval_model(tables, CFG, text_for(tables))
    feats = model.query_features(["u4", "u1"], "feed", tables)  # u4: in the user table only
    assert list(feats["history"][0]) == ["", "", ""]
    emb = model.query_embeddings(feats)
    assert np.isfinite(emb).all() and not np.allclose(emb[0], emb[1])


def test_query_features_history_is_most_recent_first_and_padded():
    tables = tiny_tables()
    feats = F.query_features_for(["u1", "u2", "nobody"], ["feed", "search", "feed"], tables, history_length=4)
    assert list(feats["history"][0]) == ["i2", "i3", "i1", ""]  # timestamps 3, 2, 1
    assert list(feats["history"][1]) == ["i4", "i2", "", ""]
    assert list(feats["history"][2]) == ["", "", "", ""]
    assert list(feats["scenario"]) == ["feed", "search", "feed"]
    assert list(feats["age_bucket"]) == ["18-24", "25-34", ""]
    with pytest.raises(ValueError, match="scenarios"):
        F.query_features_for(["u1"], ["a", "b"], tables)


def test_positives_use_the_click_label_when_present():
    tables = tiny_tables()
    tables.interactions["click"] = [1, 0, 1, 1, 0, 1]
    assert len(F.positive_interactions(tables)) == 4
    with pytest.raises(ValueError, match="not an interaction column"):
        F.positive_interactions(tables, "purchase")


def test_id_dropout_maps_ids_to_the_oov_row_in_training_only():
    tables = tiny_tables()
    model = build_retrieval_model(tables, RetrievalConfig(embedding_dim=8, feature_dim=8, id_dropout=1.0), None)
    layer = model.candidate_model.item_id
    ids = tf.constant(["i1", "i2", "zzz"])
    assert layer.indices(ids, training=True).numpy().tolist() == [0, 0, 0]
    assert layer.indices(ids, training=False).numpy().tolist() == [1, 2, 0]


def test_bad_text_matrix_is_refused():
    tables = tiny_tables()
    with pytest.raises(ValueError, match="one row per table row"):
        build_retrieval_model(tables, CFG, {"item_embeddings": np.zeros((3, TEXT_DIM))})


class HashEncoder(tf.keras.layers.Layer):
    """Stand-in for KerasHubLayer: raw strings [N] -> trainable [N, 4]; counts its calls."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.hashing = tf.keras.layers.Hashing(64)
        self.embedding = tf.keras.layers.Embedding(64, 4)
        self.batch_sizes = []

    def call(self, texts, training=False):
        self.batch_sizes.append(int(tf.shape(texts)[0]))
        return self.embedding(self.hashing(texts))


def test_finetune_mode_encodes_each_distinct_text_once_and_trains_the_encoder():
    tables = tiny_tables(with_users=False)
    text = {"item_texts": F.item_texts(tables.items)}
    encoders = []

    def factory():
        encoders.append(HashEncoder())
        return encoders[-1]

    model = build_retrieval_model(tables, CFG, text, encoder_factory=factory)
    assert isinstance(model.candidate_model.text, FinetuneTextEmbedding)
    batch = {"item_id": tf.constant(["i1", "i1", "i5", "i1"]), "category": tf.constant(["shoes"] * 4)}
    encoders[0].batch_sizes.clear()
    with tf.GradientTape() as tape:
        out = model.candidate_model(batch, training=True)
        loss = tf.reduce_sum(out[:, 0])
    assert encoders[0].batch_sizes == [2]  # "i1" and "i5"
    grads = tape.gradient(loss, encoders[0].trainable_variables)
    assert any(g is not None and float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g)))) > 0 for g in grads)
    with pytest.raises(ValueError, match="encoder_factory"):
        build_retrieval_model(tables, CFG, text)


def test_score_fn_matches_the_evaluation_interface():
    tables = tiny_tables()
    model = build_retrieval_model(tables, CFG, text_for(tables))
    item_ids = ["i6", "i1", "i3"]  # any column order
    fn = model.score_fn(tables, item_ids, ["u2", "u1"])
    scores = fn(np.array([1, 0]), "feed")
    assert scores.shape == (2, 3)
    direct = model.score(["u1"], "feed", tables)[0]
    np.testing.assert_allclose(scores[0], direct[[5, 0, 2]], rtol=1e-5, atol=1e-6)
    assert np.isfinite(fn(np.array([0]), None)).all()  # no scenario: the "any scenario" row
    with pytest.raises(ValueError, match="not in the item table"):
        model.score_fn(tables, ["nope"], ["u1"])
