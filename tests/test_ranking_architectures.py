"""Each architecture: output shapes, and that a scenario's output uses only its own weights."""

import numpy as np
import pytest
import tensorflow as tf

from test_ranking_fixtures import tiny_tables
from tfrs_multiscene.config import RANKING_ARCHITECTURES, RankingConfig
from tfrs_multiscene.ranking import build_ranking_model
from tfrs_multiscene.ranking import data as D
from tfrs_multiscene.ranking.architectures import available_architectures, build_architecture

ARCHS = ["shared_bottom", "star", "mmoe", "ple"]


def small_cfg(arch, **kw):
    return RankingConfig(architecture=arch, bottom_units=[8], tower_units=[4], num_experts=2, embedding_dim=4, **kw)


def test_registry_lists_all_architectures_and_rejects_unknown():
    assert available_architectures() == sorted(ARCHS) == sorted(RANKING_ARCHITECTURES)  # the CLI's choices
    with pytest.raises(ValueError, match="unknown ranking architecture 'dcn'"):
        build_architecture("dcn", 2, 1, small_cfg("shared_bottom"))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("use_cross", [False, True])
def test_architecture_returns_logits_for_every_scenario_and_head(arch, use_cross):
    layer = build_architecture(arch, 3, 2, small_cfg(arch, use_cross=use_cross))
    x = tf.random.normal([5, 7])
    out = layer(x, tf.constant([0, 1, 2, 0, 1]), training=True)
    assert out.shape == (5, 3, 2)
    assert (layer.cross is not None) == use_cross


@pytest.mark.parametrize("arch", ARCHS)
def test_model_outputs_per_task_and_scores_explicit_scenarios(arch):
    tables = tiny_tables(n=80)
    cfg = small_cfg(arch)
    model = build_ranking_model(tables, cfg)
    frame = D.build_examples(tables, cfg)
    inputs = {k: tf.constant(v[:6]) for k, v in D.model_inputs(frame, model.spec).items()}
    out = model(inputs)
    assert set(out) == {"click", "conversion", "conversion_given_click"}
    assert all(v.shape == (6,) for v in out.values())
    # ESMM: P(click and convert) = pCTR * pCVR, a probability below pCTR.
    np.testing.assert_allclose(out["conversion"], out["click"] * out["conversion_given_click"], rtol=1e-6)
    every = model.score_all_scenarios(inputs)["click"].numpy()  # [B, S]
    assert every.shape == (6, 3)
    own = [model.spec.scenarios.index(s) for s in frame["scenario"][:6]]
    np.testing.assert_allclose(out["click"], every[np.arange(6), own], rtol=1e-5)
    as_b = model.score(inputs, "b")["click"].numpy()
    is_b = (frame["scenario"][:6] == "b").to_numpy()
    assert is_b.any() and not is_b.all()
    np.testing.assert_allclose(as_b[is_b], out["click"].numpy()[is_b], rtol=1e-5)
    assert np.abs(as_b[~is_b] - out["click"].numpy()[~is_b]).max() > 1e-6


@pytest.mark.parametrize("arch", ARCHS)
def test_scenario_output_does_not_depend_on_other_scenarios_weights(arch):
    tables = tiny_tables(n=80)
    model = build_ranking_model(tables, small_cfg(arch))
    frame = D.build_examples(tables, small_cfg(arch))
    inputs = {k: tf.constant(v[:16]) for k, v in D.model_inputs(frame, model.spec).items()}
    a, b = model.spec.scenarios.index("a"), model.spec.scenarios.index("b")
    before = model.score_all_scenarios(inputs)["click"].numpy()
    owned_b = model.architecture.scenario_owned(b)
    assert owned_b, "scenario b owns no weights"
    for var, row in owned_b:  # perturb everything scenario b owns (variances stay positive)
        noise = tf.random.normal(var.shape, stddev=0.5, seed=1)
        noise = noise if var.trainable else tf.abs(noise)
        if row is None:
            var.assign_add(noise)
        else:
            mask = tf.reshape(tf.one_hot(row, var.shape[0]), [-1] + [1] * (len(var.shape) - 1))
            var.assign_add(noise * mask)
    after = model.score_all_scenarios(inputs)["click"].numpy()
    np.testing.assert_allclose(after[:, a], before[:, a], rtol=1e-6, atol=1e-7)
    assert np.abs(after[:, b] - before[:, b]).max() > 1e-4


def test_unknown_scenario_is_a_clear_error():
    tables = tiny_tables(n=40)
    model = build_ranking_model(tables, small_cfg("shared_bottom"))
    frame = D.build_examples(tables, small_cfg("shared_bottom"))
    inputs = {k: tf.constant(v[:2]) for k, v in D.model_inputs(frame, model.spec).items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match="unknown scenario"):
        model.score(inputs, "nowhere")


