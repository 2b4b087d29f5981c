"""The frozen text path: pretrained MiniLM (hash check, tokenizer, reference), embed, cache."""

import math
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfrs_multiscene.config import TextConfig
from tfrs_multiscene.text import cache as cache_mod
from tfrs_multiscene.text.cache import EmbeddingCache
from tfrs_multiscene.text.factory import build_text_encoder
from tfrs_multiscene.text.minilm import (
    MINILM_SHA256, WeightsHashError, load_minilm, load_pretrained_dir, minilm_dir)

SENTENCES = [
    "a cat sits on the mat",
    "a kitten is on the rug",
    "stock market crashes",
    "Café Crème brûlée",
    "Cafe Creme brulee",
    "Zürich: naïve façade, São Paulo!",
]


@pytest.fixture(scope="module")
def minilm():
    return load_minilm(max_length=32)


@pytest.fixture(scope="module")
def embedded(minilm):
    return minilm.embed(SENTENCES)


def test_minilm_embeddings_are_unit_vectors_of_dim_384(minilm, embedded):
    assert minilm.dim == 384
    assert embedded.shape == (len(SENTENCES), 384) and embedded.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, atol=1e-5)


def test_minilm_semantic_sanity(embedded):
    cos = embedded @ embedded.T
    assert cos[0, 1] > 0.5
    assert cos[0, 1] > cos[0, 2] + 0.3
    assert cos[1, 0] > cos[1, 2] + 0.3


def test_accents_are_stripped_like_the_original_tokenizer(minilm, embedded):
    assert float(embedded[3] @ embedded[4]) > 0.99
    tokens = minilm.tokenize(tf.constant(["Café Crème brûlée"]))
    unk = minilm.tokenizer.token_to_id("[UNK]")
    assert unk not in tokens["token_ids"].numpy()


def test_token_ids_match_the_hugging_face_tokenizer(minilm):
    tokenizers = pytest.importorskip("tokenizers")
    reference = tokenizers.Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    reference.no_padding()
    reference.enable_truncation(max_length=minilm.max_length)
    ours = minilm.tokenize(tf.constant(SENTENCES + ["word " * 100]))
    for row, text in enumerate(SENTENCES + ["word " * 100]):
        expected = reference.encode(text).ids
        n = int(ours["padding_mask"][row].numpy().sum())
        assert ours["token_ids"][row, :n].numpy().tolist() == expected, text
        assert (ours["token_ids"][row, n:].numpy() == 0).all()


