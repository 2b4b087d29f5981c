"""Top-K indexes over candidate embeddings, as tf-keras layers that save inside a SavedModel.

Three kinds share one interface (:class:`TopKIndex`): ``search(query_embeddings, k)`` returns
``(scores [B, k], ids [B, k])``; ``call(queries, k=None)`` first applies the optional query
model (TFRS convention). ``k`` may be a scalar tensor, so signatures choose it per request.
Slots that cannot be filled (fewer candidates than ``k``, excluded items) get score ``-inf``
and id ``""``.

* ``brute_force`` - exact scores against every candidate (stock TF ops).
* ``scann``       - a ScaNN searcher (``Scann>*`` ops: needs a ScaNN-enabled model server);
                    leaves-to-search and reordering depth are baked in from tuning.
* ``ivf``         - an approximate partitioned index in stock TF ops: k-means centroids,
                    the best ``leaves_to_search`` leaves per query, exact rerank of their items.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

INDEX_KINDS = ("scann", "brute_force", "ivf")
NEG_INF = float("-inf")


class TopKIndex(tf.keras.layers.Layer):
    """Base class: candidate ids + a search over candidate rows."""

    kind = "base"
    stock_ops = True

    def __init__(self, candidate_ids, depth: int, query_model=None, name: str | None = None):
        super().__init__(name=name or f"{self.kind}_index")
        ids = np.asarray(candidate_ids).astype(str).astype(object)
        if ids.ndim != 1 or len(ids) == 0:
            raise ValueError(f"candidate_ids must be a non-empty 1-D list, got shape {ids.shape}")
        self.num_candidates = len(ids)
        self.depth = int(depth)
        if self.depth < 1:
            raise ValueError(f"index depth must be >= 1, got {depth}")
        self.query_model = query_model
        self.candidate_ids = tf.Variable(tf.constant(ids, tf.string), trainable=False, name="candidate_ids")
        self.built = True  # all state is created here; lets tf-keras serialize the layer fully

    # -- subclasses implement: (scores [B, k], row indices [B, k]) with -inf for empty slots
    def _search_rows(self, queries: tf.Tensor, k: tf.Tensor):
        raise NotImplementedError

    def search(self, query_embeddings, k=None):
        """Top ``k`` (default: the built depth) candidates of each query embedding."""
        k = tf.cast(self.depth if k is None else k, tf.int32)
        queries = tf.convert_to_tensor(query_embeddings, tf.float32)
        scores, rows = self._search_rows(queries, k)
        ids = tf.gather(self.candidate_ids, rows)
        return scores, tf.where(tf.math.is_inf(scores), tf.constant("", tf.string), ids)

    def search_excluding(self, query_embeddings, k, exclude_ids):
        """Top ``k`` candidates that are not in the query's row of ``exclude_ids`` ([B, E],
        padded with ""). Searches ``k + E`` deep, masks, and keeps the best ``k``."""
        k = tf.cast(k, tf.int32)
        exclude_ids = tf.convert_to_tensor(exclude_ids, tf.string)
        extra = tf.shape(exclude_ids)[1]
        scores, ids = self.search(query_embeddings, k + extra)
        return mask_and_top_k(scores, ids, exclude_ids, k)

    def call(self, queries, k=None):
        embeddings = self.query_model(queries) if self.query_model is not None else queries
        return self.search(embeddings, k)

    def describe(self) -> dict:
        """JSON-able description for the export metadata."""
        return {"kind": self.kind, "depth": self.depth, "num_candidates": self.num_candidates, "stock_ops": self.stock_ops}


def mask_and_top_k(scores, ids, exclude_ids, k):
    """Set excluded ids (and "" ids) to -inf, then keep the best ``k`` (padding with -inf/"")."""
    excluded = tf.reduce_any(tf.equal(ids[:, :, None], exclude_ids[:, None, :]), axis=-1) | tf.equal(ids, "")
    scores = tf.where(excluded, tf.constant(NEG_INF, scores.dtype), scores)
    scores, ids = _pad_columns(scores, ids, k)
    top = tf.math.top_k(scores, k=k)
    top_ids = tf.gather(ids, top.indices, batch_dims=1)
    return top.values, tf.where(tf.math.is_inf(top.values), tf.constant("", tf.string), top_ids)


def _pad_columns(scores, values, k):
    """Append ``k`` columns of -inf scores (and default values) so top_k(k) always works."""
    batch = tf.shape(scores)[0]
    scores = tf.concat([scores, tf.fill([batch, k], tf.constant(NEG_INF, scores.dtype))], axis=1)
    values = tf.concat([values, tf.zeros([batch, k], values.dtype)], axis=1)
    return scores, values


class BruteForceIndex(TopKIndex):
    """Exact top-K: one matrix product against all candidates."""

    kind = "brute_force"

    def __init__(self, candidate_ids, candidate_embeddings, depth: int, query_model=None, name=None):
        super().__init__(candidate_ids, depth, query_model, name)
        emb = _as_matrix(candidate_embeddings, self.num_candidates)
        self.embeddings = tf.Variable(emb, trainable=False, name="candidate_embeddings")

    def _search_rows(self, queries, k):
        scores = tf.matmul(queries, self.embeddings, transpose_b=True)
        scores, _ = _pad_columns(scores, tf.zeros_like(scores, tf.int32), k)
        top = tf.math.top_k(scores, k=k)
        return top.values, tf.minimum(top.indices, self.num_candidates - 1)  # padding slots have -inf scores


class ScaNNIndex(TopKIndex):
    """A ScaNN searcher inside the graph (``Scann>*`` ops; import ``scann`` before loading).

    Build from ``scann_params`` (``num_leaves``, ``num_leaves_to_search``,
    ``num_reordering_candidates``, optional ``dimensions_per_block``,
    ``training_iterations``, ``training_sample_size``) or pass an already built
    ``searcher`` (e.g. the one :func:`~tfrs_multiscene.export.scann_tuning.tune_scann` made).
    """

    kind = "scann"
    stock_ops = False

    def __init__(self, candidate_ids, candidate_embeddings, depth: int, scann_params: dict, query_model=None, searcher=None, name=None):
        super().__init__(candidate_ids, depth, query_model, name)
        from scann.scann_ops.py import scann_ops  # noqa: F401  (registers the ops)

        self.params = dict(scann_params)
        for key in ("num_leaves", "num_leaves_to_search", "num_reordering_candidates"):
            if key not in self.params:
                raise ValueError(f"scann_params needs {key!r}; got {sorted(self.params)}")
        if searcher is None:
            emb = _as_matrix(candidate_embeddings, self.num_candidates)
            searcher = build_scann_searcher(emb, depth=self.depth, **self.params)
        self.scann_state = searcher.serialize_to_module()

    def _search_rows(self, queries, k):
        from scann.scann_ops.py import scann_ops

        searcher = scann_ops.searcher_from_module(self.scann_state)
        result = searcher.search_batched_parallel(
            queries,
            final_num_neighbors=k,
            pre_reorder_num_neighbors=tf.maximum(k, int(self.params["num_reordering_candidates"])),
            leaves_to_search=int(self.params["num_leaves_to_search"]),
        )
        scores, rows = result.distances, result.indices
        # ScaNN returns at most min(k, N) columns: pad to exactly k.
        scores, rows = _pad_columns(scores, rows, k)
        return scores[:, :k], rows[:, :k]

    def describe(self) -> dict:
        return {**super().describe(), "params": {k: v for k, v in self.params.items()}}


def build_scann_searcher(embeddings, depth: int, num_leaves: int, num_leaves_to_search: int, num_reordering_candidates: int,
                         dimensions_per_block: int = 2, training_iterations: int = 10, training_sample_size: int | None = None,
                         **unused):
    """A ScaNN TF searcher: k-means tree + asymmetric hashing + exact reordering (dot product)."""
    from scann.scann_ops.py import scann_ops

    n = len(embeddings)
    builder = scann_ops.builder(np.asarray(embeddings, np.float32), int(depth), "dot_product")
    builder = builder.tree(
        num_leaves=int(min(num_leaves, n)),
        num_leaves_to_search=int(min(num_leaves_to_search, num_leaves, n)),
        training_iterations=int(training_iterations),
        training_sample_size=int(training_sample_size or min(n, 250_000)),
    )
    builder = builder.score_ah(int(dimensions_per_block)).reorder(int(max(num_reordering_candidates, depth)))
    return builder.build()


class IVFIndex(TopKIndex):
    """Approximate top-K in stock TF ops: probe the best leaves, rerank their items exactly.

    ``partition`` is what :func:`build_ivf_partition` returns; ``leaves_to_search`` is the
    number of leaves probed per query (tuned by ``scann_tuning.tune_ivf``).
    """

    kind = "ivf"

    def __init__(self, candidate_ids, candidate_embeddings, depth: int, partition: dict, leaves_to_search: int, query_model=None, name=None):
        order = np.asarray(partition["order"])
        super().__init__(np.asarray(candidate_ids).astype(str)[order], depth, query_model, name)
        emb = _as_matrix(candidate_embeddings, self.num_candidates)[order]
        self.embeddings = tf.Variable(emb, trainable=False, name="candidate_embeddings")
        self.centroids = tf.Variable(np.asarray(partition["centroids"], np.float32), trainable=False, name="centroids")
        self.leaf_starts = tf.Variable(np.asarray(partition["starts"], np.int64), trainable=False, name="leaf_starts")
        self.leaf_sizes = tf.Variable(np.asarray(partition["sizes"], np.int64), trainable=False, name="leaf_sizes")
        self.num_leaves = len(partition["sizes"])
        self.leaves_to_search = int(min(leaves_to_search, self.num_leaves))

    def _search_rows(self, queries, k, leaves_to_search=None):
        probe = tf.minimum(tf.cast(self.leaves_to_search if leaves_to_search is None else leaves_to_search, tf.int32), self.num_leaves)

        def one_query(query):
            _, leaves = tf.math.top_k(tf.linalg.matvec(self.centroids, query), k=probe)
            starts = tf.gather(self.leaf_starts, leaves)
            rows = tf.ragged.range(starts, starts + tf.gather(self.leaf_sizes, leaves)).flat_values
            scores = tf.linalg.matvec(tf.gather(self.embeddings, rows), query)
            scores = tf.concat([scores, tf.fill([k], tf.constant(NEG_INF))], axis=0)
            rows = tf.concat([tf.cast(rows, tf.int32), tf.zeros([k], tf.int32)], axis=0)
            top = tf.math.top_k(scores, k=k)
            return top.values, tf.gather(rows, top.indices)

        return tf.map_fn(one_query, queries, fn_output_signature=(tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.int32)))

    def describe(self) -> dict:
        return {**super().describe(), "params": {"num_leaves": self.num_leaves, "num_leaves_to_search": self.leaves_to_search}}


def build_ivf_partition(embeddings, num_leaves: int, iterations: int = 10, sample_size: int = 100_000, seed: int = 0) -> dict:
    """k-means (squared L2) on a sample, then every item assigned to its nearest centroid.

    Returns ``{"centroids" [L, D], "order" (item rows sorted by leaf), "starts", "sizes"}``.
    """
    emb = np.asarray(embeddings, np.float32)
    n = len(emb)
    num_leaves = int(max(1, min(num_leaves, n)))
    rng = np.random.default_rng(seed)
    sample = emb[rng.choice(n, size=min(n, max(sample_size, num_leaves)), replace=False)]
    centroids = sample[rng.choice(len(sample), size=num_leaves, replace=False)].copy()
    for _ in range(iterations):
        assign = _nearest(sample, centroids)
        order = np.argsort(assign, kind="stable")
        counts = np.bincount(assign, minlength=num_leaves)
        filled = counts > 0  # empty leaves keep their old centroid
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[filled]
        centroids[filled] = np.add.reduceat(sample[order], starts, axis=0) / counts[filled, None]
    assign = _nearest(emb, centroids)
    order = np.argsort(assign, kind="stable")
    sizes = np.bincount(assign, minlength=num_leaves)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return {"centroids": centroids, "order": order, "starts": starts, "sizes": sizes}


def _nearest(points, centroids, chunk: int = 8192):
    """Index of the nearest centroid (squared L2) of each point, in chunks to bound memory."""
    half_norms = 0.5 * np.sum(centroids * centroids, axis=1)
    out = np.empty(len(points), np.int64)
    for start in range(0, len(points), chunk):
        block = points[start:start + chunk]
        out[start:start + chunk] = np.argmax(block @ centroids.T - half_norms, axis=1)
    return out


def build_index(kind: str, query_model, candidate_ids, candidate_embeddings, k: int, scann_params: dict | None = None, **kwargs) -> TopKIndex:
    """Build an index of ``kind`` ('scann', 'brute_force' or 'ivf') with depth ``k``.

    ``scann_params``: for 'scann' see :class:`ScaNNIndex` (an optional ``searcher`` may be
    passed in ``kwargs``); for 'ivf' ``{"num_leaves", "num_leaves_to_search"}`` (an optional
    prebuilt ``partition`` in ``kwargs``). The index is called once so it is built before saving.
    """
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {INDEX_KINDS}")
    params = dict(scann_params or {})
    if kind == "brute_force":
        index = BruteForceIndex(candidate_ids, candidate_embeddings, k, query_model)
    elif kind == "scann":
        if not params and kwargs.get("searcher") is None:
            raise ValueError("a ScaNN index needs scann_params (tune them with scann_tuning.tune_scann)")
        index = ScaNNIndex(candidate_ids, candidate_embeddings, k, params, query_model, searcher=kwargs.get("searcher"))
    else:
        partition = kwargs.get("partition") or build_ivf_partition(candidate_embeddings, params.get("num_leaves", default_num_leaves(len(candidate_ids))))
        index = IVFIndex(candidate_ids, candidate_embeddings, k, partition, params.get("num_leaves_to_search", 1), query_model)
    dim = int(np.asarray(candidate_embeddings).shape[1])
    index.search(tf.zeros([1, dim]), 1)  # build the graph once before saving
    return index


def default_num_leaves(n: int) -> int:
    """About 2 * sqrt(n) leaves (2000 for 1M items), at least 1 and at most n."""
    return int(max(1, min(n, round(2 * np.sqrt(n)))))


def _as_matrix(embeddings, rows: int) -> np.ndarray:
    emb = np.asarray(embeddings, np.float32)
    if emb.ndim != 2 or emb.shape[0] != rows:
        raise ValueError(f"candidate_embeddings must be [{rows}, D] (one row per candidate id), got {emb.shape}")
    return emb
