"""Client behaviour without a healthy server (retries, timeouts) and the blocking `serve` entry point."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_serving_toys import install_version, toy_models  # noqa: F401  (session fixture)

from tfrs_multiscene.serving.client import (
    GrpcClient,
    RestClient,
    ServingClientError,
    make_client,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``fail`` requests, then a model status."""

    calls = 0
    fail = 2

    def do_GET(self):
        type(self).calls += 1
        unavailable = type(self).calls <= type(self).fail
        body = {"error": "warming up"} if unavailable else {
            "model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK"}}]}
        data = json.dumps(body).encode()
        self.send_response(503 if unavailable else 200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    handler = type("Flaky", (_Flaky,), {"calls": 0, "fail": 2})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield httpd, handler
    httpd.shutdown()
    httpd.server_close()


def test_rest_client_retries_unavailable_then_succeeds(flaky_server):
    httpd, handler = flaky_server
    client = RestClient(f"http://127.0.0.1:{httpd.server_address[1]}", retries=2, backoff=0.01)
    assert client.status("toy")[0]["state"] == "AVAILABLE"
    assert handler.calls == 3


def test_rest_client_gives_up_after_retries(flaky_server):
    httpd, handler = flaky_server
    handler.fail = 10
    client = RestClient(f"http://127.0.0.1:{httpd.server_address[1]}", retries=1, backoff=0.01)
    with pytest.raises(ServingClientError) as err:
        client.status("toy")
    assert err.value.code == "UNAVAILABLE" and err.value.http_status == 503 and "warming up" in err.value.message
    assert handler.calls == 2


def test_connection_refused_is_unavailable_for_both_protocols():
    port = _free_port()
    start = time.monotonic()
    with pytest.raises(ServingClientError) as err:
        RestClient(f"http://127.0.0.1:{port}", timeout=2, retries=2, backoff=0.01).status("toy")
    assert err.value.code == "UNAVAILABLE"
    with GrpcClient(f"127.0.0.1:{port}", timeout=2, retries=1, backoff=0.01) as client, \
            pytest.raises(ServingClientError) as err:
        client.status("toy")
    assert err.value.code == "UNAVAILABLE"
    assert time.monotonic() - start < 15


def test_rest_timeout_is_deadline_exceeded():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        client = RestClient(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5, retries=3)
        start = time.monotonic()
        with pytest.raises(ServingClientError) as err:
            client.status("toy")
        assert err.value.code == "DEADLINE_EXCEEDED"
        assert time.monotonic() - start < 3  # timeouts are not retried


def test_make_client_picks_the_protocol():
    assert isinstance(make_client("http://127.0.0.1:8501"), RestClient)
    grpc_client = make_client("grpc://127.0.0.1:8500")
    assert isinstance(grpc_client, GrpcClient) and grpc_client.target == "127.0.0.1:8500"
    grpc_client.close()


@pytest.mark.serving
def test_serve_entry_point_runs_until_sigterm(toy_models, tmp_path):  # noqa: F811
    install_version(tmp_path / "models", "toy", 1, toy_models[1])
    code = ("import tfrs_multiscene; from tfrs_multiscene.config import ServeConfig; "
            "from tfrs_multiscene.serving.server import serve; "
            f"serve(ServeConfig(model_base={str(tmp_path / 'models')!r}, rest_port=0, grpc_port=0))")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "Serving" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        match = re.search(r"REST http://127\.0\.0\.1:(\d+)/v1/models/NAME\s+gRPC 127\.0\.0\.1:(\d+)", line)
        assert match, line
        assert "['toy']" in line
        rest = RestClient(f"http://127.0.0.1:{match[1]}", retries=0)
        assert rest.predict("toy", ["u1"])["model_version"].tolist() == [1]
        with GrpcClient(f"127.0.0.1:{match[2]}", retries=0) as g:
            assert g.status("toy")[0]["state"] == "AVAILABLE"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.serving
@pytest.mark.parametrize("which", ["rest_port", "grpc_port"])
def test_port_in_use_is_a_clear_error(tmp_path, which):
    from tfrs_multiscene.config import ServeConfig
    from tfrs_multiscene.serving.server import ModelServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        ports = {"rest_port": 0, "grpc_port": 0, which: taken.getsockname()[1]}
        server = ModelServer(ServeConfig(model_base=str(tmp_path), poll_seconds=0, **ports))
        with pytest.raises(OSError, match=str(ports[which])):
            server.start()
        assert server.wait(0)  # stopped cleanly
