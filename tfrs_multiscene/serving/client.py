"""Clients for TF Serving's REST and gRPC APIs (real TF Serving or the local server).

Both clients have the same methods and return the same shapes::

    predict(model, inputs, signature_name="serving_default", version=None, label=None)
        -> {output_name: np.ndarray}   (strings come back as object arrays of bytes)
    classify(model, examples, context=None, ...) -> [[(label, score), ...], ...]
    regress(model, examples, context=None, ...)  -> np.ndarray [n]
    metadata(model, version=None, label=None)    -> TF Serving's REST metadata JSON
    status(model, version=None, label=None)      -> [{"version", "state", "status"}, ...]

``inputs`` as a dict ``{input: values}`` is sent in the columnar format, as a list of rows
in the row format (over gRPC rows are turned into columns). Calls time out after
``timeout`` seconds; calls that find the server unavailable (connection refused, HTTP 503,
gRPC UNAVAILABLE) are retried ``retries`` times with exponential backoff. Every failure is
a :class:`ServingClientError` carrying the canonical code (``INVALID_ARGUMENT``, ...).
:func:`make_client` picks the client from a URL (``http://...`` or ``grpc://host:port``).
"""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import quote

import numpy as np

from tfrs_multiscene.serving.rest import HTTP_STATUS, from_json_output

_HTTP_TO_CODE = {status: code for code, status in HTTP_STATUS.items()}
_HTTP_TO_CODE.update({400: "INVALID_ARGUMENT", 500: "INTERNAL", 409: "ABORTED", 413: "RESOURCE_EXHAUSTED"})


class ServingClientError(Exception):
    """A failed serving call: canonical ``code``, server ``message``, HTTP status if REST."""

    def __init__(self, code: str, message: str, http_status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


def _retrying(call: Callable, retries: int, backoff: float):
    """Run ``call``; retry on ServingClientError UNAVAILABLE up to ``retries`` times."""
    for attempt in range(retries + 1):
        try:
            return call()
        except ServingClientError as exc:
            if exc.code != "UNAVAILABLE" or attempt == retries:
                raise
            time.sleep(backoff * (2 ** attempt))


def _as_array(value) -> np.ndarray:
    """JSON output value -> ndarray; strings become object arrays of bytes (like gRPC)."""
    array = np.asarray(from_json_output(value), dtype=None)
    if array.dtype.kind in "UO":
        flat = [v.encode("utf-8") if isinstance(v, str) else v for v in array.ravel().tolist()]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape)
    return array


def _to_json(value):
    """Python/numpy values -> JSON-ready values; bytes travel as ``{"b64": ...}``."""
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.dtype.kind not in "OS" else [_to_json(v) for v in value]
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.generic):
        return _to_json(value.item())
    return value


def _version_path(model: str, version: int | None, label: str | None) -> str:
    if version is not None and label:
        raise ValueError("give a version or a label, not both")
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label:
        path += f"/labels/{quote(label, safe='')}"
    return path


# --------------------------------------------------------------------------- REST


