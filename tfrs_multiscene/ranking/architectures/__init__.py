"""Multi-scenario ranking architectures behind one interface (see ``common``)."""

from tfrs_multiscene.ranking.architectures.common import (  # noqa: F401
    ScenarioArchitecture,
    available_architectures,
    build_architecture,
)
