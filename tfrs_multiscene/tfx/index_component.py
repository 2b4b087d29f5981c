"""Build and tune the retrieval index from a trained model, as a TFX component or a function.

:func:`build_index_artifact` does the work and needs no TFX: it loads the retrieval model
of a run directory (the Trainer's ``model_run``), embeds the catalogue, tunes a ScaNN index
against exact search to ``target_recall`` (or, where ScaNN cannot load, e.g. under TF 2.21,
or when asked, a stock-op IVF / brute-force index), and writes the retrieval SavedModel
into ``<out>/Format-Serving`` (the layout TFX's Pusher pushes: ``path_utils.serving_model_path``
of a Model artifact is ``<uri>/Format-Serving``) with ``index_report.json``.
:func:`run_index_component` is the body of the TFX component: artifacts in, custom
properties out; it needs only objects with ``.uri`` and ``set_*_custom_property``.

The TFX custom component class ``RetrievalIndexer`` is
:class:`tfrs_multiscene.tfx.components.RetrievalIndexer` (at module level there, as TFX's
``@component`` requires); that module imports TFX, so import it only where TFX is installed.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import tfrs_multiscene  # noqa: F401  (Keras 2 before TensorFlow)
from tfrs_multiscene.tfx import fsutil

log = logging.getLogger(__name__)

#: ``tfx.utils.path_constants.SERVING_MODEL_DIR`` (TFX 1.x): where Pusher looks in a Model artifact.
SERVING_SUBDIR = "Format-Serving"
REPORT_FILE = "index_report.json"
KINDS = ("scann", "ivf", "brute_force")


def scann_unavailable_reason() -> str | None:
    """None when the ScaNN TF ops load here, else why not (missing or ABI mismatch)."""
    try:
        import scann  # noqa: F401
        from scann.scann_ops.py import scann_ops  # noqa: F401
    except Exception as err:  # noqa: BLE001  (ImportError, or undefined symbols under another TF)
        first = str(err).splitlines()[0] if str(err) else ""
        return (f"ScaNN TF ops unavailable under TensorFlow {_tf_version()} ({type(err).__name__}: {first}); "
                "scann 1.4.2 is built for TensorFlow 2.20")
    return None


def _tf_version() -> str:
    try:
        import tensorflow as tf

        return tf.__version__
    except Exception:  # noqa: BLE001
        return "unknown"


def build_index_artifact(model_run_dir, out_dir, preprocess_dir, kind: str = "scann", target_recall: float = 0.95,
                         k: int = 10, top_k: int = 100, fallback: str = "ivf", num_queries: int = 1000) -> dict:
    """Tune and export the retrieval servable of ``model_run_dir`` into ``out_dir``.

    ``kind`` is 'scann' (falls back to ``fallback`` with the reason recorded when the
    ScaNN ops cannot load), 'ivf' (approximate, stock TF ops) or 'brute_force' (exact).
    Returns the report written to ``<out_dir>/index_report.json``: kind, params, recall@k
    against exact search, p50 latency, whether the target was reached, stock_ops, and the
    fallback reason if any.
    """
    import numpy as np
    import tensorflow as tf

    from tfrs_multiscene.data import examples as E
    from tfrs_multiscene.export import scann_tuning
    from tfrs_multiscene.export.servables import export_retrieval
    from tfrs_multiscene.retrieval.checkpoints import load_retrieval
    from tfrs_multiscene.retrieval.new_items import index_towers, with_offset_column

    if kind not in KINDS or fallback not in KINDS[1:]:
        raise ValueError(f"kind must be one of {KINDS} and fallback one of {KINDS[1:]}, got {kind!r}, {fallback!r}")
    report: dict = {"requested": kind}
    if kind == "scann":
        reason = scann_unavailable_reason()
        if reason:
            report["fallback_reason"] = reason
            log.warning("%s: building the stock-op %r index instead", reason, fallback)
            kind = fallback
    if fsutil.is_remote(model_run_dir):  # a bucket (Kubeflow / Vertex): load from a local copy
        with tempfile.TemporaryDirectory() as tmp:
            fsutil.copy_tree(model_run_dir, tmp)
            model = load_retrieval(tmp)
    else:
        model = load_retrieval(fsutil.local_path(model_run_dir))
    items, _ = E.load_frames(preprocess_dir)
    ids = items["item_id"].astype(str).to_numpy()
    raw = np.asarray(model.candidate_embeddings(items), np.float32)
    query_model, candidates = index_towers(model, items, raw)
    depth = int(min(top_k, len(ids)))
    k = min(k, depth)
    rng = np.random.default_rng(0)
    queries = with_offset_column(raw[rng.choice(len(raw), size=min(num_queries, len(raw)), replace=False)], candidates)
    index, result = scann_tuning.tuned_index(kind, query_model, ids, candidates, queries, depth, k=k,
                                             target_recall=target_recall)
    if result is None:
        report.update(kind=kind, params={}, recall=1.0, reached_target=True)
    else:
        report.update(kind=kind, **{key: v for key, v in result.to_dict().items() if key != "tried"})
    report["stock_ops"] = bool(index.describe().get("stock_ops", kind != "scann"))
    spec = {key: tf.TensorSpec([None], tf.string) for key in ("user_id", "scenario", *model.spec.user_categorical)}
    spec["history"] = tf.TensorSpec([None, None], tf.string)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "out"
        version = export_retrieval(Path(tmp) / "export", query_model, index, spec, default_k=k,
                                   metadata={"index_tuning": report})
        shutil.copytree(version, staged / SERVING_SUBDIR)
        (staged / REPORT_FILE).write_text(json.dumps(report, indent=1, default=str) + "\n")
        fsutil.copy_tree(staged, out_dir)  # local or gs:// (the artifact URI under pipeline_root)
    return report


def run_index_component(model_run, index, preprocess_dir: str, kind: str = "scann", target_recall: float = 0.95,
                        top_k: int = 100) -> dict:
    """Body of the ``RetrievalIndexer`` component (no TFX needed): ``model_run`` is the
    Trainer's ModelRun artifact, ``index`` the output Model artifact (anything with ``.uri``
    and ``set_{string,float,int}_custom_property``). Writes ``<index.uri>/Format-Serving`` and
    records kind, recall, stock_ops and any ScaNN fallback reason on the artifact."""
    report = build_index_artifact(model_run.uri, index.uri, preprocess_dir, kind, target_recall, top_k=top_k)
    index.set_string_custom_property("index_kind", str(report["kind"]))
    index.set_float_custom_property("index_recall", float(report.get("recall", 1.0)))
    index.set_int_custom_property("stock_ops", int(bool(report["stock_ops"])))
    if report.get("fallback_reason"):
        index.set_string_custom_property("fallback_reason", str(report["fallback_reason"]))
    return report
