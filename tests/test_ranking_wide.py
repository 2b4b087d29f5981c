"""The wide part of the ranking model: its structure, its own fit, and that the deep
training leaves it alone."""

import dataclasses
import types

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from test_ranking_train import cfg, make_split
from tfrs_multiscene.data.schema import Tables
from tfrs_multiscene.ranking import data as D
from tfrs_multiscene.ranking import load_ranking, train_ranking
from tfrs_multiscene.ranking.evaluate import predict
from tfrs_multiscene.ranking.features import FeatureSpec, build_feature_spec
from tfrs_multiscene.ranking.model import POOLED_SCENARIO, RankingModel
from tfrs_multiscene.ranking.wide import WideLogits
from tfrs_multiscene.ranking.wide_fit import PRIOR_ROUNDS, fit_wide
from tfrs_multiscene.ranking.train import prepare


def planted_split(n=6000, seed=0):
    """Clicks driven by an item effect shared by both scenarios, a category effect of
    opposite sign in the two scenarios, and a user effect that exists only in scenario "b"."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(30)], "title": ["thing"] * 30,
                          "category": ["red" if i % 2 else "blue" for i in range(30)],
                          "price": np.linspace(5, 50, 30)})
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(40)], "age_bucket": ["x"] * 40})
    item_effect = np.linspace(-1.5, 1.5, 30)
    u, i = rng.integers(0, 40, n), rng.integers(0, 30, n)
    s = rng.integers(0, 2, n)
    red = (i % 2 == 1).astype(float)
    logit = item_effect[i] + np.where(s == 0, 2.0, -2.0) * (red - 0.5) + np.where(s == 1, 1.5 * (u % 2 - 0.5), 0.0)
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    inter = pd.DataFrame({"user_id": [f"u{x}" for x in u], "item_id": [f"i{x}" for x in i],
                          "scenario": np.array(["a", "b"], dtype=object)[s], "click": click})
    tables = Tables(inter, items, users, tasks=("click",))
    cut = int(0.8 * n)
    part = lambda m: tables.with_interactions(inter[m])  # noqa: E731
    idx = np.arange(n)
    return types.SimpleNamespace(train=part(idx < cut), valid=part(idx >= cut), test=part(idx >= cut), info={}), \
        item_effect


def test_wide_logits_shapes_tables_and_start_at_zero():
    split = make_split()
    spec = build_feature_spec(split.train, ["click", "conversion"])
    assert spec.user_columns == ["user_id", "age_bucket"]
    wide = WideLogits(spec, num_scenarios=3, num_heads=2)
    inputs = D.model_inputs(D.build_examples(split.test, cfg()), spec)
    out = wide({k: v[:5] for k, v in inputs.items()})
    assert out.shape == (5, 3, 2)
    np.testing.assert_array_equal(out.numpy(), 0.0)
    # item-side columns: a shared table and a per-scenario one; user-side: per-scenario only
    assert set(wide.shared) == {"item_id", "category", "brand"}
    assert set(wide.per_scenario) == {"user_id", "age_bucket", "item_id", "category", "brand"}
    assert wide.per_scenario["item_id"].output_dim == 3 * 2
    assert wide.slopes.shape == (1, 3, 2)  # price


def test_spec_saved_before_user_columns_existed_still_loads(tmp_path):
    spec = build_feature_spec(make_split().train, ["click"])
    text = spec.to_json().replace(', "user_columns": ["user_id", "age_bucket"]', "")
    assert "user_columns" not in text
    assert FeatureSpec.from_json(text).user_columns == []


def test_fit_wide_learns_shared_and_per_scenario_effects_and_leaves_the_deep_part_alone():
    split, item_effect = planted_split()
    config = cfg(wide=True, wide_epochs=40, tower_units=[4])
    spec = build_feature_spec(split.train, ["click"])
    model = RankingModel(spec, config)
    tr, va = prepare(split.train, spec, config), prepare(split.valid, spec, config)
    model({k: v[:2] for k, v in tr.inputs.items()})
    deep_before = [v.numpy() for v in model.architecture.weights]
    info = fit_wide(model, tr, va, config, seed=0)
    assert 1 <= info["best_epoch"] <= info["epochs"] == sum(info["rounds"]) and info["rounds"][0] <= 40
    assert len(info["val_loss"]) == info["epochs"]
    for before, after in zip(deep_before, model.architecture.weights):
        np.testing.assert_array_equal(before, after.numpy())

    # One probe per (item, scenario), user fixed: the wide logits recover the planted effects.
    probe = pd.DataFrame({"user_id": "u0", "item_id": [f"i{i}" for i in range(30)] * 2,
                          "scenario": ["a"] * 30 + ["b"] * 30, "click": 0})
    frame = D.build_examples(Tables(probe, split.train.items, split.train.users, tasks=("click",)), config)
    logit = model.wide_only_logits(D.model_inputs(frame, spec)).numpy()[:, 0]
    a, b = logit[:30], logit[30:]
    red = np.arange(30) % 2 == 1
    assert (a[red] - a[~red]).mean() > 1.0 and (b[red] - b[~red]).mean() < -1.0  # category, by scenario
    within = lambda x: np.concatenate([x[red] - x[red].mean(), x[~red] - x[~red].mean()])  # noqa: E731
    effect = np.concatenate([item_effect[red] - item_effect[red].mean(), item_effect[~red] - item_effect[~red].mean()])
    assert np.corrcoef(within(a), effect)[0, 1] > 0.8 and np.corrcoef(within(b), effect)[0, 1] > 0.8

    # The user effect of scenario "b" is learnt in b's user biases, not carried into "a".
    by_scenario = model.wide.per_scenario["user_id"]
    rows = by_scenario(model.wide.lookups["user_id"](tf.constant([f"u{x}" for x in range(40)]))).numpy()
    rows = rows.reshape(40, 2, 1)[:, :, 0]  # [user, scenario]
    odd = np.arange(40) % 2 == 1
    assert rows[odd, 1].mean() - rows[~odd, 1].mean() > 0.5
    assert abs(rows[odd, 0].mean() - rows[~odd, 0].mean()) < 0.2


def test_training_with_wide_fits_it_first_then_freezes_it_and_resume_keeps_it(tmp_path):
    split, _ = planted_split(n=3000)
    config = cfg(wide=True, wide_epochs=5, epochs=2)
    res = train_ranking(split, config, tmp_path, verbose=0, tensorboard=False)
    assert res.info["wide"]["epochs"] >= 1
    assert (tmp_path / "ranking" / "curves_ranking_wide.png").exists()
    wide_after_fit = [v.numpy() for v in res.model.wide.fitted_weights]
    assert any(np.abs(w).max() > 0 for w in wide_after_fit)
    assert not any(v is w for v in res.model.trainable_variables for w in res.model.wide.weights)

    # Two more epochs (resumed): the deep part moves, the wide part does not, and is not refitted.
    more = train_ranking(split, cfg(wide=True, wide_epochs=5, epochs=4), tmp_path, verbose=0, tensorboard=False)
    assert more.info["resumed_from_epoch"] == 2 and more.info["wide"] == res.info["wide"]
    for before, after in zip(wide_after_fit, more.model.wide.fitted_weights):
        np.testing.assert_array_equal(before, after.numpy())

    frame = D.build_examples(split.test, config)
    inputs = D.model_inputs(frame, more.model.spec)
    np.testing.assert_allclose(predict(load_ranking(tmp_path), inputs)["click"], predict(more.model, inputs)["click"],
                               rtol=1e-5)
    assert more.model.parameter_count() > sum(int(tf.size(v)) for v in more.model.trainable_variables)


@pytest.mark.parametrize("options", [dict(pooled=True), dict(scenario="b")])
def test_the_baselines_get_a_wide_part_of_their_own(tmp_path, options):
    split, _ = planted_split(n=3000)
    res = train_ranking(split, cfg(wide=True, wide_epochs=3, epochs=1), tmp_path, verbose=0, tensorboard=False,
                        name="baseline", **options)
    assert res.model.wide is not None and res.model.wide.num_scenarios == 1 and res.info["wide"]["epochs"] >= 1


def test_an_example_of_one_scenario_never_moves_another_scenarios_wide_weights():
    split, _ = planted_split(n=600)
    config = cfg(wide=True)
    spec = build_feature_spec(split.train, ["click"])
    model = RankingModel(spec, config)
    frame = D.build_examples(split.train, config)
    frame = frame[frame["scenario"] == "a"].head(32)
    inputs = D.model_inputs(frame, spec)
    targets = {"label/click": frame["click"].to_numpy(np.float32), "mask/click": np.ones(len(frame), np.float32),
               "weight": np.ones(len(frame), np.float32)}
    model(inputs)
    with tf.GradientTape() as tape:
        total, _ = model.loss_of_outputs(targets, model.outputs_of_logits(model.wide_only_logits(inputs)))
    tables = {col: layer.embeddings for col, layer in model.wide.per_scenario.items()}
    grads = tape.gradient(total, [*tables.values(), model.wide.slopes, model.wide.intercept])
    b = spec.scenarios.index("b")
    for (col, _), g in zip(tables.items(), grads):
        g = tf.convert_to_tensor(g).numpy().reshape(-1, 2, 1)  # [value, scenario, head]
        assert np.abs(g[:, b]).max() == 0.0, col
        assert np.abs(g[:, 1 - b]).max() > 0.0, col
    assert np.abs(grads[-2].numpy()[:, b]).max() == 0.0 and np.abs(grads[-1].numpy()[b]).max() == 0.0


def test_a_warm_start_keeps_the_wide_part_it_starts_from_or_fits_one_if_there_was_none(tmp_path):
    split, _ = planted_split(n=2000)
    with_wide = train_ranking(split, cfg(wide=True, wide_epochs=3, epochs=1), tmp_path / "a", verbose=0,
                              tensorboard=False)
    warm = train_ranking(split, cfg(wide=True, wide_epochs=3, epochs=1, warm_start=str(tmp_path / "a")),
                         tmp_path / "b", verbose=0, tensorboard=False)
    assert warm.info["wide"] is None  # not refitted
    np.testing.assert_array_equal(warm.model.wide.intercept.numpy(), with_wide.model.wide.intercept.numpy())
    without = train_ranking(split, cfg(wide=False, epochs=1), tmp_path / "c", verbose=0, tensorboard=False)
    assert without.model.wide is None and without.info["wide"] is None
    fitted = train_ranking(split, cfg(wide=True, wide_epochs=3, epochs=1, warm_start=str(tmp_path / "c")),
                           tmp_path / "d", verbose=0, tensorboard=False)
    assert fitted.info["wide"]["epochs"] >= 1 and np.abs(fitted.model.wide.intercept.numpy()).max() > 0


def test_a_scalar_extra_feature_gets_a_slope_per_scenario():
    """A width-1 extra feature (e.g. history_affinity) whose effect on clicks has opposite signs
    in the two scenarios: the wide fit learns each scenario's own slope; wider extras (tower
    outputs) get none."""
    split, _ = planted_split()
    rng = np.random.default_rng(3)
    signal = {id(t): rng.normal(size=len(t.interactions)) for t in (split.train, split.valid)}
    for t in (split.train, split.valid):  # clicks re-drawn with the extra's effect: +1.5 in "a", -1.5 in "b"
        x = signal[id(t)]
        sign = np.where(t.interactions["scenario"].to_numpy() == "a", 1.5, -1.5)
        t.interactions["click"] = (rng.random(len(x)) < 1 / (1 + np.exp(-sign * x))).astype(int)
        t.interactions["signal"] = x

    def hook(frame):
        return {"signal": frame["signal"].to_numpy(np.float32)[:, None], "wide_vector": np.zeros((len(frame), 3))}

    config = cfg(wide=True, wide_epochs=20, tower_units=[4])
    spec = build_feature_spec(split.train, ["click"], {"signal": 1, "wide_vector": 3})
    model = RankingModel(spec, config)
    tr, va = prepare(split.train, spec, config, hook), prepare(split.valid, spec, config, hook)
    model({k: v[:2] for k, v in tr.inputs.items()})
    assert model.wide.scalar_extras == ["signal"] and model.wide.extra_slopes.shape == (1, 2, 1)
    fit_wide(model, tr, va, config, seed=0)
    slope_a, slope_b = model.wide.extra_slopes.numpy()[0, :, 0]
    assert slope_a > 0.7 and slope_b < -0.7, (slope_a, slope_b)  # planted: +-1.5 (shrunk by the L2 and the id terms)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_empirical_bayes_shrinks_each_table_column_by_its_own_evidence(solver):
    """Empirical Bayes learns a wide prior for the table columns that carry planted effects
    (category by scenario +-1, users +-0.75 in "b") and a narrow one for those that carry
    nothing (no shared category effect: it is opposite in the two scenarios; no user effect in
    "a"); its final fit predicts the held-out rows better than the best epoch of one strength."""
    split, _ = planted_split()
    spec = build_feature_spec(split.train, ["click"])
    fits = {}
    for prior in ("fixed", "empirical_bayes"):
        tf.keras.utils.set_random_seed(0)
        config = cfg(wide=True, wide_epochs=30, wide_prior=prior, wide_solver=solver, tower_units=[4])
        model = RankingModel(spec, config)
        tr, va = prepare(split.train, spec, config), prepare(split.valid, spec, config)
        model({k: v[:2] for k, v in tr.inputs.items()})
        fits[prior] = fit_wide(model, tr, va, config, seed=0)
    start = 1 / np.sqrt(2 * config.wide_l2)
    refits = {"lbfgs": PRIOR_ROUNDS, "adam": PRIOR_ROUNDS + 1}[solver]  # adam polishes once more, first
    assert len(fits["fixed"]["rounds"]) == 1 and len(fits["empirical_bayes"]["rounds"]) == 1 + refits
    assert fits["empirical_bayes"]["solver"] == solver
    assert all(abs(s - start) < 1e-3 for stds in fits["fixed"]["prior_std"].values() for s in stds)
    learnt = fits["empirical_bayes"]["prior_std"]
    assert learnt["category"][0] < 0.1 and min(learnt["category_by_scenario"]) > 0.5
    users_a, users_b = learnt["user_id_by_scenario"]  # scenario a has no user effect, b has +-0.75
    assert users_b > 0.4 and users_a < users_b / 2, learnt
    # measured: 0.5215 (lbfgs) / 0.5290 (adam, its last polish) vs 0.5323 / 0.5317 (one strength)
    assert fits["empirical_bayes"]["val_loss"][-1] < min(fits["fixed"]["val_loss"]) - 0.001


def test_lbfgs_wide_fit_stops_at_the_optimum_and_does_not_weight_examples():
    """The default solver fits the penalised likelihood exactly: refitting from its solution
    moves no weight, and example weights (balance_scenarios) leave the fit unchanged but for
    the pooled baseline's, while Adam stops visibly short of that optimum."""
    split, _ = planted_split()

    def fitted(b_weight, pooled=False, **overrides):
        """The wide part fitted with scenario "b"'s examples weighted ``b_weight``."""
        tf.keras.utils.set_random_seed(0)
        config = cfg(wide=True, wide_prior="fixed", tower_units=[4], **overrides)
        spec = build_feature_spec(split.train, ["click"], scenarios=[POOLED_SCENARIO] if pooled else None)
        model = RankingModel(spec, config, pooled=pooled)
        tr, va = prepare(split.train, spec, config), prepare(split.valid, spec, config)
        for examples in (tr, va):
            examples.weights = np.where(examples.frame["scenario"] == "b", b_weight, 1.0).astype(np.float32)
        model({k: v[:2] for k, v in tr.inputs.items()})
        info = fit_wide(model, tr, va, config, seed=0)
        return model, tr, va, config, info

    def largest_change(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))

    model, tr, va, config, info = fitted(1.0)
    assert info["solver"] == "lbfgs"
    solution = [v.numpy() for v in model.wide.fitted_weights]
    again = fit_wide(model, tr, va, config, seed=1)  # from the solution
    assert again["rounds"][0] <= 3
    assert largest_change(solution, [v.numpy() for v in model.wide.fitted_weights]) < 2e-3
    weighted = fitted(4.0)[0]
    assert largest_change(solution, [v.numpy() for v in weighted.wide.fitted_weights]) < 1e-4
    # the pooled baseline has one column for all scenarios: there the weights do count
    pooled = [[v.numpy() for v in fitted(w, pooled=True)[0].wide.fitted_weights] for w in (1.0, 4.0)]
    assert largest_change(*pooled) > 0.05
    adam = fitted(1.0, wide_solver="adam", wide_epochs=10)[0]
    assert largest_change(solution, [v.numpy() for v in adam.wide.fitted_weights]) > 0.05


def test_an_unknown_wide_prior_is_refused():
    split, _ = planted_split(n=600)
    config = cfg(wide=True, wide_prior="bayes")
    spec = build_feature_spec(split.train, ["click"])
    model = RankingModel(spec, config)
    tr = prepare(split.train, spec, config)
    model({k: v[:2] for k, v in tr.inputs.items()})
    with pytest.raises(ValueError, match="wide_prior must be 'fixed' or 'empirical_bayes'"):
        fit_wide(model, tr, None, config)
    with pytest.raises(ValueError, match="wide_solver must be 'lbfgs' or 'adam', got 'sgd'"):
        fit_wide(model, tr, None, dataclasses.replace(config, wide_prior="fixed", wide_solver="sgd"))
