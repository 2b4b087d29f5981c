"""The TFRS two-tower retrieval model: towers + ``tfrs.tasks.Retrieval``.

Score of (query, item) = dot product of the query tower's and the candidate tower's outputs
(cosine when ``l2_normalize``). Training: in-batch softmax with temperature, log-Q
correction from training item frequencies, optional removal of accidental hits (same item
as the positive elsewhere in the batch), of each query's other known positives
(``mask_known_positives``) and hard-negative mining, sample weights from the data.

``ensemble = N``: N independently initialised (query, candidate) tower pairs; the towers
output their concatenation / sqrt(N), so the score is the mean of the members' scores.
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
from tfrs_multiscene.retrieval.new_items import unknown_id_mask
from tfrs_multiscene.retrieval.towers import CandidateTower, EnsembleTower, FrozenTextEmbedding, IdEmbedding, QueryTower

#: Keys of a training batch (see ``train.make_training_dataset``).
QUERY, CANDIDATE, WEIGHT, ITEM_ROW, PROBABILITY = "query", "candidate", "weight", "item_row", "probability"
#: Optional keys: uniformly sampled catalogue negatives (``RetrievalConfig.mixed_negatives``).
NEG_CANDIDATE, NEG_ITEM_ROW, NEG_PROBABILITY = "neg_candidate", "neg_item_row", "neg_probability"
#: Optional key: int [B, P] item-table rows of each query's other known positives, -1 padded
#: (``RetrievalConfig.mask_known_positives``).
KNOWN_ROWS = "known_rows"


class RetrievalModel(tfrs.Model):
    """Two towers and the retrieval task.

    Attributes:
      spec: the :class:`~tfrs_multiscene.retrieval.features.FeatureSpec` it was built from.
      cfg: its :class:`RetrievalConfig`.
      query_model: tf-keras model, raw query dict -> [B, D].
      candidate_model: tf-keras model, raw candidate dict -> [B, D].
      (With ``cfg.ensemble = N > 1`` both are :class:`EnsembleTower` s of N members and
      D = N * embedding_dim; ``member_towers`` lists the members' pairs.)
      new_item_offset: float added to the score of items without an id embedding
        (:mod:`~tfrs_multiscene.retrieval.new_items`); ``score`` and ``score_fn`` include it.
    """

    def __init__(self, spec: F.FeatureSpec, cfg: RetrievalConfig,
                 encoder_factory: Optional[Callable] = None):
        super().__init__()
        self.spec = spec
        self.cfg = cfg
        #: Added to the score of every item without an id embedding (``new_items``); set
        #: after training from the validation split, 0 until then.
        self.new_item_offset = 0.0
        if int(cfg.ensemble) < 1:
            raise ValueError(f"retrieval.ensemble (--ensemble) must be at least 1, got {cfg.ensemble}")
        members = [_member_towers(spec, cfg, encoder_factory, suffix=f"_{k + 1}" if cfg.ensemble > 1 else "")
                   for k in range(int(cfg.ensemble))]
        if len(members) == 1:
            self.query_model, self.candidate_model = members[0]
        else:
            self.query_model = EnsembleTower([q for q, _ in members], name="query_tower")
            self.candidate_model = EnsembleTower([c for _, c in members], name="candidate_tower")
        self.task = tfrs.tasks.Retrieval(
            temperature=cfg.temperature if cfg.temperature and cfg.temperature > 0 else None,
            num_hard_negatives=cfg.hard_negatives or None,
            remove_accidental_hits=cfg.remove_accidental_hits,
        )

    # ------------------------------------------------------------------ training

    @property
    def member_towers(self) -> list:
        """[(query tower, candidate tower)] of each ensemble member (one pair without one)."""
        if isinstance(self.query_model, EnsembleTower):
            return list(zip(self.query_model.members, self.candidate_model.members))
        return [(self.query_model, self.candidate_model)]

    def compute_loss(self, features, training=False):
        """Sum over the members of each member's own softmax loss on the batch."""
        columns = self._softmax_columns(features)
        return tf.add_n([self._member_loss(q, c, features, columns, training) for q, c in self.member_towers])

    def _softmax_columns(self, features) -> tuple:
        """(sampling probability [C], item row [C], score mask [B, C] or None) of the softmax
        columns: the batch's positives, then the uniform catalogue negatives when present.
        The same for every member and loss term, so computed once per batch."""
        probability, ids = features[PROBABILITY], features[ITEM_ROW]
        if NEG_CANDIDATE in features:
            probability = tf.concat([probability, features[NEG_PROBABILITY]], axis=0)
            ids = tf.concat([tf.cast(ids, tf.int64), tf.cast(features[NEG_ITEM_ROW], tf.int64)], axis=0)
        mask = known_positive_mask(features[KNOWN_ROWS], ids) if KNOWN_ROWS in features else None
        return probability, ids, mask

    def _member_loss(self, query_model, candidate_model, features, columns, training):
        query = query_model(features[QUERY], training=training)
        candidate = candidate_model(features[CANDIDATE], training=training)
        negatives = (candidate_model(features[NEG_CANDIDATE], training=training)
                     if NEG_CANDIDATE in features else None)
        return self._task_loss(query, candidate, features, columns, negatives)

    def _task_loss(self, query, candidate, features, columns, negatives=None):
        """In-batch softmax; ``negatives`` [N, D] (uniform catalogue samples) are appended
        as extra columns after the batch's positives (the labels stay the diagonal)."""
        probability, ids, mask = columns
        if negatives is not None:
            candidate = tf.concat([candidate, negatives], axis=0)
        return self.task(
            query, candidate,
            sample_weight=features.get(WEIGHT),
            candidate_sampling_probability=probability if self.cfg.logq_correction else None,
            candidate_ids=ids if self.cfg.remove_accidental_hits else None,
            compute_metrics=False, compute_batch_metrics=False,
            score_mask=mask,
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

    @property
    def feature_towers(self) -> tuple:
        """(query tower, candidate tower) whose outputs other models read as features (the
        ranking model's ``query_embedding`` / ``candidate_embedding``): the model's towers, or
        with an ensemble its first member's, so those features keep one two-tower's width and
        meaning whatever the ensemble size (the ranking was tuned on them; the ensemble's
        wider concatenation lowered its validation AUC on MovieLens)."""
        return self.member_towers[0]

    def query_embeddings(self, features: dict, batch_size: int = 4096, tower=None) -> np.ndarray:
        """Query tower outputs [B, D] for raw query features (dict of arrays); ``tower``
        (e.g. ``feature_towers[0]``) replaces the model's query tower."""
        return _batched(tower or self.query_model, features, batch_size)

    def candidate_embeddings(self, items: pd.DataFrame, batch_size: int = 4096, tower=None) -> np.ndarray:
        """Candidate tower outputs [I, D] for the rows of an item frame (``tower``: as above)."""
        return _batched(tower or self.candidate_model,
                        F.candidate_features(items, list(self.spec.item_categorical)), batch_size)

    def query_features(self, users, scenario, train: schema.Tables) -> dict:
        """Raw query features for ``users`` with histories from the training split."""
        return F.query_features_for(users, scenario, train, self.spec.history_length,
                                    list(self.spec.user_categorical), self.cfg.positive_task)

    def score(self, users, scenario, train: schema.Tables, items: Optional[pd.DataFrame] = None) -> np.ndarray:
        """Scores [len(users), n_items] over ``items`` (default: the training item table)."""
        items = train.items if items is None else items
        return self.query_embeddings(self.query_features(users, scenario, train)) @ \
            self.candidate_embeddings(items).T + self._offsets(items[F.ITEM_ID])

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
        offsets = self._offsets(item_ids)
        queries = self.query_features(list(user_ids), F.PAD, train)

        def fn(user_rows, scenario=None):
            rows = np.asarray(user_rows, dtype=np.int64)
            feats = {k: v[rows] for k, v in queries.items()}
            feats[F.SCENARIO] = np.full(len(rows), F.PAD if scenario is None else str(scenario), dtype=object)
            return self.query_embeddings(feats) @ candidates.T + offsets

        return fn

    def _offsets(self, item_ids) -> np.ndarray:
        """float32 [len(item_ids)]: ``new_item_offset`` where the item has no id embedding."""
        if not self.new_item_offset:
            return np.zeros(len(item_ids), np.float32)
        return np.float32(self.new_item_offset) * unknown_id_mask(self, item_ids).astype(np.float32)


def known_positive_mask(known_rows, candidate_rows) -> tf.Tensor:
    """Which softmax columns each query keeps: bool [B, C], False where column ``c``'s item
    is one of query ``b``'s other known positives, True on the diagonal (the positive).

    Args:
      known_rows: int [B, P] item rows of each query's known positives, -1 padded.
      candidate_rows: int [C] item row of each column (C >= B; column b is query b's positive).
    """
    known = tf.sort(tf.cast(known_rows, tf.int64), axis=1)
    columns = tf.broadcast_to(tf.cast(candidate_rows, tf.int64)[None, :],
                              [tf.shape(known)[0], tf.shape(candidate_rows)[0]])
    at = tf.minimum(tf.searchsorted(known, columns, side="left"), tf.shape(known)[1] - 1)
    known_column = tf.equal(tf.gather(known, at, batch_dims=1), columns)
    positive = tf.cast(tf.eye(tf.shape(known)[0], tf.shape(candidate_rows)[0]), tf.bool)
    return tf.logical_or(tf.logical_not(known_column), positive)


def _member_towers(spec: F.FeatureSpec, cfg: RetrievalConfig, encoder_factory, suffix: str = "") -> tuple:
    """One (query tower, candidate tower) pair; the history shares the candidate tower's item
    embeddings (and frozen text) unless ``cfg.share_item_embeddings`` is off."""
    item_id = IdEmbedding(spec.item_ids, cfg.feature_dim, cfg.id_dropout, name="item_id")
    candidate_model = CandidateTower(spec, cfg, item_embedding=item_id,
                                     encoder_factory=encoder_factory, name="candidate_tower" + suffix)
    if cfg.share_item_embeddings:
        history_items = item_id
        history_text = candidate_model.text if isinstance(candidate_model.text, FrozenTextEmbedding) else None
    else:
        history_items = IdEmbedding(spec.item_ids, cfg.feature_dim, 0.0, name="history_item_id")
        history_text = (FrozenTextEmbedding(spec.item_table_ids, spec.item_text, cfg.feature_dim, name="history_text")
                        if spec.item_text is not None else None)
    query_model = QueryTower(spec, cfg, history_items=history_items, history_text=history_text,
                             encoder_factory=encoder_factory, name="query_tower" + suffix)
    return query_model, candidate_model


def _batched(model, features: dict, batch_size: int) -> np.ndarray:
    n = len(next(iter(features.values())))
    if n == 0:
        return np.zeros((0, model.output_dim), np.float32)
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
    return RetrievalModel(spec, cfg, encoder_factory).build_towers()
