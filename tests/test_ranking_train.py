"""Training loop, resume / warm start / load, baselines, and the side-by-side evaluation."""

import dataclasses
import json
import types

import numpy as np
import pytest
import tensorflow as tf

from test_ranking_fixtures import tiny_tables
from tfrs_multiscene.config import RankingConfig
from tfrs_multiscene.ranking import (evaluate_ranking, format_ranking_table, load_ranking, plot_ranking,
                                     train_ranking)
from tfrs_multiscene.ranking import data as D
from tfrs_multiscene.ranking.evaluate import predict


def make_split(n=900, seed=0):
    full = tiny_tables(n=n, seed=seed)
    inter = full.interactions
    parts = np.arange(len(inter)) % 10
    part = lambda m: full.with_interactions(inter[m])  # noqa: E731
    return types.SimpleNamespace(train=part(parts < 7), valid=part(parts == 7), test=part(parts >= 8), info={})


def cfg(**kw):
    base = dict(bottom_units=[16], tower_units=[8], embedding_dim=4, epochs=2, batch_size=64, dropout=0.0,
                learning_rate=0.01, early_stopping=0)
    base.update(kw)
    return RankingConfig(**base)


def test_train_writes_run_files_resumes_and_loads(tmp_path):
    split = make_split()
    res = train_ranking(split, cfg(), tmp_path, verbose=0)
    out = tmp_path / "ranking"
    for name in ("spec.json", "config.json", "history.json", "info.json", "curves_ranking.png", "final/model.index"):
        assert (out / name).exists(), name
    assert any((out / "tensorboard").rglob("*tfevents*"))
    assert len(res.history["loss"]) == 2 and len(res.history["val_loss"]) == 2
    assert res.info["epochs_done"] == 2 and res.info["resumed_from_epoch"] is None

    frame = D.build_examples(split.test, cfg())
    inputs = D.model_inputs(frame, res.model.spec)
    loaded = load_ranking(tmp_path)
    np.testing.assert_allclose(predict(loaded, inputs)["click"], predict(res.model, inputs)["click"], rtol=1e-5)

    same = train_ranking(split, cfg(), tmp_path, verbose=0)  # finished: loaded, not retrained
    assert same.info["seconds"] < res.info["seconds"] and len(same.history["loss"]) == 2
    np.testing.assert_allclose(predict(same.model, inputs)["click"], predict(res.model, inputs)["click"], rtol=1e-5)
    again = train_ranking(split, cfg(epochs=3), tmp_path, verbose=0)  # resumes after epoch 2
    assert again.info["resumed_from_epoch"] == 2 and again.info["epochs_done"] == 3
    assert len(again.history["loss"]) == 3

    # Another architecture or setting in the same run directory is refused, not half-loaded.
    with pytest.raises(ValueError, match=r"another configuration \(dropout: saved 0\.\d+, now 0\.05\)"):
        train_ranking(split, cfg(epochs=3, dropout=0.05), tmp_path, verbose=0)
    assert json.loads((out / "config.json").read_text())["dropout"] != 0.05  # the run is left as it was

    # A run saved before an option existed trained with that option's default: it still loads.
    saved = json.loads((out / "config.json").read_text())
    saved.pop("ema_momentum")
    (out / "config.json").write_text(json.dumps(saved))
    older = train_ranking(split, cfg(epochs=3), tmp_path, verbose=0)
    np.testing.assert_allclose(predict(older.model, inputs)["click"], predict(again.model, inputs)["click"], rtol=1e-5)


def test_warm_start_starts_from_the_previous_weights(tmp_path):
    split = make_split()
    first = train_ranking(split, cfg(), tmp_path / "one", verbose=0, tensorboard=False)
    warm = train_ranking(split, cfg(epochs=0, warm_start=str(tmp_path / "one")), tmp_path / "two", verbose=0,
                         tensorboard=False)
    frame = D.build_examples(split.test, cfg())
    inputs = D.model_inputs(frame, first.model.spec)
    np.testing.assert_allclose(predict(warm.model, inputs)["click"], predict(first.model, inputs)["click"], rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="warm start"):
        train_ranking(split, cfg(warm_start=str(tmp_path / "none")), tmp_path / "three", verbose=0)


