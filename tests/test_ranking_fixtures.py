"""Tiny multi-scenario tables for the ranking tests (no tests here)."""

import numpy as np
import pandas as pd

from tfrs_multiscene.data.schema import Tables


def tiny_tables(n=600, seed=0, scenarios=("a", "b", "c"), shares=(0.6, 0.3, 0.1), positives_only=False):
    """Impressions whose click depends on (user group == item category) and the scenario."""
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({
        "user_id": [f"u{i}" for i in range(20)],
        "age_bucket": rng.choice(["18-24", "25-34"], 20),
        "profile": ["likes tents" if i % 2 else "likes pans" for i in range(20)],
    })
    items = pd.DataFrame({
        "item_id": [f"i{i}" for i in range(15)],
        "title": [("camping tent" if i % 2 else "cooking pan") + f" {i}" for i in range(15)],
        "category": ["outdoors" if i % 2 else "kitchen" for i in range(15)],
        "brand": rng.choice(["x", "y"], 15),
        "price": rng.uniform(1, 100, 15),
    })
    u = rng.integers(0, 20, n)
    i = rng.integers(0, 15, n)
    s = rng.choice(len(scenarios), n, p=shares)
    match = (u % 2) == (i % 2)
    sign = np.where(s == len(scenarios) - 1, -1.0, 1.0)  # the last scenario reverses taste
    p = 1 / (1 + np.exp(-(sign * (2.0 * match - 1.0))))
    click = (rng.random(n) < p).astype(int)
    conv = click * (rng.random(n) < 0.5).astype(int)
    inter = pd.DataFrame({
        "user_id": [f"u{x}" for x in u], "item_id": [f"i{x}" for x in i],
        "scenario": np.array(scenarios, dtype=object)[s],
        "timestamp": (1_700_000_000 + rng.integers(0, 86400 * 7, n)).astype(np.int64),
    })
    if positives_only:
        inter = inter[click == 1].reset_index(drop=True)
        inter["rating"] = rng.integers(1, 6, len(inter)).astype(float)
        return Tables(inter, items, users)
    inter["click"], inter["conversion"] = click, conv
    inter["true_p_click"], inter["true_p_conversion"] = p, p * 0.5
    return Tables(inter, items, users)
