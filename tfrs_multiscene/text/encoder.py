"""TextEncoder: raw texts -> mean-pooled sentence embeddings [N, D] (KerasHub, Keras 3).

A :class:`TextEncoder` bundles three things:

* a KerasHub word-piece tokenizer (runs as TensorFlow Text ops, so it works eagerly,
  inside ``tf.data``, inside ``tf.function`` and inside exported SavedModel signatures);
* a packer adding the start/end tokens ([CLS] ... [SEP]) and padding to ``max_length``;
* ``keras_backbone``: a Keras 3 model mapping ``{"token_ids": int32 [B, L],
  "padding_mask": int32 [B, L]}`` to pooled sentence embeddings float32 [B, D]
  (transformer sequence output, mean over non-padding positions, optionally L2-normalised).

Build one from a :class:`~tfrs_multiscene.config.TextConfig` with
:func:`tfrs_multiscene.text.factory.build_text_encoder`.
Frozen embeddings are cached with :class:`tfrs_multiscene.text.cache.EmbeddingCache`;
fine-tuning inside a tf-keras tower goes through
:class:`tfrs_multiscene.text.bridge.KerasHubLayer`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Optional, Sequence

import numpy as np

import tfrs_multiscene  # noqa: F401  (Keras 2 behind tf.keras before TensorFlow loads)
import keras
import keras_hub
import tensorflow as tf

log = logging.getLogger(__name__)

#: Show a tqdm progress bar in :meth:`TextEncoder.embed` from this many distinct texts on.
PROGRESS_MIN_TEXTS = 2048


class MaskedMeanPooling(keras.layers.Layer):
    """Mean of ``sequence`` [B, L, D] over positions where ``padding_mask`` [B, L] is set.

    Returns [B, D] float32; with ``normalize=True`` each row is L2-normalised (as
    sentence-transformers' Normalize module does). All-padding rows give zeros.
    """

    def __init__(self, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.normalize = normalize

    def call(self, sequence, padding_mask):
        mask = keras.ops.cast(padding_mask, sequence.dtype)[:, :, None]
        summed = keras.ops.sum(sequence * mask, axis=1)
        count = keras.ops.maximum(keras.ops.sum(mask, axis=1), 1e-9)
        pooled = summed / count
        if self.normalize:
            norm = keras.ops.sqrt(keras.ops.sum(pooled * pooled, axis=-1, keepdims=True))
            pooled = pooled / keras.ops.maximum(norm, 1e-12)
        return pooled

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize}


class PooledBackbone(keras.Model):
    """A KerasHub backbone followed by :class:`MaskedMeanPooling`.

    Input ``{"token_ids": [B, L], "padding_mask": [B, L]}`` (any integer/bool dtype);
    output float32 [B, D]. Backbones that also take ``segment_ids`` (BERT) get zeros.
    Backbones returning a dict use its ``"sequence_output"``.
    """

    def __init__(self, backbone: keras.Model, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.pooling = MaskedMeanPooling(normalize=normalize, name="mean_pooling")
        names = backbone.input if isinstance(backbone.input, dict) else {}
        self._needs_segment_ids = "segment_ids" in names

    def call(self, inputs, training=False):
        token_ids = keras.ops.cast(inputs["token_ids"], "int32")
        padding_mask = keras.ops.cast(inputs["padding_mask"], "int32")
        feed = {"token_ids": token_ids, "padding_mask": padding_mask}
        if self._needs_segment_ids:
            feed["segment_ids"] = keras.ops.zeros_like(token_ids)
        out = self.backbone(feed, training=training)
        sequence = out["sequence_output"] if isinstance(out, dict) else out
        return self.pooling(keras.ops.cast(sequence, "float32"), padding_mask)


class TextEncoder:
    """Texts -> sentence embeddings, with a tokenizer usable inside TensorFlow graphs.

    Args:
        name: short description (e.g. ``"minilm"``, ``"scratch"``, a directory).
        tokenizer: a KerasHub word-level tokenizer (no start/end tokens, no padding).
        model: Keras 3 model, tokenized dict -> [B, D] (see :class:`PooledBackbone`).
        max_length: tokens per text including start and end tokens.
        start_token / end_token / pad_token: special token strings in the vocabulary.
        settings: JSON-able facts that change the output (lowercase, strip_accents, ...);
            they go into :attr:`fingerprint`.
    """

    def __init__(self, *, name: str, tokenizer, model: keras.Model, max_length: int,
                 start_token: str = "[CLS]", end_token: str = "[SEP]", pad_token: str = "[PAD]",
                 settings: Optional[dict] = None):
        if max_length < 3:
            raise ValueError(f"max_length must be at least 3 (start, one token, end), got {max_length}")
        self.name = name
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.settings = dict(settings or {})
        ids = {}
        for role, token in (("start", start_token), ("end", end_token), ("pad", pad_token)):
            token_id = tokenizer.token_to_id(token)
            if token_id is None:
                raise ValueError(f"{name}: special {role} token {token!r} is not in the vocabulary")
            ids[role] = int(token_id)
        self.special_token_ids = ids
        self.packer = keras_hub.layers.StartEndPacker(
            sequence_length=self.max_length, start_value=ids["start"], end_value=ids["end"],
            pad_value=ids["pad"], return_padding_mask=True)
        self._model = model
        self._tokenize_graph = tf.function(
            self._tokenize_ops, input_signature=[tf.TensorSpec([None], tf.string)])
        self._fingerprint: Optional[str] = None
        self._embed_fn = tf.function(
            self._embed_batch, reduce_retracing=True,
            input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
        self._dim: Optional[int] = None

    @property
    def dim(self) -> int:
        """Width D of the embeddings (the model is built on first use)."""
        if self._dim is None:
            tokens = self.tokenize(tf.constant(["x"]))
            self._dim = int(self._model(tokens, training=False).shape[-1])
        return self._dim

    # ------------------------------------------------------------------ graph pieces

    @property
    def keras_backbone(self) -> keras.Model:
        """The Keras 3 model: ``{"token_ids", "padding_mask"}`` [B, L] -> float32 [B, D]."""
        return self._model

    def tokenize(self, texts) -> dict:
        """Tokenize a string tensor [B] (or [B, 1]) into ``token_ids`` and ``padding_mask``.

        Both outputs are int32 [B, max_length]; ``padding_mask`` is 1 on real tokens
        (including start/end) and 0 on padding. Pure TensorFlow ops: usable eagerly,
        in ``tf.data.Dataset.map``, in ``tf.function`` and in exported signatures.
        """
        texts = tf.reshape(tf.convert_to_tensor(texts, dtype=tf.string), [-1])
        if tf.executing_eagerly():
            # KerasHub turns eager ragged outputs into Python lists; a graph keeps tensors.
            return self._tokenize_graph(texts)
        return self._tokenize_ops(texts)

    def _tokenize_ops(self, texts):
        pieces = self.tokenizer(texts)
        token_ids, padding_mask = self.packer(pieces)
        return {"token_ids": tf.cast(token_ids, tf.int32),
                "padding_mask": tf.cast(padding_mask, tf.int32)}

    def _embed_batch(self, token_ids, padding_mask):
        return self._model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)

    def _tokenize_arrays(self, texts):
        tokens = self.tokenize(tf.constant(list(texts), dtype=tf.string))
        return tokens["token_ids"], tokens["padding_mask"]

    # ------------------------------------------------------------------ numpy API

    def embed(self, texts: Sequence[str], batch_size: int = 256, progress: bool = True) -> np.ndarray:
        """Embed ``texts``; returns float32 [len(texts), dim], row i for texts[i].

        Each distinct text is encoded once. Texts are grouped by token length and each
        batch is cut to its longest text (padding is masked, so the result equals
        encoding at full ``max_length``, but short titles cost far less). A tqdm bar is
        shown when ``progress`` and there are at least ``PROGRESS_MIN_TEXTS`` texts.
        """
        texts = _as_text_list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        token_ids, padding_mask = [], []
        for start in range(0, len(unique), 8192):
            ids, mask = self._tokenize_arrays(unique[start:start + 8192].tolist())
            token_ids.append(ids.numpy())
            padding_mask.append(mask.numpy())
        token_ids = np.concatenate(token_ids)
        padding_mask = np.concatenate(padding_mask)
        lengths = padding_mask.sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(unique), self.dim), np.float32)
        starts = range(0, len(unique), batch_size)
        if progress and len(unique) >= PROGRESS_MIN_TEXTS:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"embedding texts ({self.name})", unit="batch")
        for start in starts:
            rows = order[start:start + batch_size]
            width = max(int(lengths[rows].max()), 1)
            out[rows] = self._embed_fn(tf.constant(token_ids[rows, :width]),
                                       tf.constant(padding_mask[rows, :width])).numpy()
        return out[inverse.reshape(-1)]

    # ------------------------------------------------------------------ identity

    @property
    def fingerprint(self) -> str:
        """sha1 (hex) of the weights, vocabulary, tokenizer settings and ``max_length``.

        Computed on first use and then remembered; call :meth:`refresh_fingerprint`
        after changing the weights (e.g. fine-tuning).
        """
        if self._fingerprint is None:
            self._fingerprint = self.refresh_fingerprint()
        return self._fingerprint

    def refresh_fingerprint(self) -> str:
        digest = hashlib.sha1()
        meta = {"max_length": self.max_length, "special": self.special_token_ids,
                "settings": self.settings, "dim": self.dim}
        digest.update(json.dumps(meta, sort_keys=True).encode())
        digest.update("\n".join(self.tokenizer.get_vocabulary()).encode("utf-8"))
        for weight in self._model.weights:
            digest.update(weight.path.encode())
            digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
        self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        dim = getattr(self, "_dim", None) or "?"
        return f"TextEncoder(name={self.name!r}, dim={dim}, max_length={self.max_length})"


def _as_text_list(texts) -> list:
    if isinstance(texts, (str, bytes)):
        raise TypeError("embed() takes a sequence of texts, not a single string; wrap it in a list")
    out = list(texts)
    for i, text in enumerate(out):
        if isinstance(text, bytes):
            out[i] = text.decode("utf-8")
        elif not isinstance(text, str):
            raise TypeError(f"text #{i} is {type(text).__name__}, expected str "
                            "(replace missing texts with '' first)")
    return out
