"""The per-version JSON record: ``<version>/assets.extra/tfrs_multiscene.json``.

It holds what a deployer needs to trust a version: the run's config, the data fingerprint,
metrics (including the measured ScaNN recall and latency), the op audit, the signatures and
the package versions that wrote it. ``assets.extra`` is TF Serving's place for such files;
it is copied with the version and ignored by the model server.
"""

from __future__ import annotations

import json
import time
from importlib import metadata as _pkg_metadata
from pathlib import Path

METADATA_RELPATH = Path("assets.extra") / "tfrs_multiscene.json"
SCHEMA_VERSION = 1
_PACKAGES = ("tensorflow", "tf-keras", "tensorflow-recommenders", "tensorflow-text", "scann", "tfrs_multiscene")


def package_versions() -> dict:
    """Installed versions of the packages an export depends on (None when absent)."""
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = _pkg_metadata.version(name)
        except _pkg_metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_metadata(version_dir, record: dict) -> Path:
    """Write ``record`` (plus schema version, time and package versions) into ``version_dir``."""
    path = Path(version_dir) / METADATA_RELPATH
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"schema_version": SCHEMA_VERSION, "created_unix": time.time(), "packages": package_versions()}
    full.update(record)
    path.write_text(json.dumps(full, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return path


def read_metadata(version_dir) -> dict:
    """The version's record, or ``{}`` when the version has none (e.g. a foreign SavedModel)."""
    path = Path(version_dir) / METADATA_RELPATH
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def _jsonable(value):
    """json.dumps fallback: numpy scalars/arrays, dataclasses, paths."""
    import dataclasses

    if hasattr(value, "tolist"):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)