def test_extra_dense_features_and_their_dot_product_feed_the_model():
    tables = tiny_tables(n=40)
    cfg = small_cfg("shared_bottom")
    model = build_ranking_model(tables, cfg, extra_features={"query_embedding": 3, "candidate_embedding": 3})
    frame = D.build_examples(tables, cfg)
    rng = np.random.default_rng(0)
    extra = {"query_embedding": rng.normal(size=(len(frame), 3)), "candidate_embedding": rng.normal(size=(len(frame), 3))}
    inputs = D.model_inputs(frame, model.spec, extra)
    p1 = model({k: tf.constant(v[:4]) for k, v in inputs.items()})["click"].numpy()
    inputs["query_embedding"] = inputs["query_embedding"] * 3.0
    p2 = model({k: tf.constant(v[:4]) for k, v in inputs.items()})["click"].numpy()
    assert np.abs(p1 - p2).max() > 1e-5
    with pytest.raises(KeyError, match="query_embedding"):
        D.model_inputs(frame, model.spec, None)


SCENARIO_OPTIONS = [dict(scenario_film=True, scenario_wide=False), dict(scenario_film=False, scenario_wide=True),
                    dict(scenario_film=True, scenario_wide=True),
                    dict(scenario_film=True, scenario_wide=True, shared_tower=True)]


@pytest.mark.parametrize("options", SCENARIO_OPTIONS)
def test_shared_bottom_scenario_conditioning_shapes_and_routing(options):
    tables = tiny_tables(n=80)
    cfg = small_cfg("shared_bottom", **options)
    model = build_ranking_model(tables, cfg)
    frame = D.build_examples(tables, cfg)
    inputs = {k: tf.constant(v[:16]) for k, v in D.model_inputs(frame, model.spec).items()}
    x = tf.random.normal([5, 7])
    assert model.architecture.__class__(3, 2, cfg)(x, tf.constant([0, 1, 2, 0, 1])).shape == (5, 3, 2)
    a, b = model.spec.scenarios.index("a"), model.spec.scenarios.index("b")
    before = model.score_all_scenarios(inputs)["click"].numpy()
    owned_b = model.architecture.scenario_owned(b)
    names = " ".join(v.name for v, _ in owned_b)
    assert ("gamma" in names) == bool(options.get("scenario_film"))
    assert ("wide_s" in names) == bool(options.get("scenario_wide"))
    assert "shared_tower" not in names  # the shared tower is everyone's
    for var, row in owned_b:  # only scenario b's FiLM rows / wide weights / tower
        mask = tf.reshape(tf.one_hot(row, var.shape[0]), [-1] + [1] * (len(var.shape) - 1)) if row is not None else 1.0
        var.assign_add(tf.random.normal(var.shape, stddev=0.5, seed=2) * mask)
    after = model.score_all_scenarios(inputs)["click"].numpy()
    np.testing.assert_allclose(after[:, a], before[:, a], rtol=1e-6, atol=1e-7)
    assert np.abs(after[:, b] - before[:, b]).max() > 1e-4


def test_film_and_wide_start_as_the_plain_shared_bottom():
    """FiLM rows start at (scale 1, shift 0) and wide weights at 0: same logits as without them."""
    cfg = small_cfg("shared_bottom", scenario_film=False, scenario_wide=False)
    plain = build_architecture("shared_bottom", 3, 2, cfg)
    both = build_architecture("shared_bottom", 3, 2, small_cfg("shared_bottom", scenario_film=True, scenario_wide=True))
    x, idx = tf.random.normal([4, 7]), tf.constant([0, 1, 2, 0])
    plain(x, idx), both(x, idx)
    for dst, src in zip(both.bottom.dense, [d for d in plain.bottom.layers if isinstance(d, tf.keras.layers.Dense)]):
        dst.set_weights(src.get_weights())
    for dst, src in zip(both.heads.towers, plain.heads.towers):
        dst.set_weights(src.get_weights())
    np.testing.assert_allclose(both(x, idx).numpy(), plain(x, idx).numpy(), rtol=1e-5, atol=1e-6)


def test_shared_tower_starts_every_scenario_at_the_same_logits_and_is_skipped_for_one_scenario():
    """Each scenario's tower is a residual that starts at zero on the shared tower, so before
    training all scenarios score alike (the pooled model's shape); a single scenario gets no
    second tower."""
    cfg = small_cfg("shared_bottom", scenario_film=False, scenario_wide=False, shared_tower=True)
    arch = build_architecture("shared_bottom", 3, 2, cfg)
    logits = arch(tf.random.normal([4, 7]), tf.constant([0, 1, 2, 0])).numpy()
    np.testing.assert_allclose(logits[:, 1], logits[:, 0], atol=1e-6)
    np.testing.assert_allclose(logits[:, 2], logits[:, 0], atol=1e-6)
    assert np.abs(logits).max() > 1e-4  # the shared tower does contribute
    single = build_architecture("shared_bottom", 1, 2, cfg)
    single(tf.random.normal([4, 7]), tf.constant([0, 0, 0, 0]))
    assert single.shared_tower is None and not any("shared_tower" in v.name for v in single.weights)


def test_tower_l2_adds_a_penalty_to_the_model_losses():
    tables = tiny_tables(n=40)
    frame = D.build_examples(tables, small_cfg("shared_bottom"))
    for l2, expect in ((0.0, False), (0.01, True)):
        cfg = small_cfg("shared_bottom", tower_l2=l2, scenario_wide=True)
        model = build_ranking_model(tables, cfg)
        model({k: tf.constant(v[:4]) for k, v in D.model_inputs(frame, model.spec).items()})
        assert bool(model.losses) == expect
