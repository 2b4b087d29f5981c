"""TFX integration (checked against the TFX 1.21 source; never run on Debian 12).

* ``trainer.run_fn``: the generic Trainer's entry point, given to TFX through the one-line
  module file ``user_module/tfrs_multiscene_trainer.py`` (TFX wheels that file's directory)
  or as ``run_fn="tfrs_multiscene.tfx.trainer.run_fn"``.
* ``index_component``: ScaNN / stock-op index tuning and the body of the ``RetrievalIndexer``
  component (``run_index_component``), no TFX needed.
* ``components``: the ``@component`` declaration itself (imports TFX; module level and
  without postponed annotations, as TFX's decorator requires).
* ``fsutil``: local or gs:// artifact URIs.
* ``pipelines/tfx_pipeline.py``: the pipeline factory and ``run_local``.

Nothing here but ``components`` imports ``tfx``: TFX 1.21 pins TensorFlow 2.21 and needs glibc
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


def glibc_at_least(major: int, minor: int) -> bool:
    """Whether this machine's glibc is at least ``major.minor`` (False when unknown)."""
    try:
        have = tuple(int(x) for x in platform_facts()["glibc"].split(".")[:2])
    except ValueError:
        return False
    return have >= (major, minor)


def tfx_unavailable_reason() -> str | None:
    """None when ``tfx`` imports here, else a sentence naming glibc and /etc/debian_version
    (and, where the platform could run TFX, how to make the environment that has it)."""
    if importlib.util.find_spec("tfx") is not None:
        try:
            import tfx  # noqa: F401
            return None
        except Exception as err:  # noqa: BLE001  (installed but broken, e.g. a TF version clash)
            return f"tfx is installed but does not import: {err}"
    facts = platform_facts()
    where = f"glibc {facts['glibc']} (/etc/debian_version: {facts['debian_version']})"
    if glibc_at_least(2, 39):
        return (f"TFX is not installed in this environment ({where} can run it): build it with `make tfx-env` "
                "and run these tests with .venv-tfx/bin/python -m pytest -q tests -k tfx")
    return (f"TFX is not installed: tfx 1.21 (the only TFX for Python 3.11) needs ml-metadata/TFDV wheels built "
            f"for glibc 2.39 and TensorFlow 2.21; this machine has {where}. "
            "Use `make tfx-env` on Debian 13 or newer.")
