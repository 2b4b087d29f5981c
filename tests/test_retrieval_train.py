"""Training the two-tower: it learns, checkpoints every epoch, resumes, warm-starts with new ids."""

import json

import numpy as np
import pandas as pd
import pytest

import tensorflow as tf

from tfrs_multiscene.config import RetrievalConfig
from tfrs_multiscene.data.schema import Tables
from tfrs_multiscene.data.splits import Split
from tfrs_multiscene.retrieval import checkpoints as C
from tfrs_multiscene.retrieval.train import evaluate_model, make_training_dataset, patience_exhausted, train_retrieval

CFG = RetrievalConfig(embedding_dim=16, feature_dim=16, epochs=2, batch_size=64, learning_rate=0.02,
                      history_length=5, temperature=0.1, use_user_id=True)


def two_taste_world(n_users=60, n_items=40, per_user=12, seed=0, prefix=""):
    """Even users like even items, odd users odd items; item text says which."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        pool = [i for i in range(n_items) if i % 2 == u % 2]
        for t, i in enumerate(rng.choice(pool, per_user, replace=False)):
            rows.append((f"{prefix}u{u}", f"i{i}", "feed" if t % 2 else "search", t))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "scenario", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items + 4)],
                          "title": [("even" if i % 2 == 0 else "odd") + f" thing {i}" for i in range(n_items + 4)],
                          "category": ["c" + str(i % 2) for i in range(n_items + 4)]})
    return Tables(inter, items, None)


def holdout(tables, fraction=0.2, seed=0):
    frame = tables.interactions
    test = frame.sample(frac=fraction, random_state=seed)
    train = tables.with_interactions(frame.drop(test.index))
    return Split(train, tables.with_interactions(test), tables.with_interactions(test), {})


def test_training_learns_and_writes_checkpoints_history_and_logs(tmp_path):
    split = holdout(two_taste_world())
    result = train_retrieval(split, RetrievalConfig(**{**CFG.__dict__, "epochs": 4}), tmp_path, verbose=0)
    h = result.history
    assert h["epoch"] == [1, 2, 3, 4] and len(h["loss"]) == 4 and h["loss"][-1] < h["loss"][0]
    assert "val_recall_at_10" in h and all(x > 0 for x in h["examples_per_second"])
    assert json.loads((tmp_path / "retrieval" / "history.json").read_text())["epoch"] == [1, 2, 3, 4]
    assert any((tmp_path / "retrieval" / "logs").rglob("events.out.tfevents*"))
    assert {"val_recall_at_50", "val_ndcg_at_20", "val_selection_score"} <= set(h)
    expected = np.mean([h[f"val_{m}_at_{k}"][0] for m in ("recall", "ndcg") for k in (10, 20, 50)])
    assert h["val_selection_score"][0] == pytest.approx(expected)
    best = int(np.argmax(h["val_selection_score"])) + 1  # restore_best: the model is the best epoch
    assert result.info["final_checkpoint"].endswith(f"best-{best}")
    # Random ranking of a user's ~32 unseen items gives Recall@10 ~ 10/32; knowing the
    # taste (16 candidates of the right parity) gives ~ 10/16.
    metrics = evaluate_model(result.model, split.train, split.test, ks=(10,))
    assert metrics["recall_at_10"] > 0.5
    # Reload from the run directory: same embeddings.
    loaded = C.load_retrieval(tmp_path)
    items = split.train.items
    np.testing.assert_allclose(loaded.candidate_embeddings(items), result.model.candidate_embeddings(items), atol=1e-6)
    feats = result.model.query_features(["u1", "u2"], "feed", split.train)
    np.testing.assert_allclose(loaded.query_embeddings(feats), result.model.query_embeddings(feats), atol=1e-6)


def test_training_batches_exclude_the_target_from_the_history():
    tables = two_taste_world(n_users=4, per_user=6)
    from tfrs_multiscene.retrieval.model import build_retrieval_model

    model = build_retrieval_model(tables, CFG, None)
    ds, n = make_training_dataset(model.spec, tables, CFG, shuffle=False)
    assert n == 24
    batch = next(iter(ds))
    hist = batch["query"]["history"].numpy().astype(str)
    targets = batch["candidate"]["item_id"].numpy().astype(str)
    assert hist.shape == (24, 5)
    for row, target in zip(hist, targets):
        assert target not in row and list(row).count("") == 0  # 5 others of the user's 6


def test_history_dropout_hides_part_of_each_history_and_redraws_it_every_epoch():
    tables = two_taste_world(n_users=40, per_user=11)
    from tfrs_multiscene.retrieval.model import build_retrieval_model

    cfg = RetrievalConfig(**{**CFG.__dict__, "history_length": 10, "history_dropout": 0.5, "batch_size": 440})
    model = build_retrieval_model(tables, cfg, None)
    ds, _ = make_training_dataset(model.spec, tables, cfg, shuffle=False)
    first, second = (next(iter(ds))["query"]["history"].numpy().astype(str) for _ in range(2))
    kept = (first != "").mean()  # 10 others per example, each kept with probability 0.5
    assert 0.4 < kept < 0.6
    assert (first != second).any()
    targets = next(iter(ds))["candidate"]["item_id"].numpy().astype(str)
    assert all(t not in row for row, t in zip(first, targets))


def test_mixed_negatives_add_uniform_catalogue_items_to_each_batch():
    tables = two_taste_world(n_users=4, per_user=6)
    from tfrs_multiscene.retrieval.model import build_retrieval_model

    cfg = RetrievalConfig(**{**CFG.__dict__, "mixed_negatives": 32})
    model = build_retrieval_model(tables, cfg, None)
    ds, _ = make_training_dataset(model.spec, tables, cfg, shuffle=False)
    batch = next(iter(ds))
    neg = batch["neg_candidate"]
    assert neg["item_id"].shape == (32,) and neg["category"].shape == (32,)
    items = tables.items.set_index("item_id")
    for item, cat, row in zip(neg["item_id"].numpy().astype(str), neg["category"].numpy().astype(str),
                              batch["neg_item_row"].numpy()):
        assert items.loc[item, "category"] == cat and model.spec.item_table_ids[row] == item
    # Column probabilities mix the in-batch (frequency) and the uniform draw.
    p = batch["neg_probability"].numpy()
    assert np.all(p > 0) and np.all(batch["probability"].numpy() > 0)
    loss = model.compute_loss(batch, training=True)
    assert np.isfinite(float(loss))
    off = RetrievalConfig(**{**CFG.__dict__, "mixed_negatives": 0})
    ds_off, _ = make_training_dataset(model.spec, tables, off, shuffle=False)
    assert "neg_candidate" not in next(iter(ds_off))
    whole = RetrievalConfig(**{**CFG.__dict__, "mixed_negatives": 10 * len(model.spec.item_table_ids)})
    rows = next(iter(make_training_dataset(model.spec, tables, whole, shuffle=False)[0]))["neg_item_row"].numpy()
    assert sorted(rows.tolist()) == list(range(len(model.spec.item_table_ids))), "a small catalogue joins whole"


def test_an_ensemble_trains_every_member_and_reloads_as_one_two_tower(tmp_path):
    split = holdout(two_taste_world())
    cfg = RetrievalConfig(**{**CFG.__dict__, "epochs": 3, "ensemble": 2})
    result = train_retrieval(split, cfg, tmp_path, verbose=0)
    assert evaluate_model(result.model, split.train, split.test, ks=(10,))["recall_at_10"] > 0.5
    # each member is a whole training of its own (own seed, checkpoints, history)
    from tfrs_multiscene.retrieval.train import member_run_dir

    for k in range(2):
        assert C.latest_checkpoint(member_run_dir(tmp_path, k)) is not None
        assert len(result.history[f"member{k + 1}_loss"]) == result.info["members"][k]["epochs"]
    assert result.info["val_selection_score"] > 0
    # running train again finds every member finished: nothing retrains, same model
    again = train_retrieval(split, cfg, tmp_path, verbose=0)
    assert [m["resumed_from_epoch"] for m in again.info["members"]] == [m["epochs"] for m in result.info["members"]]
    loaded = C.load_retrieval(tmp_path)
    items = split.train.items
    np.testing.assert_allclose(loaded.candidate_embeddings(items), result.model.candidate_embeddings(items), atol=1e-6)
    assert loaded.candidate_embeddings(items).shape[1] == 2 * CFG.embedding_dim
    # each member on its own learned the tastes: even users score even items higher
    feats = {k: tf.constant(np.asarray(v).astype(str))
             for k, v in loaded.query_features(["u0", "u2", "u1"], "feed", split.train).items()}
    from tfrs_multiscene.retrieval.features import candidate_features

    even = (np.arange(len(items)) % 2 == 0)
    for query_tower, candidate_tower in loaded.member_towers:
        scores = query_tower(feats).numpy() @ candidate_tower(candidate_features(items, ["category"])).numpy().T
        assert (scores[:2, even].mean(axis=1) > scores[:2, ~even].mean(axis=1)).all()
        assert scores[2, ~even].mean() > scores[2, even].mean()


def test_known_positive_mask_drops_a_querys_other_positives_but_never_its_own_positive():
    from tfrs_multiscene.retrieval.model import known_positive_mask

    # Query 0 knows items 5 and 2; its positive is column 0 (item 2 again: kept), item 2 in
    # column 3 and item 5 in column 2 leave its negatives. Query 1 knows nothing.
    mask = known_positive_mask(tf.constant([[5, 2, -1], [-1, -1, -1]]), tf.constant([2, 7, 5, 2, 9]))
    np.testing.assert_array_equal(mask.numpy(), [[True, True, False, False, True], [True] * 5])


def test_mask_known_positives_takes_each_users_other_positives_out_of_its_softmax():
    tables = two_taste_world(n_users=4, per_user=6)
    from tfrs_multiscene.retrieval.model import KNOWN_ROWS, build_retrieval_model

    cfg = RetrievalConfig(**{**CFG.__dict__, "mixed_negatives": 32, "mask_known_positives": True})
    model = build_retrieval_model(tables, cfg, None)
    batch = next(iter(make_training_dataset(model.spec, tables, cfg, shuffle=False)[0]))
    ids = np.asarray(model.spec.item_table_ids)
    positives = tables.interactions.groupby("user_id")["item_id"].apply(set)
    for user, target, known in zip(batch["query"]["user_id"].numpy().astype(str),
                                   batch["candidate"]["item_id"].numpy().astype(str), batch[KNOWN_ROWS].numpy()):
        assert set(ids[known[known >= 0]]) == positives[user] - {target}
    # Fewer competitors in each softmax: the same scores give a strictly lower loss.
    masked = float(model.compute_loss(batch, training=False))
    unmasked = float(model.compute_loss({k: v for k, v in batch.items() if k != KNOWN_ROWS}, training=False))
    assert masked < unmasked
    off = RetrievalConfig(**{**CFG.__dict__, "mixed_negatives": 32})
    assert KNOWN_ROWS not in next(iter(make_training_dataset(model.spec, tables, off, shuffle=False)[0]))


class Interrupt(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated interruption")


def test_resume_after_interruption(tmp_path):
    split = holdout(two_taste_world())
    cfg = RetrievalConfig(**{**CFG.__dict__, "epochs": 3, "restore_best": False})
    with pytest.raises(KeyboardInterrupt):
        train_retrieval(split, cfg, tmp_path, verbose=0, callbacks=[Interrupt()])
    assert C.latest_checkpoint(tmp_path).endswith("ckpt-1")
    after_one = C.load_retrieval(tmp_path).candidate_embeddings(split.train.items)

    result = train_retrieval(split, cfg, tmp_path, verbose=0)
    assert result.info["resumed_from_epoch"] == 1
    assert result.history["epoch"] == [1, 2, 3] and len(result.history["loss"]) == 3
    assert C.latest_checkpoint(tmp_path).endswith("ckpt-3")
    assert not np.allclose(result.model.candidate_embeddings(split.train.items), after_one)
    # A finished run is not trained again.
    again = train_retrieval(split, cfg, tmp_path, verbose=0)
    assert again.info["resumed_from_epoch"] == 3 and again.history["epoch"] == [1, 2, 3]


def test_patience_rule_counts_validated_epochs_only():
    h = {"val_selection_score": [0.1, 0.3, None, 0.2, 0.25]}
    assert not patience_exhausted(h, 3)          # 0.3 is among the last three validated
    assert patience_exhausted(h, 2)              # 0.2, 0.25 after a best of 0.3
    assert not patience_exhausted(h, 0)          # 0 switches early stopping off
    assert not patience_exhausted({"val_selection_score": [0.1, 0.1 + 1e-9]}, 1)


def test_early_stopping_stops_at_the_first_epoch_without_improvement_and_keeps_the_best(tmp_path):
    split = holdout(two_taste_world())
    cfg = RetrievalConfig(**{**CFG.__dict__, "epochs": 8, "early_stopping": 1, "learning_rate": 0.05})
    result = train_retrieval(split, cfg, tmp_path, verbose=0)
    scores = result.history["val_selection_score"]
    first_worse = next((e for e in range(1, 8) if scores[e] <= max(scores[:e])), None) if len(scores) > 1 else None
    assert len(scores) == (first_worse + 1 if first_worse is not None else 8)
    assert result.info["stopped_early_after_epoch"] == (len(scores) if first_worse is not None else None)
    assert result.info["final_checkpoint"].endswith(f"best-{int(np.argmax(scores)) + 1}")
    # Resuming a run that stopped early trains nothing more.
    again = train_retrieval(split, cfg, tmp_path, verbose=0)
    assert again.history["epoch"] == result.history["epoch"]


def test_warm_start_keeps_old_rows_and_adds_new_ids(tmp_path):
    old = two_taste_world(n_items=40)
    base = train_retrieval(old, CFG, tmp_path / "base", verbose=0)
    # New interactions: new users, and items i40..i41 that were never trained before.
    new = two_taste_world(n_users=10, n_items=40, per_user=6, seed=1, prefix="new_")
    extra = pd.DataFrame({"user_id": ["new_u0", "new_u1", "u1"], "item_id": ["i40", "i41", "i41"],
                          "scenario": "feed", "timestamp": 99})
    new = new.with_interactions(pd.concat([new.interactions, extra]))
    cfg = RetrievalConfig(**{**CFG.__dict__, "epochs": 0, "warm_start": str(tmp_path / "base"),
                             "embedding_dim": 99})  # structural fields come from the base run
    warm = train_retrieval(new, cfg, tmp_path / "warm", verbose=0)
    assert warm.model.cfg.embedding_dim == 16
    assert warm.info["warm_start_transfer"]["new_rows"] > 0

    old_spec, new_spec = base.model.spec, warm.model.spec
    assert new_spec.user_ids[: len(old_spec.user_ids)] == old_spec.user_ids
    assert {"new_u0", "new_u9"} <= set(new_spec.user_ids[len(old_spec.user_ids):])
    assert {"i40", "i41"} <= set(new_spec.item_ids[len(old_spec.item_ids):])
    old_table = base.model.candidate_model.item_id.embedding.embeddings.numpy()
    new_table = warm.model.candidate_model.item_id.embedding.embeddings.numpy()
    np.testing.assert_allclose(new_table[: len(old_table)], old_table)
    old_users = base.model.query_model.user_id.embedding.embeddings.numpy()
    new_users = warm.model.query_model.user_id.embedding.embeddings.numpy()
    np.testing.assert_allclose(new_users[: len(old_users)], old_users)
    assert new_users.shape[0] == old_users.shape[0] + 10
    assert new_table.shape[0] == old_table.shape[0] + 2
    # Old items score exactly as before (same weights), and training then continues.
    items = old.items.iloc[:40]
    np.testing.assert_allclose(warm.model.candidate_embeddings(items), base.model.candidate_embeddings(items), atol=1e-6)
    cont = train_retrieval(new, RetrievalConfig(**{**cfg.__dict__, "epochs": 1}), tmp_path / "warm2", verbose=0)
    assert cont.history["epoch"] == [1] and np.isfinite(cont.history["loss"][0])


def test_finetune_mode_trains_the_text_encoder_and_reloads(tmp_path):
    from tfrs_multiscene.config import TextConfig

    split = holdout(two_taste_world(n_users=30, per_user=8))
    text_cfg = TextConfig(text_encoder="scratch", text_mode="finetune", scratch_dim=16, scratch_layers=1,
                          scratch_vocab_size=200, max_length=8, cache_dir=str(tmp_path / "cache"))
    cfg = RetrievalConfig(**{**CFG.__dict__, "epochs": 0})
    untrained = train_retrieval(split, cfg, tmp_path / "r0", text_cfg=text_cfg, verbose=0)
    before = [v.numpy().copy() for v in untrained.model.candidate_model.text.encoder.hub_trainable_variables]
    result = train_retrieval(split, RetrievalConfig(**{**cfg.__dict__, "epochs": 1}), tmp_path / "r1",
                             text_cfg=text_cfg, verbose=0)
    layer = result.model.candidate_model.text.encoder
    after = [v.numpy() for v in layer.hub_trainable_variables]
    assert len(after) == len(before) > 0
    assert any(not np.allclose(a, b) for a, b in zip(after, before))
    loaded = C.load_retrieval(tmp_path / "r1")  # rebuilds the encoder from text_config.json
    items = split.train.items
    np.testing.assert_allclose(loaded.candidate_embeddings(items), result.model.candidate_embeddings(items), atol=1e-5)


def test_items_without_a_training_interaction_are_embedded_through_the_unknown_id_path(tmp_path):
    """An item with no training interaction gets the OOV id row + its categorical features,
    exactly what ``unknown_ids=True`` computes (the new-item offset reads that path), and
    that path still separates the two tastes through the category."""
    from tfrs_multiscene.retrieval import features as F

    split = holdout(two_taste_world())
    model = train_retrieval(split, RetrievalConfig(**{**CFG.__dict__, "epochs": 3}), tmp_path, verbose=0).model
    cold = split.train.items[split.train.items.item_id.isin(["i40", "i41", "i42", "i43"])]
    feats = {k: tf.constant(v.astype(str)) for k, v in F.candidate_features(cold, ["category"]).items()}
    np.testing.assert_allclose(model.candidate_model(feats, unknown_ids=True).numpy(),
                               model.candidate_embeddings(cold), atol=1e-6)
    scores = model.score(["u0", "u2", "u1", "u3"], "feed", split.train, cold)
    assert (scores[:2, [0, 2]].mean() > scores[:2, [1, 3]].mean()) and (scores[2:, [1, 3]].mean() > scores[2:, [0, 2]].mean())


def test_a_run_saved_with_a_retired_setting_at_its_off_value_still_loads(tmp_path):
    """Settings measured useless were deleted; a run directory written before that (they
    are in its config.json at their off value) resumes and reloads, a non-off value is
    refused with the field named."""
    import json

    from tfrs_multiscene.config import from_dict

    split = holdout(two_taste_world())
    cfg = RetrievalConfig(**{**CFG.__dict__, "epochs": 1})
    train_retrieval(split, cfg, tmp_path, verbose=0)
    path = tmp_path / "retrieval" / "config.json"
    old = {**json.loads(path.read_text()), "bag_of_words": False, "text_only_loss_weight": 0.0,
           "item_id_dropout": None, "l2_regularization": 0.0}
    path.write_text(json.dumps(old))
    assert C.load_retrieval(tmp_path).cfg.epochs == 1
    train_retrieval(split, RetrievalConfig(**{**CFG.__dict__, "epochs": 2}), tmp_path, verbose=0)  # resumes
    with pytest.raises(ValueError, match="text_only_loss_weight = 0.5 is no longer a setting"):
        from_dict(RetrievalConfig, {"text_only_loss_weight": 0.5})


def test_cold_item_split_validates_among_the_cold_items(tmp_path):
    """On a cold-item split validation ranks the cold items, as the cold-start evaluation does
    (on MovieLens-100K, over all items, cold items never reached a top 50: every epoch scored
    0 and early stopping kept epoch 1)."""
    from tfrs_multiscene.config import SplitConfig
    from tfrs_multiscene.data.splits import make_split
    from tfrs_multiscene.retrieval.train import cold_candidates

    split = make_split(two_taste_world(), SplitConfig(split="cold_item", test_fraction=0.2, valid_fraction=0.2, seed=0))
    candidates = cold_candidates(split.train, split.valid)
    assert set(split.info["valid_items"]) <= set(candidates)
    assert not set(candidates) & set(split.train.interactions["item_id"])
    assert cold_candidates(split.train, split.train) is None  # a warm validation ranks every item
    cfg = RetrievalConfig(**{**CFG.__dict__, "epochs": 3, "early_stopping": 0})
    result = train_retrieval(split, cfg, tmp_path, verbose=0)
    history = result.history
    assert max(history["val_selection_score"]) > 0.3
    among_cold = evaluate_model(result.model, split.train, split.valid, ks=(10,), candidates=candidates)
    among_all = evaluate_model(result.model, split.train, split.valid, ks=(10,))
    assert among_cold["recall_at_10"] >= among_all["recall_at_10"] and among_cold["recall_at_10"] > 0.5


def test_plateau_lr_factor_halves_the_learning_rate_after_each_epoch_without_improvement(tmp_path):
    split = holdout(two_taste_world())
    cfg = RetrievalConfig(**{**CFG.__dict__, "epochs": 5, "plateau_lr_factor": 0.5, "early_stopping": 0,
                             "learning_rate": 0.05})
    h = train_retrieval(split, cfg, tmp_path, verbose=0).history
    scores, rates = h["val_selection_score"], h["lr"]  # lr as used in each epoch
    for e in range(1, 5):
        improved = scores[e - 1] > max(scores[: e - 1], default=-1.0)
        assert rates[e] == pytest.approx(rates[e - 1] * (1.0 if improved else 0.5))


def test_ema_momentum_makes_the_weight_average_the_model_at_each_epoch_end(tmp_path):
    split = holdout(two_taste_world())
    from tfrs_multiscene.retrieval.model import build_retrieval_model

    tf.keras.utils.set_random_seed(42)
    initial = build_retrieval_model(split.train, CFG, None).build_towers().candidate_embeddings(split.train.items)

    def moved(ema):
        cfg = RetrievalConfig(**{**CFG.__dict__, "ema_momentum": ema, "early_stopping": 0})
        model = train_retrieval(split, cfg, tmp_path / f"ema{ema}", verbose=0).model
        return np.abs(model.candidate_embeddings(split.train.items) - initial).mean()

    # An average with momentum 0.9999 over ~20 steps stays next to the initial weights;
    # the raw weights travel far.
    assert moved(0.9999) < 0.1 * moved(0.0)
