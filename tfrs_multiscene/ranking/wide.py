"""The wide part of the ranking model: a per-scenario logistic model on one-hot features,
fitted first, that the deep part then refines.

For scenario s and head h, :class:`WideLogits` computes

    w_{s,h}(x) = c_{s,h}
               + sum_{item-side column k} (a_k[v_k, h] + d_k[v_k, s, h])
               + sum_{user-side column k} d_k[v_k, s, h]
               + sum_{numeric column k} g_k[s, h] * z_k
               + sum_{scalar extra feature k} q_k[s, h] * x_k

where ``v_k`` is the example's value of categorical column k (user_id, item_id, category,
brand, age bucket, ...; one row per vocabulary value plus OOV), ``z_k`` the standardised
numeric column (the encoder's transform, log scale where the spec says so), ``x_k`` a dense
extra feature of width 1 (e.g. ``history_affinity``) as given, ``a`` shared tables, ``d``
per-scenario tables and ``c``, ``g``, ``q`` per-scenario intercepts and slopes.
Item-side values (the item id and item table columns) get a bias shared by every scenario
plus a per-scenario deviation: an item's appeal carries across surfaces and is estimated from
all of them, while a scenario can still weigh a category or a price its own way. User-side
values get only per-scenario biases: how much a user clicks is surface-specific (on the
synthetic worlds a shared user bias, learnt mostly from the feed, lowered the ads AUC).
Output ``[B, S, H]``; every weight starts at zero; the fit penalises every weight but the
intercepts.

It is fitted alone, before the deep part, by :func:`tfrs_multiscene.ranking.wide_fit.fit_wide`.
"""

from __future__ import annotations

import tensorflow as tf

from tfrs_multiscene.ranking.features import FeatureSpec, numeric_feature, string_feature


class WideLogits(tf.keras.layers.Layer):
    """Per-scenario logistic model on the categorical and numeric inputs (module docstring).

    Args:
      spec: the FeatureSpec (columns, vocabularies, which columns are user-side).
      num_scenarios: S.
      num_heads: H.
    Call: ``(raw inputs) -> [B, S, H]``.
    """

    def __init__(self, spec: FeatureSpec, num_scenarios: int, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.num_scenarios, self.num_heads = int(num_scenarios), int(num_heads)
        user_side = set(spec.user_columns)
        self.lookups, self.shared, self.per_scenario = {}, {}, {}
        for col in spec.categorical:
            size = len(spec.vocabularies[col]) + 1
            self.lookups[col] = tf.keras.layers.StringLookup(vocabulary=list(spec.vocabularies[col]),
                                                             num_oov_indices=1, name=f"wide_lookup_{col}")
            self.per_scenario[col] = tf.keras.layers.Embedding(
                size, self.num_scenarios * self.num_heads, embeddings_initializer="zeros",
                name=f"wide_{col}_by_scenario")
            if col not in user_side:
                self.shared[col] = tf.keras.layers.Embedding(size, self.num_heads, embeddings_initializer="zeros",
                                                             name=f"wide_{col}")
        self.intercept = self.add_weight("intercept", [self.num_scenarios, self.num_heads], initializer="zeros")
        self.slopes = self.add_weight("slopes", [len(spec.numeric), self.num_scenarios, self.num_heads],
                                      initializer="zeros")
        self.scalar_extras = [name for name, dim in spec.extra.items() if int(dim) == 1]
        if self.scalar_extras:  # only then (older saved models have no such weight)
            self.extra_slopes = self.add_weight("extra_slopes", [len(self.scalar_extras), self.num_scenarios,
                                                                 self.num_heads], initializer="zeros")

    def encode(self, inputs: dict) -> dict:
        """What the wide part reads of the raw inputs: ``{"rows": {column: [B] table row},
        "numeric": [B, K] standardised or None, "extras": [B, E] or None}``."""
        rows = {col: lookup(string_feature(inputs[col])) for col, lookup in self.lookups.items()}
        numeric = (tf.concat([numeric_feature(inputs[col], stats) for col, stats in self.spec.numeric.items()], -1)
                   if self.spec.numeric else None)
        extras = (tf.concat([tf.reshape(tf.cast(inputs[name], tf.float32), [-1, 1]) for name in self.scalar_extras], -1)
                  if self.scalar_extras else None)
        return {"rows": rows, "numeric": numeric, "extras": extras}

    def logits_of(self, encoded: dict) -> tf.Tensor:
        """``encode(inputs) -> [B, S, H]`` (the fit encodes its examples once, then reuses them)."""
        shape = [-1, self.num_scenarios, self.num_heads]
        out = self.intercept[None]
        for col, idx in encoded["rows"].items():
            out = out + tf.reshape(self.per_scenario[col](idx), shape)
            if col in self.shared:
                out = out + self.shared[col](idx)[:, None, :]
        if encoded["numeric"] is not None:
            out = out + tf.einsum("bk,ksh->bsh", encoded["numeric"], self.slopes)
        if encoded["extras"] is not None:
            out = out + tf.einsum("bk,ksh->bsh", encoded["extras"], self.extra_slopes)
        return out

    def call(self, inputs: dict) -> tf.Tensor:
        return self.logits_of(self.encode(inputs))

    @property
    def fitted_weights(self) -> list:
        """The weights :func:`fit_wide` learns: intercepts, bias tables, slopes."""
        return [v for v in self.weights if v.dtype.is_floating]


def own_scenario_logits(wide: WideLogits, encoded: dict, scenario: tf.Tensor) -> tf.Tensor:
    """The wide logits ``[B, H]`` of each example's own scenario (``scenario``: ``[B]`` tower
    index) from its ``wide.encode``-d inputs."""
    return tf.gather(wide.logits_of(encoded), scenario, axis=1, batch_dims=1)