def _numpy_minilm(weights, token_ids, mask):
    """Independent reference: BERT forward pass + masked mean + L2 norm in numpy."""
    def w(name):
        return weights[name]

    def layer_norm(x, prefix):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * w(prefix + ".weight") + w(prefix + ".bias")

    def dense(x, prefix):
        return x @ w(prefix + ".weight").T + w(prefix + ".bias")

    gelu = np.vectorize(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))))
    length = token_ids.shape[1]
    x = (w("embeddings.word_embeddings.weight")[token_ids]
         + w("embeddings.position_embeddings.weight")[:length]
         + w("embeddings.token_type_embeddings.weight")[0])
    x = layer_norm(x, "embeddings.LayerNorm")
    heads, size = 12, x.shape[-1] // 12
    bias = (1.0 - mask[:, None, None, :]) * -1e9
    for i in range(6):
        p = f"encoder.layer.{i}."

        def split(t):
            return t.reshape(t.shape[0], length, heads, size).transpose(0, 2, 1, 3)

        q, k, v = (split(dense(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = (scores / scores.sum(-1, keepdims=True)) @ v
        attn = attn.transpose(0, 2, 1, 3).reshape(x.shape)
        x = layer_norm(x + dense(attn, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        hidden = gelu(dense(x, p + "intermediate.dense"))
        x = layer_norm(x + dense(hidden, p + "output.dense"), p + "output.LayerNorm")
    pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def test_minilm_matches_an_independent_numpy_reference(minilm, embedded):
    from safetensors.numpy import load_file

    weights = {k: v.astype(np.float64) for k, v in load_file(minilm_dir() / "model.safetensors").items()}
    tokens = minilm.tokenize(tf.constant(SENTENCES))
    width = int(tokens["padding_mask"].numpy().sum(1).max())
    reference = _numpy_minilm(weights, tokens["token_ids"].numpy()[:, :width],
                              tokens["padding_mask"].numpy()[:, :width].astype(np.float64))
    agreement = (reference * embedded).sum(1)
    assert agreement.min() > 0.99999, agreement


def test_embed_keeps_order_handles_duplicates_and_empty(minilm, embedded):
    again = minilm.embed([SENTENCES[2], SENTENCES[0], SENTENCES[2], ""], batch_size=2)
    np.testing.assert_allclose(again[0], embedded[2], atol=1e-5)
    np.testing.assert_allclose(again[1], embedded[0], atol=1e-5)
    np.testing.assert_array_equal(again[0], again[2])
    assert np.isfinite(again[3]).all()
    assert minilm.embed([]).shape == (0, 384)
    with pytest.raises(TypeError, match="sequence of texts"):
        minilm.embed("a single string")
    with pytest.raises(TypeError, match="expected str"):
        minilm.embed(["ok", None])


def test_embed_of_short_batches_equals_full_length_encoding(minilm, embedded):
    tokens = minilm.tokenize(tf.constant(SENTENCES))
    full = minilm.keras_backbone(tokens, training=False).numpy()
    np.testing.assert_allclose(full, embedded, atol=1e-5)


def test_tokenize_runs_in_tf_data_and_tf_function(minilm):
    ds = tf.data.Dataset.from_tensor_slices(SENTENCES).batch(4).map(minilm.tokenize)
    first = next(iter(ds))
    assert first["token_ids"].shape == (4, 32) and first["padding_mask"].dtype == tf.int32

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(texts):
        return minilm.keras_backbone(minilm.tokenize(texts), training=False)

    out = encode(tf.constant(SENTENCES[:2])).numpy()
    np.testing.assert_allclose(out, minilm.embed(SENTENCES[:2]), atol=1e-5)


def test_fingerprint_is_a_stable_hash(minilm):
    assert len(minilm.fingerprint) == 40
    assert minilm.fingerprint == minilm.refresh_fingerprint()


def _copy_model_dir(tmp_path, weights_bytes=None):
    target = tmp_path / "model"
    target.mkdir()
    for item in minilm_dir().iterdir():
        if item.name == "model.safetensors" and weights_bytes is not None:
            (target / item.name).write_bytes(weights_bytes)
        elif item.is_file():
            (target / item.name).symlink_to(item)
        else:
            shutil.copytree(item, target / item.name)
    return target


def test_hash_check_refuses_a_wrong_weights_file(tmp_path, monkeypatch):
    fake = _copy_model_dir(tmp_path, weights_bytes=b"not the MiniLM weights")
    with pytest.raises(WeightsHashError, match=MINILM_SHA256):
        load_pretrained_dir(fake, expected_sha256=MINILM_SHA256)
    monkeypatch.setattr("tfrs_multiscene.text.minilm.minilm_dir", lambda: fake)
    with pytest.raises(WeightsHashError, match="refusing to load"):
        build_text_encoder(TextConfig(text_encoder="minilm"))


def test_path_encoder_with_a_wrong_expected_hash_is_refused():
    cfg = TextConfig(text_encoder=str(minilm_dir()), text_weights_sha256="0" * 64)
    with pytest.raises(WeightsHashError):
        build_text_encoder(cfg)


def test_build_text_encoder_choices(tmp_path):
    assert build_text_encoder(TextConfig(text_encoder="none")) is None
    with pytest.raises(ValueError, match="train_texts"):
        build_text_encoder(TextConfig(text_encoder="scratch"))
    with pytest.raises(ValueError, match="existing model directory"):
        build_text_encoder(TextConfig(text_encoder=str(tmp_path / "nowhere")))


class CountingEncoder:
    """A stand-in encoder: embedding = [len(text), fingerprint-specific offset]."""

    dim = 2

    def __init__(self, fingerprint="f" * 40):
        self.fingerprint = fingerprint
        self.calls = []

    def embed(self, texts, batch_size=256, progress=True):
        self.calls.append(list(texts))
        offset = float(int(self.fingerprint[0], 16))
        return np.array([[len(t), offset] for t in texts], np.float32)


def test_cache_computes_only_missing_texts_and_persists(tmp_path):
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    first = cache.get_or_compute(encoder, ["aa", "b", "aa"])
    np.testing.assert_array_equal(first[:, 0], [2, 1, 2])
    assert encoder.calls == [["aa", "b"]]
    second = EmbeddingCache(tmp_path).get_or_compute(encoder, ["b", "ccc", "aa"])
    np.testing.assert_array_equal(second[:, 0], [1, 3, 2])
    assert encoder.calls[1] == ["ccc"]
    assert cache.get_or_compute(encoder, ["ccc"])[0, 0] == 3  # sees the other writer's shard
    assert len(encoder.calls) == 2
    assert cache.get_or_compute(encoder, []).shape == (0, 2)


def test_cache_is_keyed_by_encoder_fingerprint(tmp_path):
    cache = EmbeddingCache(tmp_path)
    a, b = CountingEncoder("1" * 40), CountingEncoder("2" * 40)
    assert cache.get_or_compute(a, ["x"])[0, 1] == 1
    assert cache.get_or_compute(b, ["x"])[0, 1] == 2
    assert len(b.calls) == 1


def test_cache_ignores_partial_and_corrupt_shards(tmp_path):
    encoder = CountingEncoder()
    shard_dir = tmp_path / encoder.fingerprint
    shard_dir.mkdir()
    (shard_dir / ".half-written.npz.123.tmp").write_bytes(b"partial")
    (shard_dir / "broken.npz").write_bytes(b"garbage")
    out = EmbeddingCache(tmp_path).get_or_compute(encoder, ["abc"])
    assert out[0, 0] == 3 and encoder.calls == [["abc"]]
    assert [p.name for p in shard_dir.glob("*.tmp")] == [".half-written.npz.123.tmp"]
    assert len(list(shard_dir.glob("*.npz"))) == 2  # the broken one + one new shard
    assert EmbeddingCache(tmp_path).count(encoder.fingerprint) == 1


def test_cache_with_minilm_round_trip(tmp_path, minilm, embedded):
    cache = EmbeddingCache(tmp_path)
    out = cache.get_or_compute(minilm, SENTENCES[:3])
    np.testing.assert_allclose(out, embedded[:3], atol=1e-5)
    assert cache.count(minilm.fingerprint) == 3
    assert cache_mod.text_key("a") == "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"


def test_progress_bar_for_long_inputs(minilm, monkeypatch, capsys):
    monkeypatch.setattr("tfrs_multiscene.text.encoder.PROGRESS_MIN_TEXTS", 2)
    minilm.embed(SENTENCES[:3], batch_size=2)
    assert "embedding texts (minilm)" in capsys.readouterr().err
    minilm.embed(SENTENCES[:3], batch_size=2, progress=False)
    assert "embedding texts" not in capsys.readouterr().err


def test_minilm_frozen_inside_a_tf_keras_layer(minilm, embedded):
    from tfrs_multiscene.text.bridge import KerasHubLayer

    layer = KerasHubLayer(minilm, trainable=False)
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) > 50
    np.testing.assert_allclose(layer(tf.constant(SENTENCES)).numpy(), embedded, atol=1e-5)


@pytest.mark.slow  # loads MiniLM a second time
def test_path_encoder_loads_a_hugging_face_directory(tmp_path, minilm, embedded):
    encoder = build_text_encoder(TextConfig(text_encoder=str(_copy_model_dir(tmp_path)),
                                            text_weights_sha256=MINILM_SHA256))
    np.testing.assert_allclose(encoder.embed(SENTENCES[:2]), embedded[:2], atol=1e-5)
    assert encoder.fingerprint == minilm.fingerprint  # same weights, tokenizer and length


def test_path_encoder_loads_a_keras_hub_preset_directory(tmp_path):
    import keras_hub

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cafe", "creme", "the", "cat", "##s"]
    keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=8,
                                  intermediate_dim=16, max_sequence_length=16).save_to_preset(tmp_path)
    keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True).save_to_preset(tmp_path)
    encoder = build_text_encoder(TextConfig(text_encoder=str(tmp_path), max_length=8))
    out = encoder.embed(["the cats", "Café Crème", "cafe creme"])
    assert out.shape == (3, 8)
    np.testing.assert_allclose(out[1], out[2], atol=1e-6)  # accents stripped as in uncased BERT
