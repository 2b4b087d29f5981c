"""TFX pipeline factory: ImportExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator
-> Trainer (``run_fn`` of tfrs_multiscene.tfx.trainer) -> RetrievalIndexer -> Pushers.

Checked against the TFX 1.21 source (public ``tfx.v1`` API only): component constructors
(``tfx/components/*/component.py``), ``tfx.v1.proto`` (Input/Output/SplitConfig,
TrainArgs/EvalArgs, PushDestination.Filesystem), ``tfx.dsl.Pipeline``,
``tfx.orchestration.metadata.sqlite_metadata_connection_config`` and
``tfx.orchestration.LocalDagRunner().run(pipeline)``.

The examples are the Beam preprocess output (``tfrs-multiscene preprocess``): GZIP TFRecords
``examples/part-*.tfrecord.gz`` (ImportExampleGen's ``ReadFromTFRecord`` detects the
compression from the suffix), item and user features already joined; the Trainer reads the
vocabularies and the item/user tables from the same directory
(``custom_config["preprocess_dir"]``, a local or mounted path).

Trainer module: by default ``module_file`` = ``tfrs_multiscene/tfx/user_module/
tfrs_multiscene_trainer.py``. TFX packages every ``.py`` of that file's directory into a wheel
under ``<pipeline_root>/_wheels`` (``setup.py bdist_wheel``: needs setuptools >= 70.1 or
``wheel``) and imports it as a top-level module, so the directory holds only that one-line
module. ``trainer_fn_path=True`` passes ``run_fn="tfrs_multiscene.tfx.trainer.run_fn"``
instead (no wheel; the package must be installed where the Trainer runs, as it must be anyway).

Pushed servables (TF Serving layout ``<serving_model_base>/<name>/<unix-timestamp version>``,
Pusher's default ``Versioning.AUTO``): ``recommender`` (the Trainer's end-to-end model, stock
ops) and ``retrieval`` (the indexer's tuned ScaNN index, or a stock-op IVF index where ScaNN
cannot load, e.g. TensorFlow 2.21 in the TFX environment: the reason is logged and stored on
the index artifact as ``fallback_reason``). Without a blessing input Pusher pushes
unconditionally and logs "Pusher is going to push the model without validation".

Evaluator is not part of the pipeline, on purpose: TFMA (``tfx.components.Evaluator`` with a
``tfma.EvalConfig``) scores one prediction per example against that example's label. The
``recommender`` and ``retrieval`` servables take user features and return a top-K list of
item ids, with no per-(user, item) score to compare with a label, so TFMA's metrics (and its
blessing) do not apply to them; the Trainer writes Recall/NDCG on held-out users into the run
directory (``tfx_trainer.json``) instead. For a per-example ranking servable, add an Evaluator
(with its EvalConfig, ``model_blessing`` wired to a Pusher) through ``extra_components``.

Runs locally with :func:`run_local` (LocalDagRunner, SQLite metadata). For Kubeflow
Pipelines / Vertex AI Pipelines compile the same ``create_pipeline(...)`` object with
``tfx.orchestration.experimental.KubeflowV2DagRunner`` (see docs/DISTRIBUTED.md). Needs TFX:
every tfx import is inside the functions.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

#: ``Trainer(run_fn=...)`` path (the alternative to the module file).
RUN_FN = "tfrs_multiscene.tfx.trainer.run_fn"
_MODULE_NAME = "tfrs_multiscene.tfx.user_module.tfrs_multiscene_trainer"


def trainer_module_file() -> str:
    """Absolute path of the Trainer ``module_file`` (found without importing it)."""
    return str(Path(importlib.util.find_spec(_MODULE_NAME).origin).resolve())


def _join(base, name: str) -> str:
    """``base/name`` for local paths and gs:// URIs alike (pathlib would fold the ``//``)."""
    return f"{str(base).rstrip('/')}/{name}"


def create_pipeline(pipeline_name: str, pipeline_root: str, preprocess_dir: str, serving_model_base: str, *,
                    metadata_path: str | None = None, custom_config: dict | None = None,
                    train_steps: int | None = None, index_kind: str = "scann", target_recall: float = 0.95,
                    index_top_k: int = 100, beam_pipeline_args: Sequence[str] = (),
                    extra_components: Sequence = (), trainer_fn_path: bool = False, enable_cache: bool = False):
    """The pipeline object (``tfx.dsl.Pipeline``); ``metadata_path`` None leaves the metadata
    connection to the orchestrator (Kubeflow/Vertex)."""
    from tfx import v1 as tfx

    from tfrs_multiscene.data import examples as E
    from tfrs_multiscene.tfx.components import RetrievalIndexer

    example_gen = tfx.components.ImportExampleGen(
        input_base=_join(preprocess_dir, E.EXAMPLES_DIR),
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name="all", pattern=E.SHARD_PATTERN)]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name="train", hash_buckets=4),
            tfx.proto.SplitConfig.Split(name="eval", hash_buckets=1)])))
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.components.SchemaGen(statistics=statistics.outputs["statistics"], infer_feature_shape=True)
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    config = {"preprocess_dir": str(preprocess_dir), **(custom_config or {})}
    source = {"run_fn": RUN_FN} if trainer_fn_path else {"module_file": trainer_module_file()}
    trainer = tfx.components.Trainer(
        examples=example_gen.outputs["examples"], schema=schema.outputs["schema"], custom_config=config,
        train_args=tfx.proto.TrainArgs(splits=["train"], **({"num_steps": int(train_steps)} if train_steps else {})),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]), **source)
    indexer = RetrievalIndexer(model_run=trainer.outputs["model_run"], preprocess_dir=str(preprocess_dir),
                               kind=index_kind, target_recall=float(target_recall), top_k=int(index_top_k))

    def pusher(model, name):
        return tfx.components.Pusher(model=model, push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=_join(serving_model_base, name)))
        ).with_id(f"Pusher_{name}")

    components = [example_gen, statistics, schema, validator, trainer, indexer,
                  pusher(trainer.outputs["model"], "recommender"), pusher(indexer.outputs["index"], "retrieval"),
                  *extra_components]
    metadata = (tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
                if metadata_path else None)
    return tfx.dsl.Pipeline(pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=components,
                            metadata_connection_config=metadata, enable_cache=enable_cache,
                            beam_pipeline_args=list(beam_pipeline_args))


def run_local(preprocess_dir: str, work_dir: str, serving_model_base: str | None = None, **kwargs) -> Path:
    """Run the pipeline with LocalDagRunner (SQLite metadata under ``work_dir``); returns the
    serving model base. ``TF_USE_LEGACY_KERAS=1`` must be set before the process starts."""
    import os

    from tfx import v1 as tfx

    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("set TF_USE_LEGACY_KERAS=1 before starting Python: TFRS needs Keras 2 and TFX "
                           "imports TensorFlow early")
    work = Path(work_dir)
    base = Path(serving_model_base or work / "serving")
    pipeline = create_pipeline("tfrs_multiscene", str(work / "root"), preprocess_dir, str(base),
                               metadata_path=str(work / "metadata.sqlite"), **kwargs)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return base
