"""New items compete: the score offset for items without an id embedding is chosen on
validation within the allowed warm cost, kept with the run, and served by the index."""

import numpy as np
import pytest
import tensorflow as tf

import tfrs_multiscene
from tfrs_multiscene.config import ExportConfig, RankingConfig, RetrievalConfig
from tfrs_multiscene.export import servables
from tfrs_multiscene.retrieval import checkpoints as C
from tfrs_multiscene.retrieval.new_items import FILE_NAME, OffsetChoice, unknown_id_mask
from tfrs_multiscene.retrieval.train import train_retrieval
from test_export_models import N_ITEMS, request, tables
from test_retrieval_train import CFG, holdout, two_taste_world


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    split = holdout(two_taste_world())
    cfg = RetrievalConfig(**{**CFG.__dict__, "epochs": 3, "new_item_warm_cost": 0.05})
    return split, train_retrieval(split, cfg, run, verbose=0), run


def test_the_offset_serves_new_items_best_within_the_warm_cost(trained):
    split, result, run = trained
    choice = OffsetChoice.load(run / "retrieval")
    assert choice.offset == result.info["new_items"]["offset"] == result.model.new_item_offset
    zero = choice.curve[0]
    chosen = next(row for row in choice.curve if row["offset"] == choice.offset)
    allowed = [row for row in choice.curve if row["warm"] >= zero["warm"] * (1 - 0.05)]
    assert chosen in allowed and chosen["new"] == max(row["new"] for row in allowed)
    # unknown-id items (4 catalogue items never interacted with, plus the held-out ones) exist,
    # and the untrained OOV path starts far below: the offset is positive and helps them
    assert unknown_id_mask(result.model, split.train.items["item_id"]).sum() >= 4
    assert choice.offset > 0 and chosen["new"] > zero["new"]


def test_the_run_keeps_the_offset_and_scores_include_it(trained):
    split, result, run = trained
    model = C.load_retrieval(run)
    assert model.new_item_offset == result.model.new_item_offset > 0
    with_offset = model.score(["u1", "u2"], "feed", split.train)
    model.new_item_offset = 0.0
    without = model.score(["u1", "u2"], "feed", split.train)
    unknown = unknown_id_mask(model, split.train.items["item_id"])
    np.testing.assert_allclose(with_offset - without, np.tile(result.model.new_item_offset * unknown, (2, 1)),
                               atol=1e-5)


def test_no_warm_cost_means_no_offset(tmp_path):
    split = holdout(two_taste_world())
    result = train_retrieval(split, RetrievalConfig(**{**CFG.__dict__, "epochs": 1, "new_item_warm_cost": 0.0}),
                             tmp_path, verbose=0)
    assert result.model.new_item_offset == 0.0 and result.info["new_items"]["offset"] == 0.0
    assert not (tmp_path / "retrieval" / FILE_NAME).exists()
    assert C.load_retrieval(tmp_path).new_item_offset == 0.0


def test_recommend_returns_new_items_among_warm_ones_through_the_offset_column(tmp_path):
    """The index holds [c, offset] for unknown ids and [c, 0] else, the query tower [q, 1]:
    the served top-K is the model's own top-K with the offset, new items included."""
    from tfrs_multiscene.ranking import build_ranking_model
    from tfrs_multiscene.ranking.train import _dummy_inputs
    from tfrs_multiscene.retrieval import build_retrieval_model

    tf.keras.utils.set_random_seed(0)
    t = tables()
    new = {f"i{i}" for i in range(N_ITEMS - 10, N_ITEMS)}
    train = t.with_interactions(t.interactions[~t.interactions["item_id"].isin(new)])
    text = {"item_embeddings": np.random.default_rng(1).normal(size=(N_ITEMS, 6))}
    retrieval = build_retrieval_model(train, RetrievalConfig(embedding_dim=8, feature_dim=8, history_length=4), text)
    retrieval.new_item_offset = 0.3
    ranking = build_ranking_model(train, RankingConfig(), tasks=["click", "conversion"])
    ranking(_dummy_inputs(ranking.spec))
    cfg = ExportConfig(index="brute_force", stock_index="none", top_k=30, candidates=30, default_k=10)
    paths = servables.export_from_models(tmp_path, retrieval, ranking, t.items, t.users, cfg)

    query = retrieval.query_model(request()).numpy()
    unknown = unknown_id_mask(retrieval, t.items["item_id"])
    assert set(t.items["item_id"][unknown]) == new
    scores = query @ retrieval.candidate_embeddings(t.items).T + 0.3 * unknown
    exact = t.items["item_id"].to_numpy()[np.argsort(-scores, axis=1)[:, :10]]
    served = tfrs_multiscene.load(paths["retrieval"])("serving_default", **request())
    np.testing.assert_array_equal(served["ids"].numpy().astype(str), exact)
    np.testing.assert_allclose(served["scores"].numpy(), np.sort(scores, axis=1)[:, ::-1][:, :10], atol=1e-5)

    # the recommender ranks the index's candidates: the new ones reach it beside warm ones
    out = tfrs_multiscene.load(paths["recommender"])("recommend", **request(), k=tf.constant([30]),
                                                    exclude_ids=tf.constant([[""], [""]]))
    for ids, top in zip(out["ids"].numpy().astype(str), np.argsort(-scores, axis=1)[:, :30]):
        assert set(ids) == set(t.items["item_id"].to_numpy()[top])
        assert set(ids) & new and set(ids) - new, ids
