"""The synthetic world: determinism, scenario differences, cold items, labels, signal."""

import numpy as np
import pandas as pd
import pytest

from tfrs_multiscene.config import GenerateConfig, SplitConfig
from tfrs_multiscene.data import synthetic
from tfrs_multiscene.data.splits import make_split

SMALL = GenerateConfig(users=500, items=300, impressions=20_000, seed=7)


@pytest.fixture(scope="module")
def world():
    return synthetic.simulate(SMALL)


@pytest.fixture(scope="module")
def tables(world):
    return world.tables


def _assert_tables_equal(a, b):
    for name in ("interactions", "items", "users"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def test_same_seed_same_tables_and_other_seed_differs(tables):
    small = GenerateConfig(users=60, items=40, impressions=800, seed=SMALL.seed)
    _assert_tables_equal(synthetic.generate(small), synthetic.generate(small))
    big_again = synthetic.generate(SMALL)
    _assert_tables_equal(tables, big_again)
    other = synthetic.generate(GenerateConfig(users=500, items=300, impressions=20_000, seed=8))
    assert not other.interactions.equals(tables.interactions)
    assert not other.items[["title", "category"]].equals(tables.items[["title", "category"]])


def test_schema_and_sizes(tables):
    inter, items, users = tables.interactions, tables.items, tables.users
    assert len(inter) == SMALL.impressions and len(items) == SMALL.items and len(users) == SMALL.users
    assert set(inter.columns) >= {"user_id", "item_id", "scenario", "timestamp", "click",
                                  "conversion", "true_p_click", "true_p_conversion"}
    assert set(items.columns) >= {"item_id", "title", "description", "category", "brand", "price", "is_cold"}
    assert set(users.columns) >= {"user_id", "profile", "age_bucket"}
    assert items.item_id.is_unique and users.user_id.is_unique
    assert inter.item_id.isin(items.item_id).all() and inter.user_id.isin(users.user_id).all()
    assert tables.tasks == ("click", "conversion")
    assert tables.item_categorical_columns() == ["category", "brand"]
    assert (items.price > 0).all() and items.title.str.len().min() > 0
    assert inter.timestamp.is_monotonic_increasing


def test_scenarios_differ_in_size_and_click_rate(tables):
    inter = tables.interactions
    share = inter.scenario.value_counts(normalize=True)
    assert len(share) >= 3
    assert 0.05 < share.min() < 0.10, share  # one small scenario, still big enough to measure
    ctr = inter.groupby("scenario").click.mean()
    assert ctr.max() / ctr.min() > 2.0, ctr
    assert ctr.between(0.03, 0.25).all(), ctr


def test_scenario_specific_category_effects(tables):
    """The same categories are relatively more/less clickable in the small scenario."""
    inter = tables.interactions.merge(tables.items[["item_id", "category"]], on="item_id")
    p = inter.groupby(["scenario", "category"]).true_p_click.mean().unstack()
    lift = np.log(p.div(p.mean(axis=1), axis=0))
    small = tables.interactions.scenario.value_counts().idxmin()
    assert (lift.loc[small] - lift.loc["home_feed"]).abs().max() > 1.5
    # ... and the small scenario's own category / price effects dominate its click logit,
    # so the scenario-blind model is furthest from the oracle there (a learnable difference)
    spread = lift.std(axis=1)
    assert spread.idxmax() == small and spread[small] > 2 * spread.drop(small).max(), spread


def test_conversion_only_after_click_and_rates(tables):
    inter = tables.interactions
    assert ((inter.conversion == 1) <= (inter.click == 1)).all()
    cvr = inter[inter.click == 1].groupby("scenario").conversion.mean()
    assert cvr.between(0.05, 0.4).all(), cvr
    assert (inter.true_p_conversion <= inter.true_p_click + 1e-12).all()
    # the labels follow the written probabilities
    for task in ("click", "conversion"):
        rates = inter.groupby("scenario")[[task, f"true_p_{task}"]].mean()
        gap = rates[task] - rates[f"true_p_{task}"]
        assert gap.abs().max() < 0.03, gap


def test_oracle_auc_is_high_in_every_scenario(tables):
    auc = synthetic.oracle_auc(tables)
    assert set(auc) == set(tables.scenarios)
    for scenario, per_task in auc.items():
        assert per_task["click"] > 0.7, (scenario, per_task)
        assert per_task["conversion"] > 0.7, (scenario, per_task)


def test_cold_items_only_in_the_late_period(tables):
    items, inter = tables.items, tables.interactions
    cold = set(items.item_id[items.is_cold == 1])
    assert len(cold) == round(SMALL.cold_item_fraction * SMALL.items)
    is_cold = inter.item_id.isin(cold)
    assert is_cold.sum() > 0
    release = synthetic.START_TIME + (1 - SMALL.cold_period) * SMALL.days * 86_400
    assert inter.timestamp[is_cold].min() >= release
    assert inter.timestamp[~is_cold].min() < release - 30 * 86_400
    split = make_split(tables, SplitConfig(split="temporal", test_fraction=0.2))
    assert not split.train.interactions.item_id.isin(cold).any()
    assert not split.valid.interactions.item_id.isin(cold).any()
    assert split.test.interactions.item_id.isin(cold).any()


def test_titles_reveal_item_category(tables):
    """A word -> category lookup learned on half the items predicts the other half."""
    items = tables.items.sample(frac=1.0, random_state=0)
    fit, held = items.iloc[: len(items) // 2], items.iloc[len(items) // 2:]
    votes = {}
    for title, cat in zip(fit.title, fit.category):
        for w in title.split()[1:]:  # skip the brand
            votes.setdefault(w, {}).setdefault(cat, 0)
            votes[w][cat] += 1
    hits = 0
    for title, cat in zip(held.title, held.category):
        score = {}
        for w in title.split()[1:]:
            for c, n in votes.get(w, {}).items():
                score[c] = score.get(c, 0) + n
        hits += bool(score) and max(score, key=score.get) == cat
    chance = items.category.value_counts(normalize=True).max()
    assert hits / len(held) > max(0.6, 2 * chance)


def test_clicked_items_match_user_interests(world):
    inter = world.tables.interactions
    u = inter.user_id.str[1:].astype(int).to_numpy()
    i = inter.item_id.str[1:].astype(int).to_numpy()
    interest = world.theta[u, world.primary_topic[i]]
    clicked = inter.click.to_numpy() == 1
    random_items = np.random.default_rng(0).integers(len(world.phi), size=len(u))
    baseline = world.theta[u, world.primary_topic[random_items]].mean()
    assert interest[clicked].mean() > 1.5 * interest[~clicked].mean()
    assert interest.mean() > 1.5 * baseline  # impressions already follow interests


def test_profiles_name_the_users_top_topic(world):
    users = world.tables.users
    top = world.theta.argmax(axis=1)
    hit = [any(w in world.topic_words[k] for w in p.replace(",", " ").split())
           for p, k in zip(users.profile, top)]
    assert np.mean(hit) > 0.95


def test_default_world_has_dense_users_and_a_small_user_bias():
    """The click logit is (almost) a function of what a model sees: users have many
    impressions each, and the per-user click bias is small."""
    cfg = GenerateConfig()
    assert cfg.impressions / cfg.users >= 100
    assert synthetic.USER_BIAS_STD <= 0.1
    ads = next(s for s in synthetic.SCENARIOS if s.name == "ads")
    # the small scenario has enough test clicks to measure AUC (20% test split)
    assert 0.2 * cfg.impressions * ads.share * ads.click_rate > 150


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="cold_item_fraction"):
        synthetic.generate(GenerateConfig(cold_item_fraction=1.5))
