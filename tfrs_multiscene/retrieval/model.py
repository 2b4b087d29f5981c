"""The TFRS two-tower retrieval model: towers + ``tfrs.tasks.Retrieval``.

Score of (query, item) = dot product of the query tower's and the candidate tower's outputs
(cosine when ``l2_normalize``). Training: in-batch softmax with temperature, log-Q
correction from training item frequencies, optional removal of accidental hits (same item
as the positive elsewhere in the batch) and hard-negative mining, sample weights from the
data.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

import tfrs_multiscene  # noqa: F401  (Keras 2 behind tf.keras)
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_multiscene.config import RetrievalConfig
from tfrs_multiscene.data import schema
from tfrs_multiscene.retrieval import features as F
from tfrs_multiscene.retrieval.towers import (BagOfWordsEmbedding, CandidateTower, FrozenTextEmbedding, IdEmbedding,
                                              QueryTower, _regularizer, item_id_dropout)

#: Keys of a training batch (see ``train.make_training_dataset``).
QUERY, CANDIDATE, WEIGHT, ITEM_ROW, PROBABILITY = "query", "candidate", "weight", "item_row", "probability"
#: Optional keys: uniformly sampled catalogue negatives (``RetrievalConfig.mixed_negatives``).
NEG_CANDIDATE, NEG_ITEM_ROW, NEG_PROBABILITY = "neg_candidate", "neg_item_row", "neg_probability"


class RetrievalModel(tfrs.Model):
    """Two towers and the retrieval task.

    Attributes:
      spec: the :class:`~tfrs_multiscene.retrieval.features.FeatureSpec` it was built from.
      cfg: its :class:`RetrievalConfig`.
      query_model: tf-keras model, raw query dict -> [B, D].
      candidate_model: tf-keras model, raw candidate dict -> [B, D].
    """

    def __init__(self, spec: F.FeatureSpec, cfg: RetrievalConfig,
                 encoder_factory: Optional[Callable] = None):
        super().__init__()
        self.spec = spec
        self.cfg = cfg
        item_id = IdEmbedding(spec.item_ids, cfg.feature_dim, item_id_dropout(cfg), _regularizer(cfg),
                              name="item_id")
        self.candidate_model = CandidateTower(spec, cfg, item_embedding=item_id,
                                              encoder_factory=encoder_factory, name="candidate_tower")
        if cfg.share_item_embeddings:
            history_items = item_id
            history_text = self.candidate_model.text if isinstance(self.candidate_model.text, FrozenTextEmbedding) else None
            history_words = self.candidate_model.words
        else:
            history_items = IdEmbedding(spec.item_ids, cfg.feature_dim, 0.0, _regularizer(cfg), name="history_item_id")
            history_text = (FrozenTextEmbedding(spec.item_table_ids, spec.item_text, cfg.feature_dim, name="history_text")
                            if spec.item_text is not None else None)
            history_words = (BagOfWordsEmbedding(spec.item_table_ids, spec.item_words, spec.item_tokens,
                                                 cfg.feature_dim, _regularizer(cfg), name="history_words")
                             if spec.item_tokens is not None else None)
        self.query_model = QueryTower(spec, cfg, history_items=history_items, history_text=history_text,
                                      encoder_factory=encoder_factory, history_words=history_words,
                                      name="query_tower")
        self.task = tfrs.tasks.Retrieval(
            temperature=cfg.temperature if cfg.temperature and cfg.temperature > 0 else None,
            num_hard_negatives=cfg.hard_negatives or None,
            remove_accidental_hits=cfg.remove_accidental_hits,
        )

    # ------------------------------------------------------------------ training

    def compute_loss(self, features, training=False):
        query = self.query_model(features[QUERY], training=training)
        candidate = self.candidate_model(features[CANDIDATE], training=training)
        negatives = (self.candidate_model(features[NEG_CANDIDATE], training=training)
                     if NEG_CANDIDATE in features else None)
        loss = self._task_loss(query, candidate, features, negatives)
        weight = float(self.cfg.text_only_loss_weight or 0.0)
        if weight > 0:
            # The same batch again with every candidate as an unknown id (OOV row + text +
            # categorical features): that path alone must retrieve the positive, which is
            # all a cold item has at serving time.
            cold = self.candidate_model(features[CANDIDATE], training=training, unknown_ids=True)
            loss = loss + weight * self._task_loss(query, cold, features, negatives)
        return loss

    def _task_loss(self, query, candidate, features, negatives=None):
        """In-batch softmax; ``negatives`` [N, D] (uniform catalogue samples) are appended
        as extra columns after the batch's positives (the labels stay the diagonal)."""
        probability, ids = features[PROBABILITY], features[ITEM_ROW]
        if negatives is not None:
            candidate = tf.concat([candidate, negatives], axis=0)
            probability = tf.concat([probability, features[NEG_PROBABILITY]], axis=0)
            ids = tf.concat([tf.cast(ids, tf.int64), tf.cast(features[NEG_ITEM_ROW], tf.int64)], axis=0)
        return self.task(
            query, candidate,
            sample_weight=features.get(WEIGHT),
            candidate_sampling_probability=probability if self.cfg.logq_correction else None,
            candidate_ids=ids if self.cfg.remove_accidental_hits else None,
            compute_metrics=False, compute_batch_metrics=False,
        )

    # ------------------------------------------------------------------ inference

    def build_towers(self) -> "RetrievalModel":
        """Create every variable by running both towers once on a dummy row."""
        users = self.spec.user_ids[:1] or ["?"]
        query = {F.USER_ID: tf.constant(users), F.SCENARIO: tf.constant(["?"]),
                 F.HISTORY: tf.constant([[F.PAD]])}
        query.update({c: tf.constant(["?"]) for c in self.spec.user_categorical})
        cand = {F.ITEM_ID: tf.constant(["?"])}
        cand.update({c: tf.constant(["?"]) for c in self.spec.item_categorical})
        self.query_model(query)
        self.candidate_model(cand)
        return self

    def query_embeddings(self, features: dict, batch_size: int = 4096) -> np.ndarray:
        """Query tower outputs [B, D] for raw query features (dict of arrays)."""
        return _batched(self.query_model, features, batch_size)

    def candidate_embeddings(self, items: pd.DataFrame, batch_size: int = 4096) -> np.ndarray:
        """Candidate tower outputs [I, D] for the rows of an item frame."""
        return _batched(self.candidate_model,
                        F.candidate_features(items, list(self.spec.item_categorical)), batch_size)

    def query_features(self, users, scenario, train: schema.Tables) -> dict:
        """Raw query features for ``users`` with histories from the training split."""
        return F.query_features_for(users, scenario, train, self.spec.history_length,
                                    list(self.spec.user_categorical), self.cfg.positive_task)

    def score(self, users, scenario, train: schema.Tables, items: Optional[pd.DataFrame] = None) -> np.ndarray:
        """Scores [len(users), n_items] over ``items`` (default: the training item table)."""
        items = train.items if items is None else items
        return self.query_embeddings(self.query_features(users, scenario, train)) @ \
            self.candidate_embeddings(items).T

    def score_fn(self, train: schema.Tables, item_ids: Sequence[str], user_ids: Sequence[str]) -> Callable:
        """``fn(user_rows, scenario) -> float[B, len(item_ids)]`` for the evaluation module.

        ``user_ids[r]`` is the user of row ``r`` and ``item_ids`` the score columns (e.g. an
        ``InteractionIndex``'s); histories come from ``train``. ``scenario=None`` scores with
        the OOV ("any scenario") row. Candidate embeddings are computed once.
        """
        items = train.items.set_index(train.items[F.ITEM_ID].astype(str), drop=False)
        missing = set(map(str, item_ids)) - set(items.index)
        if missing:
            raise ValueError(f"{len(missing)} item ids are not in the item table, e.g. {sorted(missing)[:3]}")
        candidates = self.candidate_embeddings(items.loc[[str(i) for i in item_ids]])
        queries = self.query_features(list(user_ids), F.PAD, train)

        def fn(user_rows, scenario=None):
            rows = np.asarray(user_rows, dtype=np.int64)
            feats = {k: v[rows] for k, v in queries.items()}
            feats[F.SCENARIO] = np.full(len(rows), F.PAD if scenario is None else str(scenario), dtype=object)
            return self.query_embeddings(feats) @ candidates.T

        return fn


