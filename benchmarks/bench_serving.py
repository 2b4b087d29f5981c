"""Latency and throughput of the local TF Serving-protocol server over REST and gRPC.

Starts ``python -m tfrs_multiscene.serving.server`` on ``--model-base`` in its own process
(or targets ``--server URL``), fires ``--clients`` concurrent threads of predict requests
for ``--seconds`` each protocol, and reports p50/p99 latency, throughput, failed requests
and the server's RSS (``VmRSS`` of /proc/<pid>/status) at start and end. Request inputs
default to one dummy row built from the signature's metadata (``--inputs`` JSON overrides).
Without ``--model-base`` a toy recommender (user id -> top-10 of 1,000 items) is built.

    .venv/bin/python benchmarks/bench_serving.py --model-base models --model recommender \\
        --protocol grpc --clients 4 --seconds 10 --json benchmarks/out/serving.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np

import tfrs_multiscene  # noqa: F401  (before TensorFlow)
from tfrs_multiscene.serving.client import GrpcClient, RestClient, ServingClientError


def build_toy_model(base: Path, name: str = "toy", items: int = 1000, dim: int = 32) -> None:
    """A toy recommender: hashed user id -> embedding -> top-10 item ids by dot product."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    class Toy(tf.Module):
        def __init__(self):
            super().__init__()
            self.users = tf.Variable(rng.normal(size=(1000, dim)).astype("float32"))
            self.items = tf.Variable(rng.normal(size=(items, dim)).astype("float32"))
            self.ids = tf.constant([f"item{i}" for i in range(items)])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
        def recommend(self, user_id):
            q = tf.gather(self.users, tf.strings.to_hash_bucket_fast(user_id, 1000))
            scores, idx = tf.math.top_k(tf.matmul(q, self.items, transpose_b=True), k=10)
            return {"item_ids": tf.gather(self.ids, idx), "scores": scores}

    toy = Toy()
    tf.saved_model.save(toy, str(base / name / "1"), signatures={"serving_default": toy.recommend})


def rss_kb(pid) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def start_server(model_base, timeout: float = 120.0, log_path=None, poll_seconds: float = 5.0, extra_args=()):
    """(process, rest_url, grpc_target) of a server subprocess on free ports of 127.0.0.1.

    The server's stderr goes to ``log_path`` (discarded when None); its stdout is drained
    in the background once the start-up line is read, so the pipe never fills.
    """
    cmd = [sys.executable, "-m", "tfrs_multiscene.serving.server", "--model-base", str(model_base), "--host", "127.0.0.1",
           "--rest-port", "0", "--grpc-port", "0", "--poll-seconds", str(poll_seconds), *extra_args]
    errlog = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errlog, text=True,
                            env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        match = re.search(r"REST (http://\S+?)/v1/models/NAME\s+gRPC (\S+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain
            return proc, match[1], match[2]
    proc.kill()
    raise RuntimeError("the server did not start" + (f"; see {log_path}" if log_path else ""))


def dummy_inputs(client, model: str, signature: str, batch: int) -> dict:
    """One columnar request of ``batch`` rows built from the signature's dtypes and shapes."""
    sig = client.metadata(model)["metadata"]["signature_def"]["signature_def"][signature]
    inputs = {}
    for name, info in sig["inputs"].items():
        dims = [int(d["size"]) for d in info.get("tensor_shape", {}).get("dim", [])]
        shape = [batch] + [d if d > 0 else 1 for d in dims[1:]]
        dtype = info["dtype"]
        value = "u1" if dtype == "DT_STRING" else (0.5 if dtype in ("DT_FLOAT", "DT_DOUBLE", "DT_HALF") else 1)
        inputs[name] = np.full(shape, value, dtype=object).tolist()
    return inputs


def fire(make_client, model, signature, inputs, clients: int, seconds: float, max_requests: int = 1_000_000):
    latencies, failures, lock = [], [], threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker():
        client = make_client()
        for _ in range(3):  # warm up: connection, metadata cache
            client.predict(model, inputs, signature_name=signature)
        barrier.wait()
        mine, failed = [], 0
        end = time.monotonic() + seconds
        while time.monotonic() < end and len(mine) < max_requests:
            t = time.perf_counter()
            try:
                client.predict(model, inputs, signature_name=signature)
                mine.append(time.perf_counter() - t)
            except ServingClientError:
                failed += 1
        with lock:
            latencies.extend(mine)
            failures.append(failed)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.monotonic()
    for t in threads:
        t.join(timeout=seconds + 60)
    elapsed = time.monotonic() - start
    lat = np.asarray(latencies) * 1000
    return {
        "requests": int(lat.size), "failed": int(sum(failures)),
        "throughput_rps": round(lat.size / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
        "mean_ms": round(float(lat.mean()), 3) if lat.size else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base", help="Model base to serve (default: build a toy model).")
    parser.add_argument("--model", default="toy", help="Model name.")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--protocol", choices=("rest", "grpc", "both"), default="both")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent client threads.")
    parser.add_argument("--seconds", type=float, default=5.0, help="Measured seconds per protocol.")
    parser.add_argument("--batch", type=int, default=1, help="Rows per request (dummy inputs).")
    parser.add_argument("--inputs", help="Columnar request inputs as JSON (overrides the dummy row).")
    parser.add_argument("--server", help="Target a running server: REST URL (http://host:8501) for rest, "
                                         "host:port for grpc; use with --protocol rest|grpc.")
    parser.add_argument("--server-pid", type=int, help="PID of --server, for its RSS.")
    parser.add_argument("--json", help="Write the figures here.")
    args = parser.parse_args(argv)

    tmp = None
    proc = None
    if args.server:
        if args.protocol == "both":
            parser.error("--server needs --protocol rest or grpc")
        rest_url = args.server if args.protocol == "rest" else None
        grpc_target = args.server if args.protocol == "grpc" else None
        pid = args.server_pid
    else:
        base = args.model_base
        if base is None:
            tmp = tempfile.TemporaryDirectory(prefix="bench_serving_")
            build_toy_model(Path(tmp.name), args.model)
            base = tmp.name
        proc, rest_url, grpc_target = start_server(base)
        pid = proc.pid
    try:
        protocols = ["rest", "grpc"] if args.protocol == "both" else [args.protocol]
        makers = {"rest": lambda: RestClient(rest_url, timeout=30, retries=2),
                  "grpc": lambda: GrpcClient(grpc_target, timeout=30, retries=2)}
        probe = makers[protocols[0]]()
        inputs = json.loads(args.inputs) if args.inputs else dummy_inputs(probe, args.model, args.signature, args.batch)
        result = {"model": args.model, "signature": args.signature, "clients": args.clients,
                  "seconds": args.seconds, "batch": args.batch, "server_rss_kb_start": rss_kb(pid) if pid else None}
        for protocol in protocols:
            result[protocol] = fire(makers[protocol], args.model, args.signature, inputs, args.clients, args.seconds)
            print(f"{protocol}: {result[protocol]}", flush=True)
        result["server_rss_kb_end"] = rss_kb(pid) if pid else None
        print(f"server RSS: {result['server_rss_kb_start']} kB at start, {result['server_rss_kb_end']} kB at end")
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0 if all(result[p]["failed"] == 0 for p in protocols) else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
