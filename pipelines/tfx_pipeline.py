"""TFX pipeline factory: ImportExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator
-> Trainer (tfrs_multiscene.tfx.trainer.run_fn) -> RetrievalIndexer -> Pushers.

The examples are the Beam preprocess output (``tfrs-multiscene preprocess``): item and user
features are already joined, and the Trainer reads the vocabularies and the item/user tables
from the same directory (``custom_config["preprocess_dir"]``).

Pushed servables (TF Serving layout ``<serving_model_base>/<name>/<version>``):
``recommender`` (the Trainer's end-to-end model, stock ops) and ``retrieval`` (the indexer's
tuned ScaNN index, or a stock-op index where ScaNN is unavailable).

Evaluator: TFMA evaluates per-example predictions against labels; the retrieval and
recommender servables return top-K lists for a request, so TFMA's metrics do not apply to
them. The Trainer writes Recall/NDCG (see tfx_trainer.json in the model run); add an
Evaluator through ``extra_components`` for a per-example ranking servable if you export one.

Runs locally with :func:`run_local` (LocalDagRunner, SQLite metadata). For Kubeflow
Pipelines / Vertex AI Pipelines compile the same ``create_pipeline(...)`` object with
``tfx.orchestration.experimental.KubeflowV2DagRunner`` (see docs/DISTRIBUTED.md). Needs TFX:
every tfx import is inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

TRAINER_MODULE = str(Path(__file__).resolve().parent.parent / "tfrs_multiscene" / "tfx" / "trainer.py")


def create_pipeline(pipeline_name: str, pipeline_root: str, preprocess_dir: str, serving_model_base: str, *,
                    metadata_path: str | None = None, custom_config: dict | None = None,
                    train_steps: int | None = None, index_kind: str = "scann", target_recall: float = 0.95,
                    beam_pipeline_args: Sequence[str] = (), extra_components: Sequence = ()):
    """The pipeline object (``tfx.dsl.Pipeline``); ``metadata_path`` None leaves the metadata
    connection to the orchestrator (Kubeflow/Vertex)."""
    from tfx import v1 as tfx

    from tfrs_multiscene.data import examples as E
    from tfrs_multiscene.tfx.index_component import make_index_component

    example_gen = tfx.components.ImportExampleGen(
        input_base=str(Path(preprocess_dir) / E.EXAMPLES_DIR),
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name="all", pattern=E.SHARD_PATTERN)]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name="train", hash_buckets=4),
            tfx.proto.SplitConfig.Split(name="eval", hash_buckets=1)])))
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.components.SchemaGen(statistics=statistics.outputs["statistics"], infer_feature_shape=True)
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    config = {"preprocess_dir": str(preprocess_dir), **(custom_config or {})}
    trainer = tfx.components.Trainer(
        module_file=TRAINER_MODULE, examples=example_gen.outputs["examples"], schema=schema.outputs["schema"],
        custom_config=config,
        train_args=tfx.proto.TrainArgs(num_steps=train_steps) if train_steps else None,
        eval_args=tfx.proto.EvalArgs(num_steps=1))
    indexer = make_index_component()(model_run=trainer.outputs["model_run"], preprocess_dir=str(preprocess_dir),
                                     kind=index_kind, target_recall=target_recall)

    def pusher(model, name):
        return tfx.components.Pusher(model=model, push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=str(Path(serving_model_base) / name)))
        ).with_id(f"Pusher_{name}")

    components = [example_gen, statistics, schema, validator, trainer, indexer,
                  pusher(trainer.outputs["model"], "recommender"), pusher(indexer.outputs["index"], "retrieval"),
                  *extra_components]
    metadata = (tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
                if metadata_path else None)
    return tfx.dsl.Pipeline(pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=components,
                            metadata_connection_config=metadata, beam_pipeline_args=list(beam_pipeline_args))


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
