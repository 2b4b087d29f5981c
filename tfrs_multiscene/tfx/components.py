"""TFX custom components of this package (imports TFX: use only where TFX is installed).

Two rules of TFX 1.21's ``@component`` (``tfx/dsl/component/experimental/decorators.py``,
``utils.assert_is_top_level_func`` and ``function_parser.parse_typehint_component_function``)
shape this module:

* the decorated function must be defined at module level (a function built inside another
  function has ``<locals>`` in its ``__qualname__`` and is refused: the generated
  ``<name>_Executor`` class must be importable by its module path);
* the annotations are read from ``func.__annotations__`` as objects, so this module must NOT
  use ``from __future__ import annotations`` (string annotations are rejected as "Unknown
  type hint annotation").

The body is :func:`tfrs_multiscene.tfx.index_component.run_index_component`, which needs no
TFX and is tested without it.
"""

from tfx import v1 as tfx

from tfrs_multiscene.tfx.index_component import run_index_component


@tfx.dsl.components.component
def RetrievalIndexer(
    model_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
    index: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    preprocess_dir: tfx.dsl.components.Parameter[str],
    kind: tfx.dsl.components.Parameter[str] = "scann",
    target_recall: tfx.dsl.components.Parameter[float] = 0.95,
    top_k: tfx.dsl.components.Parameter[int] = 100,
) -> None:
    """Tune the retrieval index of the Trainer's run and export it as a pushable Model
    (``<index.uri>/Format-Serving``); ScaNN falls back to the stock-op IVF index, with the
    reason on the artifact (``fallback_reason``), where the ScaNN ops do not load."""
    run_index_component(model_run, index, preprocess_dir, kind, target_recall, top_k)
