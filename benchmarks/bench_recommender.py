"""End-to-end latency, throughput and stability of the ``recommender`` servable (issue 5).

Builds a synthetic world of ``--items`` items, trains retrieval + ranking briefly (1 epoch
each; text encoder 'none' by default: MiniLM embeds only ~400-1000 titles/s on 2 cores, so
100k titles would take minutes), exports through ``export.run_export.export_run`` with
``--candidates`` ranked per request, starts ``tfrs_multiscene.serving.server`` in a
SUBPROCESS (so server CPU and RSS are its own) and measures the ``recommend`` signature over
``--protocol`` with realistic requests (distinct training users, their recent positive
history, one of their scenarios, seen items excluded):

* p50 / p99 latency and throughput for each ``--clients`` count (threads), ``--seconds`` each;
* a load run (max clients, ``--load-seconds``): failed requests, server RSS at start / end
  (and sampled in between), server CPU seconds;
* a profile (in this process, after the server runs): the ``recommend`` graph alone, its
  parts (retrieval top-``candidates``, ranking ``candidates`` items) through the
  ``retrieval`` and ``ranking`` servables, and the REST JSON encode/decode of one answer.

Every request loop is bounded in count and time; the server binds 127.0.0.1.

    .venv/bin/python benchmarks/bench_recommender.py --items 100000 --json benchmarks/out/recommender.json
    .venv/bin/python benchmarks/bench_recommender.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np

import tfrs_multiscene  # noqa: F401  (before TensorFlow)
from tfrs_multiscene import config as C
from tfrs_multiscene.serving.client import GrpcClient, RestClient, ServingClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_serving as serving_bench  # noqa: E402  (server start-up and /proc readers shared with it)
from bench_serving import rss_kb  # noqa: E402

SIGNATURE = "recommend"
MAX_REQUESTS_PER_CLIENT = 200_000  # a hard bound on every request loop besides its time limit


# --------------------------------------------------------------------------- process facts


def cpu_seconds(pid) -> float | None:
    """utime + stime of ``pid`` (all its threads) in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def runqueue_wait_seconds(pid) -> float | None:
    """Time the live threads of ``pid`` spent runnable but waiting for a CPU (schedstat field
    2): the cost of sharing the cores. A lower bound: threads that exit take their time along."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        return None
    return total / 1e9


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --------------------------------------------------------------------------- build


def build_models(work: Path, items: int, users: int, impressions: int, index: str, candidates: int,
                 text_encoder: str, log=print) -> dict:
    """Generate -> train (1+1 epochs) -> export into ``work``; returns timings and paths."""
    from tfrs_multiscene.data import synthetic
    from tfrs_multiscene.data.formats import write_tables
    from tfrs_multiscene.training import train_run
    from tfrs_multiscene.export.run_export import export_run

    timings = {}
    data_dir, run_dir, models = work / "data", work / "run", work / "models"
    for d in (data_dir, run_dir, models):
        shutil.rmtree(d, ignore_errors=True)
    gen = C.GenerateConfig(out=str(data_dir), items=items, users=users, impressions=impressions)
    t = time.perf_counter()
    tables = synthetic.generate(gen)
    write_tables(tables, gen.out, "csv")
    timings["generate"] = time.perf_counter() - t
    log(f"generated {items} items, {users} users, {impressions} impressions in {timings['generate']:.1f}s")

    run_cfg = C.RunConfig(
        data=C.DataConfig(data=str(data_dir)), generate=gen, split=C.SplitConfig(),
        text=C.TextConfig(text_encoder=text_encoder, cache_dir=str(work / "text_cache")),
        retrieval=C.RetrievalConfig(epochs=1, batch_size=1024, validate_every=0),
        ranking=C.RankingConfig(epochs=1, early_stopping=0),
        train=C.TrainConfig(run_dir=str(run_dir)))
    t = time.perf_counter()
    train_run(run_cfg, verbose=0, log=log)
    timings["train"] = time.perf_counter() - t
    log(f"trained in {timings['train']:.1f}s")

    t = time.perf_counter()
    stock = "none" if index == "scann" else "ivf"  # the benchmark serves one recommender
    export_run(C.ExportConfig(run_dir=str(run_dir), model_base=str(models), index=index, stock_index=stock,
                              candidates=candidates, top_k=max(100, candidates)), log=log)
    timings["export"] = time.perf_counter() - t
    log(f"exported in {timings['export']:.1f}s")
    return timings


def realistic_requests(run_dir: Path, n: int, history_length: int = 20, seed: int = 0) -> list[dict]:
    """``n`` requests of distinct training users: one of their scenarios, their most recent
    positives (oldest first) as history, those items excluded, their profile features."""
    from tfrs_multiscene.run import RunDir

    train = RunDir(run_dir).load_split().train
    inter = train.interactions
    task = next((t for t in ("click", "liked") if t in inter.columns), None)
    pos = inter[inter[task] > 0] if task else inter
    pos = pos.sort_values("timestamp")
    rng = np.random.default_rng(seed)
    user_ids = pos["user_id"].astype(str).unique()
    chosen = rng.choice(user_ids, size=min(n, len(user_ids)), replace=False)
    hist = pos.groupby(pos["user_id"].astype(str))["item_id"].apply(lambda s: [str(x) for x in s.tail(history_length)])
    scen = inter.groupby(inter["user_id"].astype(str))["scenario"].apply(lambda s: list(s.astype(str)))
    users = train.users.set_index(train.users["user_id"].astype(str)) if train.users is not None else None
    now = int(inter["timestamp"].max())
    out = []
    for u in chosen:
        features = {}
        if users is not None and u in users.index:
            row = users.loc[u]
            features = {c: row[c] for c in users.columns if c != "user_id"}
        history = hist.get(u, [])
        out.append({"user": u, "scenario": str(rng.choice(scen[u])), "history": history, "exclude": history,
                    "features": features, "timestamp": now})
    return out


def to_inputs(req: dict, sig_inputs: dict, k: int) -> dict:
    """Columnar ``recommend`` inputs (batch of one) for the signature's inputs."""
    values = {"user_id": [req["user"]], "scenario": [req["scenario"]], "k": [int(k)],
              "exclude_ids": [list(req["exclude"]) or [""]], "history": [list(req["history"]) or [""]],
              "timestamp": [int(req["timestamp"])]}
    out = {}
    for name, dtype in sig_inputs.items():
        if name in values:
            out[name] = values[name]
        elif name in req["features"]:
            v = req["features"][name]
            out[name] = [str(v) if dtype == "DT_STRING" else (float(v) if dtype.startswith("DT_FLOAT") else int(v))]
        else:
            out[name] = [""] if dtype == "DT_STRING" else ([0.0] if dtype.startswith(("DT_FLOAT", "DT_DOUBLE")) else [0])
    return out


