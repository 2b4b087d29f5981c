"""Soak: concurrent clients send good and bad requests to the real recommender, with a version swap in the middle.

Builds a small world with ``bench_recommender.build_models`` (generate, train 1+1 epochs,
export), starts the local server in a SUBPROCESS (its RSS is its own), and runs ``--clients``
threads, half over REST and half over gRPC: ``--warmup-seconds`` of the same load (not
measured; the server's first-use memory settles), then ``--seconds`` measured. Each thread
cycles through good requests (``recommend`` with a training user's history and features;
``recommend_user`` with the user id alone) and, every ``--bad-every``-th request, one of the
bad kinds below. Halfway through (``--swap-at``), version 2 of ``recommender`` is put beside
version 1 (copied, then renamed into place, as an export does) and the server switches to it.
gRPC clients send their values unconverted (``cast=False``) so the server, not the client,
does the checking; their answers name the version that answered.

Reported: good requests and how many failed (target 0; a good answer must hold ``k`` ids;
an exception of any kind counts), every bad kind with the statuses it got, each checked
against its expected status (REST 400 / 413, gRPC INVALID_ARGUMENT) and message (5xx,
dropped connections, accepted requests, empty or other messages are counted: target 0),
p50 / p99 latency of good requests per protocol and before / around / after the swap, the
longest time no good request was answered (a stall), when version 2 was AVAILABLE and first
answered, and server RSS after warm-up, each second, at the end and after ``--idle-seconds``
(target: within 10% of the start). Every request loop is bounded in count and time; the
server binds 127.0.0.1.

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
MAX_BATCH = 64               # the soak server's --max-batch
SWAP_WINDOW_AFTER = 5.0      # "around the swap": from the rename to this many seconds after version 2 is AVAILABLE
K_RANGE = "input 'k' must be between 1 and"


def _batch_over_limit(good: dict) -> dict:
    return {key: value * (MAX_BATCH + 1) for key, value in good.items()}


# (kind, signature, change to a good request of that signature (None removes an input) or a
# function of it, what the error message must say): REST 400, gRPC INVALID_ARGUMENT
BAD_PREDICTS = [
    ("k_zero", "recommend_user", {"k": [0]}, f"{K_RANGE}"),
    ("k_over_range", "recommend", {"k": [10 ** 6]}, "got 1000000"),
    ("k_not_a_number", "recommend_user", {"k": ["ten"]}, "input 'k' expects int32 values"),
    ("unknown_scenario", "recommend_user", {"scenario": ["tv"]}, "unknown scenario"),
    ("missing_input", "recommend", {"scenario": None}, "missing input(s) ['scenario']"),
    ("unknown_input", "recommend_user", {"colour": ["red"]}, "unknown input(s) ['colour']"),
    ("user_id_not_a_string", "recommend_user", {"user_id": [7]}, "input 'user_id' expects string values"),
    ("batch_sizes_disagree", "recommend_user", {"user_id": ["u1", "u2"]}, "inputs disagree on the batch size"),
    ("batch_over_the_limit", "recommend_user", _batch_over_limit, f"more than the maximum {MAX_BATCH}"),
    ("history_not_a_list", "recommend", {"history": ["i1"]}, "input 'history' expects shape [?, ?]"),
    ("history_too_long", "recommend", {"history": [["i1"] * (MAX_LIST + 1)]},
     f"input 'history' has {MAX_LIST + 1} values per row, more than the maximum {MAX_LIST}"),
    ("exclude_ids_too_long", "recommend", {"exclude_ids": [["i1"] * (MAX_LIST + 1)]},
     f"input 'exclude_ids' has {MAX_LIST + 1} values per row"),
    ("timestamp_not_a_number", "recommend", {"timestamp": ["noon"]}, "input 'timestamp' expects int64 values"),
]
# (kind, raw REST body or a function of the good requests, HTTP status, what the error says):
# what only the REST wire carries
BAD_BODIES = [
    ("malformed_json", b"{not json", 400, "JSON parse error"),
    ("body_not_an_object", b"[1, 2]", 400, "must be a JSON object"),
    ("null_value", lambda goods: json.dumps({"signature_name": "recommend_user", "inputs": {
        **goods["recommend_user"][0], "user_id": [None]}}).encode(), 400, "null is not a tensor value"),
    ("body_over_the_limit", b"x" * (MAX_REQUEST_BYTES + 1), 413, "exceeds the limit"),
]


def _bad_request(good: dict, change) -> dict:
    if callable(change):
        return change(good)
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
        except (ValueError, AttributeError):
            message = ""
        return resp.status, message
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


class _VersionSpy:
    """Stands in for a GrpcClient's prediction stub: passes each call on and keeps the
    version that answered (the PredictResponse's model_spec, which the client drops)."""

    def __init__(self, stub):
        self.stub, self.version = stub, None

    def __getattr__(self, name):  # GetModelMetadata, ...: the stub's own
        return getattr(self.stub, name)

    def Predict(self, request, timeout=None):  # noqa: N802  (the stub's method name)
        self.version = None
        response = self.stub.Predict(request, timeout=timeout)
        self.version = int(response.model_spec.version.value)
        return response


def swap_version(models: Path) -> tuple[float, float]:
    """Put version 2 of the recommender beside version 1 the way an export does (a full copy,
    then one rename into place); returns the monotonic times the copy began and the rename."""
    src, tmp = models / MODEL / "1", models / MODEL / ".incoming-2"
    began = time.monotonic()
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    os.rename(tmp, models / MODEL / "2")
    return began, time.monotonic()


def _classify_bad(protocol: str, status, message: str, want_status, needle: str) -> tuple[str, str | None]:
    """(label, None if as expected else why not) of one answer to a bad request."""
    label = f"{protocol} {status}"
    if status == "ACCEPTED":
        return label, "accepted"
    if status is None or status in ("UNAVAILABLE", "UNKNOWN", "INTERNAL", "DEADLINE_EXCEEDED", "CANCELLED"):
        return label, "dropped / server error"
    if isinstance(status, int) and status >= 500:
        return label, "5xx"
    if not message:
        return label, "empty message"
    if status != want_status:
        return label, f"status {status}, expected {want_status}"
    if needle not in message:
        return label, "message does not say " + repr(needle)
    return label, None


def _percentiles(seconds) -> dict:
    ms = np.asarray(seconds, dtype=float) * 1000
    if not ms.size:
        return {"requests": 0}
    return {"requests": int(ms.size), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2),
            "over_1s": int((ms >= 1000).sum())}


