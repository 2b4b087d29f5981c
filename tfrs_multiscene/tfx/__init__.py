"""TFX integration: the Trainer module (``trainer.run_fn``), the ScaNN / stock-op index
component (``index_component``) and, in ``pipelines/tfx_pipeline.py``, the pipeline factory.

Nothing here imports ``tfx`` at import time: TFX 1.21 pins TensorFlow 2.21 and needs glibc
2.39 wheels (ml-metadata, TFDV), so it lives in its own environment (``make tfx-env``) and
is missing from the main one. :func:`tfx_unavailable_reason` says why TFX cannot be used here.
"""

from __future__ import annotations

import importlib.util
import platform
from pathlib import Path


def platform_facts() -> dict:
    """glibc version and Debian release of this machine (what decides whether TFX installs)."""
    libc, version = platform.libc_ver()
    debian = Path("/etc/debian_version")
    return {"libc": libc or "unknown", "glibc": version or "unknown",
            "debian_version": debian.read_text().strip() if debian.exists() else None}


def tfx_unavailable_reason() -> str | None:
    """None when ``tfx`` imports here, else a sentence naming glibc and /etc/debian_version."""
    if importlib.util.find_spec("tfx") is not None:
        try:
            import tfx  # noqa: F401
            return None
        except Exception as err:  # noqa: BLE001  (installed but broken, e.g. a TF version clash)
            return f"tfx is installed but does not import: {err}"
    facts = platform_facts()
    return (f"TFX is not installed: tfx 1.21 (the only TFX for Python 3.11) needs ml-metadata/TFDV wheels built "
            f"for glibc 2.39 and TensorFlow 2.21; this machine has glibc {facts['glibc']} "
            f"(/etc/debian_version: {facts['debian_version']}). Use `make tfx-env` on Debian 13 or newer.")
