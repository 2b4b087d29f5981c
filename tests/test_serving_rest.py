"""The local server over TF Serving's REST API: round trips, metadata, status, bad requests."""

from __future__ import annotations

import base64
import http.client
import json

import numpy as np
import pytest
from test_serving_toys import install_version, toy_models  # noqa: F401  (session fixture)

from tfrs_multiscene.config import ServeConfig
from tfrs_multiscene.serving.client import RestClient, ServingClientError
from tfrs_multiscene.serving.server import ModelServer

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def server(toy_models, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp("rest_base")
    install_version(base, "toy", 1, toy_models[1])
    cfg = ServeConfig(model_base=str(base), rest_port=0, grpc_port=0, poll_seconds=0.5,
                      max_batch=8, max_request_bytes=64 << 10)
    srv = ModelServer(cfg)
    ports = srv.start()
    yield srv, ports["rest"]
    srv.stop()


def call(port, method, path, body=None, raw: bytes | None = None, headers=None):
    """(HTTP status, parsed JSON) of one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers=headers or {"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = json.loads(resp.read().decode())
    conn.close()
    return resp.status, payload


def test_status_and_metadata(server):
    _, port = server
    status, body = call(port, "GET", "/v1/models/toy")
    assert status == 200
    assert body["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    status, meta = call(port, "GET", "/v1/models/toy/versions/1/metadata")
    assert status == 200 and meta["model_spec"] == {"name": "toy", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["user_id"]["dtype"] == "DT_STRING"
    assert set(sig["outputs"]) == {"item_ids", "scores", "model_version"}
    assert sig["method_name"] == "tensorflow/serving/predict"


def test_predict_row_and_columnar_formats(server):
    _, port = server
    status, rows = call(port, "POST", "/v1/models/toy:predict", {"instances": ["u1", "u2"]})
    assert status == 200
    assert rows["predictions"][0] == {"item_ids": ["i1", "i2", "i3"], "scores": [1.0, 0.5, pytest.approx(1 / 3)],
                                      "model_version": 1}
    status, cols = call(port, "POST", "/v1/models/toy/versions/1:predict",
                        {"signature_name": "score", "inputs": {"x": [[1, 2], [3, 4]], "n": [1, 2]}})
    assert status == 200 and cols == {"outputs": [3.0, 14.0]}
    status, named_rows = call(port, "POST", "/v1/models/toy:predict",
                              {"signature_name": "score", "instances": [{"x": [1, 1], "n": 3}]})
    assert status == 200 and named_rows == {"predictions": [6.0]}
    status, empty = call(port, "POST", "/v1/models/toy:predict", {"signature_name": "score", "inputs": {"x": [], "n": []}})
    assert status == 400 and "expects shape [?, 2]" in empty["error"]
    status, empty = call(port, "POST", "/v1/models/toy:predict", {"inputs": {"user_id": []}})
    assert status == 200 and empty["outputs"]["model_version"] == []


def test_client_round_trip_row_and_columnar_agree(server):
    _, port = server
    client = RestClient(f"http://127.0.0.1:{port}", timeout=10, retries=0)
    by_rows = client.predict("toy", ["u3", "zz"])
    by_cols = client.predict("toy", {"user_id": ["u3", "zz"]})
    assert set(by_rows) == {"item_ids", "scores", "model_version"}
    for key in by_rows:
        np.testing.assert_array_equal(by_rows[key], by_cols[key])
    assert by_rows["item_ids"][0].tolist() == [b"i3", b"i4", b"i5"]
    single = client.predict("toy", {"x": [[1.0, 1.0]], "n": [1]}, signature_name="score")
    np.testing.assert_allclose(single["y"], [2.0])
    assert client.status("toy")[0]["state"] == "AVAILABLE"
    assert "score" in client.metadata("toy")["metadata"]["signature_def"]["signature_def"]


def test_binary_values_travel_as_b64_and_empty_strings_work(server):
    _, port = server
    raw = b"\xff\x00\xfe"
    status, body = call(port, "POST", "/v1/models/toy:predict", {
        "signature_name": "echo", "instances": [{"text": {"b64": base64.b64encode(raw).decode()}}, {"text": ""},
                                                 {"text": "héllo"}]})
    assert status == 200
    assert body["predictions"][0] == {"length": 3, "text_bytes": {"b64": base64.b64encode(raw).decode()}}
    assert body["predictions"][1]["length"] == 0
    assert body["predictions"][2]["length"] == len("héllo".encode())
    client = RestClient(f"http://127.0.0.1:{port}", retries=0)
    out = client.predict("toy", {"text": [raw, ""]}, signature_name="echo")
    assert out["text_bytes"].tolist() == [raw, b""]


def test_classify_and_regress(server):
    _, port = server
    status, body = call(port, "POST", "/v1/models/toy:classify",
                        {"signature_name": "classify", "examples": [{"x": 0.0}, {"x": 100.0}]})
    assert status == 200
    assert body["result"][0] == [["neg", 0.5], ["pos", 0.5]]
    assert body["result"][1][1][0] == "pos" and body["result"][1][1][1] == pytest.approx(1.0)
    status, body = call(port, "POST", "/v1/models/toy:regress",
                        {"signature_name": "regress", "context": {"w": 10.0}, "examples": [{"x": 1.0}, {"x": 2.0, "w": 0.0}]})
    assert status == 200 and body == {"result": [12.0, 4.0]}
    # Like TF Serving, a JSON integer becomes an int64 feature, which the float parser refuses.
    status, body = call(port, "POST", "/v1/models/toy:classify", {"signature_name": "classify", "examples": [{"x": 1}]})
    assert status == 400 and "rejected the input" in body["error"]
    status, body = call(port, "POST", "/v1/models/toy:regress", {"signature_name": "score", "examples": [{"x": 1.0}]})
    assert status == 400 and "not a regression signature" in body["error"]


@pytest.mark.parametrize("method,path,payload,code,needle", [
    ("POST", "/v1/models/toy:predict", b"{not json", 400, "JSON parse error"),
    ("POST", "/v1/models/toy:predict", b'{"instances": ["\xff\xfe"]}', 400, "not valid UTF-8"),
    ("POST", "/v1/models/toy:predict", b'{"instances": ["\\ud800"]}', 400, "not valid Unicode"),
    ("POST", "/v1/models/toy:classify", b'{"examples": [{"x": "\\ud800"}]}', 400, "not valid Unicode"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "score", "inputs": {"x": [["a", "b"]], "n": [1]}},
     400, "input 'x' expects float"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "score", "inputs": {"x": [[1, 2]]}}, 400, "missing input(s) ['n']"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "nope", "instances": ["u1"]}, 400, '"nope" not found'),
    ("POST", "/v1/models/toy/versions/7:predict", {"instances": ["u1"]}, 404, "Specific(toy, 7)"),
    ("POST", "/v1/models/toy/versions/x:predict", {"instances": ["u1"]}, 400, "version must be"),
    ("POST", "/v1/models/toy/labels/gold:predict", {"instances": ["u1"]}, 404, "label: gold"),
    ("POST", "/v1/models/nobody:predict", {"instances": ["u1"]}, 404, "Latest(nobody)"),
    ("POST", "/v1/models/toy:predict", {"instances": ["u1"] * 9}, 400, "batch size 9, more than the maximum 8"),
    ("POST", "/v1/models/toy:predict", {"instances": []}, 400, "non-empty list"),
    ("POST", "/v1/models/toy:predict", {"instances": ["u1"], "inputs": ["u1"]}, 400, "exactly one of"),
    ("POST", "/v1/models/toy:predict", {"instances": [{"b64": "%%%"}]}, 400, "invalid base64"),
    ("POST", "/v1/models/toy:predict", {"instances": [None]}, 400, "null"),
    ("POST", "/v1/models/toy:predict", [1, 2], 400, "must be a JSON object"),
    ("POST", "/v1/models/toy:explode", {"instances": ["u1"]}, 404, "unknown method"),
    ("POST", "/v1/models/toy:predict", b"x" * (65 << 10), 413, "exceeds the limit"),
    ("GET", "/v1/models/nobody", None, 404, "nobody"),
    ("PUT", "/v1/models/toy:predict", {"instances": ["u1"]}, 405, "not supported"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "score", "inputs": {"x": [[1, 2]], "n": [True]}},
     400, "input 'n' expects int64 values (signature int64[?]), got bool"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "score", "inputs": {"x": [[1, 2]], "n": [2 ** 70]}},
     400, "input 'n' expects int64"),
    ("POST", "/v1/models/toy:predict", {"instances": [["u1"], ["u2", "u3"]]}, 400, "ragged"),
    ("GET", "/v2/whatever", None, 404, "Malformed request"),
])
def test_bad_requests_get_clear_errors_and_server_keeps_serving(server, method, path, payload, code, needle):
    _, port = server
    raw = payload if isinstance(payload, bytes) else None
    status, body = call(port, method, path, body=None if raw else payload, raw=raw)
    assert status == code, body
    assert set(body) == {"error"} and needle in body["error"]
    assert call(port, "POST", "/v1/models/toy:predict", {"instances": ["u1"]})[0] == 200


def test_a_body_far_over_the_limit_is_answered_413_not_reset(server):
    """An 8 MB body (the limit is 64 KB) fills the socket buffers: the server reads it to
    the end before it answers, so the client gets the JSON error, not a broken pipe."""
    _, port = server
    status, body = call(port, "POST", "/v1/models/toy:predict", raw=b"x" * (8 << 20))
    assert status == 413 and "exceeds the limit" in body["error"]
    assert call(port, "POST", "/v1/models/toy:predict", {"instances": ["u1"]})[0] == 200


def test_client_raises_clear_errors(server):
    _, port = server
    client = RestClient(f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(ServingClientError) as err:
        client.predict("toy", {"x": [[1, 2]]}, signature_name="score")
    assert err.value.code == "INVALID_ARGUMENT" and err.value.http_status == 400 and "'n'" in err.value.message
    with pytest.raises(ServingClientError) as err:
        client.status("nobody")
    assert err.value.code == "NOT_FOUND"


def test_keep_alive_connection_survives_errors(server):
    _, port = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for body, want in ((b"{bad", 400), (json.dumps({"instances": ["u2"]}).encode(), 200)) * 3:
        conn.request("POST", "/v1/models/toy:predict", body=body)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == want
    conn.close()


def test_a_body_that_does_not_arrive_in_time_is_answered_408(toy_models, tmp_path):  # noqa: F811
    """A client that sends part of its body and stalls (or trickles it) gets a JSON 408 once
    --request-timeout has passed, instead of holding a server thread; the server goes on."""
    import socket
    import time

    install_version(tmp_path, "toy", 1, toy_models[1])
    srv = ModelServer(ServeConfig(model_base=str(tmp_path), rest_port=0, grpc_port=0, poll_seconds=0, request_timeout=1.0))
    port = srv.start()["rest"]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n")
            started = time.monotonic()
            for _ in range(4):  # a trickle: each byte well within the timeout, the whole body never
                sock.sendall(b" ")
                time.sleep(0.4)
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        waited = time.monotonic() - started
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), head
        assert "of 100 bytes (Content-Length) arrived within 1 s" in json.loads(body)["error"] and waited < 5
        assert call(port, "POST", "/v1/models/toy:predict", {"instances": ["u1"]})[0] == 200
    finally:
        srv.stop()
