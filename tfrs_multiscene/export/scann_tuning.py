"""Tune approximate indexes against exact search on the real embeddings.

ScaNN's defaults give poor recall, so the export measures instead of guessing: build the
tree once (with the deepest reordering considered), then sweep leaves-to-search and the
reordering depth at query time, measure recall@k against exact search on sample queries and
single-query latency, and keep the fastest setting that reaches the target recall.
``tune_ivf`` does the same for the stock-op IVF index (its knob: leaves probed per query).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_multiscene.export import index as index_lib

LEAF_FRACTIONS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
REORDER_GRID = (100, 200, 500, 1000, 2000)
PLATEAU = 1e-3  # recall gain below which more leaves are not worth searching


@dataclasses.dataclass
class TuningResult:
    """The chosen setting, its measured recall@k and single-query p50 latency, and every trial."""

    params: dict
    recall: float
    latency_ms: float
    tried: list
    reached_target: bool = True
    target_recall: float = 0.95
    k: int = 10
    searcher: Any = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON-able form (without the searcher object)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "searcher"}
        return _plain(out)


def exact_top_k(embeddings, queries, k: int, chunk: int = 256) -> np.ndarray:
    """Row indices of the exact top ``k`` dot products of each query ([Q, k], best first)."""
    emb = np.asarray(embeddings, np.float32)
    q = np.asarray(queries, np.float32)
    k = min(k, len(emb))
    out = np.empty((len(q), k), np.int64)
    for start in range(0, len(q), chunk):
        scores = q[start:start + chunk] @ emb.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        out[start:start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def recall_at_k(approx, exact, k: int) -> float:
    """Mean over queries of |approx[:k] ∩ exact[:k]| / k."""
    approx, exact = np.asarray(approx)[:, :k], np.asarray(exact)[:, :k]
    hits = [len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact)]
    return float(np.mean(hits) / exact.shape[1])


def single_query_latency(fn: Callable, queries, warmup: int = 5) -> dict:
    """Call ``fn`` on each query as a [1, D] batch; p50/p99/mean wall time in ms."""
    queries = np.asarray(queries, np.float32)
    for q in queries[:warmup]:
        fn(tf.constant(q[None]))
    times = []
    for q in queries:
        t = tf.constant(q[None])
        start = time.perf_counter()
        out = fn(t)
        _block(out)
        times.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)), "mean_ms": float(np.mean(times))}


def tune_scann(candidate_embeddings, sample_queries, k: int = 10, target_recall: float = 0.95, depth: int | None = None,
               num_leaves: int | None = None, leaves_grid=None, reorder_grid=None, latency_queries: int = 200,
               dimensions_per_block: int = 2, training_iterations: int = 10) -> TuningResult:
    """Fastest ScaNN (leaves_to_search, reordering) reaching ``target_recall`` recall@k.

    ``depth`` is the deepest K the index must serve (reordering is never below it). The
    returned ``searcher`` is the built ScaNN searcher, reusable by ``index.ScaNNIndex``.
    If no setting reaches the target, the one with the highest recall is returned with
    ``reached_target=False``.
    """
    emb = np.asarray(candidate_embeddings, np.float32)
    queries = np.asarray(sample_queries, np.float32)
    n = len(emb)
    depth = max(k, depth or k)
    num_leaves = int(num_leaves or index_lib.default_num_leaves(n))
    reorders = sorted({min(n, max(r, depth)) for r in (reorder_grid or REORDER_GRID)})
    leaves = _leaf_grid(num_leaves, leaves_grid)
    base = {"num_leaves": num_leaves, "dimensions_per_block": dimensions_per_block, "training_iterations": training_iterations}
    searcher = index_lib.build_scann_searcher(emb, depth=depth, num_leaves=num_leaves, num_leaves_to_search=leaves[0],
                                              num_reordering_candidates=reorders[-1], dimensions_per_block=dimensions_per_block,
                                              training_iterations=training_iterations)
    exact = exact_top_k(emb, queries, k)

    def search(q, leaves_to_search, reorder):
        return searcher.search_batched_parallel(q, final_num_neighbors=k, pre_reorder_num_neighbors=reorder, leaves_to_search=leaves_to_search)

    def make_fn(leaves_to_search, reorder):
        return tf.function(lambda q: search(q, leaves_to_search, reorder).indices)

    trials = [{"num_leaves_to_search": lv, "num_reordering_candidates": r} for r in reorders for lv in leaves]
    return _sweep(trials, lambda p: search(queries, p["num_leaves_to_search"], p["num_reordering_candidates"]).indices.numpy(),
                  lambda p: make_fn(p["num_leaves_to_search"], p["num_reordering_candidates"]), exact, queries, k,
                  target_recall, latency_queries, base, searcher, group_key="num_reordering_candidates")


def tune_ivf(candidate_embeddings, sample_queries, k: int = 10, target_recall: float = 0.95, depth: int | None = None,
             num_leaves: int | None = None, leaves_grid=None, latency_queries: int = 200) -> TuningResult:
    """Fewest probed leaves of the stock-op IVF index reaching ``target_recall`` recall@k.

    ``searcher`` of the result is the partition for ``index.IVFIndex``."""
    emb = np.asarray(candidate_embeddings, np.float32)
    queries = np.asarray(sample_queries, np.float32)
    num_leaves = int(num_leaves or index_lib.default_num_leaves(len(emb)))
    partition = index_lib.build_ivf_partition(emb, num_leaves)
    ivf = index_lib.IVFIndex(np.arange(len(emb)).astype(str), emb, max(k, depth or k), partition, 1)
    exact = exact_top_k(emb, queries, k)
    leaves = _leaf_grid(num_leaves, leaves_grid)

    def rows(q, probe):
        _, r = ivf._search_rows(tf.constant(q), tf.constant(k), probe)
        return np.asarray(partition["order"])[r.numpy()]

    def make_fn(probe):
        return tf.function(lambda q: ivf._search_rows(q, tf.constant(k), probe)[1])

    trials = [{"num_leaves_to_search": lv} for lv in leaves]
    return _sweep(trials, lambda p: rows(queries, p["num_leaves_to_search"]), lambda p: make_fn(p["num_leaves_to_search"]),
                  exact, queries, k, target_recall, latency_queries, {"num_leaves": num_leaves}, partition, group_key=None)


def tuned_index(kind: str, query_model, candidate_ids, candidate_embeddings, sample_queries, depth: int,
                k: int = 10, target_recall: float = 0.95):
    """``(index, TuningResult or None)``: the ``kind`` index of the candidates; 'scann' and
    'ivf' first tuned on ``sample_queries`` against exact search (:func:`tune_scann`,
    :func:`tune_ivf`) and built with the chosen setting, 'brute_force' as it is."""
    if kind == "brute_force":
        return index_lib.build_index(kind, query_model, candidate_ids, candidate_embeddings, depth), None
    tune = tune_scann if kind == "scann" else tune_ivf
    result = tune(candidate_embeddings, sample_queries, k=k, target_recall=target_recall, depth=depth)
    extra = {"searcher": result.searcher} if kind == "scann" else {"partition": result.searcher}
    index = index_lib.build_index(kind, query_model, candidate_ids, candidate_embeddings, depth, result.params, **extra)
    return index, result


def _sweep(trials, recall_rows, latency_fn, exact, queries, k, target, latency_queries, base, searcher, group_key):
    """Within each group (same reordering), walk trials in increasing cost until the target is
    reached; time only those winners; keep the fastest. Trials must be sorted by cost.

    In grouped sweeps a group also stops when recall stops rising (searching more leaves
    cannot beat the group's reordering limit)."""
    tried, winners, best_fallback = [], [], None
    done_groups, last = set(), {}
    for params in trials:
        group = params.get(group_key) if group_key else None
        if group in done_groups:
            continue
        rec = recall_at_k(recall_rows(params), exact, k)
        entry = {**params, "recall": rec}
        tried.append(entry)
        if best_fallback is None or rec > best_fallback["recall"]:
            best_fallback = entry
        if rec >= target:
            done_groups.add(group)
            winners.append(entry)
        elif group_key and group in last and rec - last[group] < PLATEAU:
            done_groups.add(group)
        last[group] = rec
    candidates = winners or [best_fallback]
    for entry in candidates:
        entry.update(single_query_latency(latency_fn(entry), queries[:latency_queries]))
    best = min(candidates, key=lambda e: e["p50_ms"])
    params = {**base, **{key: best[key] for key in best if key.startswith("num_")}}
    return TuningResult(params=params, recall=best["recall"], latency_ms=best["p50_ms"], tried=tried,
                        reached_target=bool(winners), target_recall=target, k=k, searcher=searcher)


def _leaf_grid(num_leaves: int, leaves_grid=None) -> list:
    """Leaves-to-search values to try: ``leaves_grid`` or fractions of ``num_leaves``, ascending."""
    if leaves_grid is not None:
        return sorted(set(leaves_grid))
    return sorted({max(1, min(num_leaves, round(f * num_leaves))) for f in LEAF_FRACTIONS})


def _block(out):
    """Force evaluation of a (nested) result so timings are complete."""
    for t in tf.nest.flatten(out):
        if hasattr(t, "numpy"):
            t.numpy()


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value
