"""TFX: the Trainer module and the index component work without TFX; the pipeline runs
where TFX installs and is skipped, with the platform reason, where it cannot."""

import json
import subprocess
import sys
import types

import pytest

from pipelines.beam_preprocess import PreprocessConfig, run_preprocess
from tfrs_multiscene.config import GenerateConfig
from tfrs_multiscene.data import examples as E
from tfrs_multiscene.data.formats import write_tables
from tfrs_multiscene.data.synthetic import generate
from tfrs_multiscene.tfx import tfx_unavailable_reason

TFX_REASON = tfx_unavailable_reason()

RETRIEVAL = {"epochs": 2, "batch_size": 64, "embedding_dim": 16, "feature_dim": 16, "history_length": 5,
             "learning_rate": 0.02}


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    write_tables(generate(GenerateConfig(users=80, items=40, impressions=1500, seed=4)), data, "parquet")
    out = tmp_path_factory.mktemp("pre")
    run_preprocess(data, out, cfg=PreprocessConfig(data=str(data), out=str(out), shards=2))
    return out


def test_trainer_module_imports_without_tfx():
    code = ("import sys, tfrs_multiscene.tfx.trainer as t, tfrs_multiscene.tfx.index_component as i; "
            "assert callable(t.run_fn) and 'tfx' not in sys.modules, sorted(m for m in sys.modules if m.startswith('tfx'))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_skip_reason_names_the_platform():
    if TFX_REASON is None:
        pytest.skip("TFX imports here")
    assert "glibc" in TFX_REASON and "/etc/debian_version" in TFX_REASON


@pytest.mark.slow
def test_run_fn_and_index_component_without_tfx(preprocessed, tmp_path):
    import numpy as np
    import tensorflow as tf

    from tfrs_multiscene.retrieval.checkpoints import load_retrieval
    from tfrs_multiscene.tfx.index_component import (
        REPORT_FILE,
        SERVING_SUBDIR,
        build_index_artifact,
    )
    from tfrs_multiscene.tfx.trainer import run_fn

    shards = sorted(str(p) for p in (preprocessed / E.EXAMPLES_DIR).glob(E.SHARD_PATTERN))
    fn_args = types.SimpleNamespace(
        train_files=[shards[0]], eval_files=[shards[1]], train_steps=None,
        serving_model_dir=str(tmp_path / "serving"), model_run_dir=str(tmp_path / "run"),
        custom_config={"preprocess_dir": str(preprocessed), "retrieval": RETRIEVAL,
                       "ranking": {"epochs": 1, "batch_size": 256}, "export": {"top_k": 20}})
    run_fn(fn_args)
    summary = json.loads((tmp_path / "run" / "tfx_trainer.json").read_text())
    assert {"retrieval", "ranking", "recommender"} <= set(summary["servables"])
    loss = summary["retrieval"]["history"]["loss"]
    assert loss[-1] < loss[0]
    served = tf.saved_model.load(str(tmp_path / "serving"))
    assert "serving_default" in served.signatures
    model = load_retrieval(tmp_path / "run")  # the run dir is a normal retrieval run
    assert model.spec.item_table_ids

    report = build_index_artifact(tmp_path / "run", tmp_path / "index", preprocessed, kind="ivf",
                                  target_recall=0.9, top_k=20)
    assert report["kind"] == "ivf" and report["stock_ops"] and report["recall"] >= 0.9
    assert (tmp_path / "index" / SERVING_SUBDIR / "saved_model.pb").exists()
    assert json.loads((tmp_path / "index" / REPORT_FILE).read_text())["kind"] == "ivf"
    sig = tf.saved_model.load(str(tmp_path / "index" / SERVING_SUBDIR)).signatures["serving_default"]
    inputs = {k: tf.constant([["" for _ in range(5)]] if k == "history" else ["u001"])
              for k, spec in sig.structured_input_signature[1].items() if spec.dtype == tf.string}
    out = sig(**inputs)
    assert np.asarray(next(iter(out.values()))).shape[0] == 1


@pytest.mark.skipif(TFX_REASON is not None, reason=TFX_REASON or "")
@pytest.mark.slow
def test_tfx_pipeline_runs_locally(preprocessed, tmp_path):
    from pipelines.tfx_pipeline import run_local

    base = run_local(str(preprocessed), str(tmp_path), custom_config={"retrieval": RETRIEVAL,
                                                                       "ranking": {"epochs": 1}},
                     index_kind="scann", target_recall=0.9)
    assert any((base / "recommender").iterdir()) and any((base / "retrieval").iterdir())