def _batched(model, features: dict, batch_size: int) -> np.ndarray:
    n = len(next(iter(features.values())))
    if n == 0:
        return np.zeros((0, model.head.out.units), np.float32)
    outs = []
    for start in range(0, n, batch_size):
        chunk = {k: tf.constant(np.asarray(v[start:start + batch_size]).astype(str)) for k, v in features.items()}
        outs.append(model(chunk, training=False).numpy())
    return np.concatenate(outs)


def build_retrieval_model(train: schema.Tables, cfg: RetrievalConfig, text: Optional[dict] = None,
                          base_spec: Optional[F.FeatureSpec] = None,
                          encoder_factory: Optional[Callable] = None) -> RetrievalModel:
    """Build (untrained) towers for the training split ``train``.

    Args:
      train: the training :class:`Tables` (vocabularies, item frequencies, text tables).
      cfg: model and training settings.
      text: frozen mode: ``{"item_embeddings": [n_items, T], "user_embeddings": [n_users, T]}``
        aligned with ``train.items`` / ``train.users`` rows; finetune mode:
        ``{"item_texts": [...], "user_texts": [...]}`` plus ``encoder_factory``. Either key
        may be missing (that text part is then left out); None: no text.
      base_spec: warm start: vocabularies to extend (old ids keep their rows).
      encoder_factory: zero-argument callable returning a fresh ``KerasHubLayer``.
    """
    spec = F.FeatureSpec.from_tables(train, cfg.history_length, text, base_spec, cfg.positive_task)
    if cfg.bag_of_words:
        spec.item_words, spec.item_tokens = F.item_token_table(
            train.items, base_words=(base_spec.item_words or []) if base_spec else [])
    return RetrievalModel(spec, cfg, encoder_factory).build_towers()
