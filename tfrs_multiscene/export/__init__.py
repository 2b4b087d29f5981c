"""Export: SavedModels in TF Serving's layout, tuned ScaNN / stock-op indexes, op audit, load().

Modules: ``layout`` (versions, atomic writes), ``index`` (brute force, ScaNN, stock-op IVF
top-K layers), ``scann_tuning`` (recall/latency tuning against exact search), ``servables``
(retrieval, ranking, recommender signatures), ``op_audit`` (which ops a SavedModel needs),
``metadata`` (assets.extra/tfrs_multiscene.json), ``loading`` (``tfrs_multiscene.load``).
Submodules import TensorFlow; this package file does not.
"""