class RestClient:
    """TF Serving REST client (standard library HTTP)."""

    def __init__(self, url: str = "http://127.0.0.1:8501", timeout: float = 10.0, retries: int = 2,
                 backoff: float = 0.2):
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._outputs_cache: dict = {}

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(_to_json(body)).encode("utf-8")
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})

        def once():
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                raw = exc.read().decode("utf-8", "replace")
                try:
                    message = json.loads(raw).get("error", raw)
                except (ValueError, AttributeError):
                    message = raw or exc.reason
                raise ServingClientError(_HTTP_TO_CODE.get(exc.code, "UNKNOWN"), message, exc.code) from None
            except TimeoutError as exc:
                raise ServingClientError("DEADLINE_EXCEEDED", f"{method} {self.url}{path}: no answer in {self.timeout}s") from exc
            except (urllib.error.URLError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, (socket.timeout, TimeoutError)):
                    raise ServingClientError("DEADLINE_EXCEEDED", f"{method} {self.url}{path}: no answer in {self.timeout}s") from exc
                raise ServingClientError("UNAVAILABLE", f"{method} {self.url}{path}: {reason}") from exc

        return _retrying(once, self.retries, self.backoff)

    def predict(self, model: str, inputs: dict | list, signature_name: str = "serving_default",
                version: int | None = None, label: str | None = None) -> dict[str, np.ndarray]:
        path = _version_path(model, version, label) + ":predict"
        if isinstance(inputs, dict):
            answer = self._request("POST", path, {"signature_name": signature_name, "inputs": inputs})
            outputs = answer["outputs"]
            if not isinstance(outputs, dict):  # a single output comes back unnamed
                outputs = {self._single_output(model, signature_name, version, label): outputs}
            return {k: _as_array(v) for k, v in outputs.items()}
        if not isinstance(inputs, list):
            raise TypeError("inputs must be a dict (columnar) or a list of rows")
        answer = self._request("POST", path, {"signature_name": signature_name, "instances": inputs})
        rows = answer["predictions"]
        if rows and isinstance(rows[0], dict) and set(rows[0]) != {"b64"}:
            return {k: _as_array([r[k] for r in rows]) for k in rows[0]}
        return {self._single_output(model, signature_name, version, label): _as_array(rows)}

    def _single_output(self, model, signature_name, version, label) -> str:
        key = (model, signature_name, version, label)
        if key not in self._outputs_cache:
            sigs = self.metadata(model, version, label)["metadata"]["signature_def"]["signature_def"]
            outputs = list(sigs[signature_name]["outputs"])
            self._outputs_cache[key] = outputs[0]
        return self._outputs_cache[key]

    def classify(self, model: str, examples: list, context: dict | None = None,
                 signature_name: str = "serving_default", version=None, label=None) -> list:
        body = {"signature_name": signature_name, "examples": examples}
        if context:
            body["context"] = context
        result = self._request("POST", _version_path(model, version, label) + ":classify", body)["result"]
        return [[(str(c[0]), c[1]) for c in row] for row in result]

    def regress(self, model: str, examples: list, context: dict | None = None,
                signature_name: str = "serving_default", version=None, label=None) -> np.ndarray:
        body = {"signature_name": signature_name, "examples": examples}
        if context:
            body["context"] = context
        return np.asarray(self._request("POST", _version_path(model, version, label) + ":regress", body)["result"])

    def metadata(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        return self._request("GET", _version_path(model, version, label) + "/metadata")

    def limits(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        """What one request may ask of this server (``metadata.limits``; absent on TF Serving)."""
        return self.metadata(model, version, label)["metadata"]["limits"]

    def status(self, model: str, version: int | None = None, label: str | None = None) -> list[dict]:
        return self._request("GET", _version_path(model, version, label))["model_version_status"]


# --------------------------------------------------------------------------- gRPC


def _json_feature_example(features: dict):
    from tfrs_multiscene.serving.signatures import ServingError, encode_example_features

    try:
        return encode_example_features(features)
    except ServingError as exc:
        raise ServingClientError(exc.code, exc.message) from None


class GrpcClient:
    """TF Serving gRPC client built on the ``tensorflow-serving-api`` stubs."""

    def __init__(self, target: str = "127.0.0.1:8500", timeout: float = 10.0, retries: int = 2,
                 backoff: float = 0.2, max_message_bytes: int = 64 << 20):
        import grpc
        from tensorflow_serving.apis import (
            model_service_pb2_grpc,
            prediction_service_pb2_grpc,
        )

        self.target = target
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ])
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.model_service = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._signature_cache: dict = {}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request):
        import grpc

        def once():
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                code = exc.code().name if exc.code() is not None else "UNKNOWN"
                raise ServingClientError(code, exc.details() or code) from None

        return _retrying(once, self.retries, self.backoff)

    @staticmethod
    def _spec(spec, model, version, label, signature_name=None):
        if version is not None and label:
            raise ValueError("give a version or a label, not both")
        spec.name = model
        if version is not None:
            spec.version.value = int(version)
        elif label:
            spec.version_label = label
        if signature_name:
            spec.signature_name = signature_name

    def _signature_def(self, model, signature_name, version, label):
        key = (model, signature_name, version, label)
        if key not in self._signature_cache:
            from tensorflow_serving.apis import get_model_metadata_pb2

            sigs = get_model_metadata_pb2.SignatureDefMap()
            self._metadata_response(model, version, label).metadata["signature_def"].Unpack(sigs)
            if signature_name not in sigs.signature_def:
                raise ServingClientError("INVALID_ARGUMENT", f"model {model} has no signature '{signature_name}'; "
                                                             f"it has {sorted(sigs.signature_def)}")
            self._signature_cache[key] = sigs.signature_def[signature_name]
        return self._signature_cache[key]

    def predict(self, model: str, inputs: dict | list, signature_name: str = "serving_default",
                version: int | None = None, label: str | None = None, cast: bool = True) -> dict[str, np.ndarray]:
        """Inputs are cast to the signature's dtypes (read once from the model's metadata);
        ``cast=False`` sends them with the types they have and leaves all checking to the server."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        sig = self._signature_def(model, signature_name, version, label) if cast or isinstance(inputs, list) else None
        if isinstance(inputs, list):
            inputs = self._rows_to_columns(inputs, sig)
        elif not isinstance(inputs, dict):
            raise TypeError("inputs must be a dict (columnar) or a list of rows")
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, model, version, label, signature_name)
        for key, value in inputs.items():
            dtype = tf.dtypes.as_dtype(sig.inputs[key].dtype) if cast and key in sig.inputs else None
            try:
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
            except (TypeError, ValueError) as exc:
                want = dtype.name if dtype is not None else "a tensor"
                raise ServingClientError("INVALID_ARGUMENT", f"input '{key}': cannot convert to {want}: {exc}") from None
        response = self._call(self.prediction.Predict, request)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    @staticmethod
    def _rows_to_columns(rows: list, sig) -> dict:
        if not rows:
            raise ServingClientError("INVALID_ARGUMENT", "no rows to predict")
        if all(isinstance(r, dict) for r in rows):
            return {k: [r[k] for r in rows] for k in rows[0]}
        if len(sig.inputs) != 1:
            raise ServingClientError("INVALID_ARGUMENT", f"signature has inputs {sorted(sig.inputs)}: rows must be dicts")
        (only,) = sig.inputs
        return {only: rows}

    def _examples_input(self, input_proto, examples: list, context: dict | None):
        target = input_proto.example_list_with_context if context else input_proto.example_list
        for features in examples:
            target.examples.add().CopyFrom(_json_feature_example(features))
        if context:
            target.context.CopyFrom(_json_feature_example(context))

    def classify(self, model: str, examples: list, context: dict | None = None,
                 signature_name: str = "serving_default", version=None, label=None) -> list:
        from tensorflow_serving.apis import classification_pb2

        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, model, version, label, signature_name)
        self._examples_input(request.input, examples, context)
        result = self._call(self.prediction.Classify, request).result
        return [[(c.label, c.score) for c in row.classes] for row in result.classifications]

    def regress(self, model: str, examples: list, context: dict | None = None,
                signature_name: str = "serving_default", version=None, label=None) -> np.ndarray:
        from tensorflow_serving.apis import regression_pb2

        request = regression_pb2.RegressionRequest()
        self._spec(request.model_spec, model, version, label, signature_name)
        self._examples_input(request.input, examples, context)
        return np.asarray([r.value for r in self._call(self.prediction.Regress, request).result.regressions])

    def _metadata_response(self, model, version=None, label=None, field: str = "signature_def"):
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[field])
        self._spec(request.model_spec, model, version, label)
        return self._call(self.prediction.GetModelMetadata, request)

    def limits(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        """What one request may ask of this server (this package's server only: TF Serving
        answers INVALID_ARGUMENT to the ``limits`` metadata field)."""
        from google.protobuf import json_format, struct_pb2

        limits = struct_pb2.Struct()
        self._metadata_response(model, version, label, field="limits").metadata["limits"].Unpack(limits)
        return json_format.MessageToDict(limits)

    def metadata(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        """Same JSON shape as the REST metadata."""
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        response = self._metadata_response(model, version, label)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sigs)
        return {
            "model_spec": {"name": response.model_spec.name, "signature_name": "",
                           "version": str(response.model_spec.version.value)},
            "metadata": {"signature_def": json_format.MessageToDict(sigs, preserving_proto_field_name=True)},
        }

    def status(self, model: str, version: int | None = None, label: str | None = None) -> list[dict]:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, model, version, label)
        response = self._call(self.model_service.GetModelStatus, request)
        return json_format.MessageToDict(response, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)["model_version_status"]

    def reload_config(self, config) -> None:
        """Send a ``ModelServerConfig`` (HandleReloadConfigRequest)."""
        from tensorflow_serving.apis import model_management_pb2

        self._call(self.model_service.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest(config=config))


def make_client(url: str, timeout: float = 10.0, retries: int = 2):
    """``http(s)://host:port`` -> RestClient; ``grpc://host:port`` or ``host:port`` -> GrpcClient."""
    if url.startswith(("http://", "https://")):
        return RestClient(url, timeout=timeout, retries=retries)
    return GrpcClient(url.removeprefix("grpc://"), timeout=timeout, retries=retries)
