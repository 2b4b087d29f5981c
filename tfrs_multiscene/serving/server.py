"""The local model server: a :class:`ModelStore` behind a REST and a gRPC front end.

For development, the demo and the tests; production uses real TF Serving with the files
from :mod:`.tf_serving_config`. ``tfrs-multiscene serve`` calls :func:`serve`.
"""

from __future__ import annotations

import logging
import signal
import threading

from tfrs_multiscene.config import ServeConfig
from tfrs_multiscene.serving.grpc_server import GrpcServer
from tfrs_multiscene.serving.model_store import ModelStore
from tfrs_multiscene.serving.rest import RestServer
from tfrs_multiscene.serving.signatures import RequestLimits
from tfrs_multiscene.serving.tf_serving_config import read_model_config

log = logging.getLogger(__name__)


class ModelServer:
    """Serve every model under ``cfg.model_base`` (or those of a models.config) over REST + gRPC.

    ``start()`` loads what is on disk, starts polling and both front ends, and returns the
    bound ports ``{"rest": int, "grpc": int}`` (port 0 in the config picks a free port).
    """

    def __init__(self, cfg: ServeConfig, model_config_file: str | None = None):
        self.cfg = cfg
        config_path = model_config_file or cfg.model_config_file
        config = read_model_config(config_path) if config_path else None
        limits = RequestLimits(max_batch=cfg.max_batch, max_list_length=cfg.max_list_length,
                               max_request_bytes=cfg.max_request_bytes)
        self.store = ModelStore(cfg.model_base, config=config, poll_seconds=cfg.poll_seconds, limits=limits)
        self.rest = RestServer(self.store, cfg.host, cfg.rest_port, cfg.max_request_bytes,
                               request_timeout=cfg.request_timeout)
        self.grpc = GrpcServer(self.store, cfg.host, cfg.grpc_port, cfg.max_request_bytes, cfg.grpc_workers)
        self._stopped = threading.Event()
        self.ports: dict[str, int] = {}

    def start(self) -> dict[str, int]:
        self.store.start()
        try:
            self.ports = {"rest": self.rest.start(), "grpc": self.grpc.start()}
        except Exception:
            self.stop()
            raise
        log.info("serving %s on %s: REST %d, gRPC %d", self.store.model_names(), self.cfg.host,
                 self.ports["rest"], self.ports["grpc"])
        return dict(self.ports)

    def stop(self) -> None:
        self.rest.stop()
        self.grpc.stop()
        self.store.stop()
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` (True) or ``timeout`` seconds (False)."""
        return self._stopped.wait(timeout)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def serve(cfg: ServeConfig, model_config_file: str | None = None) -> None:
    """Blocking entry point of ``tfrs-multiscene serve``; SIGINT/SIGTERM stop it cleanly."""
    server = ModelServer(cfg, model_config_file)
    ports = server.start()
    models = server.store.model_names()
    print(f"Serving {models or 'no models yet'} from {cfg.model_base}: "
          f"REST http://{cfg.host}:{ports['rest']}/v1/models/NAME  gRPC {cfg.host}:{ports['grpc']}", flush=True)

    def _stop(signum, frame):
        threading.Thread(target=server.stop, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
    while not server.wait(1.0):
        pass


def main(argv=None) -> None:
    """``python -m tfrs_multiscene.serving.server --model-base BASE ...`` (flags of ServeConfig)."""
    import argparse

    from tfrs_multiscene.config import add_arguments, apply_arguments

    parser = argparse.ArgumentParser(description="Local model server speaking TF Serving's REST and gRPC APIs.")
    add_arguments(parser, ServeConfig, "serve")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(apply_arguments(ServeConfig(), args, "serve"))


if __name__ == "__main__":
    main()
