"""Soak: concurrent clients send good and bad requests to the real recommender, with a version swap in the middle.

Builds a small world with ``bench_recommender.build_models`` (generate, train 1+1 epochs,
export), starts the local server in a SUBPROCESS (its RSS is its own), and runs ``--clients``
threads for ``--seconds``, half over REST and half over gRPC. Each thread cycles through
good requests (``recommend`` with a training user's history and features; ``recommend_user``
with the user id alone) and, every ``--bad-every``-th request, one of the bad kinds below.
Halfway through, version 2 of ``recommender`` is put beside version 1 (copied, then renamed
into place, as an export does) and the server switches to it. gRPC clients send their
values unconverted (``cast=False``) so the server, not the client, does the checking.

Reported: good requests and how many failed (target 0), every bad kind with the statuses it
got (each must be its 4xx / INVALID_ARGUMENT with a message; 5xx, dropped connections and
empty messages are counted), p50 / p99 latency of good requests per protocol, when version 2
answered, and server RSS after warm-up, during, at the end and after a short idle (target:
end within 10% of start). Every request loop is bounded in count and time; the server binds
127.0.0.1.

    .venv/bin/python benchmarks/bench_soak.py --json benchmarks/out/soak.json
    .venv/bin/python benchmarks/bench_soak.py --quick
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlparse

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np

import tfrs_multiscene  # noqa: F401  (before TensorFlow)
from tfrs_multiscene.serving.client import GrpcClient, RestClient, ServingClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recommender import build_models, load_average, realistic_requests, stop_server, to_inputs  # noqa: E402
from bench_serving import rss_kb, start_server  # noqa: E402

MODEL, K = "recommender", 10
MAX_REQUESTS_PER_CLIENT = 500_000
MAX_REQUEST_BYTES = 1 << 20  # the soak server's --max-request-bytes, so an oversized body is cheap to send
MAX_LIST = 200               # the soak server's --max-list-length

# (kind, signature, change to a good request of that signature; None removes an input)
BAD_PREDICTS = [
    ("k_zero", "recommend_user", {"k": [0]}),
    ("k_over_depth", "recommend", {"k": [10 ** 6]}),
    ("k_not_a_number", "recommend_user", {"k": ["ten"]}),
    ("unknown_scenario", "recommend_user", {"scenario": ["tv"]}),
    ("missing_input", "recommend", {"scenario": None}),
    ("unknown_input", "recommend_user", {"colour": ["red"]}),
    ("batch_sizes_disagree", "recommend_user", {"user_id": ["u1", "u2"]}),
    ("history_not_a_list", "recommend", {"history": ["i1"]}),
    ("history_too_long", "recommend", {"history": [["i1"] * (MAX_LIST + 1)]}),
    ("timestamp_not_a_number", "recommend", {"timestamp": ["noon"]}),
]
# (kind, raw REST body): what only the REST wire carries
BAD_BODIES = [
    ("malformed_json", b"{not json"),
    ("body_not_an_object", b"[1, 2]"),
    ("body_over_the_limit", b"x" * (MAX_REQUEST_BYTES + 1)),
]


def _bad_request(good: dict, change: dict) -> dict:
    return {k: v for k, v in {**good, **change}.items() if v is not None}


def _rest_raw(url: str, body: bytes) -> tuple[int | None, str]:
    """(HTTP status or None if the connection failed, error message) of one raw POST."""
    parts = urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", f"/v1/models/{MODEL}:predict", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        try:
            message = json.loads(payload).get("error", "")
        except ValueError:
            message = ""
        return resp.status, message
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def swap_version(models: Path) -> float:
    """Put version 2 of the recommender beside version 1 the way an export does (a full copy,
    then one rename into place); returns the time of the rename."""
    src, tmp = models / MODEL / "1", models / MODEL / ".incoming-2"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    os.rename(tmp, models / MODEL / "2")
    return time.monotonic()


def soak(rest_url: str, grpc_target: str, pid: int, models: Path, goods: dict, clients: int, seconds: float,
         bad_every: int) -> dict:
    lock = threading.Lock()
    latencies = defaultdict(list)                        # protocol -> good-request seconds
    good_failures, bad_seen = [], defaultdict(Counter)   # kind -> Counter of "status: ok/why"
    counts = Counter()
    barrier = threading.Barrier(clients + 1, timeout=300)
    stop_at = [0.0]

    def worker(w: int):
        protocol = "rest" if w % 2 == 0 else "grpc"
        client = RestClient(rest_url, timeout=30, retries=0) if protocol == "rest" else GrpcClient(grpc_target, timeout=30, retries=0)
        send = {} if protocol == "rest" else {"cast": False}
        good_list = [(sig, req) for sig, reqs in goods.items() for req in reqs]
        bad_kinds = BAD_PREDICTS + (BAD_BODIES if protocol == "rest" else [])
        client.predict(MODEL, good_list[w][1], signature_name=good_list[w][0])  # warm up
        barrier.wait()
        mine, n = [], 0
        while time.monotonic() < stop_at[0] and n < MAX_REQUESTS_PER_CLIENT:
            n += 1
            if n % bad_every == 0:
                kind = bad_kinds[(n // bad_every + w) % len(bad_kinds)]
                if len(kind) == 2:  # a raw body
                    status, message = _rest_raw(rest_url, kind[1])
                    verdict = f"{status}" + ("" if message else " (empty message)")
                else:
                    name, sig, change = kind
                    good = goods[sig][n % len(goods[sig])]
                    try:
                        client.predict(MODEL, _bad_request(good, change), signature_name=sig, **send)
                        verdict = "ACCEPTED"
                    except ServingClientError as exc:
                        verdict = (str(exc.http_status) if exc.http_status else exc.code) + ("" if exc.message else " (empty message)")
                with lock:
                    bad_seen[kind[0]][verdict] += 1
                continue
            sig, request = good_list[(n * clients + w) % len(good_list)]
            started = time.perf_counter()
            try:
                answer = client.predict(MODEL, request, signature_name=sig)
                ok = len([i for i in answer["ids"][0] if i]) > 0
                mine.append(time.perf_counter() - started)
                if not ok:
                    raise ServingClientError("EMPTY", "no recommendations in a good answer")
            except ServingClientError as exc:
                with lock:
                    counts["good_failed"] += 1
                    if len(good_failures) < 5:
                        good_failures.append(f"{protocol} {sig}: {exc}"[:300])
        with lock:
            latencies[protocol].extend(mine)
            counts["good"] += len(mine)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.monotonic()
    stop_at[0] = start + seconds
    rss = [(0.0, rss_kb(pid))]
    swapped_at = version2_at = rss_before_swap = None
    probe = RestClient(rest_url, timeout=30, retries=0)
    while any(t.is_alive() for t in threads) and time.monotonic() < start + seconds + 120:
        time.sleep(1.0)
        now = time.monotonic() - start
        rss.append((round(now, 1), rss_kb(pid)))
        if swapped_at is None and now >= seconds / 2:
            rss_before_swap = rss[-1][1]
            swapped_at = swap_version(models) - start
        if swapped_at is not None and version2_at is None:
            try:
                states = {s["version"]: s["state"] for s in probe.status(MODEL)}
            except ServingClientError:
                states = {}
            if states.get("2") == "AVAILABLE":
                version2_at = time.monotonic() - start
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - start
    while swapped_at is not None and version2_at is None and time.monotonic() < start + elapsed + 120:
        time.sleep(0.5)  # a short soak can end before version 2 has loaded: wait for it, unloaded
        if {s["version"]: s["state"] for s in probe.status(MODEL)}.get("2") == "AVAILABLE":
            version2_at = time.monotonic() - start
    per_protocol = {}
    for protocol, values in latencies.items():
        ms = np.asarray(values) * 1000
        per_protocol[protocol] = {"requests": int(ms.size), "p50_ms": round(float(np.percentile(ms, 50)), 2),
                                  "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2)}
    bad = {kind: dict(seen) for kind, seen in sorted(bad_seen.items())}
    unexpected = {kind: {v: c for v, c in seen.items() if v == "ACCEPTED" or v.startswith(("5", "None", "UNAVAILABLE", "UNKNOWN", "INTERNAL"))
                         or "empty message" in v} for kind, seen in bad.items()}
    return {
        "clients": clients, "seconds": round(elapsed, 1), "good_requests": counts["good"],
        "good_failed": counts["good_failed"], "good_failures": good_failures,
        "good_throughput_rps": round(counts["good"] / elapsed, 1), "latency": per_protocol,
        "bad_requests": sum(sum(v.values()) for v in bad.values()), "bad_by_kind": bad,
        "bad_unexpected": {k: v for k, v in unexpected.items() if v},
        "swap": {"renamed_at_s": round(swapped_at, 1) if swapped_at is not None else None, "server_rss_kb_before": rss_before_swap,
                 "version_2_available_at_s": round(version2_at, 1) if version2_at is not None else None},
        "server_rss_mb_each_second": [round(v / 1024) for _, v in rss if v],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--bad-every", type=int, default=4, help="Every Nth request of a client is a bad one.")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--impressions", type=int, default=30_000)
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="Idle time after the load before the last RSS reading.")
    parser.add_argument("--work", default="benchmarks/out/soak_work")
    parser.add_argument("--reuse", action="store_true", help="Reuse the models in --work (skip generate/train/export).")
    parser.add_argument("--json", default="benchmarks/out/soak.json")
    parser.add_argument("--quick", action="store_true", help="A tiny run: 400 items, 10 s.")
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(items=400, users=150, impressions=6000, seconds=10.0, idle_seconds=2.0,
                            work="benchmarks/out/soak_quick_work", json="benchmarks/out/soak_quick.json")
        args = parser.parse_args(argv)
    work = Path(args.work)
    models = work / "models"
    result = {"clients": args.clients, "seconds": args.seconds, "bad_every": args.bad_every, "items": args.items,
              "load_average_start": load_average(),
              "targets": {"good_failed": 0, "bad_unexpected": 0, "rss_end_over_start_max": 1.10}}
    if not (args.reuse and (models / MODEL / "1").is_dir()):
        work.mkdir(parents=True, exist_ok=True)
        result["build_seconds"] = build_models(work, args.items, args.users, args.impressions, "brute_force", 100, "none")
    for stale in [p for p in (models / MODEL).iterdir() if p.name != "1"]:  # a reused work dir: start from version 1
        shutil.rmtree(stale)
    requests = realistic_requests(work / "run", 200)
    proc, rest_url, grpc_target = start_server(models, 300.0, log_path=work / "server.log", poll_seconds=1.0,
                                               extra_args=["--max-request-bytes", str(MAX_REQUEST_BYTES),
                                                           "--max-list-length", str(MAX_LIST)])
    try:
        probe = RestClient(rest_url, timeout=60)
        sigs = probe.metadata(MODEL)["metadata"]["signature_def"]["signature_def"]
        full_inputs = {name: info.get("dtype", "DT_STRING") for name, info in sigs["recommend"]["inputs"].items()}
        goods = {"recommend": [to_inputs(r, full_inputs, K) for r in requests],
                 "recommend_user": [{"user_id": [r["user"]], "scenario": [r["scenario"]], "k": [K]} for r in requests]}
        for sig, reqs in goods.items():  # warm-up: every signature traced and answered once
            probe.predict(MODEL, reqs[0], signature_name=sig)
        result["limits"] = probe.limits(MODEL)
        result["server_rss_kb_start"] = rss_kb(proc.pid)
        result["soak"] = soak(rest_url, grpc_target, proc.pid, models, goods, args.clients, args.seconds, args.bad_every)
        result["server_rss_kb_end"] = rss_kb(proc.pid)
        time.sleep(args.idle_seconds)
        result["server_rss_kb_after_idle"] = rss_kb(proc.pid)
        result["server_alive"] = proc.poll() is None
        result["versions_after"] = {s["version"]: s["state"] for s in probe.status(MODEL)}
    finally:
        stop_server(proc)
    start, end = result["server_rss_kb_start"], result["server_rss_kb_after_idle"]
    result["rss_end_over_start"] = round(end / start, 3) if start and end else None
    s = result["soak"]
    result["verdict"] = {"good_failed_zero": s["good_failed"] == 0, "bad_all_answered_as_expected": not s["bad_unexpected"],
                         "rss_within_10_percent": bool(result["rss_end_over_start"] and result["rss_end_over_start"] <= 1.10),
                         "swapped_to_version_2": result["versions_after"].get("2") == "AVAILABLE"}
    print_report(result)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.json}")
    return 0


def print_report(result: dict) -> None:
    s = result["soak"]
    print(f"\nsoak: {s['clients']} clients (REST and gRPC), {s['seconds']} s, one request in {result['bad_every']} bad")
    print(f"good requests {s['good_requests']}, failed {s['good_failed']}, {s['good_throughput_rps']} req/s"
          + (f"; first failures: {s['good_failures']}" if s["good_failures"] else ""))
    for protocol, lat in sorted(s["latency"].items()):
        print(f"  {protocol:<5} p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms ({lat['requests']} requests)")
    print(f"bad requests {s['bad_requests']}: kind -> status: count")
    for kind, seen in s["bad_by_kind"].items():
        print(f"  {kind:<24} " + ", ".join(f"{v}: {c}" for v, c in sorted(seen.items())))
    print(f"unexpected answers to bad requests (5xx, dropped, accepted, empty message): {s['bad_unexpected'] or 'none'}")
    print(f"version swap: renamed at {s['swap']['renamed_at_s']} s, version 2 available at "
          f"{s['swap']['version_2_available_at_s']} s; after: {result['versions_after']}")
    before = s["swap"]["server_rss_kb_before"]
    print(f"server RSS (MB): start {result['server_rss_kb_start'] / 1024:.0f}, "
          + (f"before the swap {before / 1024:.0f}, " if before else "")
          + f"end {result['server_rss_kb_end'] / 1024:.0f}, "
          f"after {result.get('server_rss_kb_after_idle', 0) / 1024:.0f} idle: x{result['rss_end_over_start']}")
    print(f"verdict: {result['verdict']}")


if __name__ == "__main__":
    raise SystemExit(main())
