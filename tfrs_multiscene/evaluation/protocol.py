"""The held-out protocol every retrieval comparison follows, in one place.

On a :class:`~tfrs_multiscene.data.splits.Split`:

1. every method's parameters are fitted on the training part (validation only tunes, e.g.
   EASE's lambda or the two-tower's best epoch);
2. at test time every method knows the training *and* validation interactions
   (:func:`known_interactions`): its user rows / history features start from them and
   every list excludes them, so a validation item is neither recommended again nor counted
   as a miss;
3. all methods are scored by ``evaluate_retrieval`` on the same index, test part and cut-offs.

``evaluate`` (the run's split and its cold-start split) and
``benchmarks/bench_retrieval_quality.py`` go through :class:`HeldOutProtocol`, so the
three cannot drift apart.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd

from tfrs_multiscene.data.schema import Tables


def known_interactions(split) -> Tables:
    """What the system knows of each user when the test period starts: the training and the
    validation interactions (the training part alone when there is no validation part)."""
    if split.valid is None or split.valid.interactions.empty:
        return split.train
    return split.train.with_interactions(
        pd.concat([split.train.interactions, split.valid.interactions], ignore_index=True))


def known_info(split, known: Tables) -> dict:
    """The ``split`` entries that record what scoring started from."""
    valid = 0 if split.valid is None else len(split.valid.interactions)
    return {"known_interactions": int(len(known.interactions)), "known_from": "train+valid" if valid else "train"}


class HeldOutProtocol:
    """One split's comparison: fit baselines, wrap models, evaluate them side by side.

    Args:
      split: the split (train / valid / test parts and ``info``).
      label: the label column whose value > 0 marks a positive (None: every interaction).

    Attributes:
      index: the :class:`InteractionIndex` of the training part (score columns = its items).
      train_matrix: the training positives, users x items (what baselines are fitted on).
      known: :func:`known_interactions` of ``split``.
    """

    def __init__(self, split, label: Optional[str]):
        from tfrs_multiscene.evaluation.interactions import InteractionIndex

        self.split, self.label = split, label
        self.index = InteractionIndex.from_tables(split.train)
        self.train_matrix = self.index.matrix(split.train, "binary", label)
        self.known = known_interactions(split)

    def fit_baselines(self, names: Sequence[str], item_texts: Optional[Sequence[str]] = None,
                      ease_lambdas: Optional[Sequence[float]] = None) -> dict:
        """``{name: fitted baseline}``, fitted on train, scoring from the known interactions;
        EASE's lambda is tuned on the validation part when there is one."""
        from tfrs_multiscene.evaluation.baselines import fit_baselines

        valid = None
        if "ease" in names and self.split.valid is not None:
            valid = self.index.matrix(self.split.valid, "binary", self.label, unknown_users="drop")
        kwargs = {"ease_lambdas": [float(x) for x in ease_lambdas]} if ease_lambdas else {}
        return fit_baselines(self.train_matrix, item_texts, valid, list(names),
                             history_matrix=self.index.matrix(self.known, "binary", self.label,
                                                              unknown_users="drop"),
                             **kwargs)

    def model_scores(self, model):
        """The two-tower's score function (query tower . candidate tower) over the index's
        items, with histories from the known interactions."""
        return model.score_fn(self.known, self.index.item_ids, self.index.user_ids)

    def evaluate(self, score_fns: dict, ks: Sequence[int], cold_items: Optional[Sequence[str]] = None,
                 item_embeddings=None) -> dict:
        """``evaluate_retrieval`` of every method on the test part (see its docs for the JSON)."""
        from tfrs_multiscene.evaluation.retrieval_eval import evaluate_retrieval

        return evaluate_retrieval(score_fns, self.known, self.split.test, self.index, ks=ks,
                                  item_embeddings=item_embeddings, cold_items=cold_items,
                                  positive_label=self.label,
                                  split_info={**self.split.info, **known_info(self.split, self.known)})
