"""Which model versions are served: discovery, version policy, labels, loading and status.

Mirrors TF Serving's file-system source + manager for a base path laid out as
``<model_base>/<name>/<version>/saved_model.pb``:

* without a config file every sub-directory of the base that holds a numeric version
  directory is a model served with the ``latest`` policy;
* with a ``models.config`` (``model_config_list``) only the listed models are served, each
  with its version policy (latest N / all / specific) and version labels;
* :meth:`ModelStore.poll` (run every ``poll_seconds`` by a background thread) loads wanted
  versions that are new and unloads versions no longer wanted. A new version is loaded
  before the old one is dropped, so requests keep flowing during a switch; a version that
  fails to load is marked ``END`` with its error and skipped (the previous version keeps
  serving) until its ``saved_model.pb`` changes. A version directory without
  ``saved_model.pb`` is treated as still being written and ignored.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from tfrs_multiscene.serving.signatures import (
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    OK,
    LoadedModel,
    RequestLimits,
    ServingError,
)

log = logging.getLogger(__name__)

# ModelVersionStatus.State names.
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"


@dataclasses.dataclass
class ModelEntry:
    """One served model: where its versions are and which of them to serve."""

    name: str
    base_path: Path
    policy: str = "latest"  # latest | all | specific
    num_latest: int = 1
    versions: frozenset = frozenset()
    labels: dict = dataclasses.field(default_factory=dict)

    def wanted(self, on_disk: list[int]) -> set[int]:
        """The versions this policy serves out of the loadable ``on_disk`` ones."""
        if self.policy == "all":
            return set(on_disk)
        if self.policy == "specific":
            return set(on_disk) & set(self.versions)
        return set(sorted(on_disk)[-self.num_latest:])


@dataclasses.dataclass
class VersionStatus:
    state: str
    error_code: str = OK
    error_message: str = ""


def entries_from_config(config, model_base) -> list[ModelEntry]:
    """``ModelEntry`` list from a ``ModelServerConfig``; relative base paths are under ``model_base``."""
    entries = []
    for c in config.model_config_list.config:
        if not c.name:
            raise ValueError("model config entry without a name")
        base = Path(c.base_path) if c.base_path else Path(c.name)
        if not base.is_absolute():
            base = Path(model_base) / base
        policy = c.model_version_policy.WhichOneof("policy_choice") or "latest"
        entries.append(ModelEntry(
            name=c.name,
            base_path=base,
            policy=policy,
            num_latest=max(1, c.model_version_policy.latest.num_versions or 1),
            versions=frozenset(int(v) for v in c.model_version_policy.specific.versions),
            labels={k: int(v) for k, v in c.version_labels.items()},
        ))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate model names in config: {names}")
    return entries


def release_memory() -> None:
    """Give the memory of an unloaded version back to the system. Its weights and tables are
    freed into the C allocator, which glibc keeps for reuse: a version swap of the soak
    benchmark's recommender left the server ~200 MB larger until ``malloc_trim`` returned it.
    Requests still running on the old version hold it until they end, so the store releases it
    at the poll after the unload (once: ``gc.collect`` holds the interpreter for up to ~1 s)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


