"""Shared bottom: one MLP shared by all scenarios, then one tower per scenario.

``x [B, D]`` -> bottom MLP (``bottom_units``) -> ``h [B, Db]`` -> tower_s (``tower_units``)
-> H logits, for every scenario s: ``[B, S, H]``. Scenario s's logits depend only on the
bottom and tower s.
"""

from __future__ import annotations

from tfrs_multiscene.ranking.architectures.common import ScenarioArchitecture, ScenarioHeads, mlp, register


@register("shared_bottom")
class SharedBottom(ScenarioArchitecture):
    def __init__(self, num_scenarios, num_heads, cfg, **kwargs):
        super().__init__(num_scenarios, num_heads, cfg, **kwargs)
        self.bottom = mlp(cfg.bottom_units, cfg.dropout, name="bottom")
        self.heads = ScenarioHeads(num_scenarios, num_heads, cfg.tower_units, cfg.dropout, name="towers")

    def scenario_logits(self, x, scenario_index, training=False):
        return self.heads(self.bottom(x, training=training), training=training)

    def scenario_owned(self, scenario):
        return [(v, None) for v in self.heads.tower_variables(scenario)]
