"""Evaluation: retrieval metrics and protocols, baselines, ranking metrics.

* ``metrics``          top-K metrics on ranked index arrays (recall, NDCG, ..., TFRS top-K).
* ``ranking_metrics``  AUC, GAUC, log loss, NDCG of ranked candidates.
* ``interactions``     ``InteractionIndex``: ids -> rows/columns, sparse user x item matrices.
* ``baselines``        popularity, item-kNN, EASE, TF-IDF content, TFRS tutorial two-tower.
* ``retrieval_eval``   ``evaluate_retrieval`` -> the evaluate JSON; ``format_table``; plots.

Submodules are imported lazily by the caller (``baselines.TfrsTutorial`` imports TensorFlow
only when fitted).
"""
