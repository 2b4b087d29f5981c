"""The query and candidate towers (tf-keras), raw string features in, embeddings out.

Building blocks:

* :class:`IdEmbedding`: ``StringLookup`` (training vocabulary + one OOV row at index 0) then
  ``Embedding``; during training an id is replaced by OOV with probability ``dropout``, so
  the OOV row learns "an id we have not seen" and the rest of the tower carries the signal.
* :class:`FrozenTextEmbedding`: ``StringLookup`` over ALL ids of a table -> row of a
  constant text-embedding matrix (cold rows included; unknown ids get zeros) -> trainable
  ``Dense`` projection.
* :class:`FinetuneTextEmbedding`: the same lookup into a constant table of raw texts, each
  distinct text of the batch encoded once by a ``KerasHubLayer`` (trains), then projected.
* :class:`MaskedMeanPool`: mean of [B, L, d] over the non-padding positions -> [B, d].
* :class:`EnsembleTower`: N independently initialised towers, outputs concatenated (an
  ensemble of two-towers that is still one two-tower: ``RetrievalConfig.ensemble``).

The towers concatenate their parts, run an optional MLP and a final ``Dense`` to
``embedding_dim`` and (optionally) L2-normalise, so scores are dot products (cosines).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

import tfrs_multiscene  # noqa: F401  (Keras 2 behind tf.keras)
import tensorflow as tf

from tfrs_multiscene.config import RetrievalConfig
from tfrs_multiscene.retrieval import features as F


class IdEmbedding(tf.keras.layers.Layer):
    """String ids [...] -> embeddings [..., dim]; OOV and dropped ids share row 0.

    Args:
      vocabulary: known ids (row i+1 each).
      dim: embedding width.
      dropout: probability of replacing an id by OOV while training.
    """

    def __init__(self, vocabulary: Sequence[str], dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = [str(v) for v in vocabulary]
        self.dropout = float(dropout)
        self.lookup = tf.keras.layers.StringLookup(vocabulary=self.vocabulary or None,
                                                   num_oov_indices=1, mask_token=None)
        if not self.vocabulary:  # StringLookup refuses an empty list; every id is OOV
            self.lookup = tf.keras.layers.StringLookup(num_oov_indices=1, mask_token=None)
        self.embedding = tf.keras.layers.Embedding(
            len(self.vocabulary) + 1, dim,
            embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05))

    def indices(self, ids, training=False, dropout=True, unknown=False):
        """Row index per id (0 = OOV), with id dropout applied while training; ``unknown``:
        every id is treated as OOV (row 0), as a cold item is."""
        idx = self.lookup(ids)
        if unknown:
            return tf.zeros_like(idx)
        if training and dropout and self.dropout > 0:
            drop = tf.random.uniform(tf.shape(idx)) < self.dropout
            idx = tf.where(drop, tf.zeros_like(idx), idx)
        return idx

    def call(self, ids, training=False, dropout=True, unknown=False):
        return self.embedding(self.indices(ids, training=training, dropout=dropout, unknown=unknown))


def _unflatten(values, like, dim: int):
    """[N, dim] rows of the flattened ``like`` [...] back to [..., dim] (static dim kept)."""
    out = tf.reshape(values, tf.concat([tf.shape(like), [dim]], 0))
    out.set_shape(like.shape.concatenate([dim]))
    return out


class _TableLookup(tf.keras.layers.Layer):
    """Ids [...] -> row of a table over ALL ids of the item/user table (0 = unknown)."""

    def __init__(self, table_ids: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.lookup = tf.keras.layers.StringLookup(
            vocabulary=[str(i) for i in table_ids], num_oov_indices=1, mask_token=None)


class FrozenTextEmbedding(_TableLookup):
    """Ids [...] -> constant text embedding of that id [..., T] -> Dense -> [..., dim].

    ``matrix`` [n, T] holds one (frozen, precomputed) text embedding per ``table_ids`` row;
    ids outside the table get a zero text vector.
    """

    def __init__(self, table_ids: Sequence[str], matrix: np.ndarray, dim: int, **kwargs):
        super().__init__(table_ids, **kwargs)
        matrix = np.asarray(matrix, dtype=np.float32)
        padded = np.concatenate([np.zeros((1, matrix.shape[1]), np.float32), matrix])
        self.table = tf.constant(padded)
        self.projection = tf.keras.layers.Dense(dim, name="text_projection")

    def call(self, ids):
        """Each distinct id of the batch is gathered and projected once (unique + gather),
        so a [B, L] history costs (distinct items x T x dim), not (B x L x T x dim)."""
        rows = self.lookup(ids)
        unique, position = tf.unique(tf.reshape(rows, [-1]))
        projected = tf.gather(self.projection(tf.gather(self.table, unique)), position)
        return _unflatten(projected, rows, self.projection.units)

    def pooled(self, ids, mask):
        """Masked mean of the projected text of ``ids`` [B, L] -> [B, dim]."""
        return masked_mean(self(ids), mask)


class FinetuneTextEmbedding(_TableLookup):
    """Ids [B] -> raw text of that id -> trainable encoder (KerasHubLayer) -> Dense [B, dim].

    Each distinct id of the batch is encoded once (unique + gather).
    """

    def __init__(self, table_ids: Sequence[str], texts: Sequence[str], encoder_layer, dim: int,
                 **kwargs):
        super().__init__(table_ids, **kwargs)
        self.texts = tf.constant([""] + [str(t) for t in texts])
        self.encoder = encoder_layer
        self.projection = tf.keras.layers.Dense(dim, name="text_projection")

    def call(self, ids, training=False):
        rows = self.lookup(ids)
        unique, position = tf.unique(tf.reshape(rows, [-1]))
        encoded = self.encoder(tf.gather(self.texts, unique), training=training)
        return _unflatten(tf.gather(self.projection(encoded), position), rows, self.projection.units)


def masked_mean(values, mask):
    """Mean of ``values`` [B, L, d] where ``mask`` [B, L] is true -> [B, d] (zeros if none)."""
    weights = tf.cast(mask, values.dtype)[..., None]
    total = tf.reduce_sum(values * weights, axis=1)
    return total / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


class MaskedMeanPool(tf.keras.layers.Layer):
    """Layer form of :func:`masked_mean`: ([B, L, d], [B, L]) -> [B, d]."""

    def call(self, values, mask):
        return masked_mean(values, mask)


class _Head(tf.keras.layers.Layer):
    """Concatenated parts [B, sum d] -> MLP -> Dense(embedding_dim) [-> L2 normalise]."""

    def __init__(self, cfg: RetrievalConfig, **kwargs):
        super().__init__(**kwargs)
        self.hidden = [tf.keras.layers.Dense(int(u), activation="relu") for u in cfg.hidden_units]
        self.out = tf.keras.layers.Dense(cfg.embedding_dim, name="output")
        self.normalize = cfg.l2_normalize

    def call(self, parts):
        x = tf.concat(parts, axis=-1) if len(parts) > 1 else parts[0]
        for layer in self.hidden:
            x = layer(x)
        x = self.out(x)
        return tf.math.l2_normalize(x, axis=-1) if self.normalize else x


def _text_layer(table_ids, matrix, strings, dim, encoder_factory, name):
    """Frozen text layer when a matrix is given, finetune when raw texts + encoder are."""
    if matrix is not None:
        return FrozenTextEmbedding(table_ids, matrix, dim, name=name)
    if strings is not None:
        if encoder_factory is None:
            raise ValueError(f"{name}: finetune mode needs an encoder_factory (KerasHubLayer)")
        return FinetuneTextEmbedding(table_ids, strings, encoder_factory(), dim, name=name)
    return None


class CandidateTower(tf.keras.Model):
    """Item tower: {"item_id": str [B], <item categorical>: str [B]} -> [B, embedding_dim].

    Parts: item id embedding (id dropout), item text (looked up by id), one embedding per
    item categorical column. Unseen items are represented by OOV + text + categories.
    """

    def __init__(self, spec: F.FeatureSpec, cfg: RetrievalConfig,
                 item_embedding: Optional[IdEmbedding] = None,
                 encoder_factory: Optional[Callable] = None, **kwargs):
        super().__init__(**kwargs)
        d = cfg.feature_dim
        self.item_id = item_embedding or IdEmbedding(spec.item_ids, d, cfg.id_dropout, name="item_id")
        self.categorical = {c: IdEmbedding(v, d, name=f"item_{c}") for c, v in spec.item_categorical.items()}
        self.text = _text_layer(spec.item_table_ids, spec.item_text, spec.item_text_strings, d,
                                encoder_factory, "item_text")
        self.head = _Head(cfg, name="head")

    def call(self, inputs, training=False, unknown_ids=False):
        """``unknown_ids``: embed every item as a cold one would be (OOV id row + text +
        categorical features); the new-item offset's simulated newness reads it."""
        ids = inputs[F.ITEM_ID]
        parts = [self.item_id(ids, training=training, unknown=unknown_ids)]
        parts += [layer(inputs[c]) for c, layer in sorted(self.categorical.items())]
        if self.text is not None:
            parts.append(self.text(ids))
        return self.head(parts)

    @property
    def output_dim(self) -> int:
        return int(self.head.out.units)


