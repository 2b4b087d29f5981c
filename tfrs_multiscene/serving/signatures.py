"""One loaded SavedModel version and the protocol-independent core that runs its signatures.

This is the part of the local server that both front ends (REST in :mod:`.rest`, gRPC in
:mod:`.grpc_server`) share. They decode their wire format into ``dict[str, np.ndarray]``
and call :meth:`LoadedModel.predict`, :meth:`LoadedModel.classify` or
:meth:`LoadedModel.regress`; validation (unknown signature, missing or extra inputs, dtypes,
shapes, batch size) and execution happen here, once. Errors are :class:`ServingError` with
a canonical status code that each front end maps to its protocol (HTTP status / gRPC code).

Also here: op libraries a SavedModel may need (TensorFlow Text, ScaNN) and the signature
description (``SignatureDef`` protos read from ``saved_model.pb``) used for model metadata.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tfrs_multiscene.export.metadata import read_metadata

# Canonical status codes (names of tensorflow.error.Code / grpc.StatusCode).
OK = "OK"
INVALID_ARGUMENT = "INVALID_ARGUMENT"
NOT_FOUND = "NOT_FOUND"
FAILED_PRECONDITION = "FAILED_PRECONDITION"
RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
UNIMPLEMENTED = "UNIMPLEMENTED"
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL"
UNKNOWN = "UNKNOWN"

# TF Serving's method names and the tensor-name conventions of classify/regress signatures.
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
EXAMPLES_INPUT = "inputs"
CLASSES_OUTPUT = "classes"
SCORES_OUTPUT = "scores"
REGRESS_OUTPUT = "outputs"
DEFAULT_SIGNATURE = "serving_default"
INIT_OP_SIGNATURE = "__saved_model_init_op"


class ServingError(Exception):
    """A request or load failure with a canonical status code (e.g. ``INVALID_ARGUMENT``)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- op libraries

_ops_lock = threading.Lock()
_ops_loaded = False
_scann_error: str | None = None


def ensure_op_libraries() -> None:
    """Register the custom ops exported models may use: TensorFlow Text and ScaNN.

    Both imports are cheap once TensorFlow is loaded, so they run (once) before the first
    load. ScaNN's ops are optional: a failure is remembered and reported only when a graph
    actually needs ``Scann>*`` ops (see :func:`required_custom_ops`).
    """
    global _ops_loaded, _scann_error
    with _ops_lock:
        if _ops_loaded:
            return
        import tensorflow_text  # noqa: F401  (registers the text ops)

        try:
            from scann.scann_ops.py import scann_ops  # noqa: F401  (tf.load_op_library)
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - any import failure is reported later
            _scann_error = f"{type(exc).__name__}: {exc}"
        _ops_loaded = True


