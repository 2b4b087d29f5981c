"""Generated TF Serving deployment files, parsed back with protobuf text format."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from test_serving_toys import install_version, toy_models  # noqa: F401  (session fixture)

from tfrs_multiscene.config import ServeConfig
from tfrs_multiscene.serving.client import RestClient
from tfrs_multiscene.serving.server import ModelServer
from tfrs_multiscene.serving.tf_serving_config import (
    BatchingSpec,
    ServableSpec,
    batching_parameters_class,
    monitoring_config_class,
    read_model_config,
    write_serving_configs,
)

SPECS = [
    ServableSpec("recommender", "/models/recommender", version_policy="specific", versions=[3, 4],
                 labels={"stable": 3, "canary": 4}),
    ServableSpec("retrieval", "/models/retrieval"),
    ServableSpec("ranking", "/models/ranking", version_policy="all"),
]


def test_written_files_parse_with_tf_serving_messages(tmp_path):
    paths = write_serving_configs(tmp_path, SPECS, BatchingSpec(max_batch_size=64, batch_timeout_micros=500,
                                                                 num_batch_threads=2, allowed_batch_sizes=[16, 64]))
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(paths["model_config"].read_text(), config)
    entries = {c.name: c for c in config.model_config_list.config}
    assert list(entries) == ["recommender", "retrieval", "ranking"]
    rec = entries["recommender"]
    assert rec.base_path == "/models/recommender" and rec.model_platform == "tensorflow"
    assert list(rec.model_version_policy.specific.versions) == [3, 4]
    assert dict(rec.version_labels) == {"stable": 3, "canary": 4}
    assert entries["retrieval"].model_version_policy.latest.num_versions == 1
    assert entries["ranking"].model_version_policy.WhichOneof("policy_choice") == "all"

    batching = batching_parameters_class()()
    text_format.Parse(paths["batching_parameters"].read_text(), batching)
    assert batching.max_batch_size.value == 64 and batching.batch_timeout_micros.value == 500
    assert batching.num_batch_threads.value == 2 and list(batching.allowed_batch_sizes) == [16, 64]
    assert "max_batch_size { value: 64 }" in " ".join(paths["batching_parameters"].read_text().split())

    monitoring = monitoring_config_class()()
    text_format.Parse(paths["monitoring_config"].read_text(), monitoring)
    assert monitoring.prometheus_config.enable and monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"
    assert "--model_config_file=/config/models.config" in paths["command"].read_text()


def test_extra_messages_match_tf_serving_names():
    assert batching_parameters_class().DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"
    assert monitoring_config_class().DESCRIPTOR.full_name == "tensorflow.serving.MonitoringConfig"
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_size: 3", batching_parameters_class()())  # a wrapper, as in TF Serving


@pytest.mark.parametrize("spec,needle", [
    (ServableSpec("a", "/m/a", version_policy="newest"), "version_policy"),
    (ServableSpec("a", "/m/a", version_policy="specific"), "needs versions"),
    (ServableSpec("a", "/m/a", version_policy="specific", versions=[1], labels={"canary": 2}), "canary"),
    (ServableSpec("", "/m/a"), "name"),
])
def test_invalid_specs_are_refused(tmp_path, spec, needle):
    with pytest.raises(ValueError, match=needle):
        write_serving_configs(tmp_path, [spec])


def test_invalid_batching_and_duplicates_are_refused(tmp_path):
    with pytest.raises(ValueError, match="allowed_batch_sizes"):
        write_serving_configs(tmp_path, SPECS[:1], BatchingSpec(max_batch_size=64, allowed_batch_sizes=[32]))
    with pytest.raises(ValueError, match="unique"):
        write_serving_configs(tmp_path, [SPECS[1], SPECS[1]])


def test_read_model_config_reports_bad_files(tmp_path):
    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { config { nme: 'x' } }")
    with pytest.raises(ValueError, match="not a ModelServerConfig"):
        read_model_config(bad)


@pytest.mark.serving
def test_local_server_follows_a_generated_models_config(toy_models, tmp_path):  # noqa: F811
    base = tmp_path / "models"
    install_version(base, "toy", 1, toy_models[1])
    install_version(base, "toy", 2, toy_models[2])
    install_version(base, "other", 1, toy_models[1])  # not in the config: not served
    paths = write_serving_configs(tmp_path / "cfg", [
        ServableSpec("toy", "toy", version_policy="all", labels={"stable": 1, "canary": 2})])
    cfg = ServeConfig(model_base=str(base), rest_port=0, grpc_port=0, poll_seconds=0)
    with ModelServer(cfg, model_config_file=str(paths["model_config"])) as server:
        rest = RestClient(f"http://127.0.0.1:{server.ports['rest']}", retries=0)
        assert rest.predict("toy", ["u1"], label="stable")["model_version"].tolist() == [1]
        assert rest.predict("toy", ["u1"], label="canary")["model_version"].tolist() == [2]
        assert rest.predict("toy", ["u1"], version=1)["model_version"].tolist() == [1]
        assert rest.predict("toy", ["u1"])["model_version"].tolist() == [2]
        assert server.store.model_names() == ["toy"]
