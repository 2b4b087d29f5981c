"""Settings chosen from the data: the one place where the package adapts its defaults.

A careful engineer looks at a log before choosing settings: how many positives a user has,
whether the log has real non-clicks or only positives, how the scenarios are sized, how
many examples a full-batch fit would pass over. :func:`derive_settings` does that from the
training split's statistics (:class:`DataProfile`) and returns the effective
:class:`~tfrs_multiscene.config.RunConfig` plus one :class:`Choice` per setting it changed,
each with the statistic and the reason. A field the user set (flag or config file, named
in ``explicit`` as ``"section.field"``) is never changed; its choice is reported as kept.

Each rule states the measurement behind it. The rules only move a setting away from the
package default where the data leaves the regime that default was measured in (the
synthetic impression worlds: a median of 11 clicks per user, one small scenario), so the
synthetic world keeps the defaults.

Example::

    profile = DataProfile.of(split.train, run_cfg.retrieval.positive_task)
    run_cfg, choices = derive_settings(run_cfg, profile, explicit={"retrieval.epochs"})
    print(format_choices(choices))
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tfrs_multiscene import config as C
from tfrs_multiscene.data import schema
from tfrs_multiscene.ranking.data import is_impression_log
from tfrs_multiscene.retrieval.features import positive_interactions

# Regime boundaries (see each rule in derive_settings for the measurement behind it).
DENSE_USER_POSITIVES = 20        # median training positives per user at or above this: "dense users"
SPARSE_USER_POSITIVES = 10       # median below this: "sparse users"
LARGE_LOG_POSITIVES = 30_000     # training positives at or above this: many optimiser steps per epoch
LARGE_SCENARIO_SHARE = 0.15      # every scenario holds at least this share of the training rows
WIDE_MAX_EXAMPLES = 1_000_000    # full-batch L-BFGS passes over more ranking examples than this are too slow
MAX_HISTORY = 200


@dataclasses.dataclass(frozen=True)
class DataProfile:
    """Statistics of a training split that settings depend on.

    Attributes:
      interactions: training rows.
      positives: retrieval positives (rows of the positive task, or every row).
      users, items: distinct ids among the training rows / in the item table.
      median_user_positives, p90_user_positives: positives per user (users with one or more).
      impression_log: the log has real negatives (a label column with zeros).
      has_rating: a ``rating`` column is present.
      scenario_shares: each scenario's share of the training rows.
      ranking_examples: rows the ranking stage trains on (positive-only logs: each positive
        plus ``negatives_per_positive`` sampled items).
    """

    interactions: int
    positives: int
    users: int
    items: int
    median_user_positives: float
    p90_user_positives: float
    impression_log: bool
    has_rating: bool
    scenario_shares: dict
    ranking_examples: int

    @classmethod
    def of(cls, train: schema.Tables, positive_task=None, negatives_per_positive: int = 4) -> "DataProfile":
        inter = train.interactions
        pos = positive_interactions(train, positive_task)
        per_user = pos.groupby(schema.USER_ID).size().to_numpy() if len(pos) else np.zeros(1)
        impression = is_impression_log(train)
        shares = inter[schema.SCENARIO].astype(str).value_counts(normalize=True) if len(inter) else {}
        return cls(
            interactions=int(len(inter)), positives=int(len(pos)),
            users=int(inter[schema.USER_ID].nunique()), items=int(len(train.items)),
            median_user_positives=float(np.median(per_user)), p90_user_positives=float(np.percentile(per_user, 90)),
            impression_log=bool(impression), has_rating=schema.RATING in inter.columns,
            scenario_shares={str(k): round(float(v), 4) for k, v in dict(shares).items()},
            ranking_examples=int(len(inter) * (1 if impression else 1 + int(negatives_per_positive))))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One derived setting: ``field`` ("section.name"), the value used, why, and whether the
    user's own value was kept instead (``kept_user_value``)."""

    field: str
    value: Any
    reason: str
    kept_user_value: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _rules(profile: DataProfile, cfg: C.RunConfig, explicit) -> list:
    """``[(field, value, reason)]`` that apply to ``profile`` (``explicit``: fields the user set)."""
    out = []
    dense = profile.median_user_positives >= DENSE_USER_POSITIVES
    if dense:
        history = int(min(MAX_HISTORY, max(cfg.retrieval.history_length, round(profile.p90_user_positives))))
        why = (f"dense users (median {profile.median_user_positives:.0f} training positives per user, p90 "
               f"{profile.p90_user_positives:.0f}; >= {DENSE_USER_POSITIVES} is dense)")
        out += [
            ("retrieval.history_length", history,
             why + ": the query reads up to the p90 history (at most 200); on MovieLens-100K the whole history "
                   "raised the validation selection score over 50 items"),
            ("retrieval.use_user_id", True,
             why + ": enough rows per user to learn a user embedding without overfitting (MovieLens-100K validation)"),
            ("retrieval.share_item_embeddings", False,
             why + ": history items get their own embeddings (MovieLens-100K validation +0.0012 selection score)"),
        ]
    if profile.median_user_positives < SPARSE_USER_POSITIVES:
        why = (f"sparse users (median {profile.median_user_positives:.0f} training positives per user; < "
               f"{SPARSE_USER_POSITIVES} is sparse)")
        out += [
            ("retrieval.temperature", 0.2,
             why + ": a softer softmax; Amazon 2018 validation selection score 0.420 vs 0.390 at 0.1 (0.379 at "
                   "0.3), the id-only Amazon categories 0.862 vs 0.862"),
            ("retrieval.epochs", 30, why + ": the softer softmax peaks later (epoch 14 of 30 on Amazon 2018); "
                                         "early stopping ends it"),
        ]
    if profile.positives >= LARGE_LOG_POSITIVES:
        why = (f"{profile.positives} training positives (>= {LARGE_LOG_POSITIVES}): enough steps per epoch for a "
               f"slow weight average")
        out += [
            ("retrieval.batch_size", 1024, why + "; larger batches, more in-batch negatives"),
            ("retrieval.learning_rate", 0.008, why + "; the average tolerates a high rate (MovieLens-100K validation)"),
            ("retrieval.ema_momentum", 0.998, why + " (horizon ~500 steps; +0.004 validation selection score on "
                                                    "MovieLens-100K)"),
            ("retrieval.epochs", 60, why + "; averaged training peaks later (epoch 20-35), early stopping ends it"),
        ]
    if not profile.impression_log:
        out.append(("ranking.wide", False,
                    "positives-only log: the wide part's per-value effects are learnt against sampled items; it "
                    "lowered the liked AUC of every MovieLens age group"))
    elif profile.ranking_examples > WIDE_MAX_EXAMPLES:
        out.append(("ranking.wide", False,
                    f"{profile.ranking_examples} ranking examples (> {WIDE_MAX_EXAMPLES}): a full-batch L-BFGS fit "
                    f"makes hundreds of passes over them"))
    wide_rule = next((value for field, value, _ in out if field == "ranking.wide"), cfg.ranking.wide)
    wide = cfg.ranking.wide if "ranking.wide" in explicit else wide_rule
    if not profile.impression_log and not wide:
        out += [
            ("ranking.learning_rate", 0.002,
             "no wide part: the deep model learns the per-value effects itself at a higher rate "
             "(MovieLens-100K validation)"),
            ("ranking.epochs", 8, "no wide part: early stopping ends it in a few epochs at the higher rate"),
        ]
    shares = profile.scenario_shares
    if len(shares) > 1 and min(shares.values()) >= LARGE_SCENARIO_SHARE:
        out.append(("ranking.balance_scenarios", False,
                    f"every scenario holds >= {LARGE_SCENARIO_SHARE:.0%} of the training rows (smallest "
                    f"{min(shares.values()):.1%}): no small scenario to protect, and re-weighting lowered the "
                    f"MovieLens validation AUC"))
    return out