def read_saved_model_proto(export_dir):
    """Parse ``export_dir/saved_model.pb`` into a ``SavedModel`` proto (clear error if bad)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(export_dir) / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise ServingError(INVALID_ARGUMENT, f"{path}: not a SavedModel ({type(exc).__name__}: {exc})") from exc
    if not proto.meta_graphs:
        raise ServingError(INVALID_ARGUMENT, f"{path}: SavedModel has no meta graph")
    return proto


def required_custom_ops(saved_model_proto) -> list[str]:
    """Names of ``Scann>*`` ops used anywhere in the graph (including its functions)."""
    ops = set()
    for meta_graph in saved_model_proto.meta_graphs:
        graph = meta_graph.graph_def
        ops.update(n.op for n in graph.node)
        for fn in graph.library.function:
            ops.update(n.op for n in fn.node_def)
    return sorted(op for op in ops if op.startswith("Scann>"))


# --------------------------------------------------------------------------- signature info


class TensorInfo:
    """Name, dtype and shape (``None`` for unknown dims) of one signature input or output."""

    def __init__(self, name: str, dtype, shape: list | None):
        self.name = name
        self.dtype = dtype  # a tf.DType
        self.shape = shape  # None: unknown rank

    @classmethod
    def from_proto(cls, name, info):
        import tensorflow as tf

        dtype = tf.dtypes.as_dtype(info.dtype)
        shape = None if info.tensor_shape.unknown_rank else [
            None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim
        ]
        return cls(name, dtype, shape)

    def shape_str(self) -> str:
        return "?" if self.shape is None else "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"

    def describe(self) -> str:
        return f"{self.dtype.name}{self.shape_str()}"


class SignatureInfo:
    """Inputs, outputs and method name of one named signature."""

    def __init__(self, name: str, signature_def):
        self.name = name
        self.method_name = signature_def.method_name
        self.inputs = {k: TensorInfo.from_proto(k, v) for k, v in sorted(signature_def.inputs.items())}
        self.outputs = {k: TensorInfo.from_proto(k, v) for k, v in sorted(signature_def.outputs.items())}

    def _is_examples_signature(self) -> bool:
        info = self.inputs.get(EXAMPLES_INPUT)
        return len(self.inputs) == 1 and info is not None and info.dtype.name == "string"

    @property
    def can_classify(self) -> bool:
        """True for classify signatures; also for predict signatures shaped like one.

        Models saved with ``tf.saved_model.save`` always get the predict method name, so a
        signature with a single string input ``inputs`` (serialized tf.Example) and outputs
        ``classes`` and/or ``scores`` is accepted too.
        """
        if self.method_name == CLASSIFY_METHOD:
            return True
        return self._is_examples_signature() and bool(set(self.outputs) & {CLASSES_OUTPUT, SCORES_OUTPUT}) \
            and set(self.outputs) <= {CLASSES_OUTPUT, SCORES_OUTPUT}

    @property
    def can_regress(self) -> bool:
        """True for regress signatures, or ``inputs`` (tf.Example) -> ``outputs`` (float)."""
        if self.method_name == REGRESS_METHOD:
            return True
        return self._is_examples_signature() and set(self.outputs) == {REGRESS_OUTPUT}


# --------------------------------------------------------------------------- conversion


def _kind(dtype) -> str:
    """'string', 'bool', 'int', 'float' or 'other' for a tf.DType."""
    if dtype.name == "string":
        return "string"
    if dtype.is_bool:
        return "bool"
    if dtype.is_integer:
        return "int"
    if dtype.is_floating:
        return "float"
    return "other"


def _array_kind(array: np.ndarray) -> str:
    k = array.dtype.kind
    if k in "OSU":
        if k == "O" and array.size and not all(isinstance(v, (bytes, str)) for v in array.flat):
            return "mixed"
        return "string"
    return {"b": "bool", "i": "int", "u": "int", "f": "float"}.get(k, "other")


def coerce_input(name: str, value, info: TensorInfo) -> np.ndarray:
    """Check ``value`` against the signature input ``info`` and cast it to its dtype.

    Strings may be ``str`` (encoded UTF-8) or ``bytes``; integers are accepted for float
    inputs; anything else that does not match raises ``INVALID_ARGUMENT`` naming the input.
    """
    want = _kind(info.dtype)
    try:
        if isinstance(value, np.ndarray):
            array = value
        elif want == "string":  # object dtype: numpy would turn 1 into "1" and mix bytes/str
            array = np.array(value, dtype=object)
            if array.dtype == object and any(isinstance(v, (list, tuple)) for v in array.flat):
                raise ValueError("inner lists of different lengths")
        else:
            array = np.asarray(value)
    except ValueError as exc:
        raise ServingError(INVALID_ARGUMENT, f"input '{name}': ragged or malformed nested lists ({exc})") from exc
    got = _array_kind(array)
    ok = got == want or (want == "float" and got == "int") or (array.size == 0 and got != "other")
    if not ok:
        shown = {"mixed": "values of mixed types", "other": f"dtype {array.dtype}"}.get(got, got)
        raise ServingError(
            INVALID_ARGUMENT,
            f"input '{name}' expects {info.dtype.name} values (signature {info.describe()}), got {shown}",
        )
    if info.shape is not None and (
        array.ndim != len(info.shape) or any(w is not None and w != g for w, g in zip(info.shape, array.shape))
    ):
        raise ServingError(
            INVALID_ARGUMENT,
            f"input '{name}' expects shape {info.shape_str()} ({info.dtype.name}), got shape {list(array.shape)}",
        )
    if want == "string":
        try:
            flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.flat]
        except UnicodeEncodeError as exc:
            raise ServingError(INVALID_ARGUMENT, f"input '{name}': string is not valid Unicode ({exc.reason}); "
                                                 "send binary values as {\"b64\": ...}") from exc
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape)
    np_dtype = info.dtype.as_numpy_dtype
    if want == "int" and array.size:
        limits = np.iinfo(np_dtype)
        if array.min() < limits.min or array.max() > limits.max:
            raise ServingError(INVALID_ARGUMENT, f"input '{name}': value out of range for {info.dtype.name}")
    return array.astype(np_dtype, copy=False)


def encode_example_features(features: Mapping, where: str = "example"):
    """A ``tf.train.Example`` from TF Serving's JSON form ``{feature: value | [values]}``.

    ints -> int64_list, floats -> float_list, strings and ``{"b64": ...}`` -> bytes_list.
    """
    import base64

    import tensorflow as tf

    if not isinstance(features, Mapping):
        raise ServingError(INVALID_ARGUMENT, f"{where}: expected an object of features, got {type(features).__name__}")
    example = tf.train.Example()
    for key, value in features.items():
        values = value if isinstance(value, list) else [value]
        feature = example.features.feature[key]
        decoded = []
        for v in values:
            if isinstance(v, dict) and set(v) == {"b64"}:
                try:
                    v = base64.b64decode(v["b64"], validate=True)
                except Exception as exc:
                    raise ServingError(INVALID_ARGUMENT, f"{where}: feature '{key}': invalid base64") from exc
            decoded.append(v)
        if all(isinstance(v, (str, bytes)) for v in decoded):
            try:
                feature.bytes_list.value.extend(v.encode("utf-8") if isinstance(v, str) else v for v in decoded)
            except UnicodeEncodeError as exc:
                raise ServingError(INVALID_ARGUMENT, f"{where}: feature '{key}' is not valid Unicode ({exc.reason})") from exc
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in decoded):
            feature.int64_list.value.extend(decoded)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in decoded):
            feature.float_list.value.extend(float(v) for v in decoded)
        else:
            raise ServingError(
                INVALID_ARGUMENT,
                f"{where}: feature '{key}' must hold numbers or strings of one kind, got {value!r:.80}",
            )
    return example


# --------------------------------------------------------------------------- loaded model


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """What one request may ask of the server (the server's flags; also in the model metadata).

    ``max_batch``: rows (instances) per request; ``max_list_length``: values per row of a
    list input (``history``, ``exclude_ids``, ``item_ids``), which bounds what one request
    allocates; ``max_request_bytes``: the body (REST) or message (gRPC) size.
    """

    max_batch: int = 1024
    max_list_length: int = 1000
    max_request_bytes: int = 8 << 20

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if int(getattr(self, field.name)) < 1:
                raise ValueError(f"{field.name} must be >= 1, got {getattr(self, field.name)}")


#: Where each kind of servable (``kind`` in its assets.extra record) finds the largest k it serves.
_K_LIMITS = {"recommender": ("candidates", "the ranked candidates"), "retrieval": ("index.depth", "the index depth")}


def k_range(record: Mapping) -> tuple[int, str] | None:
    """``(largest k, what bounds it)`` of a servable's assets.extra record, or None (no k input)."""
    kind = _K_LIMITS.get(record.get("kind"))
    if kind is None:
        return None
    value = record
    for key in kind[0].split("."):
        value = value.get(key, {}) if isinstance(value, Mapping) else {}
    return (int(value), kind[1]) if isinstance(value, (int, float)) and value >= 1 else None


class LoadedModel:
    """One version of one servable: its SavedModel, signatures and request limits."""

    def __init__(self, name: str, version: int, export_dir, limits: RequestLimits = RequestLimits()):
        self.name = name
        self.version = int(version)
        self.export_dir = Path(export_dir)
        self.limits = limits
        self.k_limit = k_range(read_metadata(self.export_dir))
        proto = read_saved_model_proto(self.export_dir)
        meta_graph = proto.meta_graphs[0]
        self.signature_defs = {
            k: v for k, v in meta_graph.signature_def.items() if k != INIT_OP_SIGNATURE
        }
        self.signatures = {k: SignatureInfo(k, v) for k, v in sorted(self.signature_defs.items())}
        self.custom_ops = required_custom_ops(proto)
        ensure_op_libraries()
        if self.custom_ops and _scann_error:
            raise ServingError(
                FAILED_PRECONDITION,
                f"{self.export_dir} uses ScaNN ops {self.custom_ops} but they failed to load: {_scann_error}",
            )
        import tensorflow as tf

        try:
            self._loaded = tf.saved_model.load(str(self.export_dir))
        except Exception as exc:
            raise ServingError(
                INVALID_ARGUMENT, f"failed to load {self.export_dir}: {type(exc).__name__}: {str(exc)[:500]}"
            ) from exc
        self._functions = {k: self._loaded.signatures[k] for k in self.signatures if k in self._loaded.signatures}

    def __repr__(self):
        return f"LoadedModel({self.name!r}, version={self.version})"

    # ---------------------------------------------------------------- metadata

    def signature_def_map(self):
        """``tensorflow.serving.SignatureDefMap`` for GetModelMetadata."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        out = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in self.signature_defs.items():
            out.signature_def[key].CopyFrom(sig)
        return out

    def limits_json(self) -> dict:
        """The per-request limits a client must keep to (served in the model metadata)."""
        out = dataclasses.asdict(self.limits)
        out["list_inputs"] = sorted({k for sig in self.signatures.values() for k in _list_inputs(sig)})
        if self.k_limit is not None:
            out["k"] = {"min": 1, "max": self.k_limit[0], "bounded_by": self.k_limit[1]}
        return out

    def warm_up(self) -> float:
        """Run every signature once before the version serves, so that the first real requests
        do not all pay the graph's first run at once: the version's recorded warm-up requests
        (``assets.extra/tf_serving_warmup_requests``, TF Serving's file, written by the export),
        then neutral one-row inputs ("" / 1) for each signature they do not cover. A request a
        signature refuses still warms it up to the refusing op. Returns the seconds it took."""
        import time

        import tensorflow as tf

        started = time.perf_counter()
        warmed = set()
        for signature, inputs in self._recorded_warmup():
            try:
                self.predict(signature, inputs)
                warmed.add(signature)
            except ServingError:
                pass
        for name, sig in self.signatures.items():
            fn = self._functions.get(name)
            if fn is None or name in warmed:
                continue
            inputs = {}
            for key, info in sig.inputs.items():
                shape = [1] + [d or 1 for d in (info.shape or [None])[1:]]
                value = "" if info.dtype == tf.string else 1
                inputs[key] = tf.fill(shape, tf.constant(value, info.dtype))
            try:
                fn(**inputs)
            except (tf.errors.OpError, ValueError, TypeError):  # neutral values refused: warm enough
                pass
        return time.perf_counter() - started

    def _recorded_warmup(self) -> list:
        """``[(signature, {input: array})]`` of the version's TF Serving warm-up file (predict
        logs; at most 1000 records, TF Serving's own limit), [] without one."""
        import tensorflow as tf

        path = self.export_dir / "assets.extra" / "tf_serving_warmup_requests"
        if not path.is_file():
            return []
        from tensorflow_serving.apis import prediction_log_pb2

        out = []
        for record in tf.data.TFRecordDataset(str(path)).take(1000):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.WhichOneof("log_type") == "predict_log":
                request = log.predict_log.request
                out.append((request.model_spec.signature_name or None,
                            {k: tf.make_ndarray(v) for k, v in request.inputs.items()}))
        return out

    def signature(self, name: str | None) -> SignatureInfo:
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise ServingError(
                INVALID_ARGUMENT,
                f"Serving signature name: \"{name}\" not found in signature def; model {self.name} "
                f"version {self.version} has {sorted(self.signatures)}",
            )
        return self.signatures[name]

    # ---------------------------------------------------------------- running

    def predict(self, signature_name: str | None, inputs: Mapping[str, object],
                output_filter=None) -> tuple[SignatureInfo, dict]:
        """Validate ``inputs`` against the signature, run it and return its named outputs."""
        sig = self.signature(signature_name)
        missing = [k for k in sig.inputs if k not in inputs]
        extra = [k for k in inputs if k not in sig.inputs]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing input(s) {missing}")
            if extra:
                parts.append(f"unknown input(s) {extra}")
            expected = ", ".join(f"{k}: {v.describe()}" for k, v in sig.inputs.items())
            raise ServingError(INVALID_ARGUMENT, f"signature '{sig.name}': {'; '.join(parts)}; expected {{{expected}}}")
        arrays = {k: coerce_input(k, inputs[k], sig.inputs[k]) for k in sig.inputs}
        self._check_batch(arrays, _list_inputs(sig))
        self._check_k(arrays.get("k"))
        outputs = self._run(sig, arrays)
        if output_filter:
            unknown = [k for k in output_filter if k not in outputs]
            if unknown:
                raise ServingError(INVALID_ARGUMENT, f"output_filter names unknown output(s) {unknown}; outputs are {sorted(outputs)}")
            outputs = {k: outputs[k] for k in output_filter}
        return sig, outputs

    def classify(self, signature_name: str | None, examples: list) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Run a classify signature on serialized tf.Examples -> (classes [n, k], scores [n, k])."""
        sig = self.signature(signature_name)
        if not sig.can_classify:
            raise ServingError(
                INVALID_ARGUMENT,
                f"signature '{sig.name}' is not a classification signature (needs one string input "
                f"'{EXAMPLES_INPUT}' and outputs '{CLASSES_OUTPUT}'/'{SCORES_OUTPUT}', or method {CLASSIFY_METHOD})",
            )
        outputs = self._run_examples(sig, examples)
        classes = outputs.get(CLASSES_OUTPUT)
        scores = outputs.get(SCORES_OUTPUT)
        for name, arr in ((CLASSES_OUTPUT, classes), (SCORES_OUTPUT, scores)):
            if arr is not None and (arr.ndim != 2 or arr.shape[0] != len(examples)):
                raise ServingError(INVALID_ARGUMENT, f"classification output '{name}' must have shape [{len(examples)}, k], got {list(arr.shape)}")
        return classes, scores

    def regress(self, signature_name: str | None, examples: list) -> np.ndarray:
        """Run a regress signature on serialized tf.Examples -> values [n]."""
        sig = self.signature(signature_name)
        if not sig.can_regress:
            raise ServingError(
                INVALID_ARGUMENT,
                f"signature '{sig.name}' is not a regression signature (needs one string input "
                f"'{EXAMPLES_INPUT}' and output '{REGRESS_OUTPUT}', or method {REGRESS_METHOD})",
            )
        values = self._run_examples(sig, examples)[REGRESS_OUTPUT]
        values = values.reshape(len(examples), -1) if values.size == len(examples) else values
        if values.ndim != 2 or values.shape != (len(examples), 1):
            raise ServingError(INVALID_ARGUMENT, f"regression output must hold one value per example, got shape {list(values.shape)}")
        return values[:, 0]

    def _run_examples(self, sig: SignatureInfo, examples: list) -> dict:
        if not examples:
            raise ServingError(INVALID_ARGUMENT, "request has no examples")
        arrays = {EXAMPLES_INPUT: coerce_input(EXAMPLES_INPUT, np.asarray(examples, dtype=object), sig.inputs[EXAMPLES_INPUT])}
        self._check_batch(arrays)
        return self._run(sig, arrays)

    def _check_batch(self, arrays: Mapping[str, np.ndarray], list_inputs=()) -> None:
        """Batch sizes and list lengths within the limits, batch sizes alike
        (``BROADCAST_INPUTS`` may have a single row for the whole batch; an empty batch is
        served, as TF Serving does)."""
        rows = {name: int(array.shape[0]) for name, array in arrays.items() if array.ndim}
        for name, n in rows.items():
            if n > self.limits.max_batch:
                raise ServingError(INVALID_ARGUMENT, f"input '{name}' has batch size {n}, more than the maximum "
                                                     f"{self.limits.max_batch} (the server's --max-batch)")
        for name in list_inputs:
            array = arrays[name]
            if array.shape[1] > self.limits.max_list_length:
                raise ServingError(INVALID_ARGUMENT, f"input '{name}' has {array.shape[1]} values per row, more than the "
                                                     f"maximum {self.limits.max_list_length} (the server's --max-list-length)")
        sizes = {n for name, n in rows.items() if not (name in BROADCAST_INPUTS and n == 1)}
        if len(sizes) > 1:
            detail = ", ".join(f"{name}: {n}" for name, n in sorted(rows.items()))
            raise ServingError(INVALID_ARGUMENT, f"inputs disagree on the batch size ({detail}); every input needs "
                                                 f"one row per example ({', '.join(BROADCAST_INPUTS)}: one row may serve all)")

    def _check_k(self, k: np.ndarray | None) -> None:
        """``k`` within 1 .. the servable's depth, refused before the graph runs."""
        if k is None or self.k_limit is None or not k.size:
            return
        limit, what = self.k_limit
        bad = k[(k < 1) | (k > limit)]
        if bad.size:
            raise ServingError(INVALID_ARGUMENT, f"input 'k' must be between 1 and {limit} ({what}); got {int(bad[0])}")

    def _run(self, sig: SignatureInfo, arrays: Mapping[str, np.ndarray]) -> dict:
        import tensorflow as tf

        fn = self._functions.get(sig.name)
        if fn is None:
            raise ServingError(FAILED_PRECONDITION, f"signature '{sig.name}' is described but not loadable")
        tensors = {k: tf.constant(v, dtype=sig.inputs[k].dtype) for k, v in arrays.items()}
        try:
            result = fn(**tensors)
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError, ValueError, TypeError) as exc:
            raise ServingError(INVALID_ARGUMENT, f"signature '{sig.name}' rejected the input: {op_message(exc)}") from exc
        except tf.errors.OpError as exc:
            raise ServingError(INTERNAL, f"signature '{sig.name}' failed: {op_message(exc)}") from exc
        return {k: v.numpy() for k, v in result.items()}


def _list_inputs(sig: SignatureInfo) -> list[str]:
    """Inputs of shape [batch, any length] (lists per row, e.g. ``history``)."""
    return [k for k, v in sig.inputs.items() if v.shape is not None and len(v.shape) == 2 and v.shape[1] is None]


#: Inputs of this package's servables that may hold one row for a whole batch (one k for every user).
BROADCAST_INPUTS = ("k",)


def _first_line(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0][:500] if text.strip() else type(exc).__name__


def op_message(exc: Exception) -> str:
    """What a failing graph op said, for a client: TensorFlow's text starts with "Graph
    execution error:" and the trace of where the node was defined; this returns the
    assertion's message and the value that broke it ("k must be >= 1 (got 0)"), or the
    op's own message ("Input shapes do not match: [2] vs. [1] (at node StringJoin)")."""
    text = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in text.splitlines()]
    for line in lines:
        if line.startswith("assertion failed:"):
            body = line[len("assertion failed:"):].strip().replace("\\'", "'")
            if not (body.startswith("[") and body.endswith("]")):
                return body[:500]
            groups = [g.strip() for g in body[1:-1].split("] [")]  # tf.debugging.Assert's data, one per [...]
            if any(g.startswith("Condition ") for g in groups):  # tf.debugging.assert_*: message, x's value
                got = next((groups[i + 1] for i, g in enumerate(groups[:-1]) if g.startswith("x (")), None)
                return (groups[0] + (f" (got {got})" if got is not None else ""))[:500]
            return " ".join(groups)[:500]
    node = re.search(r"Detected at node (\S+)", text)
    for line in lines:
        if not line or line.startswith(("Graph execution error", "Detected at node", "File ", "[[", "<stack traces")):
            continue
        return (line + (f" (at node {node.group(1)})" if node else ""))[:500]
    return _first_line(exc)
