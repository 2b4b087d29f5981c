"""STAR (Sheng et al., 2021): star-topology network with partitioned normalisation.

For every scenario s the same computation runs with weights combined element-wise:

* partitioned normalisation: ``z_s = (gamma * gamma_s) * (x - mu) / sigma + (beta + beta_s)``;
  while training ``mu, sigma`` are each example's own scenario's batch moments, at inference
  scenario s's moving averages;
* star fully connected layers (widths ``bottom_units + tower_units``, then H logits):
  ``h_s = relu(h_s @ (W * W_s) + b + b_s)`` (``W_s`` starts at ones, ``b_s`` at zeros);
* an auxiliary network ``MLP([scenario_embedding_s, x]) -> H`` whose logits are added.

``x [B, D] -> [B, S, H]``; scenario s's logits use only shared weights and s's own.
"""

from __future__ import annotations

import tensorflow as tf

from tfrs_multiscene.ranking.architectures.common import ScenarioArchitecture, mlp, register


class PartitionedNorm(tf.keras.layers.Layer):
    """``x [B, D], scenario_index [B] -> [S, B, D]`` (one normalisation per scenario)."""

    def __init__(self, num_scenarios, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.num_scenarios, self.momentum, self.epsilon = num_scenarios, momentum, epsilon

    def build(self, input_shape):
        d, s = int(input_shape[-1]), self.num_scenarios
        self.gamma = self.add_weight("gamma", [d], initializer="ones")
        self.beta = self.add_weight("beta", [d], initializer="zeros")
        self.gamma_s = self.add_weight("gamma_s", [s, d], initializer="ones")
        self.beta_s = self.add_weight("beta_s", [s, d], initializer="zeros")
        self.moving_mean = self.add_weight("moving_mean", [s, d], initializer="zeros", trainable=False)
        self.moving_var = self.add_weight("moving_var", [s, d], initializer="ones", trainable=False)

    def call(self, x, scenario_index, training=False):
        s = self.num_scenarios
        if training:
            ones = tf.ones_like(x[:, :1])
            count = tf.math.unsorted_segment_sum(ones, scenario_index, s)  # [S, 1]
            mean = tf.math.unsorted_segment_sum(x, scenario_index, s) / tf.maximum(count, 1.0)
            sq = tf.math.unsorted_segment_sum(tf.square(x), scenario_index, s) / tf.maximum(count, 1.0)
            var = tf.maximum(sq - tf.square(mean), 0.0)
            present = tf.cast(count > 0, x.dtype)
            m = 1.0 - (1.0 - self.momentum) * present
            self.moving_mean.assign(self.moving_mean * m + (1.0 - m) * mean)
            self.moving_var.assign(self.moving_var * m + (1.0 - m) * var)
            xhat = (x - tf.gather(mean, scenario_index)) * tf.math.rsqrt(tf.gather(var, scenario_index) + self.epsilon)
            xhat = tf.tile(xhat[None], [s, 1, 1])
        else:
            xhat = (x[None] - self.moving_mean[:, None]) * tf.math.rsqrt(self.moving_var[:, None] + self.epsilon)
        return xhat * (self.gamma * self.gamma_s)[:, None] + (self.beta + self.beta_s)[:, None]


class StarDense(tf.keras.layers.Layer):
    """``[S, B, Din] -> [S, B, units]`` with per-scenario weights ``W * W_s``, bias ``b + b_s``."""

    def __init__(self, num_scenarios, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.num_scenarios, self.units = num_scenarios, int(units)
        self.activation = tf.keras.activations.get(activation)

    def build(self, input_shape):
        d, s = int(input_shape[-1]), self.num_scenarios
        self.w = self.add_weight("w", [d, self.units], initializer="glorot_uniform")
        self.b = self.add_weight("b", [self.units], initializer="zeros")
        self.w_s = self.add_weight("w_s", [s, d, self.units], initializer="ones")
        self.b_s = self.add_weight("b_s", [s, self.units], initializer="zeros")

    def call(self, x):
        y = tf.einsum("sbi,siu->sbu", x, self.w[None] * self.w_s) + (self.b + self.b_s)[:, None]
        return self.activation(y)


@register("star")
class Star(ScenarioArchitecture):
    def __init__(self, num_scenarios, num_heads, cfg, **kwargs):
        super().__init__(num_scenarios, num_heads, cfg, **kwargs)
        self.norm = PartitionedNorm(num_scenarios, name="partitioned_norm")
        widths = list(cfg.bottom_units) + list(cfg.tower_units)
        self.star_layers = [StarDense(num_scenarios, u, "relu", name=f"star{i}") for i, u in enumerate(widths)]
        self.dropout = tf.keras.layers.Dropout(cfg.dropout) if cfg.dropout else None
        self.out = StarDense(num_scenarios, num_heads, name="star_out")
        self.aux_embedding = self.add_weight("aux_scenario_embedding", [num_scenarios, 8], initializer="uniform")
        self.aux = tf.keras.Sequential([mlp(cfg.tower_units[:1] or [32]), tf.keras.layers.Dense(num_heads)], name="aux")

    def scenario_logits(self, x, scenario_index, training=False):
        h = self.norm(x, scenario_index, training=training)  # [S, B, D]
        for layer in self.star_layers:
            h = layer(h)
            if self.dropout is not None:
                h = self.dropout(h, training=training)
        main = self.out(h)  # [S, B, H]
        b = tf.shape(x)[0]
        aux_in = tf.concat([tf.tile(self.aux_embedding[:, None], [1, b, 1]),
                            tf.tile(x[None], [self.num_scenarios, 1, 1])], axis=-1)
        aux = self.aux(aux_in, training=training)  # [S, B, H]
        return tf.transpose(main + aux, [1, 0, 2])

    def scenario_owned(self, scenario):
        owned = [self.norm.gamma_s, self.norm.beta_s, self.norm.moving_mean, self.norm.moving_var,
                 self.aux_embedding]
        for layer in [*self.star_layers, self.out]:
            owned += [layer.w_s, layer.b_s]
        return [(v, scenario) for v in owned]