# --------------------------------------------------------------------------- server


def stop_server(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- load generation


def fire(make_client, model: str, requests: list[dict], clients: int, seconds: float, pid=None,
         sample_every: float = 5.0, max_requests: int = MAX_REQUESTS_PER_CLIENT) -> dict:
    """``clients`` threads cycling through ``requests`` for ``seconds``: latency, throughput,
    failures, server CPU and RSS (sampled every ``sample_every`` s)."""
    latencies, failures, errors, lock = [], [], [], threading.Lock()
    barrier = threading.Barrier(clients + 1, timeout=120)

    def worker(w):
        client = make_client()
        for r in requests[w:w + 2]:  # warm up: connection + first calls
            client.predict(model, r, signature_name=SIGNATURE)
        barrier.wait()
        mine, failed = [], 0
        end = time.monotonic() + seconds
        i = w
        while time.monotonic() < end and len(mine) + failed < max_requests:
            t = time.perf_counter()
            try:
                client.predict(model, requests[i % len(requests)], signature_name=SIGNATURE)
                mine.append(time.perf_counter() - t)
            except ServingClientError as exc:
                failed += 1
                with lock:
                    if len(errors) < 5:
                        errors.append(str(exc)[:300])
            i += clients
        with lock:
            latencies.extend(mine)
            failures.append(failed)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start, cpu0, ccpu0 = time.monotonic(), cpu_seconds(pid) if pid else None, time.process_time()
    wait0 = runqueue_wait_seconds(pid) if pid else None
    rss = [rss_kb(pid)] if pid else []
    while any(t.is_alive() for t in threads) and time.monotonic() - start < seconds + 60:
        for t in threads:
            t.join(timeout=min(sample_every, max(0.1, seconds + 60 - (time.monotonic() - start))))
            if not t.is_alive():
                continue
            break
        if pid:
            rss.append(rss_kb(pid))
    elapsed = time.monotonic() - start
    cpu1, ccpu1 = cpu_seconds(pid) if pid else None, time.process_time()
    wait1 = runqueue_wait_seconds(pid) if pid else None
    lat = np.asarray(latencies) * 1000
    pct = (lambda q: round(float(np.percentile(lat, q)), 2) if lat.size else None)
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": int(lat.size), "failed": int(sum(failures)),
        "errors": errors, "throughput_rps": round(lat.size / elapsed, 1),
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": round(float(lat.max()), 2) if lat.size else None,
        "over_1s": int((lat >= 1000).sum()),
        "server_cpu_s": round(cpu1 - cpu0, 1) if cpu0 is not None and cpu1 is not None else None,
        "server_cpu_ms_per_request": round(1000 * (cpu1 - cpu0) / max(lat.size, 1), 2) if cpu0 is not None and cpu1 is not None else None,
        "client_cpu_ms_per_request": round(1000 * (ccpu1 - ccpu0) / max(lat.size, 1), 2),
        "server_runqueue_wait_ms_per_request_lower_bound": round(1000 * (wait1 - wait0) / max(lat.size, 1), 2)
        if wait0 is not None and wait1 is not None else None,
        "server_rss_kb": [r for r in rss if r is not None], "load_average": load_average(),
    }


