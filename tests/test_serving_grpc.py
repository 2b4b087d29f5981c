"""The local server over TF Serving's gRPC API, spoken with tensorflow-serving-api's stubs."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2
from test_serving_toys import install_version, toy_models  # noqa: F401  (session fixture)

from tfrs_multiscene.config import ServeConfig
from tfrs_multiscene.serving.client import GrpcClient, RestClient, ServingClientError
from tfrs_multiscene.serving.server import ModelServer

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def server(toy_models, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp("grpc_base")
    install_version(base, "toy", 1, toy_models[1])
    install_version(base, "toy", 2, toy_models[2])
    cfg = ServeConfig(model_base=str(base), rest_port=0, grpc_port=0, poll_seconds=0.5,
                      max_batch=8, max_request_bytes=64 << 10, grpc_workers=4)
    srv = ModelServer(cfg)
    ports = srv.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}")
    yield {"server": srv, "ports": ports, "base": base,
           "predict": prediction_service_pb2_grpc.PredictionServiceStub(channel),
           "model": model_service_pb2_grpc.ModelServiceStub(channel)}
    channel.close()
    srv.stop()


def predict_request(model="toy", signature="", version=None, label="", **inputs):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = version
    if label:
        req.model_spec.version_label = label
    for key, value in inputs.items():
        req.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return req


def test_predict_with_raw_stub_serves_latest_version(server):
    resp = server["predict"].Predict(predict_request(user_id=np.array([b"u1", b""], dtype=object)), timeout=10)
    assert resp.model_spec.name == "toy" and resp.model_spec.version.value == 2
    assert resp.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(resp.outputs["model_version"]).tolist() == [2, 2]
    assert tf.make_ndarray(resp.outputs["item_ids"])[0].tolist() == [b"i2", b"i3", b"i4"]
    pinned = server["predict"].Predict(predict_request(version=2, user_id=np.array([b"u1"], dtype=object)), timeout=10)
    assert tf.make_ndarray(pinned.outputs["model_version"]).tolist() == [2]
    # The default policy serves only the latest version.
    code, details = _code(server["predict"].Predict, predict_request(version=1, user_id=np.array([b"u1"], dtype=object)))
    assert code == grpc.StatusCode.NOT_FOUND and "available versions: [2]" in details


def test_output_filter(server):
    req = predict_request(user_id=np.array([b"u1"], dtype=object))
    req.output_filter.append("scores")
    assert set(server["predict"].Predict(req, timeout=10).outputs) == {"scores"}


def test_grpc_and_rest_clients_agree(server):
    ports = server["ports"]
    with GrpcClient(f"127.0.0.1:{ports['grpc']}", timeout=10, retries=0) as g:
        rest = RestClient(f"http://127.0.0.1:{ports['rest']}", retries=0)
        for inputs, sig in ((["u2", "u9"], "serving_default"), ({"x": [[1, 2]], "n": [3]}, "score"),
                            ([{"x": [1.5, 2.5], "n": 2}], "score")):
            a, b = g.predict("toy", inputs, signature_name=sig), rest.predict("toy", inputs, signature_name=sig)
            assert set(a) == set(b)
            for key in a:
                if a[key].dtype == object:
                    assert a[key].tolist() == b[key].tolist()
                else:
                    np.testing.assert_allclose(a[key], b[key], rtol=1e-6)
        rest_metadata = rest.metadata("toy")
        limits = rest_metadata["metadata"].pop("limits")  # this server's field beside TF Serving's
        assert g.metadata("toy") == rest_metadata
        assert g.limits("toy") == limits == {"max_batch": 8, "max_list_length": 1000, "max_request_bytes": 64 << 10,
                                             "list_inputs": ["history"]}
        assert g.status("toy") == rest.status("toy")
        assert g.classify("toy", [{"x": 0.0}], signature_name="classify") == [[("neg", 0.5), ("pos", 0.5)]]
        np.testing.assert_allclose(g.regress("toy", [{"x": 1.0}], context={"w": 3.0}, signature_name="regress"), [5.0])


def test_metadata_is_a_signature_def_map(server):
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "toy"
    resp = server["predict"].GetModelMetadata(req, timeout=10)
    sigs = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sigs)
    assert resp.model_spec.version.value == 2
    assert sigs.signature_def["score"].inputs["x"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in sigs.signature_def["score"].inputs["x"].tensor_shape.dim] == [-1, 2]


def test_classify_and_regress_with_stubs(server):
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name, req.model_spec.signature_name = "toy", "classify"
    ex = req.input.example_list.examples.add()
    ex.features.feature["x"].float_list.value.append(100.0)
    resp = server["predict"].Classify(req, timeout=10)
    classes = resp.result.classifications[0].classes
    assert [c.label for c in classes] == ["neg", "pos"] and classes[1].score == pytest.approx(1.0)
    req = regression_pb2.RegressionRequest()
    req.model_spec.name, req.model_spec.signature_name = "toy", "regress"
    ctx = req.input.example_list_with_context.context
    ctx.features.feature["w"].float_list.value.append(10.0)
    req.input.example_list_with_context.examples.add().features.feature["x"].float_list.value.append(1.0)
    assert [r.value for r in server["predict"].Regress(req, timeout=10).result.regressions] == [12.0]


def _code(call, request):
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=10)
    return err.value.code(), err.value.details()


@pytest.mark.parametrize("make,code,needle", [
    (lambda: predict_request(signature="score", x=np.array([["a", "b"]], dtype=object), n=np.array([1])),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'x' expects float"),
    (lambda: predict_request(signature="score", x=np.ones((1, 2), np.float32)),
     grpc.StatusCode.INVALID_ARGUMENT, "missing input(s) ['n']"),
    (lambda: predict_request(signature="nope", user_id=np.array([b"u"], dtype=object)),
     grpc.StatusCode.INVALID_ARGUMENT, '"nope" not found'),
    (lambda: predict_request(version=9, user_id=np.array([b"u"], dtype=object)),
     grpc.StatusCode.NOT_FOUND, "Specific(toy, 9)"),
    (lambda: predict_request(label="canary", user_id=np.array([b"u"], dtype=object)),
     grpc.StatusCode.NOT_FOUND, "label: canary"),
    (lambda: predict_request(model="nobody", user_id=np.array([b"u"], dtype=object)),
     grpc.StatusCode.NOT_FOUND, "Latest(nobody)"),
    (lambda: predict_request(model="", user_id=np.array([b"u"], dtype=object)),
     grpc.StatusCode.INVALID_ARGUMENT, "model_spec.name is empty"),
    (lambda: predict_request(user_id=np.array([b"u"] * 9, dtype=object)),
     grpc.StatusCode.INVALID_ARGUMENT, "batch size 9, more than the maximum 8"),
    (lambda: predict_request(user_id=np.array([b"\xff" * 1024] * 80, dtype=object)),
     grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
])
def test_bad_predict_requests_get_status_codes_and_server_keeps_serving(server, make, code, needle):
    got, details = _code(server["predict"].Predict, make())
    assert got == code and needle in details
    ok = server["predict"].Predict(predict_request(user_id=np.array([b"u1"], dtype=object)), timeout=10)
    assert ok.model_spec.version.value == 2


def test_non_utf8_and_empty_strings_are_values(server):
    resp = server["predict"].Predict(predict_request(signature="echo", text=np.array([b"\xff\xfe", b""], dtype=object)),
                                     timeout=10)
    assert tf.make_ndarray(resp.outputs["length"]).tolist() == [2, 0]
    assert tf.make_ndarray(resp.outputs["text_bytes"]).tolist() == [b"\xff\xfe", b""]


def test_unsupported_calls_are_explained(server):
    code, details = _code(server["predict"].MultiInference, inference_pb2.MultiInferenceRequest())
    assert code == grpc.StatusCode.UNIMPLEMENTED and "MultiInference" in details
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = "toy"
    req.input.example_list.examples.add()
    code, details = _code(server["predict"].Classify, req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a classification signature" in details
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["weights"])
    req.model_spec.name = "toy"
    assert _code(server["predict"].GetModelMetadata, req)[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_status_and_reload_config_with_labels(server):
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "toy"
    states = {s.version: s.state for s in server["model"].GetModelStatus(req, timeout=10).model_version_status}
    assert states == {2: get_model_status_pb2.ModelVersionStatus.AVAILABLE}

    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse("""
        model_config_list { config {
          name: "toy" base_path: "toy" model_platform: "tensorflow"
          model_version_policy { specific { versions: 1 versions: 2 } }
          version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }
        } }""", config)
    try:
        resp = server["model"].HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), timeout=30)
        assert resp.status.error_code == 0
        with GrpcClient(f"127.0.0.1:{server['ports']['grpc']}", retries=0) as client:
            assert client.predict("toy", ["u1"], label="stable")["model_version"].tolist() == [1]
            assert client.predict("toy", ["u1"], label="canary")["model_version"].tolist() == [2]
            assert {s["version"] for s in client.status("toy")} == {"1", "2"}
            assert client.status("toy", label="stable")[0]["state"] == "AVAILABLE"
        rest = RestClient(f"http://127.0.0.1:{server['ports']['rest']}", retries=0)
        assert rest.predict("toy", ["u1"], label="stable")["model_version"].tolist() == [1]
        # A label on a version that is not served is refused and the old config stays.
        bad = model_server_config_pb2.ModelServerConfig()
        bad.CopyFrom(config)
        bad.model_config_list.config[0].version_labels["canary"] = 7
        code, details = _code(server["model"].HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(config=bad))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "version 7" in details
        assert rest.predict("toy", ["u1"], label="canary")["model_version"].tolist() == [2]
    finally:  # back to the default: every version dir, latest policy
        latest = model_server_config_pb2.ModelServerConfig()
        latest.model_config_list.config.add(name="toy", base_path="toy", model_platform="tensorflow")
        server["model"].HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=latest), timeout=30)


def test_client_errors_are_clear(server):
    with GrpcClient(f"127.0.0.1:{server['ports']['grpc']}", retries=0) as client:
        with pytest.raises(ServingClientError) as err:
            client.predict("toy", {"x": [["a", "b"]], "n": [1]}, signature_name="score")
        assert err.value.code == "INVALID_ARGUMENT" and "'x'" in err.value.message
        with pytest.raises(ServingClientError) as err:
            client.predict("nobody", ["u1"])
        assert err.value.code == "NOT_FOUND"
