"""TFRS two-tower retrieval: raw-feature towers, training with resume/warm start, run-dir I/O.

Modules: ``features`` (FeatureSpec, positives, histories, raw input dicts), ``towers``
(tf-keras layers and towers), ``model`` (the ``tfrs.Model``), ``train`` (tf.data, fit,
validation, text inputs), ``checkpoints`` (run-dir layout, resume, load, warm start).
"""

from tfrs_multiscene.retrieval.checkpoints import load_retrieval
from tfrs_multiscene.retrieval.features import (FeatureSpec, candidate_features, positive_interactions,
                                                query_features_for)
from tfrs_multiscene.retrieval.model import RetrievalModel, build_retrieval_model
from tfrs_multiscene.retrieval.train import RetrievalResult, evaluate_model, train_retrieval

__all__ = [
    "FeatureSpec", "RetrievalModel", "RetrievalResult", "build_retrieval_model", "candidate_features",
    "evaluate_model", "load_retrieval", "positive_interactions", "query_features_for", "train_retrieval",
]
