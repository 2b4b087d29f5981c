"""Op audit: which op types a SavedModel needs, and whether stock TF Serving can serve it.

Stock TF Serving links TensorFlow core ops and the TensorFlow Text ops, not ScaNN's
(``Scann>*``). The audit reads ``saved_model.pb`` directly: the op of every node of every
meta graph's graph_def and of every function in its library (the signatures' bodies live
there). Op types are classified against the registries of a clean process that imported
only ``tensorflow`` (core) and then ``tensorflow_text`` (text); the result is cached on disk
per TensorFlow / TF Text version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCANN_PREFIX = "Scann>"
_REGISTRY_CACHE: dict | None = None

# Run in a fresh interpreter: the registry of the calling process may already hold text/ScaNN ops.
_REGISTRY_SCRIPT = r"""
import json, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session as c
def ops():
    out = op_def_pb2.OpList(); out.ParseFromString(c.TF_GetBuffer(c.TF_GetAllOpList()))
    return {o.name for o in out.op}
core = ops()
try:
    import tensorflow_text  # noqa: F401
    text = ops() - core
except ImportError:
    text = set()
print(json.dumps({"tensorflow": tf.__version__, "core": sorted(core), "text": sorted(text)}))
"""


def saved_model_ops(saved_model_dir) -> set[str]:
    """All op types used by ``saved_model.pb`` (graph nodes and library function nodes)."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = Path(saved_model_dir) / "saved_model.pb"
    if not pb.is_file():
        raise FileNotFoundError(f"{pb} not found: not a SavedModel directory")
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(pb.read_bytes())
    ops: set[str] = set()
    for meta_graph in sm.meta_graphs:
        graph = meta_graph.graph_def
        function_names = {f.signature.name for f in graph.library.function}
        ops.update(node.op for node in graph.node)
        for function in graph.library.function:
            ops.update(node.op for node in function.node_def)
        ops -= function_names  # a node may call a library function by name: not an op type
    return ops


def op_registry() -> dict:
    """``{"core": set, "text": set}`` of op types registered by TF alone and by TF Text."""
    global _REGISTRY_CACHE
    if _REGISTRY_CACHE is not None:
        return _REGISTRY_CACHE
    cache = _cache_path()
    if cache.is_file():
        data = json.loads(cache.read_text())
    else:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, "-c", _REGISTRY_SCRIPT], capture_output=True, text=True, env=env, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"could not list TensorFlow's registered ops: {proc.stderr[-2000:]}")
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(data))
        except OSError:
            pass  # the cache is an optimisation only
    _REGISTRY_CACHE = {"core": set(data["core"]), "text": set(data["text"])}
    return _REGISTRY_CACHE


def classify_ops(ops) -> dict:
    """Split op types into core / tensorflow_text / scann / unknown (sorted lists)."""
    registry = op_registry()
    groups = {"core": [], "tensorflow_text": [], "scann": [], "unknown": []}
    for op in sorted(ops):
        if op.startswith(SCANN_PREFIX):
            groups["scann"].append(op)
        elif op in registry["core"]:
            groups["core"].append(op)
        elif op in registry["text"]:
            groups["tensorflow_text"].append(op)
        else:
            groups["unknown"].append(op)
    return groups


def audit(saved_model_dir) -> dict:
    """The op audit of one SavedModel directory.

    Returns ``{"ops": [...], "by_library": {...}, "needs_scann": bool,
    "stock_servable": bool, "libraries": [...]}`` where ``libraries`` are the Python
    modules a process must import before ``tf.saved_model.load`` (besides tensorflow).
    """
    ops = saved_model_ops(saved_model_dir)
    groups = classify_ops(ops)
    libraries = [lib for lib in ("tensorflow_text", "scann") if groups[lib]]
    return {
        "ops": sorted(ops),
        "by_library": {k: v for k, v in groups.items() if k != "core"},
        "needs_scann": bool(groups["scann"]),
        "stock_servable": not groups["scann"] and not groups["unknown"],
        "libraries": libraries,
    }


def _cache_path() -> Path:
    from importlib.metadata import PackageNotFoundError, version

    try:
        tag = f"tf{version('tensorflow')}-text{version('tensorflow-text')}"
    except PackageNotFoundError:
        tag = "unknown"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "tfrs_multiscene" / f"op_registry-{tag}.json"
