"""TF Serving's REST API (port 8501) on the standard library's ThreadingHTTPServer.

Routes (``NAME`` optionally followed by ``/versions/V`` or ``/labels/L``)::

    GET  /v1/models/NAME              model version status
    GET  /v1/models/NAME/metadata     signature defs (TF Serving's JSON)
    POST /v1/models/NAME:predict      {"signature_name", "instances": [...]} -> {"predictions"}
                                      {"signature_name", "inputs": ...}      -> {"outputs"}
    POST /v1/models/NAME:classify     {"signature_name", "context", "examples": [...]} -> {"result"}
    POST /v1/models/NAME:regress      same request -> {"result": [value, ...]}

Binary strings travel as ``{"b64": "..."}``. Every failure is ``{"error": "..."}`` with the
HTTP status TF Serving uses for the canonical code. Running signatures is delegated to
:class:`~tfrs_multiscene.serving.signatures.LoadedModel`, shared with the gRPC front end.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import numpy as np

from tfrs_multiscene.serving.model_store import ModelStore, model_status_response
from tfrs_multiscene.serving.signatures import (
    INVALID_ARGUMENT,
    NOT_FOUND,
    RESOURCE_EXHAUSTED,
    ServingError,
    encode_example_features,
)

log = logging.getLogger(__name__)

# TF Serving's mapping of canonical codes to HTTP status (http_rest_api_handler / util).
HTTP_STATUS = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
    "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)
_VERBS = ("predict", "classify", "regress")


# --------------------------------------------------------------------------- JSON <-> values


def is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def decode_json_value(value, where: str):
    """Replace ``{"b64": ...}`` leaves by bytes (nested lists kept) for :func:`coerce_input`."""
    if is_b64(value):
        if not isinstance(value["b64"], str):
            raise ServingError(INVALID_ARGUMENT, f"{where}: 'b64' must hold a base64 string")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as exc:
            raise ServingError(INVALID_ARGUMENT, f"{where}: invalid base64 ({exc})") from exc
    if isinstance(value, list):
        return [decode_json_value(v, where) for v in value]
    if isinstance(value, dict):
        raise ServingError(INVALID_ARGUMENT, f"{where}: unexpected object {json.dumps(value)[:80]} (only {{\"b64\": ...}} objects are values)")
    if value is None:
        raise ServingError(INVALID_ARGUMENT, f"{where}: null is not a tensor value")
    return value


def to_json_array(array: np.ndarray, name: str = ""):
    """Nested JSON lists from an output array; bytes become text, or ``{"b64"}`` if binary.

    Like TF Serving, outputs whose name ends in ``_bytes`` are always base64-encoded.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "OSU":
        return array.tolist()
    force_b64 = name.endswith("_bytes")

    def enc(v):
        if isinstance(v, list):
            return [enc(x) for x in v]
        if isinstance(v, str):
            return v
        if not force_b64:
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(v).decode("ascii")}

    return enc(array.tolist())


def from_json_output(value):
    """Inverse of :func:`to_json_array` for clients: ``{"b64"}`` -> bytes, else unchanged."""
    if is_b64(value):
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [from_json_output(v) for v in value]
    return value


# --------------------------------------------------------------------------- request -> core


def _named_inputs(value, sig, where: str) -> dict:
    """Columnar ``inputs``: an object naming the inputs, or a bare value for one input."""
    if isinstance(value, dict) and not is_b64(value):
        return {k: decode_json_value(v, f"{where}['{k}']") for k, v in value.items()}
    if len(sig.inputs) != 1:
        raise ServingError(INVALID_ARGUMENT, f"signature '{sig.name}' has inputs {sorted(sig.inputs)}: "
                                             f"'{where}' must be an object naming them")
    (only,) = sig.inputs
    return {only: decode_json_value(value, where)}


