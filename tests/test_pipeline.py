"""Vocabularies from the training split (OOV), feature dicts, tf.data batches, histories."""

import numpy as np
import pandas as pd
import pytest

from tfrs_multiscene.config import GenerateConfig, SplitConfig
from tfrs_multiscene.data import synthetic
from tfrs_multiscene.data.pipeline import (
    history_features,
    interaction_features,
    make_dataset,
    user_histories,
)
from tfrs_multiscene.data.schema import Tables
from tfrs_multiscene.data.splits import make_split
from tfrs_multiscene.data.vocab import Vocabularies


@pytest.fixture(scope="module")
def split():
    tables = synthetic.generate(GenerateConfig(users=80, items=60, impressions=1500, seed=11))
    return make_split(tables, SplitConfig(split="cold_item", test_fraction=0.2, seed=0))


@pytest.fixture(scope="module")
def vocab(split):
    return Vocabularies.from_tables(split.train)


def test_vocab_is_built_from_training_split_only(split, vocab):
    train_items = set(split.train.interactions.item_id)
    assert set(vocab.vocabulary("item_id")) == train_items
    assert vocab.size("item_id") == len(train_items) + 1
    test_ids = split.test.interactions.item_id.to_numpy()
    assert (vocab.lookup("item_id", test_ids) == 0).all()  # held-out items are OOV
    known = vocab.lookup("item_id", split.train.interactions.item_id.to_numpy())
    assert known.min() >= 1 and known.max() == len(train_items)
    assert set(vocab.names) >= {"user_id", "item_id", "scenario", "category", "brand", "age_bucket"}
    assert vocab.lookup("scenario", ["no_such_scenario", "home_feed"]).tolist()[0] == 0
    # most frequent first
    counts = split.train.interactions.item_id.value_counts()
    assert vocab.vocabulary("item_id")[0] == counts.index[0]


def test_vocab_save_load_roundtrip(tmp_path, vocab):
    vocab.save(tmp_path)
    again = Vocabularies.load(tmp_path)
    assert again == vocab
    lines = (tmp_path / "item_id.txt").read_text().splitlines()
    assert lines == vocab.vocabulary("item_id")
    with pytest.raises(FileNotFoundError):
        Vocabularies.load(tmp_path / "missing")
    with pytest.raises(KeyError, match="no vocabulary"):
        vocab.size("colour")


def test_vocab_matches_keras_string_lookup(vocab):
    import tensorflow as tf

    layer = tf.keras.layers.StringLookup(vocabulary=vocab.vocabulary("brand"), num_oov_indices=1)
    values = np.array(vocab.vocabulary("brand")[:5] + ["Unseenbrand"], dtype=object)
    np.testing.assert_array_equal(layer(tf.constant(values)).numpy(), vocab.lookup("brand", values))


def test_interaction_features_join_items_and_users(split, vocab):
    tables = split.train
    feats = interaction_features(tables, vocab)
    n = len(tables.interactions)
    assert all(len(v) == n for v in feats.values())
    items = tables.items.set_index("item_id")
    users = tables.users.set_index("user_id")
    row = 7
    item, user = feats["item_id"][row], feats["user_id"][row]
    assert feats["title"][row] == items.title[item] and feats["category"][row] == items.category[item]
    assert feats["price"][row] == pytest.approx(items.price[item])
    assert feats["profile"][row] == users.profile[user]
    assert feats["click"].dtype == np.float32 and set(np.unique(feats["click"])) <= {0.0, 1.0}
    assert (feats["weight"] == 1).all() and feats["timestamp"].dtype == np.int64
    assert "is_cold" not in feats  # ground truth, not a feature
    assert feats["item_id_idx"][row] == vocab.lookup("item_id", [item])[0]


def test_interaction_features_refuse_unknown_items(split):
    bad = split.train.interactions.copy()
    bad.loc[0, "item_id"] = "not-an-item"
    with pytest.raises(ValueError, match="missing from the items table"):
        interaction_features(split.train.with_interactions(bad))


def test_dataset_batches_have_expected_shapes(split, vocab):
    feats = interaction_features(split.train, vocab)
    n = len(feats["user_id"])
    ds = make_dataset(feats, batch_size=64, shuffle=True, seed=1)
    batches = list(ds)
    assert len(batches) == -(-n // 64)
    first = batches[0]
    assert set(first) == set(feats)
    assert first["user_id"].shape == (64,) and first["user_id"].dtype.name == "string"
    assert first["item_id_idx"].dtype.name == "int64" and first["price"].dtype.name == "float32"
    seen = np.concatenate([b["timestamp"].numpy() for b in batches])
    assert sorted(seen.tolist()) == sorted(feats["timestamp"].tolist())  # every row once
    assert not np.array_equal(seen, feats["timestamp"])  # shuffled
    again = np.concatenate([b["timestamp"].numpy() for b in make_dataset(feats, 64, seed=1)])
    np.testing.assert_array_equal(seen, again)  # seeded


def test_dataset_in_order_and_repeat(split):
    feats = interaction_features(split.train)
    ordered = make_dataset(feats, batch_size=100, shuffle=False)
    got = np.concatenate([b["timestamp"].numpy() for b in ordered])
    np.testing.assert_array_equal(got, feats["timestamp"])
    endless = make_dataset(feats, batch_size=100, repeat=True, drop_remainder=True)
    assert len(list(endless.take(3 * len(got) // 100))) == 3 * len(got) // 100
    with pytest.raises(ValueError, match="one length"):
        make_dataset({"a": np.zeros(3), "b": np.zeros(4)}, batch_size=2)


def _tiny_log():
    inter = pd.DataFrame({
        "user_id": ["a", "a", "a", "a", "b", "b"],
        "item_id": ["x", "y", "z", "w", "x", "y"],
        "scenario": "s",
        "timestamp": [4, 1, 2, 2, 5, 6],
        "click": [1, 1, 0, 1, 0, 1],
    })
    items = pd.DataFrame({"item_id": ["x", "y", "z", "w"], "title": ["tx", "ty", "tz", "tw"]})
    return Tables(inter, items)


def test_user_histories_are_positives_most_recent_last():
    hist = user_histories(_tiny_log(), max_length=5)
    assert hist == {"a": ["y", "w", "x"], "b": ["y"]}
    assert user_histories(_tiny_log(), max_length=2)["a"] == ["w", "x"]
    assert user_histories(_tiny_log(), max_length=5, label=None)["a"] == ["y", "z", "w", "x"]


def test_history_features_see_only_earlier_positives():
    hist = history_features(_tiny_log(), max_length=2)
    assert hist.shape == (6, 2)
    assert hist[1].tolist() == ["", ""]        # a's first event
    assert hist[2].tolist() == ["", "y"]       # t=2: only y (t=1) is earlier
    assert hist[3].tolist() == ["", "y"]       # same time as z: w does not see itself
    assert hist[0].tolist() == ["y", "w"]      # t=4: y, w earlier; z was not clicked
    assert hist[5].tolist() == ["", ""]        # b: x was not clicked
