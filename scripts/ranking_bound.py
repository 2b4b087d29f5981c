"""What a correctly specified click model reaches on a synthetic world, with a given affinity input.

The synthetic generator's click logit is (``tfrs_multiscene.data.synthetic``)

    b_s + a_s * z_s(u, i) + quality_i + bias_u + cat_{c(i)} + cat_{s, c(i)} + price_s * price_z_i + brand_{b(i)}

This script fits exactly that form by maximum a posteriori on a run's training split: a
logistic regression with per-scenario intercepts, category-by-scenario effects and price
slopes, shared category, brand, item and user effects (Gaussian priors with the generator's
own standard deviations), and in place of ``z_s(u, i)`` one of

* ``none``: nothing (the model has to do without the user-item affinity);
* ``history``: the run's user-history affinity feature (``run/ranking/history.npz``);
* ``true``: the generator's true ``z_s(u, i)``,

each with a slope per scenario. It prints, per scenario, the AUC expected under the true
probabilities on the validation and test rows and, where the run has been evaluated
(``evaluation.json``), the share of the pooled-oracle gap the fit closes on test next to the
model's. The gap between ``true`` and ``history`` is what a better affinity feature can still
win; the gap between ``history`` and the run's model is what the model loses to a
correctly specified one given the same inputs.

    python scripts/ranking_bound.py --data-seed 5 --run runs/world5 [--affinity none history true]

``--data-seed`` must be the ``generate --seed`` of the run's data (default world sizes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse
from scipy.optimize import minimize

from tfrs_multiscene.config import GenerateConfig
from tfrs_multiscene.data import synthetic
from tfrs_multiscene.evaluation.ranking_metrics import expected_auc
from tfrs_multiscene.ranking.history import load_run_history

KEYS = ["user_id", "item_id", "scenario", "timestamp"]
PRIOR_STD = {"intercept": 10.0, "affinity": 10.0, "price": 10.0, "category_by_scenario": 2.0,
             "category": 0.3, "brand": 0.2, "item": 0.4, "user": synthetic.USER_BIAS_STD}


def world_rows(world: synthetic.World) -> pd.DataFrame:
    """One row per interaction: its keys, user / item / scenario numbers and true affinity z."""
    frame = world.tables.interactions[KEYS].copy()
    frame["u"], frame["i"], frame["s"] = world.impressions.T
    frame["z"] = world.affinity
    return frame.drop_duplicates(KEYS, keep=False)  # a repeated key could not be matched to one row


def split_rows(run: Path, part: str, rows: pd.DataFrame) -> pd.DataFrame:
    frame = pd.read_parquet(run / "split" / f"{part}.parquet")
    frame["timestamp"] = pd.to_numeric(frame["timestamp"])
    return frame.merge(rows, on=KEYS, how="inner")


def design(frame: pd.DataFrame, world: synthetic.World, affinity: str | None) -> tuple:
    """Sparse design matrix [n, p] of the logit's terms and the prior std of each column."""
    n, S = len(frame), len(synthetic.SCENARIOS)
    n_categories, n_brands = world.item_category.max() + 1, world.item_brand.max() + 1
    n_items, n_users = len(world.item_quality), len(world.user_bias)
    rows, s, i, u = np.arange(n), frame["s"].to_numpy(), frame["i"].to_numpy(), frame["u"].to_numpy()
    c, b = world.item_category[i], world.item_brand[i]

    def onehot(index, size, values=None):
        return scipy.sparse.csr_matrix((np.ones(n) if values is None else values, (rows, index)), shape=(n, size))

    terms = {"intercept": onehot(s, S), "price": onehot(s, S, world.item_price_z[i]),
             "category_by_scenario": onehot(s * n_categories + c, S * n_categories),
             "category": onehot(c, n_categories), "brand": onehot(b, n_brands),
             "item": onehot(i, n_items), "user": onehot(u, n_users)}
    if affinity is not None:
        terms["affinity"] = onehot(s, S, frame[affinity].to_numpy(np.float64))
    stds = np.concatenate([np.full(m.shape[1], PRIOR_STD[name]) for name, m in terms.items()])
    return scipy.sparse.hstack(list(terms.values())).tocsr(), stds


def fit_map(x, y, stds) -> np.ndarray:
    precision = 1.0 / stds ** 2

    def objective(w):
        logit = x @ w
        p = 1.0 / (1.0 + np.exp(-logit))
        loss = np.sum(np.logaddexp(0.0, logit) - y * logit) + 0.5 * np.sum(precision * w * w)
        return loss, x.T @ (p - y) + precision * w

    return minimize(objective, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 3000}).x


def gap_closed(value: float, expected: dict) -> float:
    """Percent of the pooled-oracle gap ``value`` closes (``expected``: method -> expected AUC)."""
    return 100 * (value - expected["pooled"]) / (expected["oracle"] - expected["pooled"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-seed", type=int, required=True, help="`generate --seed` of the run's data")
    parser.add_argument("--run", type=Path, required=True, help="a run directory trained on that data")
    parser.add_argument("--affinity", nargs="+", default=["none", "history", "true"], choices=["none", "history", "true"])
    args = parser.parse_args(argv)

    world = synthetic.simulate(GenerateConfig(seed=args.data_seed))
    rows = world_rows(world)
    parts = {p: split_rows(args.run, p, rows) for p in ("train", "valid", "test")}
    if len(parts["train"]) < 0.9 * len(pd.read_parquet(args.run / "split" / "train.parquet")):
        raise SystemExit(f"{args.run}'s training rows do not match world --data-seed {args.data_seed}")
    history = load_run_history(args.run)
    for frame in parts.values():
        frame["history"] = history(frame)["history_affinity"][:, 0] if history is not None else np.nan
    evaluation = args.run / "evaluation.json"
    click = json.loads(evaluation.read_text())["ranking"]["click"] if evaluation.exists() else None

    for choice in args.affinity:
        column = {"none": None, "history": "history", "true": "z"}[choice]
        if choice == "history" and history is None:
            print(f"affinity {choice}: the run has no history.npz; skipped")
            continue
        x, stds = design(parts["train"], world, column)
        weights = fit_map(x, parts["train"]["click"].to_numpy(np.float64), stds)
        print(f"affinity {choice}:")
        scores = {name: design(parts[name], world, column)[0] @ weights for name in ("valid", "test")}
        for scenario in [spec.name for spec in synthetic.SCENARIOS]:
            line = f"  {scenario:10s}"
            for name in ("valid", "test"):
                frame = parts[name]
                mine = (frame["scenario"] == scenario).to_numpy()
                fitted = expected_auc(frame["true_p_click"][mine], scores[name][mine])
                line += f" {name} {fitted:.4f}"
                if name == "test" and click is not None and scenario in click:
                    got = {method: row["expected_auc"] for method, row in click[scenario].items()}
                    line += (f" | gap closed: this fit {gap_closed(fitted, got):.1f}%, the run's model"
                             f" {gap_closed(got['model'], got):.1f}%")
            print(line)

if __name__ == "__main__":
    main()
