"""New items that compete: a score offset for items the model has no id embedding for.

A two-tower scores an item it never saw in training (a new item, or a catalogue item with
no training positive) through the candidate tower's unknown-id path: the OOV id row plus
its text and categorical features. Among new items alone that path orders them well, but
its scores sit below those of warm items, whose id embeddings add what their interactions
taught; ranked among all items, as a live index ranks them, new items are almost never
shown (docs/experiments/cold-item-offset.md). The remedy is one scalar ``offset`` added to
the score of every unknown-id item:

    score(q, i) = <q, c_i> + offset * [item i has no id embedding]

It is chosen on the validation split, never on test data, by simulating newness. Each
validation positive is scored twice for every offset on a grid:

* ``warm``: as it is, against every other item with the unknown-id items raised by the
  offset (what the offset costs the recommendations of known items);
* ``new``: as if its item were new (through the unknown-id path, plus the offset),
  against every other item scored as above (what the offset gives new items).

Each is the selection score (mean Recall@K and NDCG@K over ``selection_ks``). The offset
is the one with the best ``new`` score among those whose ``warm`` score is at most
``new_item_warm_cost`` (relative) below the warm score without an offset: a stated price
in known-item accuracy paid for new-item exposure, and zero when nothing is gained.

The export carries the offset as one extra embedding dimension (query ``[q, 1]``, item
``[c, offset]`` for unknown ids and ``[c, 0]`` for the others), so ScaNN and the stock-op
index still rank by a single dot product (:func:`index_towers`).

Example::

    choice = choose_new_item_offset(model, split.train, split.valid, warm_cost=0.02)
    choice.offset        # e.g. 0.15
    choice.curve[0]      # {"offset": 0.0, "warm": 0.42, "new": 0.16}
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_multiscene.data import schema
from tfrs_multiscene.retrieval import features as F

#: Offsets tried (tower outputs are unit vectors, so scores lie in [-1, 1]).
OFFSET_GRID = tuple(round(0.025 * k, 3) for k in range(41))
#: Where a trained model's choice is kept, beside its checkpoints.
FILE_NAME = "new_items.json"


@dataclasses.dataclass
class OffsetChoice:
    """The chosen ``offset``, the validation ``curve`` it was read from (one dict per grid
    offset: ``offset``, ``warm``, ``new``), the ``warm_cost`` allowed and the number of
    ``validation_positives``."""

    offset: float
    curve: list
    warm_cost: float
    validation_positives: int

    @property
    def floor(self) -> float:
        """The lowest known-item selection score the allowed warm cost accepts."""
        return self.curve[0]["warm"] * (1.0 - float(self.warm_cost))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, model_dir) -> Path:
        path = Path(model_dir) / FILE_NAME
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path

    @classmethod
    def load(cls, model_dir) -> Optional["OffsetChoice"]:
        path = Path(model_dir) / FILE_NAME
        return cls(**json.loads(path.read_text())) if path.exists() else None


def unknown_id_mask(model, item_ids: Sequence[str]) -> np.ndarray:
    """bool [len(item_ids)]: True where the model has no id embedding for the item."""
    known = set(map(str, model.spec.item_ids))
    return np.array([str(i) not in known for i in item_ids], dtype=bool)


def candidate_embeddings_as_new(model, items: pd.DataFrame, batch_size: int = 4096) -> np.ndarray:
    """Candidate tower outputs [I, D] with every item embedded as an unknown id would be."""
    feats = F.candidate_features(items, list(model.spec.item_categorical))
    out = []
    for start in range(0, len(items), batch_size):
        chunk = {k: tf.constant(np.asarray(v[start:start + batch_size]).astype(str)) for k, v in feats.items()}
        out.append(model.candidate_model(chunk, training=False, unknown_ids=True).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.candidate_model.output_dim), np.float32)


def choose_new_item_offset(model, train: schema.Tables, valid: Optional[schema.Tables], warm_cost: float,
                           ks: Optional[Sequence[int]] = None, grid: Sequence[float] = OFFSET_GRID,
                           max_queries: int = 2000, chunk: int = 256, seed: int = 0) -> Optional[OffsetChoice]:
    """The offset for unknown-id items read from ``valid`` (module docstring); None when
    ``valid`` has no positives or every item has an id embedding."""
    from tfrs_multiscene.evaluation import metrics as M

    pos = F.positive_interactions(valid, model.cfg.positive_task) if valid is not None else None
    items = train.items.reset_index(drop=True)
    item_index = pd.Index(items[F.ITEM_ID].astype(str))
    unknown = unknown_id_mask(model, item_index)
    if pos is None or pos.empty or not unknown.any():
        return None
    ks = [int(k) for k in (ks or model.cfg.selection_ks)]
    n_items = len(item_index)
    ks = [min(k, n_items) for k in ks]
    pairs = pos[[F.USER_ID, F.SCENARIO]].astype(str).drop_duplicates()
    if len(pairs) > max_queries:
        pairs = pairs.sample(max_queries, random_state=seed)
    pairs = pairs.reset_index(drop=True)
    candidates = model.candidate_embeddings(items)
    as_new = candidate_embeddings_as_new(model, items)
    queries = model.query_embeddings(model.query_features(pairs[F.USER_ID].tolist(),
                                                          pairs[F.SCENARIO].tolist(), train))
    seen = F.query_item_matrix(pairs, F.positive_interactions(train, model.cfg.positive_task), item_index, False)
    relevant = F.query_item_matrix(pairs, pos, item_index, True)
    warm_sum, new_sum = np.zeros(len(grid)), np.zeros(len(grid))
    n_queries, n_positives = 0, 0
    for start in range(0, len(pairs), chunk):
        rows = slice(start, min(start + chunk, len(pairs)))
        base = queries[rows] @ candidates.T
        base[seen[rows].toarray().astype(bool)] = -np.inf
        chunk_relevant = relevant[rows]
        rel = chunk_relevant.tocoo()
        has = np.diff(chunk_relevant.indptr) > 0
        own_base = np.einsum("pd,pd->p", queries[rows][rel.row], as_new[rel.col])
        for g, offset in enumerate(grid):
            scores = base + offset * unknown[None, :]
            ranked = M.top_k_excluding_seen(scores, None, k=max(ks))
            per_query = [M.recall_at_k(ranked, chunk_relevant, k) for k in ks] + \
                        [M.ndcg_at_k(ranked, chunk_relevant, k) for k in ks]
            warm_sum[g] += np.nansum(np.mean(per_query, axis=0)[has])
            others = scores[rel.row]
            others[np.arange(len(rel.row)), rel.col] = -np.inf
            rank = (others > (own_base + offset)[:, None]).sum(axis=1)
            hits = [(rank < k).astype(float) for k in ks]
            gains = [np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0) for k in ks]
            new_sum[g] += np.mean(hits + gains, axis=0).sum()
        n_queries += int(has.sum())
        n_positives += len(rel.row)
    curve = [{"offset": float(o), "warm": float(w / n_queries), "new": float(n / n_positives)}
             for o, w, n in zip(grid, warm_sum, new_sum)]
    choice = OffsetChoice(offset=0.0, curve=curve, warm_cost=float(warm_cost), validation_positives=n_positives)
    allowed = [row for row in curve if row["warm"] >= choice.floor] or curve[:1]
    choice.offset = max(allowed, key=lambda row: (round(row["new"], 6), -row["offset"]))["offset"]
    return choice


class _QueryWithOffsetColumn(tf.keras.Model):
    """``[q, 1]``: the query tower's output [B, D] with a column of ones, [B, D + 1]."""

    def __init__(self, query_model, **kwargs):
        super().__init__(**kwargs)
        self.query_model = query_model

    def call(self, inputs, training=False):
        q = self.query_model(inputs, training=training)
        return tf.concat([q, tf.ones_like(q[:, :1])], axis=1)