def test_pooled_ignores_the_scenario_and_separate_sees_one_scenario(tmp_path):
    split = make_split()
    pooled = train_ranking(split, cfg(), tmp_path, name="pooled", pooled=True, verbose=0, tensorboard=False)
    frame = D.build_examples(split.test, cfg())
    inputs = {k: tf.constant(v[:20]) for k, v in D.model_inputs(frame, pooled.model.spec).items()}
    np.testing.assert_allclose(pooled.model.score(inputs, "a")["click"], pooled.model.score(inputs, "c")["click"])
    assert "scenario" not in pooled.model.encoder.lookups
    assert pooled.model.num_scenarios == 1
    main = train_ranking(split, cfg(), tmp_path, verbose=0, tensorboard=False)
    assert abs(pooled.info["parameters"] / main.info["parameters"] - 1) < 0.25  # about the same capacity

    sep = train_ranking(split, cfg(), tmp_path, name="separate/c", scenario="c", verbose=0, tensorboard=False)
    n_c = int((split.train.interactions["scenario"] == "c").sum())
    assert sep.info["train_examples"] == n_c and sep.model.spec.scenarios == ["c"]
    users_c = set(split.train.interactions.loc[split.train.interactions["scenario"] == "c", "user_id"])
    assert set(sep.model.spec.vocabularies["user_id"]) == users_c