class ModelStore:
    """Thread-safe map ``name -> {version: LoadedModel}`` kept in step with the disk."""

    def __init__(self, model_base, config=None, poll_seconds: float = 2.0, limits: RequestLimits = RequestLimits(),
                 loader: Callable[..., LoadedModel] | None = None):
        self.model_base = Path(model_base)
        self.poll_seconds = float(poll_seconds)
        self.limits = limits
        self._loader = loader or LoadedModel
        self._config = config
        self._lock = threading.RLock()        # guards the maps below
        self._poll_lock = threading.Lock()    # one poll at a time
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._status: dict[str, dict[int, VersionStatus]] = {}
        self._failed: dict[tuple[str, int], tuple] = {}
        self._entries: dict[str, ModelEntry] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unloaded = False  # a version left since the last poll: its memory is released at the next

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Load what is on disk now, then keep polling in a daemon thread."""
        self.poll()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="model-store-poll", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # keep polling whatever happens to one pass
                log.exception("model poll failed")

    # ---------------------------------------------------------------- discovery

    def _current_entries(self) -> list[ModelEntry]:
        if self._config is not None:
            return entries_from_config(self._config, self.model_base)
        if not self.model_base.is_dir():
            return []
        return [ModelEntry(name=d.name, base_path=d) for d in sorted(self.model_base.iterdir())
                if d.is_dir() and not d.name.startswith(".") and _versions_on_disk(d)]

    def poll(self) -> None:
        """One pass: load new wanted versions, unload unwanted ones, update labels."""
        with self._poll_lock:
            if self._unloaded:  # requests that still held an unloaded version when it left have ended
                self._unloaded = False
                release_memory()
            entries = {e.name: e for e in self._current_entries()}
            for entry in entries.values():
                self._sync_model(entry)
            with self._lock:
                self._entries = entries
                for name in list(self._models):
                    if name not in entries:  # removed from the config
                        for version in list(self._models[name]):
                            self._unload(name, version)

    def _sync_model(self, entry: ModelEntry) -> None:
        on_disk = _versions_on_disk(entry.base_path)
        loadable = []
        for version, fingerprint in on_disk.items():
            if self._failed.get((entry.name, version)) == fingerprint:
                continue  # failed before and unchanged: skip, keep serving what we have
            self._failed.pop((entry.name, version), None)
            loadable.append(version)
        wanted = entry.wanted(loadable)
        with self._lock:
            loaded = set(self._models.get(entry.name, {}))
        for version in sorted(wanted - loaded, reverse=True):
            self._load(entry, version, on_disk[version])
        with self._lock:
            available = set(self._models.get(entry.name, {}))
        # Unload what is no longer wanted, but never leave a 'latest' model with nothing
        # while the wanted version failed: keep the newest loaded one.
        unwanted = available - wanted
        if entry.policy == "latest" and not (available & wanted) and unwanted:
            unwanted.discard(max(unwanted))
        for version in unwanted:
            self._unload(entry.name, version)

    def _load(self, entry: ModelEntry, version: int, fingerprint) -> None:
        path = entry.base_path / str(version)
        self._set_status(entry.name, version, VersionStatus(LOADING))
        log.info("loading %s version %d from %s", entry.name, version, path)
        try:
            model = self._loader(entry.name, version, path, limits=self.limits)
            warm = getattr(model, "warm_up", None)
            if warm is not None:  # before it serves: the first requests must not all pay the first run
                log.info("warmed up %s version %d in %.2f s", entry.name, version, warm())
        except Exception as exc:  # noqa: BLE001  (a failed load or warm-up refuses the version, server goes on)
            code = exc.code if isinstance(exc, ServingError) else INVALID_ARGUMENT
            message = str(exc) if isinstance(exc, ServingError) else f"{type(exc).__name__}: {exc}"
            log.warning("refused %s version %d: %s", entry.name, version, message)
            self._failed[(entry.name, version)] = fingerprint
            self._set_status(entry.name, version, VersionStatus(END, code, message))
            return
        with self._lock:
            self._models.setdefault(entry.name, {})[version] = model
        self._set_status(entry.name, version, VersionStatus(AVAILABLE))

    def _unload(self, name: str, version: int) -> None:
        with self._lock:
            self._models.get(name, {}).pop(version, None)
            if name in self._models and not self._models[name]:
                del self._models[name]
        self._set_status(name, version, VersionStatus(END))
        self._unloaded = True  # released at the next poll, once requests that still hold it have ended
        log.info("unloaded %s version %d", name, version)

    def _set_status(self, name: str, version: int, status: VersionStatus) -> None:
        with self._lock:
            self._status.setdefault(name, {})[version] = status

    # ---------------------------------------------------------------- config reload

    def reload_config(self, config) -> None:
        """Apply a new ``ModelServerConfig`` (HandleReloadConfigRequest).

        Raises ``ServingError`` (and restores the previous config) when a version label
        points at a version that is not available after loading.
        """
        if config.WhichOneof("config") != "model_config_list":
            raise ServingError(INVALID_ARGUMENT, "only model_config_list configs are supported")
        try:
            entries_from_config(config, self.model_base)
        except ValueError as exc:
            raise ServingError(INVALID_ARGUMENT, str(exc)) from exc
        previous = self._config
        self._config = config
        self.poll()
        with self._lock:
            bad = [(e.name, label, v) for e in self._entries.values() for label, v in e.labels.items()
                   if v not in self._models.get(e.name, {})]
        if bad:
            self._config = previous
            self.poll()
            name, label, version = bad[0]
            raise ServingError(
                FAILED_PRECONDITION,
                f"Request to assign label '{label}' to version {version} of model {name}, "
                "which is not currently available for inference",
            )

    # ---------------------------------------------------------------- lookups

    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> LoadedModel:
        """The servable for a request (latest available version unless version/label given)."""
        with self._lock:
            versions = self._models.get(name)
            entry = self._entries.get(name)
            if label:
                if version is not None:
                    raise ServingError(INVALID_ARGUMENT, "give a version or a version label, not both")
                labels = entry.labels if entry else {}
                if label not in labels:
                    raise ServingError(NOT_FOUND, f"Unrecognized servable version label: {label} (model {name})")
                version = labels[label]
            if not versions:
                what = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
                raise ServingError(NOT_FOUND, f"Servable not found for request: {what}")
            if version is None:
                return versions[max(versions)]
            if int(version) not in versions:
                raise ServingError(
                    NOT_FOUND,
                    f"Servable not found for request: Specific({name}, {version}); available versions: {sorted(versions)}",
                )
            return versions[int(version)]

    def status(self, name: str, version: int | None = None) -> list[tuple[int, VersionStatus]]:
        """``[(version, VersionStatus)]``, newest first; NOT_FOUND for unknown models/versions."""
        with self._lock:
            statuses = dict(self._status.get(name, {}))
        if not statuses:
            raise ServingError(NOT_FOUND, f"Could not find any versions of model {name}")
        if version is not None:
            if int(version) not in statuses:
                raise ServingError(NOT_FOUND, f"Could not find version {version} of model {name}")
            return [(int(version), statuses[int(version)])]
        return sorted(statuses.items(), reverse=True)


def model_status_response(store: ModelStore, name: str, version: int | None):
    """A ``GetModelStatusResponse`` for ``name`` (all known versions, or one)."""
    from tensorflow_serving.apis import get_model_status_pb2, status_pb2

    response = get_model_status_pb2.GetModelStatusResponse()
    for v, st in store.status(name, version):
        response.model_version_status.add(
            version=v,
            state=get_model_status_pb2.ModelVersionStatus.State.Value(st.state),
            status=status_pb2.StatusProto(error_code=st.error_code, error_message=st.error_message),
        )
    return response


def _versions_on_disk(base: Path) -> dict[int, tuple]:
    """``{version: fingerprint}`` of complete version directories (with saved_model.pb)."""
    out = {}
    try:
        children = list(Path(base).iterdir())
    except OSError:
        return out
    for child in children:
        if not child.name.isdigit():
            continue
        pb = child / "saved_model.pb"
        try:
            st = pb.stat()
        except OSError:
            continue
        out[int(child.name)] = (st.st_mtime_ns, st.st_size)
    return out