def index_towers(model, items: pd.DataFrame, candidates: Optional[np.ndarray] = None) -> tuple:
    """(query model, candidate embeddings [I, D'] aligned with ``items``) that an index of
    ``model`` serves: the towers as they are, or with ``model.new_item_offset`` set the
    extra column (query ``[q, 1]``, item ``[c, offset]`` for unknown ids, else ``[c, 0]``),
    so that the index's dot product is the model's score. ``candidates``: the candidate
    tower's outputs for ``items`` when the caller has them already."""
    if candidates is None:
        candidates = model.candidate_embeddings(items)
    candidates = np.asarray(candidates, np.float32)
    offset = float(model.new_item_offset)
    if offset == 0.0:
        return model.query_model, candidates
    column = offset * unknown_id_mask(model, items[F.ITEM_ID].astype(str)).astype(np.float32)
    return (_QueryWithOffsetColumn(model.query_model, name="query_with_new_item_offset"),
            np.concatenate([candidates, column[:, None]], axis=1))


def with_offset_column(queries, index_candidates) -> np.ndarray:
    """Query embeddings [N, D] as the index of :func:`index_towers` reads them: with the
    column of ones when ``index_candidates`` has the offset column, else unchanged."""
    queries = np.asarray(queries, np.float32)
    if queries.shape[1] + 1 == np.asarray(index_candidates).shape[1]:
        return np.concatenate([queries, np.ones((len(queries), 1), np.float32)], axis=1)
    return queries
