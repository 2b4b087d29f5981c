"""The three servables, saved in TF Serving's layout with explicit named signatures.

All signatures take raw values (string ids, text, numbers) and return named outputs.

retrieval    ``serving_default``: query features -> ``ids``, ``scores`` (top ``default_k``)
             ``retrieve``: query features + ``k`` (int32 [B], one per row, or [1] for all;
             1..depth) + ``exclude_ids`` ([B, E] strings, "" pads) -> ``ids``, ``scores``
             [B, max(k)] (a row's slots beyond its k: id "", score -inf). Every input has the
             batch dimension first, so REST "instances" (row) requests work too.
             ``classify``: ``inputs`` (serialized tf.train.Example) -> ``classes`` (ids),
             ``scores`` - method tensorflow/serving/classify, for TF Serving's Classify API
ranking      ``serving_default``: user features + scenario + ``item_ids`` [B, N] -> one
             [B, N] output per task; ``regress_<task>``: ``inputs`` (Examples with one
             ``item_id``) -> ``outputs`` [B] - method tensorflow/serving/regress
recommender  ``serving_default``: query features -> top ``default_k``;
             ``recommend``: + ``k`` + ``exclude_ids``; ``classify``: Examples -> top ids.
             Outputs ``ids``, ``scores``, ``<task>`` per-task scores, and
             ``because_ids`` / ``because_scores``: for each recommendation the history item
             most similar to it by text embedding ("" when the history is empty).

The models are generic callables: ``query_model(features) -> [B, D]``,
``ranking_model(features with item_ids [B, N]) -> {task: [B, N]}``. Each export writes a
version via :func:`layout.write_version`, then audits its ops and writes the metadata JSON
into the version before it is renamed into place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_multiscene.export import layout, op_audit
from tfrs_multiscene.export import metadata as metadata_lib
from tfrs_multiscene.export.index import TopKIndex
from tfrs_multiscene.retrieval.new_items import index_towers, with_offset_column

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PREDICT_METHOD = "tensorflow/serving/predict"
NEG_INF = float("-inf")


# --------------------------------------------------------------------------- specs & examples


def named_specs(spec: Mapping[str, tf.TensorSpec]) -> dict:
    """Copies of ``spec`` whose TensorSpec names equal their keys (= signature input names)."""
    return {key: tf.TensorSpec(s.shape, s.dtype, name=key) for key, s in spec.items()}


def parse_examples(serialized, spec: Mapping[str, tf.TensorSpec]) -> dict:
    """Parse serialized tf.train.Examples into batched features of ``spec``.

    [B] specs are single values; [B, n] specs with fixed n are fixed-length lists; [B, None]
    specs are variable-length lists padded with "" / 0. Missing features get ""/0.
    """
    parse_spec = {}
    for key, s in spec.items():
        default = "" if s.dtype == tf.string else 0
        dtype = s.dtype if s.dtype in (tf.string, tf.float32) else tf.int64
        if s.shape.rank == 1:
            parse_spec[key] = tf.io.FixedLenFeature([], dtype, default_value=default)
        elif s.shape.rank == 2 and s.shape[1] is not None:
            parse_spec[key] = tf.io.FixedLenFeature([s.shape[1]], dtype, default_value=[default] * s.shape[1])
        elif s.shape.rank == 2:
            parse_spec[key] = tf.io.VarLenFeature(dtype)
        else:
            raise ValueError(f"feature {key!r}: only [B] and [B, n] features can come from tf.train.Example, got {s.shape}")
    parsed = tf.io.parse_example(serialized, parse_spec)
    out = {}
    for key, s in spec.items():
        value = parsed[key]
        if isinstance(value, tf.SparseTensor):
            value = tf.sparse.to_dense(value, default_value="" if s.dtype == tf.string else tf.zeros([], value.dtype))
        out[key] = tf.cast(value, s.dtype) if value.dtype != s.dtype else value
    return out


def make_examples(rows: list[dict]) -> list[bytes]:
    """Serialize dicts of Python values (str/bytes, int, float or lists of them) as Examples."""
    def feature(value):
        values = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
        values = list(values)
        if values and isinstance(values[0], (str, bytes)):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v for v in values]))
        if values and isinstance(values[0], (float, np.floating)):
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    return [tf.train.Example(features=tf.train.Features(feature={k: feature(v) for k, v in row.items()})).SerializeToString() for row in rows]


# --------------------------------------------------------------------------- saving


def save_servable(module: tf.Module, signatures: dict, model_base, name: str, record: dict,
                  methods: dict | None = None, version: int | None = None, warmup: Mapping | None = None) -> Path:
    """Save ``module`` with ``signatures`` as a new version of ``name``; audit its ops and
    write the metadata JSON (and, given ``warmup`` values, TF Serving's warm-up requests:
    :func:`write_warmup_requests`) inside the version before it becomes visible. Returns its path."""

    def save_fn(tmp: Path):
        options = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])
        tf.saved_model.save(module, str(tmp), signatures=signatures, options=options)
        if methods:
            set_signature_methods(tmp, methods)
        audit = op_audit.audit(tmp)
        described = describe_signatures(tmp)
        if warmup is not None:
            write_warmup_requests(tmp, name, described, warmup)
        metadata_lib.write_metadata(tmp, {**record, "servable": name, "op_audit": audit, "signatures": described})

    return layout.write_version(model_base, name, save_fn, version)


def set_signature_methods(saved_model_dir, methods: Mapping[str, str]) -> None:
    """Set the method_name of signatures (TF2 saves every signature as 'predict'; TF
    Serving's Classify/Regress APIs require the classify/regress method)."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = Path(saved_model_dir) / "saved_model.pb"
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(pb.read_bytes())
    for meta_graph in sm.meta_graphs:
        for sig, method in methods.items():
            if sig not in meta_graph.signature_def:
                raise KeyError(f"no signature {sig!r} to mark as {method}")
            meta_graph.signature_def[sig].method_name = method
    pb.write_bytes(sm.SerializeToString())


def describe_signatures(saved_model_dir) -> dict:
    """``{signature: {"method", "inputs": {name: [dtype, shape]}, "outputs": {...}}}``."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())

    def tensors(infos):
        return {key: [tf.as_dtype(info.dtype).name, [d.size for d in info.tensor_shape.dim]] for key, info in sorted(infos.items())}

    return {name: {"method": sig.method_name, "inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs)}
            for name, sig in sorted(sm.meta_graphs[0].signature_def.items()) if not name.startswith("__")}


#: Where TF Serving reads the requests it replays on a version before serving it.
WARMUP_RELPATH = Path("assets.extra") / "tf_serving_warmup_requests"


def write_warmup_requests(saved_model_dir, model_name: str, described: Mapping, values: Mapping) -> Path:
    """TF Serving's warm-up file: one ``PredictionLog`` (a one-row ``PredictRequest``) per predict
    signature of ``described`` (:func:`describe_signatures`), the inputs taken from ``values``
    (``{input name: one row}``, e.g. a real user, scenario and history) and otherwise "" / 1.
    TF Serving (and this package's server) replays them when it loads the version, so its first
    real requests do not pay the graph's first run."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = Path(saved_model_dir) / WARMUP_RELPATH
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, info in described.items():
            if info["method"] != PREDICT_METHOD:
                continue
            request = predict_pb2.PredictRequest()
            request.model_spec.name, request.model_spec.signature_name = model_name, signature
            for key, (dtype, shape) in info["inputs"].items():
                np_dtype = object if dtype == "string" else tf.as_dtype(dtype).as_numpy_dtype
                if key in values:
                    array = np.asarray(values[key], dtype=np_dtype)
                else:
                    array = np.full([1] + [d if d > 0 else 1 for d in shape[1:]], "" if dtype == "string" else 1, np_dtype)
                request.inputs[key].CopyFrom(tf.make_tensor_proto(array, dtype=tf.as_dtype(dtype)))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


# --------------------------------------------------------------------------- building blocks


class _Retriever(tf.Module):
    """Query model + index with a checked per-request k and exclusions."""

    def __init__(self, query_model: Callable, index: TopKIndex):
        super().__init__()
        self.query_model = query_model
        self.index = index

    def top_k(self, features, k, exclude_ids):
        """(scores, ids) [B, max(k)]; row b keeps its best k[b] (later slots: -inf / "")."""
        k, k_max = checked_k(k, self.index.depth, "the index depth")
        embeddings = self.query_model(features)
        scores, ids = self.index.search_excluding(embeddings, k_max, exclude_ids)
        return mask_beyond_k(scores, ids, k)


def checked_k(k, limit: int, what: str):
    """``k`` (scalar, [1] or one per row [B]) as a vector and its maximum, asserting 1 <= k <= limit."""
    k = tf.reshape(tf.cast(k, tf.int32), [-1])
    checks = [tf.debugging.assert_greater_equal(tf.reduce_min(k), 1, message="k must be >= 1"),
              tf.debugging.assert_less_equal(tf.reduce_max(k), limit, message=f"k must be <= {what} {limit}")]
    with tf.control_dependencies(checks):
        return tf.identity(k), tf.reduce_max(k)


def mask_beyond_k(scores, ids, k):
    """Blank the slots at or beyond each row's k (k broadcasts: [B] or [1])."""
    keep = tf.range(tf.shape(scores)[1])[None, :] < k[:, None]
    return tf.where(keep, scores, NEG_INF), tf.where(keep, ids, "")


#: The inputs of the minimal signatures (``recommend_user``, ``retrieve_user``, ``rank_user``).
MINIMAL_SPEC = {"user_id": tf.TensorSpec([None], tf.string), "scenario": tf.TensorSpec([None], tf.string)}


class KnownUsers(tf.Module):
    """What an export knows of each user, so that a request may name only the user.

    Holds each known user's most recent positives (the ``history`` the query tower reads:
    int32 rows [U, H] of ``item_ids``, -1 padded) and the user's columns (e.g.
    ``age_bucket``). :meth:`complete` turns ``{"user_id": [B], "scenario": [B]}`` into every
    input of a full signature spec: the history and columns from these tables ("" for a user
    the export does not know: the towers' out-of-vocabulary rows), ``timestamp`` the time of
    the request, any other input "" or 0.

    >>> users = KnownUsers(["u1"], np.array([[0, -1]]), ["i1", "i2"], {"age_bucket": np.array(["25-34"])})
    >>> users.complete({"user_id": tf.constant(["u1", "new"]), "scenario": tf.constant(["feed"] * 2)},
    ...                {"history": tf.TensorSpec([None, None], tf.string)})["history"].numpy().tolist()
    [[b'i1', b''], [b'', b'']]
    """

    def __init__(self, user_ids, history_rows, item_ids, columns: Mapping[str, np.ndarray],
                 history_feature: str = "history"):
        super().__init__()
        rows = np.asarray(history_rows, np.int32)
        if rows.ndim != 2 or len(rows) != len(user_ids):
            raise ValueError(f"history_rows must be [{len(user_ids)}, H] item rows, got shape {rows.shape}")
        self.history_feature = history_feature
        self.columns = ColumnLookup(user_ids, columns, name="known_users")
        self.history_rows = tf.Variable(rows, trainable=False, name="history_rows")
        padded_ids = np.concatenate([[""], np.asarray(item_ids).astype(str)]).astype(object)
        self.item_ids = tf.Variable(padded_ids, trainable=False, name="history_item_ids")  # row r -> r + 1

    def history(self, user_ids):
        """[B, H] item ids of each user's most recent positives ("" padded; all "" if unknown)."""
        user_rows = self.columns.table.lookup(user_ids)
        rows = tf.gather(self.history_rows, tf.maximum(user_rows, 0))
        rows = tf.where((user_rows >= 0)[:, None], rows, -1)
        return tf.gather(self.item_ids, rows + 1)

    def complete(self, features: Mapping, spec: Mapping[str, tf.TensorSpec]) -> dict:
        user_ids = features["user_id"]
        batch = tf.shape(user_ids)[0]
        looked_up = self.columns.lookup(user_ids)
        out = {}
        for key, tensor_spec in spec.items():
            if key in features:
                out[key] = features[key]
            elif key == self.history_feature:
                out[key] = self.history(user_ids)
            elif key in looked_up:
                out[key] = tf.cast(looked_up[key], tensor_spec.dtype)
            elif key == "timestamp":
                out[key] = tf.fill([batch], tf.cast(tf.timestamp(), tensor_spec.dtype))
            else:
                shape = tf.concat([[batch], tf.zeros([tensor_spec.shape.rank - 1], tf.int32) + 1], axis=0)
                out[key] = tf.fill(shape, tf.constant("" if tensor_spec.dtype == tf.string else 0, tensor_spec.dtype))
        return out

    @classmethod
    def from_tables(cls, tables, history_length: int, user_columns=(), positive_task=None) -> "KnownUsers":
        """From a training split's ``Tables``: every user of the interactions or the user
        table, with the most recent ``history_length`` positives (as the towers were trained)."""
        from tfrs_multiscene.retrieval import features as F

        item_ids = tables.items["item_id"].astype(str).tolist()
        users = sorted(set(tables.interactions["user_id"].astype(str))
                       | (set(tables.users["user_id"].astype(str)) if tables.users is not None else set()))
        histories = F.UserHistories(F.positive_interactions(tables, positive_task), item_ids, history_length)
        columns = {c: F.column_values(tables.users, "user_id", users, c) for c in user_columns}
        return cls(users, histories.recent(users, history_length), item_ids, columns)


def _no_exclusions(features: dict):
    batch = tf.shape(next(iter(features.values())))[0]
    return tf.fill([batch, 1], "")


def _signature_set(fn: Callable, spec: dict, verb: str, default_k: int, outputs_for_classify: Callable,
                   known_users: "KnownUsers | None" = None):
    """serving_default, <verb> and classify concrete functions around ``fn(features, k, exclude)``;
    with ``known_users`` also ``<verb>_user``: ``user_id``, ``scenario``, ``k`` only, the rest
    filled from what the export knows of the user, the user's history excluded."""
    specs = named_specs(spec)
    k_spec = tf.TensorSpec([None], tf.int32, name="k")  # one k per row ([1]: the same for all rows)
    excl_spec = tf.TensorSpec([None, None], tf.string, name="exclude_ids")
    signatures = {}
    if known_users is not None:
        @tf.function
        def minimal(features, k):
            full = known_users.complete(features, spec)
            return fn(full, k, full[known_users.history_feature])

        signatures[f"{verb}_user"] = minimal.get_concrete_function(named_specs(MINIMAL_SPEC), k_spec)

    @tf.function
    def default(features):
        return fn(features, default_k, _no_exclusions(features))

    @tf.function
    def full(features, k, exclude_ids):
        return fn(features, k, exclude_ids)

    @tf.function
    def classify(inputs):
        features = parse_examples(inputs, spec)
        return outputs_for_classify(fn(features, default_k, _no_exclusions(features)))

    return {
        "serving_default": default.get_concrete_function(specs),
        verb: full.get_concrete_function(specs, k_spec, excl_spec),
        "classify": classify.get_concrete_function(tf.TensorSpec([None], tf.string, name="inputs")),
        **signatures,
    }


def _check_index(index, default_k: int):
    if not isinstance(index, TopKIndex):
        raise TypeError(f"index must be a tfrs_multiscene.export.index.TopKIndex, got {type(index).__name__}")
    if not 1 <= default_k <= index.depth:
        raise ValueError(f"default_k={default_k} must be between 1 and the index depth {index.depth}")


# --------------------------------------------------------------------------- retrieval


def export_retrieval(model_base, query_model: Callable, index: TopKIndex, query_spec: Mapping[str, tf.TensorSpec], *,
                     name: str = "retrieval", default_k: int = 10, version: int | None = None, metadata: dict | None = None,
                     known_users: KnownUsers | None = None, warmup: Mapping | None = None) -> Path:
    """Export query features -> top-K ids/scores through ``index``. Returns the version path."""
    _check_index(index, default_k)
    module = _Retriever(query_model, index)

    def fn(features, k, exclude_ids):
        scores, ids = module.top_k(features, k, exclude_ids)
        return {"ids": ids, "scores": scores}

    signatures = _signature_set(fn, dict(query_spec), "retrieve", default_k, lambda out: {"classes": out["ids"], "scores": out["scores"]},
                                known_users)
    module.known_users = known_users
    record = {"kind": "retrieval", "index": index.describe(), "default_k": default_k, **(metadata or {})}
    return save_servable(module, signatures, model_base, name, record, {"classify": CLASSIFY_METHOD}, version, warmup)


# --------------------------------------------------------------------------- ranking


class _Ranker(tf.Module):
    def __init__(self, ranking_model: Callable, tasks):
        super().__init__()
        self.ranking_model = ranking_model
        self.tasks = list(tasks)

    def scores(self, features) -> dict:
        out = self.ranking_model(features)
        missing = [t for t in self.tasks if t not in out]
        if missing:
            raise ValueError(f"the ranking model returned {sorted(out)}, missing tasks {missing}")
        return {t: tf.cast(out[t], tf.float32) for t in self.tasks}


def export_ranking(model_base, ranking_model: Callable, feature_spec: Mapping[str, tf.TensorSpec], tasks, *,
                   name: str = "ranking", item_feature: str = "item_ids", version: int | None = None,
                   metadata: dict | None = None, known_users: KnownUsers | None = None, warmup: Mapping | None = None) -> Path:
    """Export (user features, scenario, ``item_feature`` [B, N]) -> one [B, N] score per task,
    plus ``regress_<task>`` Example signatures (one item per Example, feature ``item_id``);
    with ``known_users`` also ``rank_user``: ``user_id``, ``scenario``, ``item_feature`` only."""
    spec = dict(feature_spec)
    if item_feature not in spec or spec[item_feature].shape.rank != 2:
        raise ValueError(f"feature_spec must hold {item_feature!r} as a [B, N] tensor spec")
    module = _Ranker(ranking_model, tasks)
    example_spec = {k: v for k, v in spec.items() if k != item_feature}
    example_spec["item_id"] = tf.TensorSpec([None], spec[item_feature].dtype)

    @tf.function
    def rank(features):
        return module.scores(features)

    signatures = {"serving_default": rank.get_concrete_function(named_specs(spec))}
    if known_users is not None:
        module.known_users = known_users

        @tf.function
        def rank_user(features):
            return module.scores(known_users.complete(features, spec))

        signatures["rank_user"] = rank_user.get_concrete_function(named_specs({**MINIMAL_SPEC, item_feature: spec[item_feature]}))
    methods = {}
    for task in module.tasks:
        @tf.function
        def regress(inputs, task=task):
            features = parse_examples(inputs, example_spec)
            features[item_feature] = features.pop("item_id")[:, None]
            return {"outputs": module.scores(features)[task][:, 0]}

        signatures[f"regress_{task}"] = regress.get_concrete_function(tf.TensorSpec([None], tf.string, name="inputs"))
        methods[f"regress_{task}"] = REGRESS_METHOD
    record = {"kind": "ranking", "tasks": module.tasks, **(metadata or {})}
    return save_servable(module, signatures, model_base, name, record, methods, version, warmup)


# --------------------------------------------------------------------------- recommender


class _Explainer(tf.Module):
    """'Because you liked ...': the history item nearest (cosine of text embeddings) to each item."""

    def __init__(self, item_ids, text_embeddings):
        super().__init__()
        emb = np.asarray(text_embeddings, np.float32)
        ids = np.asarray(item_ids).astype(str)
        if emb.ndim != 2 or len(emb) != len(ids):
            raise ValueError(f"item text embeddings must be [{len(ids)}, T], got {emb.shape}")
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        self.text_embeddings = tf.Variable(emb, trainable=False, name="item_text_embeddings")
        init = tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.range(len(ids), dtype=tf.int64))
        self.table = tf.lookup.StaticHashTable(init, default_value=-1)

    def explain(self, item_ids, history):
        item_rows, hist_rows = self.table.lookup(item_ids), self.table.lookup(history)
        item_emb = tf.gather(self.text_embeddings, tf.maximum(item_rows, 0))
        hist_emb = tf.gather(self.text_embeddings, tf.maximum(hist_rows, 0))
        sims = tf.einsum("bkt,bht->bkh", item_emb, hist_emb)
        valid = (hist_rows >= 0)[:, None, :] & (item_rows >= 0)[:, :, None]
        sims = tf.where(valid, sims, NEG_INF)
        best = tf.argmax(tf.concat([sims, tf.fill(tf.shape(sims[:, :, :1]), NEG_INF)], axis=2), axis=2, output_type=tf.int32)
        best_sim = tf.reduce_max(sims, axis=2)
        padded_hist = tf.concat([history, tf.fill([tf.shape(history)[0], 1], "")], axis=1)
        because = tf.gather(padded_hist, best, batch_dims=1)
        has = tf.math.is_finite(best_sim)
        return tf.where(has, because, ""), tf.where(has, best_sim, 0.0)


class _Recommender(tf.Module):
    def __init__(self, retriever: _Retriever, ranker: _Ranker, explainer: _Explainer, candidates: int, weights: dict,
                 history_feature: str, item_feature: str):
        super().__init__()
        self.retriever, self.ranker, self.explainer = retriever, ranker, explainer
        self.candidates, self.weights = candidates, dict(weights)
        self.history_feature, self.item_feature = history_feature, item_feature

    def recommend(self, features, k, exclude_ids):
        k, k_max = checked_k(k, self.candidates, "the ranked candidates")
        _, cand_ids = self.retriever.top_k(features, self.candidates, exclude_ids)
        task_scores = self.ranker.scores({**features, self.item_feature: cand_ids})
        score = tf.add_n([w * task_scores[t] for t, w in self.weights.items()])
        score = tf.where(tf.equal(cand_ids, ""), NEG_INF, score)
        top = tf.math.top_k(score, k=k_max)
        scores, ids = mask_beyond_k(top.values, tf.gather(cand_ids, top.indices, batch_dims=1), k)
        ids = tf.where(tf.math.is_inf(scores), "", ids)
        because_ids, because_scores = self.explainer.explain(ids, features[self.history_feature])
        out = {"ids": ids, "scores": scores, "because_ids": because_ids, "because_scores": because_scores}
        out.update({t: tf.where(tf.equal(ids, ""), 0.0, tf.gather(s, top.indices, batch_dims=1)) for t, s in task_scores.items()})
        return out


def export_recommender(model_base, query_model: Callable, index: TopKIndex, ranking_model: Callable,
                       query_spec: Mapping[str, tf.TensorSpec], tasks, item_ids, item_text_embeddings, *,
                       name: str = "recommender", history_feature: str = "history", item_feature: str = "item_ids",
                       candidates: int = 200, default_k: int = 10, score_weights: dict | None = None,
                       version: int | None = None, metadata: dict | None = None, known_users: KnownUsers | None = None,
                       warmup: Mapping | None = None) -> Path:
    """Export query -> retrieval top-``candidates`` -> ranking in the request's scenario ->
    top-K with per-task scores and a 'because you liked' history item per recommendation.

    ``query_spec`` holds every raw input both models read (incl. scenario and
    ``history_feature`` [B, H] item ids). The final score is ``sum(w * task score)`` over
    ``score_weights`` (default: the first task)."""
    tasks = list(tasks)
    weights = dict(score_weights or {tasks[0]: 1.0})
    unknown = sorted(set(weights) - set(tasks))
    if unknown:
        raise ValueError(f"score_weights name unknown tasks {unknown}; tasks are {tasks}")
    if history_feature not in query_spec or query_spec[history_feature].shape.rank != 2:
        raise ValueError(f"query_spec must hold {history_feature!r} (recent item ids) as a [B, H] string spec")
    candidates = int(min(candidates, index.depth))
    _check_index(index, min(default_k, candidates))
    module = _Recommender(_Retriever(query_model, index), _Ranker(ranking_model, tasks), _Explainer(item_ids, item_text_embeddings),
                          candidates, weights, history_feature, item_feature)
    signatures = _signature_set(module.recommend, dict(query_spec), "recommend", min(default_k, candidates),
                                lambda out: {"classes": out["ids"], "scores": out["scores"]}, known_users)
    module.known_users = known_users
    record = {"kind": "recommender", "index": index.describe(), "tasks": tasks, "score_weights": weights,
              "candidates": candidates, "default_k": default_k, **(metadata or {})}
    return save_servable(module, signatures, model_base, name, record, {"classify": CLASSIFY_METHOD}, version, warmup)


# --------------------------------------------------------------------------- adapters for this project's models


class ColumnLookup(tf.Module):
    """A table inside the graph: string id -> row -> column values ([n] or [n, d] arrays).

    Numeric columns are stored as float32. Unknown ids get "" (strings), NaN (numbers: the
    ranking encoder maps non-finite values to the mean) or zeros (vectors such as
    ``candidate_embedding``: what training gives an item it does not know)."""

    def __init__(self, ids, columns: Mapping[str, np.ndarray], name: str | None = None):
        super().__init__(name=name)
        ids = np.asarray(ids).astype(str)
        init = tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.range(len(ids), dtype=tf.int64))
        self.table = tf.lookup.StaticHashTable(init, default_value=-1)
        self.columns = {}
        for key, values in columns.items():
            values = np.asarray(values)
            if values.dtype.kind in "OUS":
                values = values.astype(str).astype(object)
            else:  # numbers: float32 (the ranking model's numeric inputs), NaN for missing
                values = values.astype(np.float32)
            if len(values) != len(ids):
                raise ValueError(f"column {key!r} has {len(values)} rows for {len(ids)} ids")
            self.columns[key] = tf.Variable(values, trainable=False, name=f"col_{key}")

    def lookup(self, ids) -> dict:
        rows = self.table.lookup(ids)
        known = rows >= 0
        out = {}
        for key, column in self.columns.items():
            values = tf.gather(column, tf.maximum(rows, 0))
            mask = known if values.shape.rank == known.shape.rank else known[..., None]
            if column.dtype == tf.string:
                default = tf.constant("")
            else:
                default = tf.constant(float("nan") if column.shape.rank == 1 else 0.0)
            out[key] = tf.where(mask, values, default)
        return out