def soak(rest_url: str, grpc_target: str, pid: int, models: Path, goods: dict, clients: int, seconds: float,
         warmup: float, bad_every: int, swap_at: float = 0.5) -> dict:
    """Warm-up, then ``seconds`` of measured load with the swap at ``swap_at`` of them; every figure but RSS."""
    lock = threading.Lock()
    goods_done, good_failures, bads, crashes = [], [], [], []  # merged from the threads at their end
    clock = {"warm_until": 0.0, "start": 0.0, "stop_at": 0.0}

    def begin_measuring():  # run by the last thread to reach the barrier, before any is released
        clock["start"] = time.monotonic()
        clock["stop_at"] = clock["start"] + seconds

    ready = threading.Barrier(clients + 1, timeout=300,
                              action=lambda: clock.update(warm_until=time.monotonic() + warmup))
    measure = threading.Barrier(clients + 1, timeout=300, action=begin_measuring)
    good_list = [(sig, req) for sig, reqs in goods.items() for req in reqs]
    bodies = [(kind, body(goods) if callable(body) else body, status, needle) for kind, body, status, needle in BAD_BODIES]

    def worker(w: int):
        protocol = "rest" if w % 2 == 0 else "grpc"
        mine_done, mine_failed, mine_bad = [], [], []
        try:
            if protocol == "rest":
                client, send, spy = RestClient(rest_url, timeout=30, retries=0), {}, None
            else:
                client, send = GrpcClient(grpc_target, timeout=30, retries=0), {"cast": False}
                spy = client.prediction = _VersionSpy(client.prediction)
            bad_kinds = BAD_PREDICTS + (bodies if protocol == "rest" else [])
            client.predict(MODEL, good_list[w][1], signature_name=good_list[w][0])  # connect
            ready.wait()

            def run(until: str):
                n = 0
                while time.monotonic() < clock[until] and n < MAX_REQUESTS_PER_CLIENT:
                    n += 1
                    if n % bad_every == 0:
                        kind = bad_kinds[(n // bad_every + w) % len(bad_kinds)]
                        if isinstance(kind[1], bytes):  # a raw body
                            status, message = _rest_raw(rest_url, kind[1])
                            want, needle = kind[2], kind[3]
                        else:
                            name, sig, change, needle = kind
                            want = 400 if protocol == "rest" else "INVALID_ARGUMENT"
                            try:
                                client.predict(MODEL, _bad_request(goods[sig][n % len(goods[sig])], change),
                                               signature_name=sig, **send)
                                status, message = "ACCEPTED", ""
                            except ServingClientError as exc:
                                status = exc.http_status if protocol == "rest" and exc.http_status else exc.code
                                message = exc.message or ""
                            except Exception as exc:  # noqa: BLE001  (a dropped connection, a client bug: counted)
                                status, message = None, f"{type(exc).__name__}: {exc}"
                        label, why = _classify_bad(protocol, status, message, want, needle)
                        mine_bad.append((time.monotonic(), kind[0], label, why, message[:200]))
                        continue
                    sig, request = good_list[(n * clients + w) % len(good_list)]
                    started = time.monotonic()
                    try:
                        answer = client.predict(MODEL, request, signature_name=sig)
                        ids = [i for i in np.asarray(answer["ids"]).reshape(-1) if len(i)]
                        if len(ids) != K:
                            raise ServingClientError("BAD_ANSWER", f"{len(ids)} ids in a good answer, expected {K}")
                        mine_done.append((time.monotonic(), protocol, sig, time.monotonic() - started,
                                          spy.version if spy else None))
                    except Exception as exc:  # noqa: BLE001  (any failure of a good request counts)
                        mine_failed.append((time.monotonic(), protocol, sig, f"{type(exc).__name__}: {exc}"[:300]))

            run("warm_until")
            measure.wait()
            run("stop_at")
        except Exception as exc:  # noqa: BLE001  (a thread that dies must show, not shrink the counts)
            with lock:
                crashes.append(f"client {w} ({protocol}): {type(exc).__name__}: {exc}"[:300])
            ready.abort()
            measure.abort()
        finally:
            with lock:
                goods_done.extend(mine_done)
                good_failures.extend(mine_failed)
                bads.extend(mine_bad)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(clients)]
    for t in threads:
        t.start()
    try:
        ready.wait()
        measure.wait()
    except threading.BrokenBarrierError:
        raise RuntimeError(f"a client thread failed before the load: {crashes}") from None
    start = clock["start"]
    rss = [(0.0, rss_kb(pid))]
    probe = RestClient(rest_url, timeout=30, retries=0)
    swap = {}
    next_sample = start + 1.0

    def version_states() -> dict:
        try:
            return {s["version"]: s["state"] for s in probe.status(MODEL)}
        except ServingClientError:
            return {}

    while any(t.is_alive() for t in threads) and time.monotonic() < start + seconds + 120:
        time.sleep(0.25)
        now = time.monotonic()
        if now >= next_sample:
            rss.append((round(now - start, 1), rss_kb(pid)))
            next_sample += 1.0
        if not swap and now - start >= seconds * swap_at:
            swap["rss_kb_before"] = rss[-1][1]
            began, renamed = swap_version(models)
            swap["copy_began_at_s"], swap["renamed_at_s"] = round(began - start, 2), round(renamed - start, 2)
        if swap and "available_at" not in swap and version_states().get("2") == "AVAILABLE":
            swap["available_at"] = time.monotonic()
        if "available_at" in swap and "v1_ended_at" not in swap and version_states().get("1") == "END":
            swap["v1_ended_at"] = time.monotonic()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - start
    deadline = time.monotonic() + 120
    while swap and "v1_ended_at" not in swap and time.monotonic() < deadline:
        time.sleep(0.25)  # a short soak can end before the swap has: wait for it, unloaded
        states = version_states()
        if "available_at" not in swap and states.get("2") == "AVAILABLE":
            swap["available_at"] = time.monotonic()
        if states.get("1") == "END":
            swap["v1_ended_at"] = time.monotonic()
    return summarise(goods_done, good_failures, bads, crashes, swap, start, elapsed, clients, rss,
                     alive=sum(t.is_alive() for t in threads))


def summarise(goods_done, good_failures, bads, crashes, swap, start, elapsed, clients, rss, alive) -> dict:
    """The soak's figures from the raw records (times are monotonic; reported from the measured start)."""
    measured = [g for g in goods_done if g[0] >= start]
    by_protocol, windows = defaultdict(list), defaultdict(list)
    renamed = start + swap["renamed_at_s"] if "renamed_at_s" in swap else None
    window_end = swap["available_at"] + SWAP_WINDOW_AFTER if "available_at" in swap else None

    def window(t):
        if renamed is None or t < renamed:
            return "before_swap"
        return "around_swap" if window_end is None or t < window_end else "after_swap"

    for t, protocol, _, latency, _ in measured:
        by_protocol[protocol].append(latency)
        windows[window(t - latency)].append(latency)  # by when it was sent
    failures_measured = [f for f in good_failures if f[0] >= start]
    fail_windows = Counter(window(f[0]) for f in failures_measured)
    versions = defaultdict(list)  # gRPC: version -> answer times
    for t, _, _, _, version in goods_done:
        if version is not None:
            versions[version].append(t - start)
    slowest = sorted(measured, key=lambda g: -g[3])[:5]
    ends = sorted(g[0] - start for g in measured)  # the longest time no good request was answered: a stall
    gap, gap_at = max(((b - a, a) for a, b in zip([0.0, *ends], ends)), default=(0.0, 0.0))
    per_second = Counter(int(t) for t in ends)

    bad_by_kind = {}
    for _, kind, label, why, message in sorted(bads, key=lambda b: b[1]):
        entry = bad_by_kind.setdefault(kind, {"sent": 0, "as_expected": 0, "seen": Counter(), "unexpected": [],
                                              "example_message": message})
        entry["sent"] += 1
        entry["seen"][label] += 1
        if why is None:
            entry["as_expected"] += 1
        elif len(entry["unexpected"]) < 3:
            entry["unexpected"].append(f"{label}: {why}: {message}")
    for entry in bad_by_kind.values():
        entry["seen"] = dict(entry["seen"])
    unexpected = {kind: e["sent"] - e["as_expected"] for kind, e in bad_by_kind.items() if e["sent"] != e["as_expected"]}
    never_sent = [k[0] for k in BAD_PREDICTS + BAD_BODIES if k[0] not in bad_by_kind]
    at = (lambda t: round(t - start, 2) if t is not None else None)
    return {
        "clients": clients, "seconds": round(elapsed, 1), "client_threads_alive_after": alive, "client_crashes": crashes,
        "good_requests": len(measured) + len(failures_measured), "good_failed": len(failures_measured),
        "good_failures_first": [f"{round(t - start, 2)} s {p} {sig}: {m}" for t, p, sig, m in sorted(failures_measured)[:5]],
        "good_failed_in_warmup": len(good_failures) - len(failures_measured),
        "good_failed_by_window": dict(fail_windows),
        "good_throughput_rps": round(len(measured) / elapsed, 1),
        "latency": {p: _percentiles(v) for p, v in sorted(by_protocol.items())},
        "latency_by_window": {w: _percentiles(windows[w]) for w in ("before_swap", "around_swap", "after_swap")},
        "slowest": [f"{g[3] * 1000:.0f} ms, answered at {g[0] - start:.1f} s ({g[1]} {g[2]})" for g in slowest],
        "longest_without_a_good_answer": {"seconds": round(gap, 2), "from_s": round(gap_at, 2)},
        "good_answers_each_second": [per_second.get(i, 0) for i in range(int(elapsed) + 1)],
        "bad_requests": sum(e["sent"] for e in bad_by_kind.values()),
        "bad_unexpected": unexpected, "bad_kinds_never_sent": never_sent, "bad_by_kind": bad_by_kind,
        "swap": {"copy_began_at_s": swap.get("copy_began_at_s"), "renamed_at_s": swap.get("renamed_at_s"),
                 "version_2_available_at_s": at(swap.get("available_at")),
                 "version_1_ended_at_s": at(swap.get("v1_ended_at")),
                 "grpc_first_answer_from_2_at_s": round(min(versions[2]), 2) if versions.get(2) else None,
                 "grpc_last_answer_from_1_at_s": round(max(versions[1]), 2) if versions.get(1) else None,
                 "grpc_answers_by_version": {str(v): len(ts) for v, ts in sorted(versions.items())},
                 "server_rss_kb_before": swap.get("rss_kb_before")},
        "server_rss_kb_at_start": rss[0][1], "server_rss_mb_each_second": [round(v / 1024) for _, v in rss if v],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="Client threads: even ones REST, odd ones gRPC.")
    parser.add_argument("--seconds", type=float, default=60.0, help="Measured seconds; the swap comes halfway.")
    parser.add_argument("--warmup-seconds", type=float, default=5.0, help="Unmeasured load before the start RSS.")
    parser.add_argument("--swap-at", type=float, default=0.5, help="When version 2 is put in place, as a fraction of --seconds.")
    parser.add_argument("--bad-every", type=int, default=4, help="Every Nth request of a client is a bad one.")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--impressions", type=int, default=30_000)
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="Idle time after the load before the last RSS reading.")
    parser.add_argument("--work", default="benchmarks/out/soak_work")
    parser.add_argument("--reuse", action="store_true", help="Reuse the models in --work (skip generate/train/export).")
    parser.add_argument("--json", default="benchmarks/out/soak.json")
    parser.add_argument("--quick", action="store_true", help="A tiny run: 400 items, 10 s, the swap at 2.5 s.")
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(items=400, users=150, impressions=6000, seconds=10.0, warmup_seconds=2.0, idle_seconds=2.0, swap_at=0.25,
                            work="benchmarks/out/soak_quick_work", json="benchmarks/out/soak_quick.json")
        args = parser.parse_args(argv)
    work = Path(args.work)
    models = work / "models"
    result = {"clients": args.clients, "seconds": args.seconds, "warmup_seconds": args.warmup_seconds,
              "idle_seconds": args.idle_seconds, "swap_at": args.swap_at,
              "bad_every": args.bad_every, "items": args.items, "users": args.users, "impressions": args.impressions,
              "machine_cpus": os.cpu_count(), "load_average_start": load_average(),
              "targets": {"good_failed": 0, "bad_unexpected": 0, "rss_end_over_start_max": 1.10}}
    if not (args.reuse and (models / MODEL / "1").is_dir()):
        work.mkdir(parents=True, exist_ok=True)
        result["build_seconds"] = {k: round(v, 1) for k, v in build_models(
            work, args.items, args.users, args.impressions, "brute_force", 100, "none").items()}
    for stale in [p for p in (models / MODEL).iterdir() if p.name != "1"]:  # a reused work dir: start from version 1
        shutil.rmtree(stale)
    requests = realistic_requests(work / "run", 200)
    proc, rest_url, grpc_target = start_server(models, 300.0, log_path=work / "server.log", poll_seconds=1.0,
                                               extra_args=["--max-request-bytes", str(MAX_REQUEST_BYTES),
                                                           "--max-list-length", str(MAX_LIST),
                                                           "--max-batch", str(MAX_BATCH)])
    try:
        probe = RestClient(rest_url, timeout=60)
        sigs = probe.metadata(MODEL)["metadata"]["signature_def"]["signature_def"]
        full_inputs = {name: info.get("dtype", "DT_STRING") for name, info in sigs["recommend"]["inputs"].items()}
        goods = {"recommend": [to_inputs(r, full_inputs, K) for r in requests],
                 "recommend_user": [{"user_id": [r["user"]], "scenario": [r["scenario"]], "k": [K]} for r in requests]}
        for sig, reqs in goods.items():  # every signature traced and answered once before the load
            probe.predict(MODEL, reqs[0], signature_name=sig)
        result["limits"] = probe.limits(MODEL)
        result["server_rss_kb_loaded"] = rss_kb(proc.pid)
        result["soak"] = soak(rest_url, grpc_target, proc.pid, models, goods, args.clients, args.seconds,
                              args.warmup_seconds, args.bad_every, args.swap_at)
        result["server_rss_kb_start"] = result["soak"]["server_rss_kb_at_start"]  # after the warm-up
        result["server_rss_kb_end"] = rss_kb(proc.pid)
        time.sleep(args.idle_seconds)
        result["server_rss_kb_after_idle"] = rss_kb(proc.pid)
        result["server_alive"] = proc.poll() is None
        result["versions_after"] = {s["version"]: s["state"] for s in probe.status(MODEL)}
    finally:
        stop_server(proc)
    s = result["soak"]
    start, before_swap = result["server_rss_kb_start"], s["swap"]["server_rss_kb_before"]
    end, idle = result["server_rss_kb_end"], result["server_rss_kb_after_idle"]
    result["rss_end_over_start"] = round(end / start, 3) if start and end else None
    result["rss_after_idle_over_start"] = round(idle / start, 3) if start and idle else None
    result["rss_before_swap_over_start"] = round(before_swap / start, 3) if start and before_swap else None
    result["load_average_end"] = load_average()
    result["verdict"] = {
        "good_failed_zero": s["good_failed"] == 0 and s["good_failed_in_warmup"] == 0 and not s["client_crashes"],
        "bad_all_answered_as_expected": not s["bad_unexpected"] and not s["bad_kinds_never_sent"],
        "rss_end_within_10_percent": bool(result["rss_end_over_start"] and result["rss_end_over_start"] <= 1.10),
        "rss_after_idle_within_10_percent": bool(result["rss_after_idle_over_start"] and result["rss_after_idle_over_start"] <= 1.10),
        "swapped_to_version_2": result["versions_after"].get("2") == "AVAILABLE" and result["server_alive"]}
    print_report(result)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")
    v = result["verdict"]  # the RSS target is reported, not enforced: allocators vary
    return 0 if v["good_failed_zero"] and v["bad_all_answered_as_expected"] and v["swapped_to_version_2"] else 1