def derive_settings(run_cfg: C.RunConfig, profile: DataProfile, explicit=frozenset()) -> tuple:
    """``(effective RunConfig, [Choice])``: the rules of this module applied to ``run_cfg``.

    ``explicit``: ``"section.field"`` names the user set; those keep the user's value.
    """
    explicit = set(explicit)
    choices, changes = [], {}
    rules = {}
    for field, value, reason in _rules(profile, run_cfg, explicit):  # a later rule of a field wins
        rules.pop(field, None)
        rules[field] = (value, reason)
    for field, (value, reason) in rules.items():
        section, name = field.split(".")
        if field in explicit:
            choices.append(Choice(field, getattr(getattr(run_cfg, section), name), reason, kept_user_value=True))
            continue
        if getattr(getattr(run_cfg, section), name) == value:
            continue
        changes.setdefault(section, {})[name] = value
        choices.append(Choice(field, value, reason))
    for section, values in changes.items():
        run_cfg = dataclasses.replace(run_cfg, **{section: dataclasses.replace(getattr(run_cfg, section), **values)})
    return run_cfg, choices


def format_choices(choices) -> str:
    """One line per choice: ``section.field = value  (reason)``."""
    if not choices:
        return "settings from the data: the package defaults fit this data (no rule applied)"
    lines = ["settings from the data (a flag or config-file value always wins):"]
    for c in choices:
        tag = "kept your value" if c.kept_user_value else "chose"
        lines.append(f"  {c.field} = {c.value!r}  [{tag}] {c.reason}")
    return "\n".join(lines)
