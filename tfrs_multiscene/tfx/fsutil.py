"""Artifact URIs that may be local paths or remote (``gs://...``) in a TFX pipeline.

TFX hands components artifact URIs under ``pipeline_root``; on Kubeflow / Vertex that is a
bucket. The training and export code writes local paths (``pathlib``), so the TFX entry
points work in a local directory and copy the result with ``tf.io.gfile`` when the
destination is remote. No TFX import here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def is_remote(uri) -> bool:
    """True for ``scheme://`` URIs (gs://, s3://, hdfs://...), False for local paths."""
    return "://" in str(uri) and not str(uri).startswith("file://")


def local_path(uri) -> str:
    """``file://`` stripped; other URIs unchanged."""
    text = str(uri)
    return text[len("file://"):] if text.startswith("file://") else text


def copy_tree(src, dst) -> None:
    """Copy directory ``src`` into ``dst`` (created; existing files overwritten). Local to
    local uses shutil; anything else goes through ``tf.io.gfile``."""
    if not is_remote(src) and not is_remote(dst):
        shutil.copytree(local_path(src), local_path(dst), dirs_exist_ok=True)
        return
    import tensorflow as tf

    src, dst = str(src).rstrip("/"), str(dst).rstrip("/")
    for root, _dirs, files in tf.io.gfile.walk(src):
        rel = os.path.relpath(root, src) if not is_remote(src) else root[len(src):].lstrip("/")
        target = dst if rel in ("", ".") else f"{dst}/{rel}"
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(f"{root.rstrip('/')}/{name}", f"{target}/{name}", overwrite=True)


def makedirs(uri) -> None:
    if is_remote(uri):
        import tensorflow as tf

        tf.io.gfile.makedirs(str(uri))
    else:
        Path(local_path(uri)).mkdir(parents=True, exist_ok=True)
