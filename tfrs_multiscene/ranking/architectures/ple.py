"""PLE (one customised-gate-control level): shared experts plus experts owned by each scenario.

Gate (s, h) mixes the ``num_experts`` shared experts and scenario s's
``max(1, num_experts // 2)`` own experts; then tower (s, h) -> 1 logit. Output ``[B, S, H]``.
Same code path as MMoE (:class:`~.mmoe.ExpertGates`), with scenario-specific experts.
"""

from __future__ import annotations

from tfrs_multiscene.ranking.architectures.common import register
from tfrs_multiscene.ranking.architectures.mmoe import ExpertGates


@register("ple")
class PLE(ExpertGates):
    """Progressive layered extraction (single CGC level) with per-scenario experts."""

    def num_specific_experts(self, cfg) -> int:
        return max(1, int(cfg.num_experts) // 2)
