"""A small text encoder trained from scratch (KerasHub layers, Keras 3).

Vocabulary: WordPiece computed on the training texts with
``keras_hub.tokenizers.compute_word_piece_vocabulary`` (lowercased, accents stripped;
reserved tokens [PAD]=0, [CLS], [SEP], [UNK], [MASK]). Model: token + position embedding
(``keras_hub.layers.TokenAndPositionEmbedding``) -> ``num_layers`` x
``keras_hub.layers.TransformerEncoder`` (padding masked) -> masked mean pooling -> [B, dim].
Untrained at build time: it is meant to learn inside a tower (``--text-mode finetune``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import tfrs_multiscene  # noqa: F401
import keras
import keras_hub
import tensorflow as tf

from tfrs_multiscene.text.encoder import MaskedMeanPooling, TextEncoder

RESERVED_TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]


def compute_vocabulary(texts: Sequence[str], vocab_size: int) -> list:
    """WordPiece vocabulary (list of tokens, reserved tokens first) learnt from ``texts``."""
    corpus = [t for t in texts if isinstance(t, str) and t.strip()]
    if not corpus:
        raise ValueError("the scratch text encoder needs at least one non-empty training text")
    # A Python list would be read as file paths: pass a tf.data.Dataset of strings.
    # Words need about 10 occurrences to enter the vocabulary; rarer ones become pieces.
    data = tf.data.Dataset.from_tensor_slices(tf.constant(corpus)).batch(1024)
    return keras_hub.tokenizers.compute_word_piece_vocabulary(
        data, vocabulary_size=vocab_size, lowercase=True, strip_accents=True,
        reserved_tokens=RESERVED_TOKENS)


class ScratchTextModel(keras.Model):
    """Token+position embedding, transformer encoder layers, masked mean pooling.

    Input ``{"token_ids": int [B, L], "padding_mask": int [B, L]}`` with L <= max_length;
    output float32 [B, dim].
    """

    def __init__(self, vocab_size: int, max_length: int, dim: int, num_layers: int,
                 seed: int = 42, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size=vocab_size, sequence_length=max_length, embedding_dim=dim,
            embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=seed),
            name="token_and_position_embedding")
        self.blocks = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim=2 * dim, num_heads=max(1, dim // 64), dropout=dropout,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1 + i),
                name=f"transformer_encoder_{i}")
            for i in range(num_layers)]
        self.pooling = MaskedMeanPooling(normalize=False, name="mean_pooling")

    def call(self, inputs, training=False):
        token_ids = keras.ops.cast(inputs["token_ids"], "int32")
        padding_mask = keras.ops.cast(inputs["padding_mask"], "int32")
        x = self.embedding(token_ids)
        for block in self.blocks:
            x = block(x, padding_mask=keras.ops.cast(padding_mask, "bool"), training=training)
        return self.pooling(x, padding_mask)


def build_scratch_encoder(train_texts: Optional[Sequence[str]], vocab_size: int = 8000,
                          dim: int = 128, num_layers: int = 2, max_length: int = 32,
                          seed: int = 42, vocabulary: Optional[list] = None) -> TextEncoder:
    """An untrained :class:`TextEncoder` with a WordPiece vocabulary from ``train_texts``.

    Pass ``vocabulary`` (from :func:`compute_vocabulary`) to reuse one instead.
    """
    if vocabulary is None:
        if train_texts is None:
            raise ValueError("build_scratch_encoder needs train_texts or a vocabulary")
        vocabulary = compute_vocabulary(train_texts, vocab_size)
    elif list(vocabulary[:len(RESERVED_TOKENS)]) != RESERVED_TOKENS:
        raise ValueError(f"a scratch vocabulary must start with {RESERVED_TOKENS}")
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary, lowercase=True, strip_accents=True,
        special_tokens=RESERVED_TOKENS)
    model = ScratchTextModel(len(vocabulary), max_length, dim, num_layers, seed=seed,
                             name="scratch_text_model")
    settings = {"source": "scratch", "dim": dim, "layers": num_layers, "seed": seed,
                "lowercase": True, "strip_accents": True}
    return TextEncoder(name="scratch", tokenizer=tokenizer, model=model, max_length=max_length,
                       settings=settings)
