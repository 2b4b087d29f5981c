"""Hot version switch under load, refused corrupt versions, half-written versions."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from test_serving_toys import install_corrupt_version, install_version, toy_models  # noqa: F401

from tfrs_multiscene.config import ServeConfig
from tfrs_multiscene.serving.client import GrpcClient, RestClient
from tfrs_multiscene.serving.server import ModelServer

pytestmark = pytest.mark.serving


def _wait(predicate, seconds=30.0, step=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


class _Traffic:
    """One thread per client firing predicts until stopped (bounded in time and count)."""

    def __init__(self, clients: dict, max_seconds=60.0, max_requests=20000):
        self.seen = {name: [] for name in clients}  # (served version, model_version output)
        self.errors = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n, c, max_seconds, max_requests), daemon=True)
                         for n, c in clients.items()]

    def _run(self, name, client, max_seconds, max_requests):
        deadline = time.monotonic() + max_seconds
        for _ in range(max_requests):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                out = client.predict("toy", {"user_id": ["u1", ""]})
                self.seen[name].append(int(out["model_version"][0]))
            except Exception as exc:  # noqa: BLE001  (recorded, asserted empty at the end)
                self.errors.append(f"{name}: {exc}")

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def last(self, name):
        return self.seen[name][-1] if self.seen[name] else None


def test_version_switch_under_load_and_corrupt_version_refused(toy_models, tmp_path):  # noqa: F811
    base = tmp_path / "models"
    install_version(base, "toy", 1, toy_models[1])
    install_corrupt_version(base, "broken", 1)
    cfg = ServeConfig(model_base=str(base), rest_port=0, grpc_port=0, poll_seconds=0.1)
    with ModelServer(cfg) as server:
        ports = server.ports
        rest = RestClient(f"http://127.0.0.1:{ports['rest']}", retries=0)
        grpc_client = GrpcClient(f"127.0.0.1:{ports['grpc']}", retries=0)
        traffic = _Traffic({"rest": rest, "grpc": grpc_client}).start()
        try:
            assert _wait(lambda: traffic.last("rest") == 1 and traffic.last("grpc") == 1)
            install_version(base, "toy", 2, toy_models[2])
            assert _wait(lambda: traffic.last("rest") == 2 and traffic.last("grpc") == 2), "no switch to version 2"

            # A corrupt version 3 and a half-written version 4 (no saved_model.pb yet).
            install_corrupt_version(base, "toy", 3)
            (base / "toy" / "4" / "variables").mkdir(parents=True)
            assert _wait(lambda: rest.status("toy", version=3)[0]["state"] == "END" if _has(rest, 3) else False)
            before = {n: len(s) for n, s in traffic.seen.items()}
            assert _wait(lambda: all(len(traffic.seen[n]) > before[n] + 5 for n in before))
        finally:
            traffic.stop()
        assert traffic.errors == []
        for name, versions in traffic.seen.items():
            assert versions == sorted(versions) and set(versions) == {1, 2}, name  # one switch, never back
        statuses = {s["version"]: s for s in rest.status("toy")}
        assert statuses["2"]["state"] == "AVAILABLE"
        assert statuses["1"]["state"] == "END" and statuses["1"]["status"]["error_code"] == "OK"
        assert statuses["3"]["status"]["error_code"] == "INVALID_ARGUMENT"
        assert "not a SavedModel" in statuses["3"]["status"]["error_message"]
        assert "4" not in statuses
        assert rest.metadata("toy")["model_spec"]["version"] == "2"

        # A model whose only version is corrupt: not served, its status says why.
        broken = rest.status("broken")
        assert broken[0]["state"] == "END" and "not a SavedModel" in broken[0]["status"]["error_message"]
        assert rest.predict("toy", ["u1"])["model_version"].tolist() == [2]

        # Replacing the corrupt version with a good one is picked up (its fingerprint changed).
        shutil.rmtree(base / "toy" / "3")
        install_version(base, "toy", 3, toy_models[1])
        assert _wait(lambda: _has(rest, 3) and rest.status("toy", version=3)[0]["state"] == "AVAILABLE")
        resp = grpc_client.predict("toy", ["u1"])
        assert resp["model_version"].tolist() == [1]  # the toy built as "1", now served as version 3
        assert grpc_client.metadata("toy")["model_spec"]["version"] == "3"
        grpc_client.close()


def _has(rest, version) -> bool:
    return any(s["version"] == str(version) for s in rest.status("toy"))


def test_a_version_whose_warm_up_file_is_corrupt_is_refused_and_the_old_one_keeps_serving(tmp_path):
    """TF Serving fails a version whose warm-up requests cannot be read; so does this server,
    with the reason in the version's status, and it goes on serving the version it had."""
    from test_serving_toys import build_toy

    from tfrs_multiscene.serving.model_store import ModelStore

    base = tmp_path / "models"
    build_toy(base / "toy" / "1", 1)
    store = ModelStore(base, poll_seconds=0)
    store.poll()
    build_toy(base / "toy" / "2", 2)
    (base / "toy" / "2" / "assets.extra").mkdir(exist_ok=True)
    (base / "toy" / "2" / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"not a TFRecord file")
    store.poll()
    assert store.resolve("toy").version == 1
    refused = dict(store.status("toy", 2))[2]
    assert refused.state == "END" and refused.error_code != "OK" and refused.error_message, refused
