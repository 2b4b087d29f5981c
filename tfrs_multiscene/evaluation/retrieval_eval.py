"""Retrieval evaluation: every method on the same held-out split, in one run.

``evaluate_retrieval`` scores each user once per method and scope (overall, then each
scenario), derives the three ranked lists from those scores (seen excluded, seen kept, cold
items only) and computes:

* ``standard``: items seen in training are excluded from the lists and removed from the
  relevant sets; per-user Recall@K, NDCG@K, HitRate@K, MRR averaged over the test users with
  at least one unseen test item; catalogue coverage@K, novelty@K and (when item embeddings
  are given) intra-list diversity@K of those lists. Definitions: ``metrics`` module.
* ``tfrs``: TFRS FactorizedTopK top-K accuracy, nothing excluded, one count per test
  interaction (duplicates included), so numbers compare with published TFRS figures.
* ``cold_start`` (when ``cold_items`` is given): over users with a held-out interaction on
  a cold item, ``recall@K`` = recall of their cold items when the candidates are the cold
  items only, and ``recall_all@K`` = recall of the same cold items in the standard list
  over all items (seen excluded). Both use the min(K, |relevant|) denominator.
* ``by_scenario``: ``standard`` and ``tfrs`` restricted to one scenario's test interactions;
  the score function receives the scenario name; seen items are those of all scenarios.
* ``by_activity``: standard metrics for light / medium / heavy users = terciles of the
  evaluated users' number of training items (light <= q1/3 < medium <= q2/3 < heavy).
* ``popularity_share``: share of the top-K slots (standard lists) that go to head, torso
  and tail items. Items are sorted by training users, most first; head = the most popular
  items that together hold the first 20% of training interactions (the item that crosses
  20% included), tail = the least popular items holding the last 20% (plus items never seen
  in training), torso = the rest.

Users without history: score functions score the rows of the training index, so a user
with no training interaction (e.g. on a cold-item split, a user whose every interaction is
on a held-out item) has no row. Such users are left out of every comparison, overall and
cold start alike (with no history, each method's list for them says nothing about how it
uses a user's history on new items), and counted in ``split``: ``users_without_history``
(distinct test users left out), ``test_interactions_unknown_user`` (their test
interactions) and ``known_interactions_without_history`` (their known, i.e. validation,
interactions, which are history of nobody scored).

Ties in scores are broken by the lower item column (deterministic), which matters for
methods that give many items the same score (e.g. popularity over cold items).

Score functions: ``fn(user_rows: int[B], scenario: str | None) -> float[B, n_items]``; an
object with ``.score(user_rows)`` (the baselines) is accepted and ignores the scenario.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from tfrs_multiscene.data.schema import SCENARIO, USER_ID, Tables
from tfrs_multiscene.evaluation import metrics as M
from tfrs_multiscene.evaluation.interactions import InteractionIndex
from tfrs_multiscene.jsonsafe import json_safe

ACTIVITY_GROUPS = ("light", "medium", "heavy")
ORACLE_POPULARITY = "oracle_popularity"  # cold start: a ceiling reference read from the test labels
#: Entries of the cold-start block that describe the run rather than a method's metrics.
COLD_START_NOTES = ("split", "new_item_offset")
POPULARITY_GROUPS = ("head", "torso", "tail")
HEAD_SHARE = 0.2

DEFINITIONS = {
    "known": "each user's training and validation interactions (split.known_from): the history every method scores from; excluded from standard lists",
    "recall@K": "hits in top K / min(K, |unseen test items|), averaged over test users",
    "ndcg@K": "binary relevance; DCG / ideal DCG of min(K, |unseen test items|) hits",
    "hit_rate@K": "share of users with at least one hit in the top K",
    "mrr": "1 / rank of the first hit within the top max(K) (0 if none)",
    "coverage@K": "distinct recommended items in all top-K lists / catalogue size",
    "novelty@K": "mean -log2 p(item) of recommended items; p = (training users of item + 1) / (users + 1)",
    "diversity@K": "mean pairwise cosine distance of item embeddings within a top-K list",
    "top@K": "TFRS FactorizedTopK: share of test interactions whose item is in the user's top K over all items (seen not excluded)",
    "cold_start": "recall@K: candidates = cold items only; recall_all@K: candidates = all items (seen excluded); relevant = the user's cold test items",
    "oracle_popularity": "cold start only: cold items ranked by their number of test users, read from the test labels (no method can; the share of cold-start recall that item popularity alone explains)",
    "activity": "terciles of evaluated users' training item counts",
    "users_without_history": "test users with no training interaction (no row in the training index, e.g. every interaction on held-out cold items): left out of every comparison and counted",
    "cold_slot_share@K": "cold start only: share of the top-K slots over all items that held-out cold items get (beside split.cold_interaction_share, their share of all interactions)",
    "popularity_share": "head = most popular items holding the first 20% of training interactions, tail = least popular holding the last 20% (and unseen items), torso = the rest",
}


# --------------------------------------------------------------------------- helpers


def _as_score_fn(fn) -> Callable:
    if hasattr(fn, "score") and callable(fn.score):
        return lambda rows, scenario=None: fn.score(rows)
    if not callable(fn):
        raise TypeError(f"{fn!r} is neither callable nor has .score")
    return fn


def _batch_size(n_items: int, budget_floats: int = 5_000_000) -> int:
    return int(max(1, min(2048, budget_floats // max(n_items, 1))))


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if x.size and not np.isnan(x).all() else float("nan")


def popularity_groups(train_matrix: sp.spmatrix, head_share: float = HEAD_SHARE) -> np.ndarray:
    """``int8[I]``: 0 head, 1 torso, 2 tail (definition in the module docstring)."""
    counts = np.asarray(sp.csr_matrix(train_matrix).sum(axis=0)).ravel().astype(np.float64)
    order = np.lexsort((np.arange(counts.size), -counts))  # most popular first, stable
    total = counts.sum()
    groups = np.full(counts.size, 1, dtype=np.int8)
    if total <= 0:
        groups[:] = 2
        return groups
    cum = np.cumsum(counts[order]) / total
    before = cum - counts[order] / total  # share held by more popular items
    groups[order[before < head_share]] = 0
    groups[order[before >= 1.0 - head_share - 1e-12]] = 2
    groups[counts == 0] = 2
    return groups


def activity_groups(n_train: np.ndarray) -> tuple:
    """``(group int8[B], (q1, q2))``: 0 light, 1 medium, 2 heavy by tercile thresholds."""
    n_train = np.asarray(n_train, dtype=np.float64)
    if n_train.size == 0:
        return np.zeros(0, np.int8), (float("nan"), float("nan"))
    q1, q2 = np.quantile(n_train, [1 / 3, 2 / 3])
    group = np.where(n_train <= q1, 0, np.where(n_train <= q2, 1, 2)).astype(np.int8)
    return group, (float(q1), float(q2))


def _rank_lists(fn, users, scenario, seen, k, cold_cols, n_items, batch) -> dict:
    """Score ``users`` in batches; returns ranked int32 lists ``standard``, ``all`` and
    (if ``cold_cols``) ``cold`` (item columns), each ``[len(users), <=k]``."""
    out = {"standard": [], "all": [], "cold": []}
    for start in range(0, users.size, batch):
        rows = users[start:start + batch]
        scores = np.asarray(fn(rows, scenario))
        if scores.shape != (rows.size, n_items):
            raise ValueError(f"score function returned shape {scores.shape}, expected {(rows.size, n_items)}")
        out["standard"].append(M.top_k_excluding_seen(scores, seen[rows], k).astype(np.int32))
        out["all"].append(M.top_k_excluding_seen(scores, None, k).astype(np.int32))
        if cold_cols is not None:
            local = M.top_k_excluding_seen(scores[:, cold_cols], None, k)
            out["cold"].append(cold_cols[local].astype(np.int32))
    widths = {"standard": min(k, n_items), "all": min(k, n_items)}
    if cold_cols is not None:
        widths["cold"] = min(k, cold_cols.size)
    return {name: np.concatenate(out[name]) if out[name] else np.zeros((0, w), np.int32)
            for name, w in widths.items()}


def standard_metrics(ranked, relevant, ks, item_prob, item_embeddings=None) -> tuple:
    """Per-user arrays ``{metric: [B]}`` and catalogue coverage ``{coverage@K: float}``."""
    per_user, coverage = {}, {}
    n_items = item_prob.shape[0]
    for k in ks:
        per_user[f"recall@{k}"] = M.recall_at_k(ranked, relevant, k)
        per_user[f"ndcg@{k}"] = M.ndcg_at_k(ranked, relevant, k)
        per_user[f"hit_rate@{k}"] = M.hit_rate_at_k(ranked, relevant, k)
    per_user["mrr"] = M.mrr(ranked, relevant)
    for k in ks:
        coverage[f"coverage@{k}"] = M.coverage_at_k(ranked, n_items, k)
        per_user[f"novelty@{k}"] = M.novelty(ranked, item_prob, k)
        if item_embeddings is not None:
            per_user[f"diversity@{k}"] = M.intra_list_diversity(ranked, item_embeddings, k)
    return per_user, coverage


def _summary(per_user: dict, coverage: dict, mask=None) -> dict:
    """Means of the per-user arrays (over ``mask`` if given), plus ``coverage`` and ``users``."""
    n = len(next(iter(per_user.values())))
    mask = np.ones(n, dtype=bool) if mask is None else mask
    out = {name: _nanmean(v[mask]) for name, v in per_user.items()}
    out.update(coverage)
    out["users"] = int(mask.sum())
    return out


def tfrs_metrics(ranked_all, users, test_counts, ks) -> dict:
    """``{top@K: float}``: each test interaction (repeated by its count) checks its item
    against the row of ``ranked_all`` of its user (``users[i]`` is that row's user)."""
    sub = sp.csr_matrix(test_counts[users])
    reps = np.rint(sub.data).astype(np.int64)
    row_of = np.repeat(np.repeat(np.arange(users.size), np.diff(sub.indptr)), reps)
    targets = np.repeat(sub.indices, reps)
    out = {f"top@{k}": M.topk_accuracy(ranked_all[row_of], targets, k) for k in ks}
    out["interactions"] = int(targets.size)
    return out


# --------------------------------------------------------------------------- main entry


def evaluate_retrieval(
    score_fns: Mapping[str, Callable],
    train: Tables,
    test: Tables,
    index: InteractionIndex,
    ks: Sequence[int] = (10, 20, 50, 100),
    item_embeddings=None,
    cold_items: Optional[Sequence[str]] = None,
    positive_label: Optional[str] = None,
    split_info: Optional[dict] = None,
    batch_users: Optional[int] = None,
) -> dict:
    """Evaluate every method of ``score_fns`` on ``test`` (JSON-safe dict, see module doc).

    Args:
      score_fns: ``{method: fn(user_rows, scenario) -> [B, n_items]}`` or fitted baselines.
      train, test: the known interactions (training, plus validation when the run has it:
        what the system knows when the test period starts) and the test part; ``train``'s
        positives are the seen items that standard lists exclude.
      index: user/item index (users of the training part); users outside it have no training
        history: they are left out, not scored, and counted (``split.users_without_history``,
        ``test_interactions_unknown_user``, ``known_interactions_without_history``); their
        known interactions (e.g. validation rows on cold items) are not used.
      ks: cut-offs; those above the catalogue size are dropped (recorded in ``split``).
      item_embeddings: ``[n_items, D]`` dense or sparse, enables ``diversity@K``.
      cold_items: item ids held out of training (a cold-item split) -> ``cold_start``.
      positive_label: label column whose value > 0 marks a positive (None: every row).
      split_info: extra entries for the ``split`` section (e.g. ``Split.info``).
    """
    fns = {name: _as_score_fn(fn) for name, fn in score_fns.items()}
    n_items = index.n_items
    ks = sorted({int(k) for k in ks if 1 <= int(k) <= n_items})
    if not ks:
        raise ValueError(f"no cut-off in ks fits a catalogue of {n_items} items")
    kmax = ks[-1]
    known_pos = InteractionIndex.positives(train, positive_label)
    known_without_history = int((index.user_rows(known_pos[USER_ID]) < 0).sum())
    seen = index.matrix(train, "binary", positive_label, unknown_users="drop")
    item_prob = M.item_probabilities(seen)
    pop_group = popularity_groups(seen)
    cold_cols = None
    if cold_items is not None and len(cold_items):
        cold_cols = index.item_cols(list(cold_items))
        if (cold_cols < 0).any():
            raise ValueError("some cold_items are not in the item index")
        cold_cols = np.unique(cold_cols)
    batch = batch_users or _batch_size(n_items)

    test_pos = InteractionIndex.positives(test, positive_label)
    known = index.user_rows(test_pos[USER_ID]) >= 0
    scenarios = sorted(test_pos[SCENARIO].astype(str).unique().tolist())
    split = {
        "train_interactions": int(len(known_pos)),
        "test_interactions": int(len(test_pos)),
        "test_interactions_unknown_user": int((~known).sum()),
        "users_without_history": int(test_pos[USER_ID].astype(str)[~known].nunique()),
        "known_interactions_without_history": known_without_history,
        "users": index.n_users, "items": n_items, "ks": ks, "positive_label": positive_label,
        "scenarios": scenarios, "cold_items": 0 if cold_cols is None else int(cold_cols.size),
        "popular_items": {g: int((pop_group == i).sum()) for i, g in enumerate(POPULARITY_GROUPS)},
    }
    split.update(split_info or {})
    retrieval = {"standard": {}, "tfrs": {}, "by_scenario": {s: {"standard": {}, "tfrs": {}} for s in scenarios},
                 "by_activity": {}, "popularity_share": {}}
    if cold_cols is not None:
        retrieval["cold_start"] = {}

    scopes = [None] + (scenarios if len(scenarios) > 1 else [])
    for scope in scopes:
        counts = index.matrix(test, "count", positive_label, scenario=scope, unknown_users="drop")
        relevant = counts - counts.multiply(seen > 0)
        relevant.eliminate_zeros()
        users = np.flatnonzero(np.diff(counts.indptr) > 0)
        std_mask = np.diff(relevant.indptr)[users] > 0
        std_users = users[std_mask]
        if scope is None:
            split["test_users"] = int(users.size)
            split["standard_users"] = int(std_users.size)
            act, (q1, q2) = activity_groups(np.diff(seen.indptr)[std_users])
            split["activity_groups"] = {"light": f"<= {q1:g}", "medium": f"({q1:g}, {q2:g}]", "heavy": f"> {q2:g}",
                                        **{f"{g}_users": int((act == i).sum()) for i, g in enumerate(ACTIVITY_GROUPS)}}
        for method, fn in fns.items():
            lists = _rank_lists(fn, users, scope, seen, kmax, cold_cols if scope is None else None, n_items, batch)
            per_user, coverage = standard_metrics(lists["standard"][std_mask], relevant[std_users], ks, item_prob, item_embeddings)
            std = _summary(per_user, coverage)
            tf_top = tfrs_metrics(lists["all"], users, counts, ks)
            if scope is not None:
                retrieval["by_scenario"][scope]["standard"][method] = std
                retrieval["by_scenario"][scope]["tfrs"][method] = tf_top
                continue
            retrieval["standard"][method] = std
            retrieval["tfrs"][method] = tf_top
            retrieval["by_activity"][method] = {
                g: _summary(per_user, {}, act == i) for i, g in enumerate(ACTIVITY_GROUPS)}
            retrieval["popularity_share"][method] = {
                f"{g}@{k}": float((pop_group[lists["standard"][std_mask][:, :k]] == i).mean()) if std_users.size else float("nan")
                for k in ks for i, g in enumerate(POPULARITY_GROUPS)}
            if cold_cols is not None:
                retrieval["cold_start"][method] = _cold_start(lists, std_mask, relevant[std_users], cold_cols, ks)
        if scope is None and cold_cols is not None:
            lists = _rank_lists(_constant_scores(np.asarray((counts > 0).sum(axis=0), dtype=np.float32).ravel()),
                                users, None, seen, kmax, cold_cols, n_items, batch)
            retrieval["cold_start"][ORACLE_POPULARITY] = _cold_start(lists, std_mask, relevant[std_users], cold_cols, ks)
    if len(scenarios) == 1:  # one scenario: identical to overall, not recomputed
        only = scenarios[0]
        retrieval["by_scenario"][only] = {"standard": retrieval["standard"], "tfrs": retrieval["tfrs"]}
    return json_safe({"split": split, "retrieval": retrieval, "definitions": DEFINITIONS})


def _constant_scores(scores: np.ndarray) -> Callable:
    """A score function giving every user the same ``scores [n_items]``."""
    return lambda rows, _scenario: np.broadcast_to(scores, (len(rows), scores.size))


def _cold_start(lists, std_mask, relevant, cold_cols, ks) -> dict:
    """Recall@K of the users' cold test items, candidates = cold items / all items."""
    is_cold = np.zeros(relevant.shape[1], dtype=np.float64)
    is_cold[cold_cols] = 1.0
    rel_cold = sp.csr_matrix(relevant @ sp.diags(is_cold))
    rel_cold.eliminate_zeros()
    has = np.diff(rel_cold.indptr) > 0
    out = {"users": int(has.sum())}
    if not has.any():
        return out
    cold_lists = lists["cold"][std_mask][has]
    all_lists = lists["standard"][std_mask][has]
    for k in ks:
        if k <= cold_lists.shape[1]:
            out[f"recall@{k}"] = _nanmean(M.recall_at_k(cold_lists, rel_cold[has], k))
        out[f"recall_all@{k}"] = _nanmean(M.recall_at_k(all_lists, rel_cold[has], k))
    k = min(50, all_lists.shape[1])
    out[f"cold_slot_share@{k}"] = float(is_cold[all_lists[:, :k]].mean())
    return out


# --------------------------------------------------------------------------- reporting


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _table(title: str, rows: Mapping[str, Mapping], max_cols: int = 8) -> list:
    """Fixed-width text table(s): methods as rows, metrics as columns (chunked)."""
    cols = []
    for metrics in rows.values():
        cols += [c for c in metrics if c not in cols and not isinstance(metrics[c], dict)]
    if not rows or not cols:
        return []
    width0 = max(len("method"), *(len(m) for m in rows))
    lines = []
    for start in range(0, len(cols), max_cols):
        chunk = cols[start:start + max_cols]
        widths = [max(len(c), 8) for c in chunk]
        lines.append(f"== {title}" + (f" ({start // max_cols + 1})" if len(cols) > max_cols else ""))
        lines.append("  ".join(["method".ljust(width0)] + [c.rjust(w) for c, w in zip(chunk, widths)]))
        for method, metrics in rows.items():
            lines.append("  ".join([method.ljust(width0)] + [_fmt(metrics.get(c)).rjust(w) for c, w in zip(chunk, widths)]))
        lines.append("")
    return lines


def format_table(results: dict) -> str:
    """A readable fixed-width report of ``evaluate_retrieval``'s result."""
    r = results["retrieval"]
    lines = _table("standard (seen excluded)", r.get("standard", {}))
    lines += _table("tfrs (FactorizedTopK, seen not excluded)", r.get("tfrs", {}))
    cold = r.get("cold_start", {})
    lines += _table("cold start", {m: v for m, v in cold.items() if m not in COLD_START_NOTES})
    offset, split = cold.get("new_item_offset") or {}, cold.get("split") or {}
    if offset or split:
        lines += [f"cold start: {split.get('held_out_items', '?')} held-out items with "
                  f"{_fmt(split.get('cold_interaction_share'))} of the interactions; the model's new-item offset "
                  f"{_fmt(offset.get('offset'))} (chosen on known-item validation, allowed warm cost "
                  f"{_fmt(offset.get('warm_cost'))})", ""]
    for scenario, block in r.get("by_scenario", {}).items():
        lines += _table(f"scenario {scenario}: standard", block.get("standard", {}))
        lines += _table(f"scenario {scenario}: tfrs", block.get("tfrs", {}))
    for method, groups in r.get("by_activity", {}).items():
        lines += _table(f"by activity: {method}", groups)
    lines += _table("popularity share of recommendations", r.get("popularity_share", {}))
    return "\n".join(lines)


def plot_retrieval(results: dict, out_dir: str) -> list:
    """Bar charts (matplotlib Agg): per key metric, bars per method for overall and each
    scenario; plus the head/torso/tail shares. Returns the written PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    r = results["retrieval"]
    ks = results["split"]["ks"]
    scopes = {"overall": {"standard": r["standard"], "tfrs": r["tfrs"]}}
    scopes.update(r.get("by_scenario", {}))
    methods = list(r["standard"])
    wanted = [("standard", f"recall@{ks[0]}"), ("standard", f"ndcg@{ks[0]}"),
              ("standard", f"recall@{ks[-1]}"), ("tfrs", f"top@{ks[-1]}")]
    paths = []
    width = 0.8 / max(len(methods), 1)
    for protocol, metric in wanted:
        fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(scopes)), 4))
        for j, method in enumerate(methods):
            vals = [(scopes[s][protocol].get(method, {}) or {}).get(metric) or 0.0 for s in scopes]
            ax.bar(np.arange(len(scopes)) + j * width, vals, width, label=method)
        ax.set_xticks(np.arange(len(scopes)) + width * (len(methods) - 1) / 2, list(scopes))
        ax.set_ylabel(metric)
        ax.set_title(f"{protocol}: {metric}")
        ax.legend(fontsize=8)
        path = os.path.join(out_dir, f"retrieval_{protocol}_{metric.replace('@', '_at_')}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    share = r.get("popularity_share", {})
    if share:
        fig, ax = plt.subplots(figsize=(max(6, len(share)), 4))
        bottom = np.zeros(len(share))
        for g in POPULARITY_GROUPS:
            vals = np.array([share[m].get(f"{g}@{ks[0]}") or 0.0 for m in share])
            ax.bar(list(share), vals, bottom=bottom, label=g)
            bottom += vals
        ax.set_ylabel(f"share of top-{ks[0]} slots")
        ax.legend()
        path = os.path.join(out_dir, "retrieval_popularity_share.png")
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


__all__ = [
    "evaluate_retrieval", "format_table", "plot_retrieval", "standard_metrics", "tfrs_metrics",
    "popularity_groups", "activity_groups", "DEFINITIONS",
]