def _row_inputs(instances, sig) -> dict:
    """Row ``instances``: a list of objects {input: value}, or of values for one input."""
    if not isinstance(instances, list) or not instances:
        raise ServingError(INVALID_ARGUMENT, "'instances' must be a non-empty list")
    named = [isinstance(i, dict) and not is_b64(i) for i in instances]
    if all(named):
        keys = list(instances[0])
        for n, inst in enumerate(instances):
            if set(inst) != set(keys):
                raise ServingError(INVALID_ARGUMENT, f"instances[{n}] has inputs {sorted(inst)} but instances[0] has "
                                                     f"{sorted(keys)}; every instance needs the same inputs")
        return {k: [decode_json_value(inst[k], f"instances[{n}]['{k}']") for n, inst in enumerate(instances)]
                for k in keys}
    if any(named):
        raise ServingError(INVALID_ARGUMENT, "'instances' mixes objects and plain values")
    if len(sig.inputs) != 1:
        raise ServingError(INVALID_ARGUMENT, f"signature '{sig.name}' has inputs {sorted(sig.inputs)}: each instance "
                                             "must be an object naming them")
    (only,) = sig.inputs
    return {only: decode_json_value(instances, "instances")}


def handle_predict(model, body: dict) -> dict:
    """Run a REST predict request on ``model`` and build TF Serving's JSON answer."""
    unknown = set(body) - {"signature_name", "instances", "inputs"}
    if unknown:
        raise ServingError(INVALID_ARGUMENT, f"unknown request field(s) {sorted(unknown)}")
    if ("instances" in body) == ("inputs" in body):
        raise ServingError(INVALID_ARGUMENT, "request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    signature_name = _signature_name(body)
    sig = model.signature(signature_name)
    if "instances" in body:
        _, outputs = model.predict(signature_name, _row_inputs(body["instances"], sig))
        sizes = {v.shape[0] if v.ndim else None for v in outputs.values()}
        if len(sizes) != 1 or None in sizes:
            raise ServingError(INVALID_ARGUMENT, f"outputs of '{sig.name}' do not share a batch dimension; use the columnar format ('inputs')")
        (n,) = sizes
        encoded = {k: to_json_array(v, k) for k, v in outputs.items()}
        if len(encoded) == 1:
            (only,) = encoded.values()
            return {"predictions": only}
        return {"predictions": [{k: v[i] for k, v in encoded.items()} for i in range(n)]}
    _, outputs = model.predict(signature_name, _named_inputs(body["inputs"], sig, "inputs"))
    encoded = {k: to_json_array(v, k) for k, v in outputs.items()}
    if len(encoded) == 1:
        (only,) = encoded.values()
        return {"outputs": only}
    return {"outputs": encoded}


def _signature_name(body: dict) -> str | None:
    name = body.get("signature_name")
    if name is not None and not isinstance(name, str):
        raise ServingError(INVALID_ARGUMENT, "'signature_name' must be a string")
    return name


def serialized_examples(body: dict) -> list[bytes]:
    """tf.Examples (serialized) from ``{"context": {...}, "examples": [{...}]}``."""
    unknown = set(body) - {"signature_name", "context", "examples"}
    if unknown:
        raise ServingError(INVALID_ARGUMENT, f"unknown request field(s) {sorted(unknown)}")
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise ServingError(INVALID_ARGUMENT, "'examples' must be a non-empty list of objects {feature: value}")
    context = body.get("context") or {}
    out = []
    for n, features in enumerate(examples):
        if not isinstance(features, dict):
            raise ServingError(INVALID_ARGUMENT, f"examples[{n}] must be an object {{feature: value}}")
        merged = {**context, **features}
        out.append(encode_example_features(merged, f"examples[{n}]").SerializeToString())
    return out


def handle_classify(model, body: dict) -> dict:
    classes, scores = model.classify(_signature_name(body), serialized_examples(body))
    n, k = (scores if scores is not None else classes).shape
    labels = to_json_array(classes, "classes") if classes is not None else [[""] * k for _ in range(n)]
    values = scores.tolist() if scores is not None else [[None] * k for _ in range(n)]
    return {"result": [[[labels[i][j], values[i][j]] for j in range(k)] for i in range(n)]}


def handle_regress(model, body: dict) -> dict:
    return {"result": model.regress(_signature_name(body), serialized_examples(body)).tolist()}


_HANDLERS = {"predict": handle_predict, "classify": handle_classify, "regress": handle_regress}


# --------------------------------------------------------------------------- metadata / status


def status_json(store: ModelStore, name: str, version: int | None, label: str | None) -> dict:
    """TF Serving's GetModelStatusResponse as JSON."""
    from google.protobuf import json_format

    if label:
        version = store.resolve(name, label=label).version
    return json_format.MessageToDict(model_status_response(store, name, version), preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def metadata_json(model) -> dict:
    """TF Serving's REST metadata: model_spec + the SignatureDefMap as JSON, and beside them
    ``limits``, what one request may ask (rows, list length, k, body size)."""
    from google.protobuf import json_format

    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
        "metadata": {"signature_def": json_format.MessageToDict(model.signature_def_map(), preserving_proto_field_name=True),
                     "limits": model.limits_json()},
    }


# --------------------------------------------------------------------------- HTTP


# RESOURCE_EXHAUSTED on a request body is "413 Payload Too Large" in HTTP terms.
HTTP_STATUS_BODY_TOO_LARGE = 413
DRAIN_BYTES = 256 << 20  # a larger refused body is not read: its connection is closed unread


class _BodyTooLarge(ServingError):
    """The request body exceeds ``max_request_bytes`` (answered with HTTP 413)."""


class _BodyTooSlow(ServingError):
    """The body did not arrive within the connection timeout (answered with HTTP 408)."""


HTTP_STATUS_REQUEST_TIMEOUT = 408


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tfrs-multiscene-model-server"
    timeout = 60  # seconds a connection may sit idle or a body may take to arrive (then 408)

    def log_message(self, fmt, *args):  # route access logs to logging, not stderr
        log.debug("%s - " + fmt, self.address_string(), *args)

    # -- responses

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message})

    # -- routing

    def _route(self):
        path = self.path.split("?", 1)[0]
        match = _ROUTE.match(path)
        if not match:
            raise ServingError(NOT_FOUND, f"Malformed request: {self.command} {path}")
        version = match["version"]
        if version is not None:
            if not version.isdigit():
                raise ServingError(INVALID_ARGUMENT, f"version must be a non-negative integer, got '{unquote(version)}'")
            version = int(version)
        verb = match["verb"]
        if verb is not None and verb not in _VERBS:
            raise ServingError(NOT_FOUND, f"Malformed request: unknown method ':{verb}' (expected one of {list(_VERBS)})")
        return unquote(match["name"]), version, unquote(match["label"]) if match["label"] else None, bool(match["metadata"]), verb

    def do_GET(self):
        self._dispatch(self._get)

    def do_POST(self):
        self._dispatch(self._post)

    def _not_allowed(self):
        self.close_connection = True  # any body stays unread
        self._error(405, f"method {self.command} is not supported: use GET (status, metadata) or POST (:predict, ...)")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _dispatch(self, fn) -> None:
        try:
            fn()
        except _BodyTooLarge as exc:
            self._error(HTTP_STATUS_BODY_TOO_LARGE, exc.message)
        except _BodyTooSlow as exc:
            self._error(HTTP_STATUS_REQUEST_TIMEOUT, exc.message)
        except ServingError as exc:
            self._error(HTTP_STATUS.get(exc.code, 500), exc.message)
        except Exception as exc:  # never let a request kill the server
            log.exception("internal error on %s %s", self.command, self.path)
            self._error(500, f"internal error: {type(exc).__name__}: {exc}")

    def _get(self) -> None:
        name, version, label, metadata, verb = self._route()
        if verb:
            raise ServingError(INVALID_ARGUMENT, f"':{verb}' needs POST")
        store: ModelStore = self.server.store
        if metadata:
            self._send(200, metadata_json(store.resolve(name, version, label)))
        else:
            self._send(200, status_json(store, name, version, label))

    def _post(self) -> None:
        body = self._read_body()  # read first so keep-alive stays in sync on errors
        name, version, label, _, verb = self._route()
        if not verb:
            raise ServingError(NOT_FOUND, f"Malformed request: POST {self.path} (expected ':predict', ':classify' or ':regress')")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ServingError(INVALID_ARGUMENT, f"request body is not valid UTF-8 ({exc})") from exc
        try:
            request = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ServingError(INVALID_ARGUMENT, f"JSON parse error: {exc}") from exc
        if not isinstance(request, dict):
            raise ServingError(INVALID_ARGUMENT, f"request body must be a JSON object, got {type(request).__name__}")
        model = self.server.store.resolve(name, version, label)
        # Run the signature on one of the server's long-lived worker threads, not on this
        # per-connection thread: TensorFlow keeps eager state for every thread that calls
        # it, so a fresh thread per request grew the server by ~0.3 KB a request (+27 MB
        # over 86k requests in benchmarks/bench_recommender.py), flat with a fixed pool.
        self._send(200, self.server.run(_HANDLERS[verb], model, request))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ServingError(INVALID_ARGUMENT, "chunked request bodies are not supported; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.close_connection = True
            raise ServingError(INVALID_ARGUMENT, "invalid Content-Length") from None
        limit = self.server.max_request_bytes
        if length > limit:
            self.close_connection = True  # the body must not be parsed as a request
            self._drain(length)
            raise _BodyTooLarge(RESOURCE_EXHAUSTED, f"request body of {length} bytes exceeds the limit of {limit} bytes")
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytes:
        """The body, which must arrive whole within ``timeout`` seconds of its first byte's
        turn; else 408 (a client trickling bytes cannot hold a thread for longer)."""
        deadline = time.monotonic() + self.timeout
        parts, got = [], 0
        try:
            while got < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(length - got, 1 << 20))
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
        except TimeoutError:
            pass
        finally:
            self.connection.settimeout(self.timeout)
        if got < length:
            self.close_connection = True  # the rest of the body, if it comes, is not a request
            raise _BodyTooSlow("DEADLINE_EXCEEDED", f"request body incomplete: {got} of {length} bytes (Content-Length) "
                                                    f"arrived within {self.timeout:g} s")
        return b"".join(parts)

    def _drain(self, length: int) -> None:
        """Read and drop up to DRAIN_BYTES of a refused body, so the client finishes sending
        and reads the 413 (closing on unread data resets the connection: a broken pipe)."""
        left = min(length, DRAIN_BYTES)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)




