"""Exact (brute force) vs tuned ScaNN vs the stock-op IVF index, each inside a SavedModel.

Builds clustered unit vectors (``--items`` x ``--dim``), tunes ScaNN and IVF against exact
search (target recall@10), exports a retrieval servable per index through the real export
path, loads each back with ``tfrs_multiscene.load`` and measures through its
``serving_default`` signature: recall@10 against exact search, single-query p50/p99 latency
and batched throughput; then the ratios against brute force.

    .venv/bin/python benchmarks/bench_index.py --items 1000000 --dim 64 --json benchmarks/out/index.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf

import tfrs_multiscene
from tfrs_multiscene.export import index as index_lib
from tfrs_multiscene.export import scann_tuning, servables

K = 10


def clustered_unit_vectors(n: int, centres: np.ndarray, rng, spread: float = 0.5, chunk: int = 200_000) -> np.ndarray:
    """Unit vectors around the given centres (built in chunks to bound memory)."""
    out = np.empty((n, centres.shape[1]), np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[rng.integers(0, len(centres), m)] + spread * rng.normal(size=(m, centres.shape[1])).astype(np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def measure(servable, queries: np.ndarray, latency_queries: int, batch: int) -> dict:
    """Top-10 ids of every query, single-query p50/p99 and batched queries per second."""
    fn = servable.signatures["serving_default"]

    def call(q):
        return fn(query=tf.constant(q))

    ids = np.concatenate([call(queries[i:i + batch])["ids"].numpy() for i in range(0, len(queries), batch)])
    single = scann_tuning.single_query_latency(lambda q: call(q.numpy())["ids"], queries[:latency_queries])
    batches = [queries[i:i + batch] for i in range(0, len(queries) - batch + 1, batch)] or [queries]
    call(batches[0])
    start = time.perf_counter()
    for b in batches:
        call(b)["ids"].numpy()
    seconds = time.perf_counter() - start
    return {"ids": ids, **single, "batch_size": batch, "batched_qps": sum(len(b) for b in batches) / seconds}


def run(items: int, dim: int, queries: int = 1000, latency_queries: int = 300, batch: int = 256, target_recall: float = 0.95,
        depth: int = 100, seed: int = 0, out_dir: str | None = None, with_ivf: bool = True, clusters: int = 1000,
        spread: float = 0.5) -> dict:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    emb = clustered_unit_vectors(items, centres, rng, spread)
    # Tuning and evaluation queries come from the items' clusters; evaluation uses fresh ones.
    tune_q = clustered_unit_vectors(queries, centres, rng, spread)
    eval_q = clustered_unit_vectors(queries, centres, rng, spread)
    ids = np.char.add("item", np.arange(items).astype(str))
    report = {"items": items, "dim": dim, "clusters": clusters, "spread": spread, "queries": queries, "k": K, "depth": depth, "target_recall": target_recall,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__},
              "seconds": {"data": time.perf_counter() - t0}}

    t = time.perf_counter()
    exact = scann_tuning.exact_top_k(emb, eval_q, K)
    report["seconds"]["exact_reference"] = time.perf_counter() - t
    indexes = {"brute_force": index_lib.build_index("brute_force", None, ids, emb, depth)}
    t = time.perf_counter()
    tuned = scann_tuning.tune_scann(emb, tune_q, k=K, target_recall=target_recall, depth=depth, latency_queries=100)
    report["seconds"]["scann_build_and_tune"] = time.perf_counter() - t
    report["scann_tuning"] = tuned.to_dict()
    indexes["scann"] = index_lib.build_index("scann", None, ids, emb, depth, tuned.params, searcher=tuned.searcher)
    if with_ivf:
        t = time.perf_counter()
        ivf = scann_tuning.tune_ivf(emb, tune_q, k=K, target_recall=target_recall, depth=depth, latency_queries=100)
        report["seconds"]["ivf_build_and_tune"] = time.perf_counter() - t
        report["ivf_tuning"] = ivf.to_dict()
        indexes["ivf_stock"] = index_lib.build_index("ivf", None, ids, emb, depth, ivf.params, partition=ivf.searcher)

    base = Path(out_dir or tempfile.mkdtemp(prefix="bench_index_"))
    spec = {"query": tf.TensorSpec([None, dim], tf.float32)}
    results = {}
    for name, index in indexes.items():
        t = time.perf_counter()
        path = servables.export_retrieval(base, lambda f: f["query"], index, spec, name=f"bench_{name}", default_k=K)
        export_s = time.perf_counter() - t
        servable = tfrs_multiscene.load(path)
        m = measure(servable, eval_q, latency_queries, batch)
        rows = np.vectorize(lambda s: int(s[4:]))(m.pop("ids").astype(str))
        results[name] = {**m, "recall_at_10": scann_tuning.recall_at_k(rows, exact, K), "export_seconds": export_s,
                         "stock_servable": servable.metadata["op_audit"]["stock_servable"],
                         "size_mb": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20}
        del servable
    report["results"] = results
    bf = results["brute_force"]
    report["ratios"] = {name: {"p50_speedup_vs_brute_force": bf["p50_ms"] / r["p50_ms"],
                               "p99_speedup_vs_brute_force": bf["p99_ms"] / r["p99_ms"],
                               "batched_qps_ratio_vs_brute_force": r["batched_qps"] / bf["batched_qps"]}
                        for name, r in results.items() if name != "brute_force"}
    sc = results["scann"]
    report["target_met"] = {"scann_recall_at_10_ge_target": sc["recall_at_10"] >= target_recall,
                            "scann_p50_10x_faster_than_brute_force": report["ratios"]["scann"]["p50_speedup_vs_brute_force"] >= 10}
    report["model_base"] = str(base)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000, help="Evaluation (and tuning) queries.")
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--depth", type=int, default=100, help="Index depth (largest K served).")
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clusters", type=int, default=1000, help="Cluster centres of the synthetic vectors.")
    parser.add_argument("--spread", type=float, default=0.5, help="Noise around the centres (larger: harder search).")
    parser.add_argument("--no-ivf", action="store_true", help="Skip the stock-op IVF index.")
    parser.add_argument("--model-dir", default=None, help="Where the exports go (default: a temp dir).")
    parser.add_argument("--json", default=None, help="Write the figures here.")
    args = parser.parse_args(argv)
    report = run(args.items, args.dim, args.queries, args.latency_queries, args.batch, args.target_recall, args.depth,
                 args.seed, args.model_dir, not args.no_ivf, args.clusters, args.spread)
    text = json.dumps(report, indent=2, sort_keys=True)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
