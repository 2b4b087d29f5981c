"""TF Serving's model layout: ``<model_base>/<name>/<version>/`` with integer versions.

A version is written into a hidden temporary directory next to its final place and renamed
into place only when complete, so a server polling ``<model_base>/<name>`` never sees half a
model (TF Serving ignores directory names that are not integers, and a rename on one file
system is atomic).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

TMP_PREFIX = ".tmp-"


def versions(model_base, name) -> list[int]:
    """The complete versions of servable ``name`` under ``model_base``, ascending."""
    root = Path(model_base) / name
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_base, name) -> int:
    """One more than the highest existing version (1 for a new servable)."""
    existing = versions(model_base, name)
    return existing[-1] + 1 if existing else 1


def latest_version_dir(model_dir) -> Path:
    """``model_dir/<highest version>``; raises FileNotFoundError when there is none."""
    model_dir = Path(model_dir)
    found = versions(model_dir.parent, model_dir.name)
    if not found:
        raise FileNotFoundError(f"{model_dir}: no numbered version directories (expected {model_dir}/<version>/saved_model.pb)")
    return model_dir / str(found[-1])


def write_version(model_base, name, save_fn: Callable[[Path], None], version: int | None = None) -> Path:
    """Write a new version of ``name``: ``save_fn(tmp_dir)`` fills a temporary directory,
    which is then renamed to ``<model_base>/<name>/<version>``. Returns the final path.

    ``version`` defaults to :func:`next_version`. An existing version is never overwritten
    (FileExistsError). If ``save_fn`` raises or writes no ``saved_model.pb``, the temporary
    directory is removed and nothing becomes visible.
    """
    root = Path(model_base) / name
    root.mkdir(parents=True, exist_ok=True)
    version = next_version(model_base, name) if version is None else int(version)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    final = root / str(version)
    if final.exists():
        raise FileExistsError(f"{final} already exists; versions are immutable, pick a higher one")
    tmp = root / f"{TMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
    try:
        save_fn(tmp)
        if not (tmp / "saved_model.pb").is_file():
            raise RuntimeError(f"save_fn wrote no saved_model.pb into {tmp}")
        os.rename(tmp, final)  # atomic; fails if another writer took this version meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