class PointwiseRanker(tf.Module):
    """A per-example ranking model (every input [B], e.g. ``ranking.RankingModel``) as a list
    ranker: request features [B] + ``item_ids`` [B, N] -> ``{task: [B, N]}``.

    Item-side inputs come from ``item_columns`` (aligned with ``item_ids``: categorical,
    numeric, title, and extras such as ``candidate_embedding``), user-side inputs from
    ``user_columns`` (aligned with ``user_ids``) when given, else from the request;
    ``query_embedding`` (when the model reads it) from ``query_model(request)``;
    ``history_affinity`` (when the model reads it) as the dot product of the user's history
    vector and the item's text vector from ``history`` (a ``ranking.history.UserHistoryAffinity``;
    0 for a user or item it does not know).
    """

    def __init__(self, model, input_signature: Mapping[str, tf.TensorSpec], tasks, item_ids, item_columns: Mapping,
                 user_ids=None, user_columns: Mapping | None = None, query_model=None, query_spec: Mapping | None = None,
                 item_feature: str = "item_ids", id_input: str = "item_id", user_key: str = "user_id", history=None):
        super().__init__()
        from tfrs_multiscene.ranking.history import HISTORY_AFFINITY

        self.model, self.tasks, self.item_feature, self.id_input, self.user_key = model, list(tasks), item_feature, id_input, user_key
        signature = dict(input_signature)
        self.items = ColumnLookup(item_ids, {k: v for k, v in item_columns.items() if k in signature}, name="items")
        self.users = ColumnLookup(user_ids, {k: v for k, v in user_columns.items() if k in signature}, name="users") \
            if user_columns else None
        from_tables = set(self.items.columns) | set(self.users.columns if self.users else ()) | {id_input}
        self.query_model = query_model if "query_embedding" in signature else None
        if "query_embedding" in signature:
            if query_model is None:
                raise ValueError("the ranking model reads query_embedding: pass the retrieval query_model")
            from_tables.add("query_embedding")
        self.history_input = HISTORY_AFFINITY if HISTORY_AFFINITY in signature else None
        if self.history_input:
            if history is None:
                raise ValueError(f"the ranking model reads {HISTORY_AFFINITY}: pass its UserHistoryAffinity")
            self.history_users = ColumnLookup(history.user_ids, {"vector": history.user_vectors()}, name="history_users")
            self.history_items = ColumnLookup(history.item_ids, {"vector": history.item_vectors}, name="history_items")
            from_tables.add(HISTORY_AFFINITY)
        request = {k: s for k, s in signature.items() if k not in from_tables}
        if self.users is not None or self.history_input:
            request.setdefault(user_key, tf.TensorSpec([None], tf.string))
        if self.query_model is not None:
            request.update(query_spec or {})
        request[item_feature] = tf.TensorSpec([None, None], tf.string)
        self.request_spec = request
        self.signature_names = list(signature)

    def __call__(self, features) -> dict:
        item_ids = features[self.item_feature]
        n = tf.shape(item_ids)[1]
        flat_ids = tf.reshape(item_ids, [-1])
        inputs = {self.id_input: flat_ids, **self.items.lookup(flat_ids)}
        user_side = {k: v for k, v in features.items() if k != self.item_feature}
        if self.users is not None:
            user_side.update(self.users.lookup(features[self.user_key]))
        if self.query_model is not None:
            user_side["query_embedding"] = self.query_model(features)
        if self.history_input:
            user_vector = tf.repeat(self.history_users.lookup(features[self.user_key])["vector"], n, axis=0)
            item_vector = self.history_items.lookup(flat_ids)["vector"]
            affinity = tf.reduce_sum(user_vector * item_vector, axis=-1, keepdims=True)
            inputs[self.history_input] = tf.where(tf.math.is_finite(affinity), affinity, 0.0)  # unknown: NaN rows
        for key in self.signature_names:
            if key not in inputs:
                inputs[key] = tf.repeat(user_side[key], n, axis=0)
        out = self.model(inputs, training=False)
        batch = tf.shape(item_ids)[0]
        return {t: tf.reshape(out[t], [batch, n]) for t in self.tasks}


