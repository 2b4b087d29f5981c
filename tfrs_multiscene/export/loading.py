"""``tfrs_multiscene.load(path)``: load an export after importing exactly the op libraries it needs.

Custom ops must be registered before ``tf.saved_model.load`` (else "Op type not registered"):
the version's metadata names them (``op_audit.libraries``); for a SavedModel without our
metadata the op audit is run on the spot.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from tfrs_multiscene.export.layout import latest_version_dir
from tfrs_multiscene.export.metadata import read_metadata


class Servable:
    """A loaded export: ``.signatures``, ``.metadata``, ``.path``; other attributes go to the
    underlying ``tf.saved_model.load`` object (``.model``)."""

    def __init__(self, model, path: Path, metadata: dict):
        self.model = model
        self.path = path
        self.metadata = metadata

    @property
    def signatures(self):
        return self.model.signatures

    def __getattr__(self, name):
        if name in ("model", "path", "metadata"):  # not set yet (e.g. during copy): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, signature: str = "serving_default", **inputs):
        """Call a signature with keyword tensors; returns its dict of named outputs."""
        if signature not in self.model.signatures:
            raise KeyError(f"{self.path}: no signature {signature!r}; has {sorted(self.model.signatures)}")
        return self.model.signatures[signature](**inputs)

    def __repr__(self):
        return f"Servable({str(self.path)!r}, signatures={sorted(self.model.signatures)})"


def resolve_version_dir(path) -> Path:
    """``path`` itself if it holds saved_model.pb, else its highest numbered version."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return latest_version_dir(path)


def required_libraries(version_dir) -> list[str]:
    """Modules to import before loading: from the metadata, else from an op audit."""
    record = read_metadata(version_dir)
    if "op_audit" in record:
        return list(record["op_audit"]["libraries"])
    from tfrs_multiscene.export.op_audit import audit

    return audit(version_dir)["libraries"]


def load(path) -> Servable:
    """Load a servable version (``<base>/<name>/<version>``) or the latest of ``<base>/<name>``."""
    version_dir = resolve_version_dir(path)
    for module in required_libraries(version_dir):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"{version_dir} needs the ops of '{module}', which does not import: {exc}") from exc
    import tensorflow as tf

    return Servable(tf.saved_model.load(str(version_dir)), version_dir, read_metadata(version_dir))
