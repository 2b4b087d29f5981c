"""Retrieval baselines on a user x item training matrix.

Every baseline has ``fit(train_matrix: csr [U, I], **kw) -> self`` and
``score(user_rows: int[B]) -> float32[B, I]`` (higher = better; items seen in training are
NOT excluded here, the evaluation protocol does that). Score at most a few thousand users
per call: ``evaluate_retrieval`` batches users so ``B x I`` stays small.

* ``Popularity``  number of training users per item.
* ``ItemKNN``     item-based kNN, cosine similarity, ``k`` neighbours kept per item.
* ``EASE``        Steck (2019) closed form: B = I - P diagMat(1 / diag(P)), P = (X'X + lam I)^-1.
* ``TfidfContent`` TF-IDF of item text; user profile = mean of the history's TF-IDF rows.
* ``TfrsTutorial`` the TFRS basic-retrieval recipe (id embeddings, dim 32, Adagrad 0.1,
  batch 8192, 3 epochs, ``tfrs.tasks.Retrieval`` without metrics during training).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp


def _csr(matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError("train_matrix must be 2-D [users, items]")
    return m


def _binary(matrix) -> sp.csr_matrix:
    m = _csr(matrix)
    m.data = np.ones_like(m.data)  # implicit feedback: presence only
    return m


class _Baseline:
    """Shared plumbing: the fitted binary training matrix, the users' known interactions that
    ``score`` reads (the training matrix unless ``with_history`` replaced them) and checks."""

    name = "baseline"
    _train: Optional[sp.csr_matrix] = None
    _history: Optional[sp.csr_matrix] = None

    def _set_train(self, train_matrix) -> sp.csr_matrix:
        self._train = self._history = _binary(train_matrix)
        return self._train

    def with_history(self, history_matrix) -> "_Baseline":
        """Score users from ``history_matrix`` (``[users, items]``, e.g. training plus validation
        interactions) while keeping what ``fit`` learned from the training matrix: the fold-in
        every history-based method allows, so all methods see the same known interactions."""
        if self._train is None:
            raise RuntimeError(f"{type(self).__name__}.with_history called before fit")
        h = _binary(history_matrix)
        if h.shape != self._train.shape:
            raise ValueError(f"history matrix {h.shape} must have the training matrix's shape {self._train.shape}")
        self._history = h
        return self

    def _rows(self, user_rows) -> np.ndarray:
        if self._train is None:
            raise RuntimeError(f"{type(self).__name__}.score called before fit")
        rows = np.asarray(user_rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self._train.shape[0]):
            raise IndexError(f"user rows must be in [0, {self._train.shape[0]})")
        return rows

    @property
    def n_items(self) -> int:
        return self._train.shape[1]


class Popularity(_Baseline):
    """Scores every item by its number of distinct training users (same for all users)."""

    name = "popularity"

    def fit(self, train_matrix, **kw) -> "Popularity":
        m = self._set_train(train_matrix)
        self.counts = np.asarray(m.sum(axis=0)).ravel().astype(np.float32)
        return self

    def score(self, user_rows) -> np.ndarray:
        rows = self._rows(user_rows)
        return np.broadcast_to(self.counts, (rows.size, self.n_items)).copy()


class ItemKNN(_Baseline):
    """Item-based kNN: score(u, j) = sum over the user's items i of sim(i, j), where each item
    ``j`` keeps only its ``k`` most similar items (``k=None``: all).

    sim(i, j) = x_i . x_j / (|x_i| |x_j| + shrink), x_i the binary user column of item i;
    sim(i, i) = 0. Built ``block`` columns at a time so only ``I x block`` floats are dense."""

    name = "item_knn"

    def __init__(self, k: Optional[int] = 100, shrink: float = 0.0, block_floats: int = 20_000_000):
        if k is not None and k < 1:
            raise ValueError("k must be >= 1 or None")
        self.k, self.shrink, self.block_floats = k, float(shrink), int(block_floats)

    def fit(self, train_matrix, **kw) -> "ItemKNN":
        x = self._set_train(train_matrix).tocsc()
        n = x.shape[1]
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        xt = x.T.tocsr()
        block = max(1, self.block_floats // max(n, 1))
        pieces = []
        for start in range(0, n, block):
            stop = min(n, start + block)
            sim = (xt @ x[:, start:stop]).toarray()  # [I, b]
            sim /= np.outer(norms, norms[start:stop]) + self.shrink + 1e-12
            sim[np.arange(start, stop), np.arange(stop - start)] = 0.0
            if self.k is not None and self.k < n:
                drop = np.argpartition(-sim, self.k - 1, axis=0)[self.k:]
                np.put_along_axis(sim, drop, 0.0, axis=0)
            pieces.append(sp.csc_matrix(sim))
        self.similarity = sp.hstack(pieces, format="csr") if pieces else sp.csr_matrix((n, n))
        return self

    def score(self, user_rows) -> np.ndarray:
        rows = self._rows(user_rows)
        return np.asarray((self._history[rows] @ self.similarity).toarray(), dtype=np.float32)


class EASE(_Baseline):
    """EASE^R (Steck 2019): item-item weights B from a ridge regression with zero diagonal.

    Fitted on the items with at least one training interaction (others would get all-zero
    weights anyway); dense ``[I_active, I_active]``, so ``max_items`` guards memory.
    """

    name = "ease"

    def __init__(self, lam: float = 300.0, max_items: int = 15_000):
        self.lam, self.max_items = float(lam), int(max_items)

    def fit(self, train_matrix, lam: Optional[float] = None, **kw) -> "EASE":
        if lam is not None:
            self.lam = float(lam)
        x = self._set_train(train_matrix)
        self.active = np.flatnonzero(np.diff(x.tocsc().indptr) > 0)
        if self.active.size > self.max_items:
            raise ValueError(
                f"EASE needs a dense {self.active.size}^2 matrix; above max_items={self.max_items}. "
                "Use ItemKNN, or raise max_items if memory allows.")
        xa = x[:, self.active]
        gram = (xa.T @ xa).toarray()
        gram[np.diag_indices_from(gram)] += self.lam
        p = np.linalg.inv(gram)
        weights = p / (-np.diag(p))
        weights[np.diag_indices_from(weights)] = 0.0
        self.weights = weights.astype(np.float32)
        return self

    def score(self, user_rows) -> np.ndarray:
        rows = self._rows(user_rows)
        out = np.zeros((rows.size, self.n_items), dtype=np.float32)
        out[:, self.active] = self._history[rows][:, self.active] @ self.weights
        return out


def _ease_validation(train_matrix, valid_matrix):
    """``(train, valid, users)``: CSR matrices, ``valid`` without the items each user had in
    training (they cannot be hit), and the rows of the users left with a validation item."""
    train, valid = _csr(train_matrix), _csr(valid_matrix)
    if train.shape != valid.shape:
        raise ValueError(f"train {train.shape} and valid {valid.shape} shapes differ")
    valid = valid - valid.multiply(train > 0)
    valid.eliminate_zeros()
    return train, valid, np.flatnonzero(np.diff(valid.indptr) > 0)


def can_tune_ease_lambda(train_matrix, valid_matrix) -> bool:
    """Whether ``valid_matrix`` has a user with a positive on an item unseen in their training
    row, i.e. anything :func:`tune_ease_lambda` could score (a validation part of new users or
    of non-positives only, as in a click log where nearly every user is new, has none)."""
    return bool(_ease_validation(train_matrix, valid_matrix)[2].size)


def tune_ease_lambda(
    train_matrix, valid_matrix, lambdas: Sequence[float] = (10, 30, 100, 300, 1000, 3000),
    k: int = 20, return_scores: bool = False,
):
    """Pick the EASE lambda with the best mean NDCG@k on ``valid_matrix`` (standard
    protocol: fit on ``train_matrix``, its items excluded from the lists).

    Returns the best lambda, or ``(best, {lambda: ndcg})`` with ``return_scores=True``."""
    from tfrs_multiscene.evaluation.metrics import ndcg_at_k, top_k_excluding_seen

    train, valid, users = _ease_validation(train_matrix, valid_matrix)
    if users.size == 0:
        raise ValueError("the validation matrix has no user with unseen items")
    results = {}
    for lam in lambdas:
        model = EASE(lam).fit(train)
        ranked = top_k_excluding_seen(model.score(users), train[users], k)
        results[float(lam)] = float(np.nanmean(ndcg_at_k(ranked, valid[users], min(k, ranked.shape[1]))))
    best = max(results, key=results.get)
    return (best, results) if return_scores else best


# --------------------------------------------------------------------------- content


_TOKEN = re.compile(r"\w+", re.UNICODE)


def tfidf_matrix(texts: Sequence[str]) -> sp.csr_matrix:
    """L2-normalised TF-IDF rows ``[len(texts), vocab]``.

    Tokens: lower-cased ``\\w+`` runs. tf = raw count; idf = ln((1 + N) / (1 + df)) + 1
    (smoothed, as in scikit-learn). Empty texts give zero rows."""
    docs = [Counter(_TOKEN.findall(str(t).lower())) for t in texts]
    vocab = {}
    rows, cols, vals = [], [], []
    for r, doc in enumerate(docs):
        for tok, cnt in doc.items():
            rows.append(r)
            cols.append(vocab.setdefault(tok, len(vocab)))
            vals.append(cnt)
    n = len(docs)
    tf = sp.csr_matrix((np.asarray(vals, np.float64), (rows, cols)), shape=(n, max(len(vocab), 1)))
    df = np.diff(tf.tocsc().indptr)
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    x = tf @ sp.diags(idf)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1), 0.0)) @ x)


class TfidfContent(_Baseline):
    """Content baseline: cosine(mean TF-IDF of the user's history, item TF-IDF).

    ``item_texts[c]`` is the text of item column ``c`` (all items, so cold items score)."""

    name = "tfidf"

    def __init__(self, item_texts: Sequence[str]):
        self.item_vectors = tfidf_matrix(list(item_texts))

    def fit(self, train_matrix, **kw) -> "TfidfContent":
        m = self._set_train(train_matrix)
        if m.shape[1] != self.item_vectors.shape[0]:
            raise ValueError(f"{self.item_vectors.shape[0]} item texts for {m.shape[1]} item columns")
        return self

    def score(self, user_rows) -> np.ndarray:
        rows = self._rows(user_rows)
        hist = self._history[rows]
        counts = np.asarray(hist.sum(axis=1)).ravel()
        profile = sp.diags(1.0 / np.maximum(counts, 1)) @ hist @ self.item_vectors  # [B, V]
        pnorm = np.sqrt(np.asarray(profile.multiply(profile).sum(axis=1)).ravel())
        sims = (profile @ self.item_vectors.T).toarray()
        return (sims / np.where(pnorm > 0, pnorm, 1.0)[:, None]).astype(np.float32)


# --------------------------------------------------------------------------- TFRS recipe


class TfrsTutorial(_Baseline):
    """The TFRS basic-retrieval tutorial two-tower (reference recipe).

    User and item towers are single ``tf.keras.layers.Embedding`` tables over the matrix
    rows/columns (equivalent to the tutorial's StringLookup + Embedding), trained with
    ``tfrs.tasks.Retrieval`` (in-batch softmax, no metrics during training) via
    ``model.fit`` on one example per training (user, item) pair, Adagrad(lr). Score =
    dot product of the two embeddings. Items never in training keep their random init.
    """

    name = "tfrs_tutorial"

    def __init__(self, epochs: int = 3, dim: int = 32, lr: float = 0.1, batch: int = 8192, seed: int = 42):
        self.epochs, self.dim, self.lr, self.batch, self.seed = epochs, dim, lr, batch, seed

    def fit(self, train_matrix, verbose: int = 0, **kw) -> "TfrsTutorial":
        import tensorflow as tf
        import tensorflow_recommenders as tfrs

        m = self._set_train(train_matrix).tocoo()
        tf.random.set_seed(self.seed)
        users = tf.keras.layers.Embedding(m.shape[0], self.dim)
        items = tf.keras.layers.Embedding(m.shape[1], self.dim)

        class _TwoTower(tfrs.Model):
            def __init__(self):
                super().__init__()
                self.user_model, self.item_model = users, items
                self.task = tfrs.tasks.Retrieval()

            def compute_loss(self, features, training=False):
                return self.task(self.user_model(features["user"]), self.item_model(features["item"]))

        self.model = _TwoTower()
        self.model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=self.lr))
        ds = tf.data.Dataset.from_tensor_slices({"user": m.row.astype(np.int64), "item": m.col.astype(np.int64)})
        ds = ds.shuffle(max(1, m.nnz), seed=self.seed, reshuffle_each_iteration=True).batch(self.batch)
        self.history = self.model.fit(ds, epochs=self.epochs, verbose=verbose)
        self.user_embeddings = users.embeddings.numpy()
        self.item_embeddings = items.embeddings.numpy()
        return self

    def score(self, user_rows) -> np.ndarray:
        rows = self._rows(user_rows)
        return (self.user_embeddings[rows] @ self.item_embeddings.T).astype(np.float32)


# --------------------------------------------------------------------------- all at once


BASELINES = ("popularity", "item_knn", "ease", "tfidf", "tfrs_tutorial")
EASE_DEFAULT_LAMBDA = 300.0  # EASE's lambda where none can be tuned


def fit_baselines(
    train_matrix, item_texts: Optional[Sequence[str]] = None, valid_matrix=None,
    methods: Sequence[str] = BASELINES, ease_lambdas: Sequence[float] = (10, 30, 100, 300, 1000, 3000),
    knn_k: int = 100, tfrs_kwargs: Optional[dict] = None, history_matrix=None,
) -> dict:
    """Fit the named baselines on ``train_matrix``; returns ``{name: fitted baseline}``.

    ``history_matrix`` (same shape; default ``train_matrix``) holds the users' known
    interactions that scoring starts from (``_Baseline.with_history``).

    EASE's lambda is tuned on ``valid_matrix`` when given (fit on ``train_matrix``), else
    :data:`EASE_DEFAULT_LAMBDA` (300); also the default, untuned (``.lambda_scores`` empty),
    when ``valid_matrix`` has no user with a positive on an item unseen in training
    (:func:`can_tune_ease_lambda`). The choice is on ``baselines["ease"].lam`` and
    ``.lambda_scores``. ``tfidf`` is skipped (not an error) when ``item_texts`` is None."""
    unknown = set(methods) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baselines {sorted(unknown)}; known: {BASELINES}")
    out = {}
    for name in methods:
        if name == "popularity":
            out[name] = Popularity().fit(train_matrix)
        elif name == "item_knn":
            out[name] = ItemKNN(k=knn_k).fit(train_matrix)
        elif name == "ease":
            lam, scores = EASE_DEFAULT_LAMBDA, {}
            if valid_matrix is not None and can_tune_ease_lambda(train_matrix, valid_matrix):
                lam, scores = tune_ease_lambda(train_matrix, valid_matrix, ease_lambdas, return_scores=True)
            out[name] = EASE(lam).fit(train_matrix)
            out[name].lambda_scores = scores
        elif name == "tfidf" and item_texts is not None:
            out[name] = TfidfContent(item_texts).fit(train_matrix)
        elif name == "tfrs_tutorial":
            out[name] = TfrsTutorial(**(tfrs_kwargs or {})).fit(train_matrix)
    if history_matrix is not None:
        for baseline in out.values():
            baseline.with_history(history_matrix)
    return out


__all__ = [
    "Popularity", "ItemKNN", "EASE", "tune_ease_lambda", "can_tune_ease_lambda", "EASE_DEFAULT_LAMBDA", "tfidf_matrix", "TfidfContent",
    "TfrsTutorial", "BASELINES", "fit_baselines",
]