def print_report(result: dict) -> None:
    s = result["soak"]
    sw = s["swap"]
    print(f"\nsoak: {s['clients']} clients (half REST, half gRPC), {s['seconds']} s after {result['warmup_seconds']} s "
          f"warm-up, one request in {result['bad_every']} bad; load average {result['load_average_end']}")
    print(f"good requests {s['good_requests']}, failed {s['good_failed']} (warm-up: {s['good_failed_in_warmup']}, "
          f"by window: {s['good_failed_by_window'] or 'none'}), {s['good_throughput_rps']} req/s"
          + (f"\n  first failures: {s['good_failures_first']}" if s["good_failures_first"] else "")
          + (f"\n  client threads that died: {s['client_crashes']}" if s["client_crashes"] else ""))
    print(f"  {'latency':<12} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'>1 s':>5}")
    for name, lat in [*s["latency"].items(), *s["latency_by_window"].items()]:
        if lat["requests"]:
            print(f"  {name:<12} {lat['requests']:>8} {lat['p50_ms']:>8} {lat['p99_ms']:>8} {lat['max_ms']:>8} {lat['over_1s']:>5}")
    print(f"  slowest: {'; '.join(s['slowest'])}")
    stall = s["longest_without_a_good_answer"]
    print(f"  longest time without a good answer: {stall['seconds']} s from {stall['from_s']} s")
    print(f"bad requests {s['bad_requests']} (warm-up included), not as expected {sum(s['bad_unexpected'].values())}"
          + (f" {s['bad_unexpected']}" if s["bad_unexpected"] else "")
          + (f"; never sent: {s['bad_kinds_never_sent']}" if s["bad_kinds_never_sent"] else ""))
    print(f"  {'kind':<24} {'sent':>5} {'ok':>5}  statuses seen")
    for kind, e in s["bad_by_kind"].items():
        print(f"  {kind:<24} {e['sent']:>5} {e['as_expected']:>5}  " + ", ".join(f"{v}: {c}" for v, c in sorted(e["seen"].items())))
        for line in e["unexpected"]:
            print(f"      NOT AS EXPECTED: {line}")
    print(f"version swap: copy began {sw['copy_began_at_s']} s, renamed {sw['renamed_at_s']} s, version 2 AVAILABLE "
          f"{sw['version_2_available_at_s']} s, first gRPC answer from 2 at {sw['grpc_first_answer_from_2_at_s']} s, "
          f"last from 1 at {sw['grpc_last_answer_from_1_at_s']} s, version 1 END {sw['version_1_ended_at_s']} s; "
          f"gRPC answers by version {sw['grpc_answers_by_version']}; after: {result['versions_after']}")
    mb = (lambda kb: f"{kb / 1024:.0f}" if kb else "?")
    print(f"server RSS (MB): loaded {mb(result['server_rss_kb_loaded'])}, start (after warm-up) {mb(result['server_rss_kb_start'])}, "
          f"before the swap {mb(sw['server_rss_kb_before'])} (x{result['rss_before_swap_over_start']}), "
          f"peak {max(s['server_rss_mb_each_second'])}, end {mb(result['server_rss_kb_end'])} (x{result['rss_end_over_start']}), "
          f"after {result['idle_seconds']:g} s idle {mb(result['server_rss_kb_after_idle'])} (x{result['rss_after_idle_over_start']}); "
          f"target x{result['targets']['rss_end_over_start_max']}")
    print(f"verdict: {result['verdict']}")


if __name__ == "__main__":
    raise SystemExit(main())