@pytest.mark.slow
def test_evaluate_side_by_side_json_table_and_plots(tmp_path):
    split = make_split(n=2400, seed=3)
    results = evaluate_ranking(split, cfg(epochs=4), tmp_path, verbose=0)
    assert results["model_architecture"] == "shared_bottom"
    for task in ("click", "conversion"):
        for scenario in ("a", "b", "c", "overall"):
            methods = results[task][scenario]
            assert set(methods) == {"model", "pooled", "separate", "oracle"}, (task, scenario)
            assert set(methods["model"]) >= {"auc", "gauc", "logloss", "ndcg@10"}
    assert set(results["training"]["separate"]) == {"a", "b", "c"}
    for s, info in results["training"]["separate"].items():
        assert info["scenario"] == s and info["scenarios"] == [s]
    assert results["training"]["pooled"]["pooled"] is True
    # scenario c reverses the others' taste: the pooled model must get it wrong, the model right
    c = results["click"]["c"]
    assert c["model"]["auc"] > 0.6 and c["pooled"]["auc"] < c["model"]["auc"] - 0.1
    # the paired bootstrap puts the whole interval of model - pooled above zero on c
    target_c = results["targets"]["per_scenario"]["c"]
    assert target_c["vs_pooled"]["ci95"][0] > 0 and not target_c["below_pooled_beyond_noise"]
    lo, hi = target_c["vs_separate"]["ci95"]
    assert lo <= target_c["vs_separate"]["estimate"] <= hi and target_c["gap_closed_interval"]["se"] > 0
    # the data has true probabilities: every method also gets the AUC expected under them,
    # which no method's ordering beats the oracle's on
    for scenario in ("a", "b", "c"):
        e = {m: v["expected_auc"] for m, v in results["click"][scenario].items()}
        assert all(0.5 < e["oracle"] >= v - 1e-9 for v in e.values()), (scenario, e)
    assert results["targets"]["model_beats_baselines_everywhere_expected"] == all(
        v for r in results["targets"]["per_scenario"].values() for k, v in r.items() if k.startswith("expected_beats_"))
    assert target_c["expected_beats_pooled"]
    assert target_c["gap_closed_expected"] == pytest.approx(
        (c["model"]["expected_auc"] - c["pooled"]["expected_auc"])
        / (c["oracle"]["expected_auc"] - c["pooled"]["expected_auc"]))
    saved = json.loads((tmp_path / "ranking" / "evaluation.json").read_text())
    assert saved["click"]["a"]["model"]["auc"] == pytest.approx(results["click"]["a"]["model"]["auc"])
    table = format_ranking_table(results)
    assert "pooled" in table and "separate" in table and "oracle" in table and "ndcg@10" in table
    assert "paired bootstrap (200 resamples)" in table and "gap closed" in table and "E[auc]" in table
    assert "Ranking" in (tmp_path / "report" / "report.md").read_text()
    paths = plot_ranking(results, tmp_path / "plots")
    assert [p.name for p in paths] == ["ranking_click_auc.png", "ranking_conversion_auc.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_savedmodel_signature_round_trip(tmp_path):
    split = make_split(n=300)
    res = train_ranking(split, cfg(epochs=1), tmp_path, verbose=0, tensorboard=False)
    tf.saved_model.save(res.model, str(tmp_path / "sm"), signatures={"serving_default": res.model.serving_function()})
    loaded = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    frame = D.build_examples(split.test, cfg())
    inputs = D.model_inputs(frame, res.model.spec)
    out = loaded(**{k: tf.constant(v) for k, v in inputs.items()})
    assert {"click", "conversion", "conversion_given_click"} <= set(out)
    np.testing.assert_allclose(out["click"].numpy(), predict(res.model, inputs)["click"], rtol=1e-5)


def test_positive_only_log_evaluates_interaction_on_sampled_negatives_and_liked_on_rated_rows(tmp_path):
    full = tiny_tables(n=900, positives_only=True)
    inter = full.interactions
    parts = np.arange(len(inter)) % 5
    split = types.SimpleNamespace(train=full.with_interactions(inter[parts < 4]), valid=None,
                                  test=full.with_interactions(inter[parts == 4]), info={})
    results = evaluate_ranking(split, cfg(epochs=1, negatives_per_positive=2), tmp_path, methods=("model",),
                               report=False)
    assert set(k for k in results if k not in ("model_architecture", "targets", "training")) == \
        {"interaction", "liked", "rating"}
    assert results["interaction"]["overall"]["model"]["impressions"] == 3 * len(split.test.interactions)
    assert results["rating"]["overall"]["model"]["impressions"] == len(split.test.interactions)
    # liked is judged as multi-scenario benchmarks judge it: among the rows users rated
    assert results["liked"]["overall"]["model"]["impressions"] == len(split.test.interactions)
    assert results["rating"]["overall"]["model"]["rmse"] > 0
    assert "oracle" not in results["interaction"]["overall"]
    assert results["targets"]["task"] == "liked"  # judged on the rating-derived label


def test_evaluate_with_one_scenario_trains_no_baseline_that_is_the_model_itself(tmp_path):
    """With one scenario, pooled and separate are the model by construction: `evaluate` says
    so instead of training them, and prints a line before every model it trains."""
    full = tiny_tables(n=600, scenarios=("only",), shares=(1.0,))
    inter = full.interactions
    parts = np.arange(len(inter)) % 10
    part = lambda m: full.with_interactions(inter[m])  # noqa: E731
    split = types.SimpleNamespace(train=part(parts < 7), valid=part(parts == 7), test=part(parts >= 8), info={})
    lines = []
    results = evaluate_ranking(split, cfg(epochs=1), tmp_path, report=False, log=lines.append)
    assert set(results["click"]["only"]) == {"model", "oracle"}  # no pooled, no separate
    assert set(results["skipped"]) == {"pooled", "separate"} and "same model" in results["skipped"]["pooled"]
    assert not (tmp_path / "pooled").exists() and not (tmp_path / "separate").exists()
    assert lines == ["ranking: the model (shared_bottom)"]
    assert "pooled: one scenario" in format_ranking_table(results)


def test_evaluate_reports_compared_architectures_beside_the_model(tmp_path):
    """``compare_architectures`` (evaluate --compare-architectures) trains each other
    architecture on the same split and reports it per task and scenario; the model's own
    architecture is not trained twice."""
    split = make_split(n=1200, seed=5)
    results = evaluate_ranking(split, cfg(epochs=1), tmp_path, verbose=0, methods=("model",),
                               compare_architectures=("star", "shared_bottom"), report=False)
    assert set(results["architectures"]) == {"star"}
    star = results["architectures"]["star"]["click"]
    assert set(star) == {"a", "b", "c", "overall"} and 0.0 < star["a"]["auc"] < 1.0
    assert star["a"]["auc"] != results["click"]["a"]["model"]["auc"]  # really another model
    assert results["training"]["arch_star"]["architecture"] == "star"
    assert (tmp_path / "arch_star" / "final" / "model.index").exists()
    table = format_ranking_table(results)
    assert any(line.split()[:3] == ["click", "a", "star"] for line in table.splitlines())


class FakeRetrieval:
    """The three methods the ranking hook uses, with deterministic 2-d embeddings."""

    def query_features(self, users, scenarios, train):
        return {"user_id": np.asarray(users), "scenario": np.asarray(scenarios)}

    def query_embeddings(self, features):
        return np.stack([[float(u[1:]), float(s == "a")] for u, s in zip(features["user_id"], features["scenario"])])

    def candidate_embeddings(self, items):
        return np.stack([[1.0, float(i[1:])] for i in items["item_id"]])


def test_retrieval_embeddings_hook_feeds_query_candidate_and_dot(tmp_path):
    from tfrs_multiscene.ranking.features import retrieval_feature_hook

    split = make_split(n=300)
    hook = retrieval_feature_hook(FakeRetrieval(), split.train)
    frame = D.build_examples(split.test, cfg())
    feats = hook(frame)
    row = frame.iloc[0]
    np.testing.assert_allclose(feats["query_embedding"][0], [float(row.user_id[1:]), float(row.scenario == "a")])
    np.testing.assert_allclose(feats["candidate_embedding"][0], [1.0, float(row.item_id[1:])])
    res = train_ranking(split, cfg(epochs=1), tmp_path, feature_hook=hook, verbose=0, tensorboard=False)
    assert res.model.spec.extra == {"query_embedding": 2, "candidate_embedding": 2}
    out = predict(res.model, D.model_inputs(frame, res.model.spec, feats))
    assert out["click"].shape == (len(frame),)


def _film_cfg(**kw):
    return cfg(scenario_film=True, scenario_wide=True, **kw)


@pytest.mark.parametrize("arch,options", [("shared_bottom", {}), ("shared_bottom", {"shared_tower": True}),
                                          ("mmoe", {})])
def test_finetuning_one_scenario_changes_only_its_own_predictions(tmp_path, arch, options):
    """Also with the shared tower (the MovieLens preset): it is shared, so it stays frozen."""
    from tfrs_multiscene.ranking.finetune import finetune_scenarios
    from tfrs_multiscene.ranking.train import prepare

    split = make_split()
    c = _film_cfg(architecture=arch, num_experts=2, scenario_finetune_epochs=2, learning_rate=0.05, **options)
    res = train_ranking(split, dataclasses.replace(c, scenario_finetune_epochs=0), tmp_path, verbose=0,
                        tensorboard=False)
    model = res.model
    assert res.info["scenario_finetune"] is None
    tr = prepare(split.train, model.spec, c, seed=0)
    frame = D.build_examples(split.test, c)
    inputs = {k: tf.constant(v) for k, v in D.model_inputs(frame, model.spec).items()}
    before = model.score_all_scenarios(inputs)["click"].numpy()
    owned = {id(v) for v, _ in model.architecture.scenario_owned(2)}
    shared_before = [v.numpy().copy() for v in model.trainable_variables if id(v) not in owned]
    rows_before = [(v, r, v.numpy().copy()) for v, r in model.architecture.scenario_owned(2) if r is not None]

    report = finetune_scenarios(model, tr, None, c, scenarios=["c"])
    assert set(report) == {"c"} and report["c"]["epochs"] == 2
    after = model.score_all_scenarios(inputs)["click"].numpy()
    np.testing.assert_array_equal(after[:, :2], before[:, :2])  # scenarios a and b: untouched
    assert np.abs(after[:, 2] - before[:, 2]).max() > 1e-4      # scenario c: fine-tuned
    shared_after = [v.numpy() for v in model.trainable_variables if id(v) not in owned]
    for b, a in zip(shared_before, shared_after):  # encoder, shared bottom: frozen
        np.testing.assert_array_equal(a, b)
    for v, r, b in rows_before:  # row-owned weights (FiLM rows): only row c moved
        a = v.numpy()
        np.testing.assert_array_equal(np.delete(a, r, axis=0), np.delete(b, r, axis=0))
    if arch == "shared_bottom":
        assert any(not np.array_equal(v.numpy()[r], b[r]) for v, r, b in rows_before)


def test_finetuning_keeps_the_joint_weights_when_validation_does_not_improve(tmp_path):
    from tfrs_multiscene.ranking.finetune import finetune_scenarios
    from tfrs_multiscene.ranking.train import prepare

    split = make_split()
    c = _film_cfg(scenario_finetune_epochs=3, scenario_finetune_lr=50.0, early_stopping=1)  # diverges
    res = train_ranking(split, dataclasses.replace(c, scenario_finetune_epochs=0), tmp_path, verbose=0,
                        tensorboard=False)
    tr = prepare(split.train, res.model.spec, c, seed=0)
    va = prepare(split.valid, res.model.spec, c, seed=1)
    frame = D.build_examples(split.test, c)
    inputs = {k: tf.constant(v) for k, v in D.model_inputs(frame, res.model.spec).items()}
    before = res.model.score_all_scenarios(inputs)["click"].numpy()
    report = finetune_scenarios(res.model, tr, va, c)
    assert set(report) == {"a", "b", "c"}
    for s, r in report.items():
        assert len(r["val_loss"]) == r["epochs"] + 1
        if r["best_epoch"] == 0:
            col = res.model.spec.scenarios.index(s)
            np.testing.assert_allclose(res.model.score_all_scenarios(inputs)["click"].numpy()[:, col],
                                       before[:, col], rtol=1e-6)


def test_train_ranking_finetunes_only_the_multi_scenario_model(tmp_path):
    split = make_split()
    c = _film_cfg(scenario_finetune_epochs=2)
    main = train_ranking(split, c, tmp_path, verbose=0, tensorboard=False)
    assert set(main.info["scenario_finetune"]) == {"a", "b", "c"}
    frame = D.build_examples(split.test, c)
    inputs = D.model_inputs(frame, main.model.spec)
    loaded = load_ranking(tmp_path)  # the fine-tuned weights are the final ones
    np.testing.assert_allclose(predict(loaded, inputs)["click"], predict(main.model, inputs)["click"], rtol=1e-5)
    again = train_ranking(split, c, tmp_path, verbose=0, tensorboard=False)  # finished: not fine-tuned again
    assert again.info["scenario_finetune"] == main.info["scenario_finetune"]
    np.testing.assert_allclose(predict(again.model, inputs)["click"], predict(main.model, inputs)["click"], rtol=1e-5)
    pooled = train_ranking(split, c, tmp_path, name="pooled", pooled=True, verbose=0, tensorboard=False)
    sep = train_ranking(split, c, tmp_path, name="separate/a", scenario="a", verbose=0, tensorboard=False)
    assert pooled.info["scenario_finetune"] is None and sep.info["scenario_finetune"] is None


def test_pooled_model_gets_scenario_blind_retrieval_features(tmp_path):
    from tfrs_multiscene.ranking.features import retrieval_feature_hook, scenario_blind_hook

    split = make_split(n=300)
    seen = []
    base = retrieval_feature_hook(FakeRetrieval(), split.train)

    def spy(frame):
        seen.append(set(frame["scenario"].astype(str)))
        return base(frame)

    blind = scenario_blind_hook(spy)
    assert scenario_blind_hook(blind) is blind and scenario_blind_hook(None) is None
    frame = D.build_examples(split.test, cfg())
    feats = blind(frame)
    assert seen[-1] == {""} and set(frame["scenario"]) == {"a", "b", "c"}  # the frame itself is unchanged
    np.testing.assert_array_equal(feats["query_embedding"][:, 1], 0.0)  # FakeRetrieval: dim 1 = (scenario == a)
    seen.clear()
    train_ranking(split, cfg(epochs=1), tmp_path, name="pooled", pooled=True, feature_hook=spy, verbose=0,
                  tensorboard=False)
    assert seen and all(s == {""} for s in seen)
    seen.clear()
    train_ranking(split, cfg(epochs=1), tmp_path, feature_hook=spy, verbose=0, tensorboard=False)
    assert seen and all(s <= {"a", "b", "c"} and s != {""} for s in seen)


def test_reported_task_losses_are_masked_means_over_the_whole_set_whatever_the_batching(tmp_path):
    """A validation set of a rating log lists its sampled items after the rated rows, so
    late batches hold no liked row: the reported liked loss is still the mean over the
    rated rows (not a mean of per-batch means that counts those batches as 0)."""
    tables = tiny_tables(n=300, positives_only=True)
    c = cfg(negatives_per_positive=3)
    res = train_ranking(types.SimpleNamespace(train=tables, valid=None), c, tmp_path, verbose=0, tensorboard=False)
    frame = D.build_examples(tables, c, seed=3, tasks=res.model.spec.tasks)
    inputs, target = D.model_inputs(frame, res.model.spec), D.targets(frame, res.model.spec.tasks, c)
    logs = [res.model.evaluate(D.make_dataset(inputs, target, None, b), verbose=0, return_dict=True) for b in (16, 4096)]
    p = np.clip(predict(res.model, inputs)["liked"], 1e-7, 1 - 1e-7)
    m, y = target["mask/liked"], target["label/liked"]
    direct = float(np.sum(m * -(y * np.log(p) + (1 - y) * np.log(1 - p))) / np.sum(m))
    for got in logs:
        assert got["loss_liked"] == pytest.approx(direct, rel=1e-4)
        assert got["loss"] == pytest.approx(sum(got[f"loss_{t}"] for t in res.model.spec.tasks), rel=1e-5)
