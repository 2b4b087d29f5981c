"""Multi-scenario ranking architectures behind one interface (see ``common``), by name.

Every architecture maps encoded inputs ``[B, F]`` to logits for every scenario and head
``[B, S, H]``; importing this package registers the four of them.

>>> arch = build_architecture("mmoe", num_scenarios=3, num_heads=2, cfg=RankingConfig())
"""

from tfrs_multiscene.ranking.architectures import mmoe, ple, shared_bottom, star  # noqa: F401  (they register)
from tfrs_multiscene.ranking.architectures.common import REGISTRY, ScenarioArchitecture


def build_architecture(name: str, num_scenarios: int, num_heads: int, cfg) -> ScenarioArchitecture:
    """Instantiate architecture ``name`` (shared_bottom, star, mmoe, ple)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown ranking architecture {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name](num_scenarios, num_heads, cfg, name=name)


def available_architectures() -> list:
    return sorted(REGISTRY)


__all__ = ["ScenarioArchitecture", "available_architectures", "build_architecture"]
