"""Shared bottom: one MLP shared by all scenarios, then one tower per scenario.

``x [B, D]`` -> bottom MLP (``bottom_units``) -> ``h [B, Db]`` -> tower_s (``tower_units``)
-> H logits, for every scenario s: ``[B, S, H]``. Scenario s's logits depend only on the
bottom and tower s (plus, when enabled, scenario s's own FiLM row and wide weights).

Options (RankingConfig):

* ``scenario_film``: the bottom is conditioned on the scenario. Each hidden layer l computes
  ``a_l = W_l h_{l-1} + b_l`` (shared) and then, for scenario s,
  ``h_{l,s} = relu((1 + gamma_{l,s}) * a_l + beta_{l,s})`` with ``gamma_{l,s}, beta_{l,s}``
  ``[U_l]`` rows owned by scenario s (initialised at 0, i.e. the plain shared bottom). The
  bottom then runs once per scenario: ``[B, D] -> [S, B, Db]``.
* ``scenario_wide``: a per-scenario linear logit on the encoded input is added to the tower's
  output, ``logits_s += x @ V_s + c_s`` with ``V_s [D, H]`` (zeros at start), so effects that
  are linear in the raw features (e.g. a scenario's own category or price effect) need not
  pass through the shared bottom.
* ``shared_tower``: one more tower, shared by all scenarios, and each scenario's tower
  becomes a residual on it: ``logits_s = tower_shared(h_s) + tower_s(h_s)``, with tower s's
  output layer initialised at zero. Training starts from the pooled model's shape, and a
  scenario's own tower only learns what differs in that scenario, so scenarios that behave
  alike share one tower instead of splitting their data (off with a single scenario,
  where the shared tower would just double the tower).
* ``tower_l2``: L2 penalty on the towers' (and wide weights') kernels.
"""

from __future__ import annotations

import tensorflow as tf

from tfrs_multiscene.ranking.architectures.common import (ScenarioArchitecture, ScenarioHeads, mlp, register,
                                                          tower_network)


class FiLMBottom(tf.keras.layers.Layer):
    """Shared ReLU layers with per-scenario feature-wise scale and shift (FiLM).

    Call: ``(x [B, D], training) -> [S, B, U_last]``; layer l computes
    ``relu((1 + gamma[l][s]) * (x W_l + b_l) + beta[l][s])`` for every scenario s, then
    dropout. ``gamma[l], beta[l]`` are ``[S, U_l]`` weights, row s owned by scenario s.
    """

    def __init__(self, num_scenarios, units, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_scenarios = int(num_scenarios)
        self.dense = [tf.keras.layers.Dense(int(u), name=f"dense{i}") for i, u in enumerate(units)]
        self.drop = [tf.keras.layers.Dropout(dropout) if dropout else None for _ in units]
        self.gammas = [self.add_weight(f"gamma{i}", [self.num_scenarios, int(u)], initializer="zeros")
                       for i, u in enumerate(units)]
        self.betas = [self.add_weight(f"beta{i}", [self.num_scenarios, int(u)], initializer="zeros")
                      for i, u in enumerate(units)]

    def call(self, x, training=False):
        h = tf.tile(x[None], [self.num_scenarios, 1, 1])  # [S, B, D]
        for dense, drop, gamma, beta in zip(self.dense, self.drop, self.gammas, self.betas):
            h = tf.nn.relu((1.0 + gamma[:, None]) * dense(h) + beta[:, None])
            if drop is not None:
                h = drop(h, training=training)
        return h

    def scenario_rows(self):
        return [*self.gammas, *self.betas]


@register("shared_bottom")
class SharedBottom(ScenarioArchitecture):
    def __init__(self, num_scenarios, num_heads, cfg, **kwargs):
        super().__init__(num_scenarios, num_heads, cfg, **kwargs)
        self.film = bool(getattr(cfg, "scenario_film", False))
        if self.film:
            self.bottom = FiLMBottom(num_scenarios, cfg.bottom_units, cfg.dropout, name="bottom")
        else:
            self.bottom = mlp(cfg.bottom_units, cfg.dropout, name="bottom")
        l2 = float(getattr(cfg, "tower_l2", 0.0) or 0.0)
        self.shared_tower = None
        if getattr(cfg, "shared_tower", False) and num_scenarios > 1:
            self.shared_tower = tower_network(cfg.tower_units, num_heads, cfg.dropout, l2, name="shared_tower")
        self.heads = ScenarioHeads(num_scenarios, num_heads, cfg.tower_units, cfg.dropout, l2=l2,
                                   zero_output=self.shared_tower is not None, name="towers")
        self.wide = None
        if getattr(cfg, "scenario_wide", False):
            reg = tf.keras.regularizers.l2(l2) if l2 else None
            self.wide = [tf.keras.layers.Dense(num_heads, kernel_initializer="zeros", kernel_regularizer=reg,
                                               name=f"wide_s{s}") for s in range(num_scenarios)]

    def scenario_logits(self, x, scenario_index, training=False):
        h = self.bottom(x, training=training)
        if self.film:  # [S, B, Db]: tower s reads scenario s's bottom
            logits = tf.stack([tower(h[s], training=training) for s, tower in enumerate(self.heads.towers)], axis=1)
        else:
            logits = self.heads(h, training=training)
        if self.shared_tower is not None and self.film:
            logits = logits + tf.stack([self.shared_tower(h[s], training=training)
                                        for s in range(self.num_scenarios)], axis=1)
        elif self.shared_tower is not None:
            logits = logits + self.shared_tower(h, training=training)[:, None]
        if self.wide is not None:
            logits = logits + tf.stack([w(x) for w in self.wide], axis=1)
        return logits

    def scenario_owned(self, scenario):
        own = [(v, None) for v in self.heads.tower_variables(scenario)]
        if self.film:
            own += [(v, scenario) for v in self.bottom.scenario_rows()]
        if self.wide is not None:
            own += [(v, None) for v in self.wide[scenario].trainable_variables]
        return own
