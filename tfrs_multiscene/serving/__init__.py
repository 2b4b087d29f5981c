"""Serving: a local server speaking TF Serving's REST and gRPC APIs, clients, TF Serving configs.

Modules (TF Serving's separation of model, server and config):

* :mod:`.signatures`  one loaded SavedModel version; validates and runs its signatures
  (the core shared by both protocols); op libraries; signature metadata.
* :mod:`.model_store` version discovery under ``<base>/<name>/<version>``, version policy,
  labels, hot swap, status.
* :mod:`.rest`, :mod:`.grpc_server`  the two protocol front ends.
* :mod:`.server`      ``ModelServer`` (both front ends over one store) and ``serve(cfg)``.
* :mod:`.client`      ``RestClient``, ``GrpcClient``, ``make_client(url)``.
* :mod:`.tf_serving_config`  models.config / batching / monitoring files for real TF Serving.

Names are imported lazily so ``import tfrs_multiscene.serving`` stays cheap.
"""

_EXPORTS = {
    "ModelServer": "server", "serve": "server",
    "RestClient": "client", "GrpcClient": "client", "ServingClientError": "client", "make_client": "client",
    "ServableSpec": "tf_serving_config", "BatchingSpec": "tf_serving_config",
    "write_serving_configs": "tf_serving_config",
    "ServingError": "signatures", "LoadedModel": "signatures",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BatchingSpec", "GrpcClient", "LoadedModel", "ModelServer", "RestClient", "ServableSpec",
           "ServingClientError", "ServingError", "make_client", "serve", "write_serving_configs"]
