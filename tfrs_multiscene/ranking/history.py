"""User-history affinity: how close an item's text is to the text of what the user was shown before.

For an example (user u, item i, time t) the feature is

    history_affinity(u, i, t) = cos(h_u(t), e_i)
    h_u(t) = sum of e_j over the user's logged interactions (u, j, t') with t' < t (any scenario)
    e_i    = unit(Lambda^(1/2) W^T P^T (x_i - m))

where ``x_i`` is the item's frozen text embedding (the pretrained MiniLM of title + description),
``P`` [D, 128] the catalogue's top principal directions, and ``W`` [128, k], ``Lambda`` the
**exposure projection** (:func:`exposure_projection`): the k text directions along which the
items one user is shown agree with each other most, relative to how much items vary along
them, each weighted by the square root of that agreement. It is a generalised eigenproblem
``C w = lambda S w`` with ``C`` the covariance between an impression's item and the mean of the
same user's other impressions and ``S`` the impressions' own covariance (a canonical
correlation of a user's items with each other), fitted on the log, so it keeps the directions
that carry users' interests (topics) and drops the loud ones that do not (brand names, filler
words). ``k`` is ``dims``; without a usable log (fewer than two users with two impressions)
the top-``dims`` principal directions are used instead (:func:`principal_projection`). It is 0
when the user has no earlier interaction. Without timestamps ``h_u`` is the sum over all of the
user's interactions except those with the item itself.

The log is every interaction the run knows (train, validation and test rows: what a user was
*shown*, never whether they clicked), so no label enters the feature; the projection is fitted
once on the whole log (which directions matter, not any user's later items) and a user's
history only ever sums earlier impressions. It is what a production ranker reads as "recently
viewed": on the synthetic worlds, where what users are shown follows their interests, it
correlates 0.83 with the true ads user-item affinity (world 5) (with the top-32 principal directions
instead of the exposure projection: 0.74; the profile text alone: 0.55; the retrieval dot
product for ads: 0.25-0.48).

:class:`UserHistoryAffinity` is a ranking feature hook (``frame -> {"history_affinity": [N, 1]}``)
and carries the tables the servable needs: :meth:`user_vectors` (``h_u`` over the whole log,
unit length) and :attr:`item_vectors` (``e_i``); at serving time the feature is their dot product
(``export.servables.PointwiseRanker``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse

from tfrs_multiscene.data import schema

HISTORY_AFFINITY = "history_affinity"
FILE_NAME = "history.npz"
TEXT_DIMS = 128  # principal directions of the text embeddings the exposure projection starts from


def principal_projection(embeddings: np.ndarray, dims: int) -> np.ndarray:
    """``[I, D]`` embeddings -> ``[I, k]`` unit rows: centred, projected on the top ``k =
    min(dims, I, D)`` principal directions, normalised (zero rows stay zero)."""
    return _unit(_principal_coordinates(embeddings, dims))


def _principal_coordinates(embeddings: np.ndarray, dims: int) -> np.ndarray:
    x = np.asarray(embeddings, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    k = int(max(1, min(dims, *x.shape)))
    return x @ np.linalg.svd(x, full_matrices=False)[2][:k].T


def exposure_projection(embeddings: np.ndarray, log_users, log_items, dims: int = 16) -> np.ndarray:
    """``[I, D]`` item embeddings -> ``[I, k]`` unit item vectors in the ``k = dims`` text
    directions along which a user's impressions agree (module docstring).

    ``log_users`` / ``log_items`` [L]: the impressions, items as row numbers of ``embeddings``
    (negative: not in the catalogue, ignored). With the top ``TEXT_DIMS`` principal coordinates
    ``x_j`` centred on the impressions' mean, ``n_u`` a user's impressions and ``s_u`` the sum of
    their ``x_j`` (users with at least two), it solves ``C w = lambda S w`` for

        C = (1/L) sum_u (s_u s_u^T - sum_{j in u} x_j x_j^T) / (n_u - 1)
          = (1/L) sum over impressions (j of u) of  x_j  (mean of u's other impressions)^T
        S = (1/L) sum over impressions of x_j x_j^T

    and keeps the ``k`` largest positive ``lambda`` (fewer if fewer are positive), each
    direction scaled by ``sqrt(lambda)``. Falls back to :func:`principal_projection` when no two
    users have two impressions or no direction agrees.
    """
    x = _principal_coordinates(embeddings, TEXT_DIMS)
    items = np.asarray(log_items, np.int64)
    known = items >= 0
    users = pd.factorize(np.asarray(log_users)[known])[0]
    items = items[known]
    per_user = np.bincount(users, minlength=users.max() + 1 if len(users) else 0)
    repeat = per_user[users] >= 2
    if np.count_nonzero(per_user >= 2) < 2:
        return principal_projection(embeddings, dims)
    users, items = users[repeat], items[repeat]
    impressions = scipy.sparse.csr_matrix((np.ones(len(items)), (users, items)),
                                          shape=(len(per_user), len(x)))  # duplicates add up
    counts = np.asarray(impressions.sum(axis=0)).ravel()
    x = x - counts @ x / counts.sum()
    inv = 1.0 / np.maximum(per_user - 1, 1)
    sums = impressions @ x                                        # [U, k] s_u
    self_weight = np.asarray(impressions.T @ inv).ravel()         # per item: sum over its impressions of 1/(n_u - 1)
    agreement = (sums.T * inv) @ sums - (x.T * self_weight) @ x
    spread = (x.T * counts) @ x
    ridge = 1e-6 * max(np.trace(spread), 1e-12) / x.shape[1]
    values, vectors = scipy.linalg.eigh(agreement, spread + ridge * np.eye(x.shape[1]))
    keep = np.argsort(-values)[:max(1, int(dims))]
    keep = keep[values[keep] > 0]
    if not len(keep):
        return principal_projection(embeddings, dims)
    return _unit(x @ vectors[:, keep] * np.sqrt(values[keep]))


def _int_times(values) -> np.ndarray:
    """Timestamps as int64 (unparseable or missing: 0, as the ranking model's inputs read them)."""
    return pd.to_numeric(pd.Series(values), errors="coerce").fillna(0).to_numpy(np.int64)


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(norm > 1e-12, x / np.maximum(norm, 1e-12), 0.0)


class UserHistoryAffinity:
    """The history-affinity feature of a log (module docstring).

    Args:
      item_ids: [I] item ids.
      item_vectors: [I, k] unit item vectors ``e_i``.
      log_users, log_items: [L] the logged interactions' user and item ids (items outside
        ``item_ids`` are ignored).
      log_times: [L] their timestamps, or None when the data has none.
    Call: ``frame`` with user_id, item_id (and timestamp when the log has times) ->
    ``{"history_affinity": float32 [N, 1]}``.
    """

    def __init__(self, item_ids, item_vectors, log_users, log_items, log_times=None):
        self.item_ids = np.asarray(item_ids).astype(str)
        self.item_vectors = np.asarray(item_vectors, np.float32)
        if self.item_vectors.shape[0] != len(self.item_ids):
            raise ValueError(f"{len(self.item_ids)} item ids but {self.item_vectors.shape[0]} item vectors")
        self._item_index = pd.Index(self.item_ids)
        users = np.asarray(log_users).astype(str)
        items = self._item_index.get_indexer(np.asarray(log_items).astype(str))
        keep = items >= 0
        self.user_ids = np.unique(users[keep])
        self._user_index = pd.Index(self.user_ids)
        user_rows = self._user_index.get_indexer(users[keep])
        items = items[keep]
        self.has_times = log_times is not None
        times = np.asarray(log_times, np.int64)[keep] if self.has_times else np.zeros(len(items), np.int64)
        order = np.lexsort((times, user_rows))
        self._log_users, self._log_items, self._log_times = user_rows[order], items[order], times[order]
        self._starts = np.searchsorted(self._log_users, np.arange(len(self.user_ids) + 1), "left")
        vectors = self.item_vectors.astype(np.float64)[self._log_items]
        self._cumulative = np.vstack([np.zeros((1, vectors.shape[1])), np.cumsum(vectors, axis=0)])
        self._pairs = None  # (sorted user-item keys, counts), built on first use without times

    @classmethod
    def from_embeddings(cls, item_ids, embeddings, log: pd.DataFrame, dims: int = 16) -> "UserHistoryAffinity":
        """Projects ``embeddings`` [I, D] on the log's exposure directions
        (:func:`exposure_projection`) and indexes ``log`` (a frame with user_id, item_id and, if
        present, timestamp)."""
        times = _int_times(log[schema.TIMESTAMP]) if schema.TIMESTAMP in log.columns else None
        users, items = log[schema.USER_ID].to_numpy(), log[schema.ITEM_ID].to_numpy()
        rows = pd.Index(np.asarray(item_ids).astype(str)).get_indexer(np.asarray(items).astype(str))
        return cls(item_ids, exposure_projection(embeddings, users, rows, dims), users, items, times)

    @property
    def dims(self) -> int:
        return int(self.item_vectors.shape[1])

    @property
    def log_size(self) -> int:
        return int(len(self._log_items))

    def __call__(self, frame: pd.DataFrame) -> dict:
        times = None
        if self.has_times:
            if schema.TIMESTAMP not in frame.columns:
                raise KeyError(f"the history log has timestamps; the frame needs a {schema.TIMESTAMP!r} column")
            times = _int_times(frame[schema.TIMESTAMP])
        values = self.affinity(frame[schema.USER_ID].to_numpy(), frame[schema.ITEM_ID].to_numpy(), times)
        return {HISTORY_AFFINITY: values.astype(np.float32)[:, None]}

    def affinity(self, users: Sequence, items: Sequence, times: Optional[Sequence] = None) -> np.ndarray:
        """``[N]`` cos(h_u(t), e_i) (0 for unknown users or items, or no earlier history)."""
        history = self._histories(np.asarray(users).astype(str), np.asarray(items).astype(str), times)
        rows = self._item_index.get_indexer(np.asarray(items).astype(str))
        item = np.where((rows >= 0)[:, None], self.item_vectors[np.maximum(rows, 0)], 0.0)
        return np.sum(_unit(history) * item, axis=1)

    def _histories(self, users, items, times) -> np.ndarray:
        if not len(self.user_ids):  # an empty log: nobody has a history
            return np.zeros((len(users), self.dims))
        u = self._user_index.get_indexer(users)
        known = u >= 0
        u = np.maximum(u, 0)
        if self.has_times:
            if times is None:
                raise ValueError("the history log has timestamps: pass the examples' times")
            end = self._positions_before(u, np.asarray(times, np.int64))
        else:
            end = self._starts[u + 1]
        history = self._cumulative[end] - self._cumulative[self._starts[u]]
        if not self.has_times:  # leave the item itself out
            rows = self._item_index.get_indexer(items)
            history -= self._pair_counts(u, rows)[:, None] * self.item_vectors[np.maximum(rows, 0)]
        return np.where(known[:, None], history, 0.0)

    def _positions_before(self, u, times) -> np.ndarray:
        """Per query, the log position after the user's last interaction strictly before ``times``."""
        order = np.argsort(u, kind="stable")
        out = np.empty(len(u), np.int64)
        bounds = np.searchsorted(u[order], np.arange(len(self.user_ids) + 1), "left")
        for user in np.flatnonzero(np.diff(bounds)):
            queries = order[bounds[user]:bounds[user + 1]]
            s, e = self._starts[user], self._starts[user + 1]
            out[queries] = s + np.searchsorted(self._log_times[s:e], times[queries], "left")
        return out

    def _pair_counts(self, u, rows) -> np.ndarray:
        """How often each (user row, item row) pair is in the log (0 for unknown items)."""
        if self._pairs is None:
            self._pairs = np.unique(self._log_users.astype(np.int64) * len(self.item_ids) + self._log_items,
                                    return_counts=True)
        logged, counts = self._pairs
        if len(logged) == 0:
            return np.zeros(len(u))
        keys = u.astype(np.int64) * len(self.item_ids) + np.maximum(rows, 0)
        at = np.minimum(np.searchsorted(logged, keys), len(logged) - 1)
        return np.where((logged[at] == keys) & (rows >= 0), counts[at], 0).astype(np.float64)

    def user_vectors(self) -> np.ndarray:
        """``[U, k]`` unit ``h_u`` over the whole log, aligned with :attr:`user_ids` (the serving table)."""
        return _unit(self._cumulative[self._starts[1:]] - self._cumulative[self._starts[:-1]]).astype(np.float32)

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, item_ids=self.item_ids, item_vectors=self.item_vectors,
                            log_users=self.user_ids[self._log_users], log_items=self.item_ids[self._log_items],
                            log_times=self._log_times, has_times=np.array(self.has_times))
        return path

    @classmethod
    def load(cls, path) -> "UserHistoryAffinity":
        with np.load(path, allow_pickle=False) as z:
            times = z["log_times"] if bool(z["has_times"]) else None
            return cls(z["item_ids"], z["item_vectors"], z["log_users"], z["log_items"], times)


def history_path(run_dir) -> Path:
    """Where a run keeps the feature its ranking model was trained with."""
    return Path(run_dir) / "ranking" / FILE_NAME


def load_run_history(run_dir) -> Optional[UserHistoryAffinity]:
    """The run's saved feature, or None when its ranking model was trained without it."""
    path = history_path(run_dir)
    return UserHistoryAffinity.load(path) if path.exists() else None


def interaction_log(tables: Sequence[schema.Tables]) -> pd.DataFrame:
    """The user, item (and timestamp) columns of every distinct table's interactions, stacked
    (a split's validation part may be the same object as its test part: counted once)."""
    seen, frames = set(), []
    for t in tables:
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        cols = [c for c in (schema.USER_ID, schema.ITEM_ID, schema.TIMESTAMP) if c in t.interactions.columns]
        frames.append(t.interactions[cols])
    return pd.concat(frames, ignore_index=True)


def build_history_affinity(split, text_cfg, dims: int = 16, log=print) -> Optional[UserHistoryAffinity]:
    """The feature for ``split`` (log: its train, validation and test interactions) with the
    item texts embedded by ``text_cfg``'s pretrained encoder (cached). None when there is no
    pretrained encoder (``none`` or ``scratch``: an untrained encoder's vectors carry no
    meaning) or the items have no title."""
    from tfrs_multiscene.retrieval.features import item_texts
    from tfrs_multiscene.text.cache import EmbeddingCache
    from tfrs_multiscene.text.factory import build_text_encoder

    items = split.train.items
    if text_cfg is None or text_cfg.text_encoder in ("none", "scratch") or schema.TITLE not in items.columns:
        log("ranking: no user-history affinity feature (it needs a pretrained text encoder and item titles)")
        return None
    encoder = build_text_encoder(text_cfg)
    embeddings = EmbeddingCache(text_cfg.cache_dir).get_or_compute(encoder, item_texts(items),
                                                                     batch_size=text_cfg.embed_batch_size)
    return UserHistoryAffinity.from_embeddings(items[schema.ITEM_ID].astype(str).to_numpy(), embeddings,
                                               interaction_log([split.train, split.valid, split.test]), dims)
