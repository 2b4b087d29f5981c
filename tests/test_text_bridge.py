"""Scratch encoder + the tf-keras bridge: finetune trains the encoder, frozen does not; save/load."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfrs_multiscene.config import TextConfig
from tfrs_multiscene.text.bridge import KerasHubLayer, text_layer_for_mode
from tfrs_multiscene.text.factory import build_text_encoder
from tfrs_multiscene.text.scratch import RESERVED_TOKENS, build_scratch_encoder, compute_vocabulary

TEXTS = ["red apple pie", "green apple", "blue jeans slim fit", "Crème brûlée dessert",
         "jazz vinyl record", "hiking boots waterproof"] * 10
TARGETS = np.arange(len(TEXTS), dtype="float32") % 3


_VOCAB = []


def tiny_encoder(**overrides):
    """A 1-layer 16-wide scratch encoder; the vocabulary is computed once per module."""
    if not _VOCAB:
        _VOCAB.extend(compute_vocabulary(TEXTS, 300))
    kwargs = dict(dim=16, num_layers=1, max_length=10, seed=7, vocabulary=list(_VOCAB))
    kwargs.update(overrides)
    return build_scratch_encoder(None, **kwargs)


def tower(layer):
    texts = tf_keras.Input(shape=(), dtype=tf.string, name="text")
    score = tf_keras.layers.Dense(1, name="score")(layer(texts))
    model = tf_keras.Model(texts, score)
    model.compile(optimizer=tf_keras.optimizers.Adam(0.05), loss="mse")
    return model


def encoder_weights(encoder):
    return [v.numpy().copy() for v in encoder.keras_backbone.trainable_variables]


def fit_one_step(model):
    model.fit(np.array(TEXTS), TARGETS, epochs=1, batch_size=len(TEXTS), verbose=0)


@pytest.fixture(scope="module")
def shared_encoder():
    return tiny_encoder()


def test_scratch_vocabulary_is_learnt_from_the_training_texts(shared_encoder):
    vocab = shared_encoder.tokenizer.get_vocabulary()
    assert vocab[:len(RESERVED_TOKENS)] == RESERVED_TOKENS
    assert {"apple", "jeans", "creme"} <= set(vocab)  # lowercased, accents stripped
    tokens = shared_encoder.tokenize(tf.constant(["green apple", "unseenword"]))
    assert tokens["token_ids"].shape == (2, 10)
    assert tokens["token_ids"][0, 0] == vocab.index("[CLS]")
    assert tokens["padding_mask"][0].numpy().tolist() == [1, 1, 1, 1] + [0] * 6
    out = shared_encoder.embed(["green apple", "green apple", "jazz"])
    assert out.shape == (3, 16) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], out[1])


def test_build_text_encoder_scratch_uses_the_config():
    cfg = TextConfig(text_encoder="scratch", text_mode="finetune", max_length=8,
                     scratch_vocab_size=200, scratch_dim=8, scratch_layers=1)
    encoder = build_text_encoder(cfg, train_texts=TEXTS)
    assert encoder.dim == 8 and encoder.max_length == 8
    assert len(encoder.tokenizer.get_vocabulary()) <= 200
    with pytest.raises(ValueError, match="start with"):
        build_scratch_encoder(None, vocabulary=["a", "b"])


def test_fingerprint_depends_on_weights_and_max_length(shared_encoder):
    same = tiny_encoder()
    assert same.fingerprint == shared_encoder.fingerprint  # same seed, same texts
    assert tiny_encoder(max_length=12).fingerprint != shared_encoder.fingerprint
    assert tiny_encoder(seed=8).fingerprint != shared_encoder.fingerprint


def test_finetune_mode_trains_the_encoder_and_checkpoints_it(tmp_path):
    encoder = tiny_encoder()
    layer = text_layer_for_mode(encoder, "finetune")
    model = tower(layer)
    assert len(layer.trainable_weights) == len(encoder.keras_backbone.trainable_variables) > 0
    before, fingerprint = encoder_weights(encoder), encoder.fingerprint
    model.save_weights(str(tmp_path / "ckpt"))
    fit_one_step(model)
    assert all(not np.allclose(a, b) for a, b in zip(before, encoder_weights(encoder)))
    assert encoder.refresh_fingerprint() != fingerprint
    model.load_weights(str(tmp_path / "ckpt"))  # the encoder's weights are in the checkpoint
    for a, b in zip(before, encoder_weights(encoder)):
        np.testing.assert_array_equal(a, b)


def test_frozen_mode_keeps_the_encoder_fixed():
    encoder = tiny_encoder()
    layer = text_layer_for_mode(encoder, "frozen")
    model = tower(layer)
    assert layer.trainable_weights == []
    head_before = model.get_layer("score").get_weights()[0].copy()
    before = encoder_weights(encoder)
    fit_one_step(model)
    for a, b in zip(before, encoder_weights(encoder)):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(head_before, model.get_layer("score").get_weights()[0])
    with pytest.raises(ValueError, match="text mode"):
        text_layer_for_mode(encoder, "melted")


def test_layer_matches_embed_and_deduplicates(shared_encoder):
    texts = tf.constant(["jazz vinyl record", "green apple", "jazz vinyl record"])
    deduped = KerasHubLayer(shared_encoder, trainable=False)(texts).numpy()
    plain = KerasHubLayer(shared_encoder, trainable=False, dedupe=False)(texts).numpy()
    assert deduped.shape == (3, 16)
    np.testing.assert_allclose(deduped, plain, atol=1e-5)
    np.testing.assert_allclose(deduped, shared_encoder.embed(texts.numpy().tolist()), atol=1e-5)
    column = KerasHubLayer(shared_encoder, trainable=False)(tf.reshape(texts, [3, 1])).numpy()
    np.testing.assert_allclose(column, deduped, atol=1e-6)


@pytest.mark.slow  # ~10 s idle, ~30 s on a loaded 2-core machine
def test_trained_tower_survives_saved_model_round_trip(tmp_path):
    encoder = tiny_encoder()
    model = tower(KerasHubLayer(encoder))
    fit_one_step(model)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(text):
        return {"score": model(text, training=False)}

    tf.saved_model.save(model, str(tmp_path / "sm"), signatures={"serving_default": serve})
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    probe = np.array(["green apple", "Crème brûlée dessert", "never seen text"])
    got = loaded.signatures["serving_default"](text=tf.constant(probe))["score"].numpy()
    np.testing.assert_allclose(got, model.predict(probe, verbose=0), atol=1e-5)