class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: with a handful of concurrent clients that
    # open a connection per request (urllib, curl) the accept queue overflowed on a busy
    # 2-core machine, the kernel dropped SYNs and those requests waited for the client's 1 s
    # SYN retransmit (benchmarks/bench_recommender.py: 8 clients, p99 110 ms, max 1.1 s).
    request_queue_size = 1024
    executor = None  # set by RestServer.start

    def run(self, fn, *args):
        if self.executor is None:
            return fn(*args)
        return self.executor.submit(fn, *args).result()


class RestServer:
    """The REST front end over a :class:`ModelStore`; ``start()`` returns the bound port."""

    def __init__(self, store: ModelStore, host: str = "127.0.0.1", port: int = 8501,
                 max_request_bytes: int = 8 << 20, workers: int = 16, request_timeout: float = 60.0):
        self.store = store
        self.request_timeout = float(request_timeout)  # idle connection / body arrival (then 408)
        self.workers = int(workers)  # threads that run signatures (connections have their own)
        self.host = host
        self.port = port
        self.max_request_bytes = int(max_request_bytes)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        handler = type("Handler", (_Handler,), {"timeout": self.request_timeout})
        try:
            self._httpd = _Server((self.host, self.port), handler)
        except OSError as exc:
            raise OSError(exc.errno, f"REST server could not bind {self.host}:{self.port}: {exc.strerror}") from exc
        self._httpd.store = self.store
        self._httpd.max_request_bytes = self.max_request_bytes
        self._httpd.executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="rest-worker")
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="rest-server", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._httpd.executor is not None:
                self._httpd.executor.shutdown(wait=False, cancel_futures=True)
            self._httpd = None