class QueryTower(tf.keras.Model):
    """User tower: {"user_id", "scenario": str [B], "history": str [B, L], <user cats>} ->
    [B, embedding_dim].

    Parts: user id embedding (id dropout), scenario embedding, mean of the history items'
    id embeddings (and of their frozen text), user categorical embeddings, profile text.
    A user without a known id is represented by history, features and profile alone.
    """

    def __init__(self, spec: F.FeatureSpec, cfg: RetrievalConfig,
                 history_items: IdEmbedding, history_text=None,
                 encoder_factory: Optional[Callable] = None, **kwargs):
        super().__init__(**kwargs)
        d = cfg.feature_dim
        self.user_id = (IdEmbedding(spec.user_ids, d, cfg.id_dropout, name="user_id")
                        if cfg.use_user_id else None)
        # Scenario dropout trains the OOV row as "any scenario" (queries without one).
        self.scenario = IdEmbedding(spec.scenarios, d, cfg.id_dropout, name="scenario")
        self.history_items = history_items
        self.history_text = history_text
        self.pool = MaskedMeanPool(name="history_pool")
        self.categorical = {c: IdEmbedding(v, d, name=f"user_{c}") for c, v in spec.user_categorical.items()}
        self.text = _text_layer(spec.user_table_ids, spec.user_text, spec.user_text_strings, d,
                                encoder_factory, "profile_text") if spec.user_table_ids else None
        self.head = _Head(cfg, name="head")

    def call(self, inputs, training=False):
        users = inputs[F.USER_ID]
        history = inputs[F.HISTORY]
        if isinstance(history, tf.RaggedTensor):
            history = history.to_tensor(default_value=F.PAD)
        mask = tf.not_equal(history, F.PAD)
        parts = [self.scenario(inputs[F.SCENARIO], training=training),
                 self.pool(self.history_items(history, training=training, dropout=False), mask)]
        if self.user_id is not None:
            parts.append(self.user_id(users, training=training))
        if self.history_text is not None:
            parts.append(self.history_text.pooled(history, mask))
        parts += [layer(inputs[c]) for c, layer in sorted(self.categorical.items())]
        if self.text is not None:
            parts.append(self.text(users))
        return self.head(parts)

    @property
    def output_dim(self) -> int:
        return int(self.head.out.units)


class EnsembleTower(tf.keras.Model):
    """N member towers side by side: inputs -> concat(member outputs) / sqrt(N), [B, N * D].

    With members on both sides, (concat_k q_k / sqrt N) . (concat_k c_k / sqrt N) =
    mean_k (q_k . c_k): the ensemble's score is the mean of its members' scores and still one
    dot product (unit vectors in, a unit vector out), so the same index serves it.
    """

    def __init__(self, members: Sequence[tf.keras.Model], **kwargs):
        super().__init__(**kwargs)
        self.members = list(members)
        self.scale = 1.0 / float(np.sqrt(len(self.members)))

    def call(self, inputs, training=False, **kwargs):
        return tf.concat([m(inputs, training=training, **kwargs) for m in self.members], axis=-1) * self.scale

    @property
    def output_dim(self) -> int:
        return sum(m.output_dim for m in self.members)
