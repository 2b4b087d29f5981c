"""MMoE: shared experts mixed by one softmax gate per (scenario, task).

Experts: ``num_experts`` MLPs (``bottom_units``) on ``x [B, D]`` -> ``[B, E, De]``.
Gate (s, h): softmax(Dense_E(x)) -> weights ``[B, E]``; mixture (s, h) = sum_e w_e expert_e.
Tower (s, h): MLP (``tower_units``) -> 1 logit. Output ``[B, S, H]``.

:class:`ExpertGates` also supports scenario-specific experts (used by PLE): gate (s, h)
then mixes the shared experts and scenario s's own experts only.
"""

from __future__ import annotations

import tensorflow as tf

from tfrs_multiscene.ranking.architectures.common import ScenarioArchitecture, ScenarioHeads, mlp, register


class ExpertGates(ScenarioArchitecture):
    """Shared (+ optional per-scenario) experts, per-(scenario, head) gates and towers."""

    def num_specific_experts(self, cfg) -> int:
        """Experts owned by each scenario (0 for MMoE; PLE overrides)."""
        return 0

    def __init__(self, num_scenarios, num_heads, cfg, **kwargs):
        super().__init__(num_scenarios, num_heads, cfg, **kwargs)
        if cfg.num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {cfg.num_experts}")
        self.shared = [mlp(cfg.bottom_units, cfg.dropout, name=f"expert_shared{e}") for e in range(cfg.num_experts)]
        k = self.num_specific_experts(cfg)
        self.specific = [[mlp(cfg.bottom_units, cfg.dropout, name=f"expert_s{s}_{e}") for e in range(k)]
                         for s in range(num_scenarios)]
        self.gates = [tf.keras.layers.Dense(num_heads * (cfg.num_experts + k), name=f"gate_s{s}")
                      for s in range(num_scenarios)]
        self.heads = ScenarioHeads(num_scenarios, num_heads, cfg.tower_units, cfg.dropout,
                                   per_head_input=True, name="towers")

    def scenario_logits(self, x, scenario_index, training=False):
        shared = [e(x, training=training) for e in self.shared]
        mixtures = []
        for s, gate in enumerate(self.gates):
            experts = tf.stack(shared + [e(x, training=training) for e in self.specific[s]], axis=1)  # [B, E, De]
            w = tf.nn.softmax(tf.reshape(gate(x), [-1, self.num_heads, experts.shape[1]]), axis=-1)  # [B, H, E]
            mixtures.append(tf.einsum("bhe,bed->bhd", w, experts))
        return self.heads(tf.stack(mixtures, axis=1), training=training)  # [B, S, H, De] -> [B, S, H]

    def scenario_owned(self, scenario):
        own = self.heads.tower_variables(scenario) + self.gates[scenario].trainable_variables
        own += [v for e in self.specific[scenario] for v in e.trainable_variables]
        return [(v, None) for v in own]


@register("mmoe")
class MMoE(ExpertGates):
    """Multi-gate mixture of experts, one gate per (scenario, task)."""