# --------------------------------------------------------------------------- profile


def profile(models: Path, requests: list[dict], sig_inputs: dict, k: int, candidates: int, n: int = 200) -> dict:
    """Where a request's time goes, measured in this process (server idle)."""
    import tensorflow as tf

    from tfrs_multiscene.serving.rest import handle_predict
    from tfrs_multiscene.serving.signatures import LoadedModel

    def timed(fn, reqs):
        for r in reqs[:5]:
            fn(r)
        out = []
        for r in reqs[:n]:
            t = time.perf_counter()
            fn(r)
            out.append(time.perf_counter() - t)
        a = np.asarray(out) * 1000
        return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
                "mean_ms": round(float(a.mean()), 2)}

    def latest(name):
        d = models / name
        return d / str(max(int(p.name) for p in d.iterdir() if p.name.isdigit()))

    rec = LoadedModel("recommender", 1, latest("recommender"))
    inputs = [to_inputs(r, sig_inputs, k) for r in requests]
    result = {}
    fn = rec._functions[SIGNATURE]
    sig = rec.signatures[SIGNATURE]
    tensors = [{key: tf.constant(np.asarray(v, dtype=object) if sig.inputs[key].dtype == tf.string else np.asarray(v),
                                 dtype=sig.inputs[key].dtype) for key, v in x.items()} for x in inputs]
    result["recommend_graph"] = timed(lambda t: fn(**t), tensors)
    result["recommend_loaded_model_predict"] = timed(lambda x: rec.predict(SIGNATURE, x), inputs)
    bodies = [json.dumps({"signature_name": SIGNATURE, "inputs": x}) for x in inputs]
    result["rest_handler_incl_json"] = timed(lambda b: json.dumps(handle_predict(rec, json.loads(b))), bodies)
    answer = handle_predict(rec, json.loads(bodies[0]))
    result["rest_json_encode_answer"] = timed(lambda _: json.dumps(answer), inputs)
    result["answer_bytes"] = len(json.dumps(answer))

    # the parts, through the retrieval and ranking servables (same graphs, own signatures)
    retr_name = "retrieval" if (models / "retrieval").exists() else None
    if retr_name:
        retr = LoadedModel("retrieval", 1, latest("retrieval"))
        rs = retr.signatures["retrieve"]
        rin = [{key: x[key] if key != "k" else [candidates] for key in rs.inputs} for x in inputs]
        try:
            result["retrieval_top_candidates"] = timed(lambda x: retr.predict("retrieve", x), rin)
        except Exception as exc:  # noqa: BLE001  (k above the index depth, ...)
            result["retrieval_top_candidates"] = {"error": str(exc)[:200]}
        cand = [retr.predict("retrieve", x)[1]["ids"] for x in rin[:n]]
        rank = LoadedModel("ranking", 1, latest("ranking"))
        ks = rank.signatures["serving_default"]
        kin = []
        for x, ids in zip(inputs, cand):
            row = {key: x[key] for key in ks.inputs if key in x}
            row["item_ids"] = ids
            for key, info in ks.inputs.items():
                row.setdefault(key, [""] if info.dtype == tf.string else [0])
            kin.append(row)
        result["ranking_candidates"] = timed(lambda x: rank.predict("serving_default", x), kin)
    return result


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, help="Users of the world (default: items / 50, 300..5000).")
    parser.add_argument("--impressions", type=int, help="Impressions (default: min(3 x items, 3e9 / items), at least 10,000).")
    parser.add_argument("--candidates", type=int, default=200, help="Retrieval candidates ranked per request.")
    parser.add_argument("--k", type=int, default=10, help="Recommendations returned per request.")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="Concurrent client threads per measured run.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Seconds per measured run.")
    parser.add_argument("--load-seconds", type=float, default=60.0, help="Seconds of the load run (max clients).")
    parser.add_argument("--protocol", choices=("rest", "grpc", "both"), default="rest")
    parser.add_argument("--index", choices=("scann", "ivf", "brute_force"), default="scann")
    parser.add_argument("--text-encoder", default="none", help="'none' (default: 100k MiniLM titles take minutes here), 'minilm', ...")
    parser.add_argument("--requests", type=int, default=1000, help="Distinct realistic requests cycled through.")
    parser.add_argument("--work", default="benchmarks/out/recommender_work", help="Data, run and models directory.")
    parser.add_argument("--reuse", action="store_true", help="Reuse the models in --work (skip generate/train/export).")
    parser.add_argument("--no-profile", action="store_true", help="Skip the in-process profile.")
    parser.add_argument("--json", default="benchmarks/out/recommender.json")
    parser.add_argument("--quick", action="store_true", help="A tiny run: 2,000 items, 2 s per run, 4 s load.")
    args = parser.parse_args(argv)
    if args.quick:  # tiny defaults; flags given explicitly still win
        parser.set_defaults(items=2000, seconds=2.0, load_seconds=4.0, requests=100, candidates=100,
                            work="benchmarks/out/recommender_quick_work", json="benchmarks/out/recommender_quick.json")
        args = parser.parse_args(argv)
    # The generator samples each impression over all items (~6 ms CPU an impression at 100k
    # items here), so impressions are capped at ~3e9 / items: 30,000 at 100k items.
    users = args.users or max(300, min(args.items // 50, 5000))
    impressions = args.impressions or max(10_000, min(3 * args.items, 3_000_000_000 // args.items))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models = work / "models"

    result = {"issue": 5, "items": args.items, "users": users, "impressions": impressions, "candidates": args.candidates,
              "k": args.k, "index": args.index, "text_encoder": args.text_encoder, "protocol": args.protocol,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "load_average_start": load_average(), "targets": {"p99_ms_one_client": 50, "load_failed": 0}}
    if not (args.reuse and (models / "recommender").is_dir()):
        result["build_seconds"] = build_models(work, args.items, users, impressions, args.index, args.candidates, args.text_encoder)
    requests = realistic_requests(work / "run", args.requests)
    result["requests_distinct"] = len(requests)
    result["mean_history"] = round(float(np.mean([len(r["history"]) for r in requests])), 1)

    proc, rest_url, grpc_target = serving_bench.start_server(models, 300.0, log_path=work / "server.log", poll_seconds=30)
    pid = proc.pid
    try:
        makers = {"rest": lambda: RestClient(rest_url, timeout=30, retries=0),
                  "grpc": lambda: GrpcClient(grpc_target, timeout=30, retries=0)}
        probe = RestClient(rest_url, timeout=60)
        sigs = probe.metadata("recommender")["metadata"]["signature_def"]["signature_def"]
        sig_inputs = {name: info.get("dtype", "DT_STRING") for name, info in sigs[SIGNATURE]["inputs"].items()}
        inputs = [to_inputs(r, sig_inputs, args.k) for r in requests]
        answer = probe.predict("recommender", inputs[0], signature_name=SIGNATURE)
        result["example"] = {"request": requests[0] | {"features": {k: str(v) for k, v in requests[0]["features"].items()}},
                             "ids": [x.decode() for x in answer["ids"][0]],
                             "because": [x.decode() for x in answer["because_ids"][0]]}
        result["server_rss_kb_loaded"] = rss_kb(pid)
        protocols = ["rest", "grpc"] if args.protocol == "both" else [args.protocol]
        for protocol in protocols:
            runs = {}
            for clients in args.clients:
                runs[str(clients)] = fire(makers[protocol], "recommender", inputs, clients, args.seconds, pid)
                print(f"{protocol} x{clients}: {json.dumps({k: v for k, v in runs[str(clients)].items() if k != 'server_rss_kb'})}", flush=True)
            result[protocol] = runs
        load_clients = max(args.clients)
        rss_start = rss_kb(pid)
        load = fire(makers[protocols[0]], "recommender", inputs, load_clients, args.load_seconds, pid)
        load.update({"protocol": protocols[0], "server_rss_kb_start": rss_start, "server_rss_kb_end": rss_kb(pid),
                     "server_alive": proc.poll() is None})
        result["load"] = load
        print(f"load x{load_clients} {args.load_seconds}s: failed {load['failed']} of {load['requests'] + load['failed']}, "
              f"RSS {rss_start} -> {load['server_rss_kb_end']} kB, p99 {load['p99_ms']} ms", flush=True)
    finally:
        stop_server(proc)
    if not args.no_profile:
        result["profile"] = profile(models, requests, sig_inputs, args.k, args.candidates, n=50 if args.quick else 300)
        print(f"profile: {json.dumps(result['profile'])}", flush=True)
    result["load_average_end"] = load_average()
    one = result[protocols[0]].get("1") or next(iter(result[protocols[0]].values()))
    result["verdict"] = {"p99_one_client_under_50ms": one["p99_ms"] is not None and one["p99_ms"] < 50,
                         "load_zero_failed": result["load"]["failed"] == 0}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0 if result["load"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