def export_from_models(model_base, retrieval_model, ranking_model, items, users, cfg, *, sample_queries=None,
                       metadata: dict | None = None, name_prefix: str = "", history=None,
                       known_users: KnownUsers | None = None, warmup: Mapping | None = None) -> dict:
    """Export this project's trained models: ``retrieval``, ``ranking``, ``recommender`` (and
    ``<name>_stock`` variants with a stock-op index when ``cfg.index == "scann"`` and
    ``cfg.stock_index != "none"``). Returns ``{servable name: version path}``.

    ``retrieval_model``: ``retrieval.RetrievalModel``; ``ranking_model``: ``ranking.RankingModel``;
    ``items`` / ``users``: the item and user tables (DataFrames; ``users`` may be None);
    ``cfg``: :class:`~tfrs_multiscene.config.ExportConfig`; ``sample_queries``: query-tower
    embeddings of real requests for index tuning (default: a sample of item embeddings);
    ``history``: the ``UserHistoryAffinity`` the ranking model was trained with (when it reads
    ``history_affinity``: its user and item tables go into the ranking servables);
    ``known_users``: each user's history and columns, which add the minimal signatures
    (``recommend_user``, ``retrieve_user``, ``rank_user``: user id and scenario only);
    ``warmup``: one real request's values (``{input: one row}``) for every version's warm-up file.
    """
    from tfrs_multiscene.export import scann_tuning

    spec = retrieval_model.spec
    item_ids = items["item_id"].astype(str).to_numpy()
    candidates = np.asarray(retrieval_model.candidate_embeddings(items), np.float32)
    # the index ranks by the model's score: with a new-item offset, one extra column
    query_model, index_candidates = index_towers(retrieval_model, items, candidates)
    query_spec = {key: tf.TensorSpec([None], tf.string) for key in ("user_id", "scenario", *spec.user_categorical)}
    query_spec["history"] = tf.TensorSpec([None, None], tf.string)
    if sample_queries is None:
        rng = np.random.default_rng(0)
        sample_queries = candidates[rng.choice(len(candidates), size=min(cfg.tuning_queries, len(candidates)), replace=False)]
    sample_queries = with_offset_column(sample_queries, index_candidates)
    depth = int(min(max(cfg.top_k, cfg.candidates), len(item_ids)))  # the recommender ranks `candidates` of them

    def make_index(kind):
        index, result = scann_tuning.tuned_index(kind, query_model, item_ids, index_candidates, sample_queries, depth,
                                                 k=min(10, depth), target_recall=cfg.target_recall)
        return index, (result.to_dict() if result is not None else None)

    variants = [("", cfg.index)]
    if cfg.index == "scann" and cfg.stock_index != "none":
        variants.append(("_stock", cfg.stock_index))
    item_columns = {c: items[c].to_numpy() for c in items.columns if c != "item_id"}
    # the ranking model's retrieval features come from the feature towers (an ensemble's first member)
    feature_query, feature_candidate = retrieval_model.feature_towers
    item_columns["candidate_embedding"] = (
        candidates if feature_candidate is retrieval_model.candidate_model
        else np.asarray(retrieval_model.candidate_embeddings(items, tower=feature_candidate), np.float32))
    ranker = PointwiseRanker(ranking_model, ranking_model.spec.input_signature(), ranking_model.tasks, item_ids, item_columns,
                             users["user_id"].astype(str).to_numpy() if users is not None else None,
                             {c: users[c].to_numpy() for c in users.columns if c != "user_id"} if users is not None else None,
                             query_model=feature_query, query_spec=query_spec, history=history)
    text_ids, text = (spec.item_table_ids, spec.item_text) if spec.item_text is not None else (item_ids, candidates)
    tasks = [t for t in ranking_model.tasks if t != "rating"] or list(ranking_model.tasks)
    rec_spec = {**query_spec, **{k: v for k, v in ranker.request_spec.items() if k != ranker.item_feature}}
    base_meta = dict(metadata or {})
    paths = {f"{name_prefix}ranking": export_ranking(model_base, ranker, ranker.request_spec, ranker.tasks, name=f"{name_prefix}ranking",
                                                     metadata=base_meta, known_users=known_users, warmup=warmup)}
    for suffix, kind in variants:
        index, tuning = make_index(kind)
        meta = {**base_meta, "metrics": {**base_meta.get("metrics", {}), "index_tuning": tuning}}
        name = f"{name_prefix}retrieval{suffix}"
        paths[name] = export_retrieval(model_base, query_model, index, query_spec, name=name, default_k=min(cfg.default_k, depth),
                                       metadata=meta, known_users=known_users, warmup=warmup)
        name = f"{name_prefix}recommender{suffix}"
        paths[name] = export_recommender(model_base, query_model, index, ranker, rec_spec, tasks, text_ids, text, name=name,
                                         candidates=cfg.candidates, default_k=cfg.default_k, metadata=meta,
                                         known_users=known_users, warmup=warmup)
    return paths
