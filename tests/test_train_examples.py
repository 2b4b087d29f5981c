"""`preprocess` then `train --examples DIR`: streamed training on the split's training rows
only, evaluating like a model trained from the tables."""

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import tfrs_multiscene  # noqa: F401  (Keras 2 before TensorFlow)
from tfrs_multiscene import cli
from tfrs_multiscene.config import EvaluateConfig, GenerateConfig, RetrievalConfig, SplitConfig
from tfrs_multiscene.data import examples as E
from tfrs_multiscene.data import schema as S
from tfrs_multiscene.data.formats import write_tables
from tfrs_multiscene.data.synthetic import generate
from tfrs_multiscene.run import RunDir
from tfrs_multiscene.tfx import trainer as T

KEY = [S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.SCENARIO]
TRAIN_FLAGS = ["--epochs", "6", "--batch-size", "128", "--text-encoder", "none", "--stages", "retrieval",
               "--split", "random", "--test-fraction", "0.2", "--valid-fraction", "0.1", "--seed", "7"]


@pytest.fixture(scope="module")
def pre(tmp_path_factory):
    """A small synthetic world written as CSV tables and preprocessed by Beam (DirectRunner)."""
    base = tmp_path_factory.mktemp("world")
    world = generate(GenerateConfig(users=400, items=150, impressions=12000, seed=5))
    write_tables(world, base / "data", "csv")
    assert cli.main(["preprocess", "--data", str(base / "data"), "--out", str(base / "pre"), "--shards", "3"]) == 0
    return base


def _keys(frame: pd.DataFrame) -> set:
    return set(map(tuple, frame[KEY].astype(str).to_numpy().tolist()))


@pytest.mark.parametrize("kind", ["random", "cold_item", "temporal"])
def test_hashed_split_is_the_same_on_examples_and_frames(pre, kind):
    cfg = SplitConfig(split=kind, test_fraction=0.2, valid_fraction=0.1, seed=3)
    rule = E.HashedSplit.from_config(cfg, pre / "pre")
    ds, _ = E.read_examples(pre / "pre", batch_size=4096, shuffle=False)
    streamed = np.concatenate([rule.tf_part(batch).numpy() for batch in ds])
    frame = T.examples_to_tables(pre / "pre").interactions
    parts = rule.frame_part(frame)
    np.testing.assert_array_equal(streamed, parts)
    train, test = frame[parts == E.TRAIN], frame[parts == E.TEST]
    if kind == "cold_item":  # the fractions are of items; an item's rows all go one way
        assert not set(train[S.ITEM_ID]) & set(test[S.ITEM_ID])
        per_item = pd.Series(parts).groupby(frame[S.ITEM_ID].to_numpy()).agg(["min", "max"])
        assert (per_item["min"] == per_item["max"]).all()
        share = np.bincount(per_item["min"], minlength=3) / len(per_item)
    else:
        share = np.bincount(parts, minlength=3) / len(parts)
    tolerance = 0.08 if kind == "cold_item" else 0.02  # 150 items vs 12000 rows
    assert share[E.TEST] == pytest.approx(0.2, abs=tolerance)
    assert share[E.VALID] == pytest.approx(0.08, abs=tolerance)
    if kind == "temporal":
        assert train[S.TIMESTAMP].max() < test[S.TIMESTAMP].min()
    again = E.HashedSplit.from_dict(json.loads(json.dumps(rule.to_dict())))
    np.testing.assert_array_equal(again.frame_part(frame), parts)
    assert E.HashedSplit.from_config(SplitConfig(split=kind, seed=4), pre / "pre").to_dict() != rule.to_dict() \
        or kind == "temporal"  # the seed moves hashed splits; temporal cuts do not depend on it


def test_leave_last_out_is_refused_with_examples(pre):
    with pytest.raises(ValueError, match="row by row"):
        E.HashedSplit.from_config(SplitConfig(split="leave_last_out"), pre / "pre")


def _figures(run_dir) -> dict:
    from tfrs_multiscene.evaluation.run_evaluation import evaluate_run

    result = evaluate_run(EvaluateConfig(run_dir=str(run_dir), ks=[10], baselines=["popularity"],
                                         cold_start=False, ranking=False), log=lambda *a: None)
    standard = result["retrieval"]["standard"]
    assert result["split"]["known_from"] == "train+valid"  # validation rows are history, not misses
    return {"model": standard["model"]["recall@10"], "popularity": standard["popularity"]["recall@10"],
            "users": standard["model"]["users"]}


def test_train_examples_respects_the_split_and_evaluates_like_tables(pre, tmp_path, capsys):
    examples, data = pre / "pre", pre / "data"
    ex_run, tab_run = tmp_path / "ex", tmp_path / "tab"
    assert cli.main(["train", "--run", str(ex_run), "--examples", str(examples), *TRAIN_FLAGS]) == 0
    summary = json.loads((ex_run / "train_summary.json").read_text())
    split = RunDir(ex_run).load_split()
    assert split.info["rule"].startswith("hashed") and split.info["kind"] == "random"
    assert split.valid is not None and len(split.test.interactions) > 0.15 * 12000

    # the streamed training data: exactly the training part's positives, no held-out row
    rule = E.HashedSplit.from_dict(split.info["hashed_rule"])
    info = E.load_info(examples)
    keep = T.training_filter(info["features"], None, rule)
    ds, _ = E.read_examples(examples, batch_size=4096, shuffle=False, filter_fn=keep)
    rows = pd.DataFrame({k: np.concatenate([b[k].numpy() for b in ds]) for k in KEY})
    for k in (S.USER_ID, S.ITEM_ID, S.SCENARIO):
        rows[k] = rows[k].str.decode("utf-8")
    streamed = _keys(rows)
    train_pos = split.train.interactions[split.train.interactions["click"] > 0]
    assert streamed == _keys(train_pos) and len(rows) == len(train_pos)
    for held_out in (split.test, split.valid):
        assert not streamed & _keys(held_out.interactions)
    assert summary["retrieval"]["examples"] == len(train_pos)  # log-Q / steps from training rows only
    spec = json.loads((ex_run / "retrieval" / "feature_spec.json").read_text())
    freq = dict(zip(spec["item_table_ids"], spec["item_frequency"]))
    expected = train_pos[S.ITEM_ID].value_counts()
    assert all(freq[i] == n for i, n in expected.items()) and sum(freq.values()) == len(train_pos)
    cfg = RetrievalConfig(batch_size=128, history_length=20)
    from tfrs_multiscene.retrieval.checkpoints import load_retrieval

    model = load_retrieval(ex_run)
    batches = list(T.retrieval_dataset(examples, model.spec, cfg, shuffle=False, split=rule))
    triples = {(u, i, s) for b in batches for u, i, s in zip(b["query"]["user_id"].numpy(),
                                                            b["candidate"]["item_id"].numpy(),
                                                            b["query"]["scenario"].numpy())}
    assert sum(int(b["weight"].shape[0]) for b in batches) == len(train_pos)
    # mixed negatives, as in memory: uniform catalogue items with their features, new each batch
    first, second = batches[0], batches[1]
    n_items = len(model.spec.item_table_ids)
    if cfg.mixed_negatives >= n_items:  # a catalogue no larger than the draw joins whole, each item once
        assert sorted(first["neg_item_row"].numpy().tolist()) == list(range(n_items))
    else:
        assert first["neg_item_row"].shape == (cfg.mixed_negatives,)
        assert not np.array_equal(first["neg_item_row"].numpy(), second["neg_item_row"].numpy())
    table_ids = np.asarray(model.spec.item_table_ids).astype(str)
    assert (first["neg_candidate"]["item_id"].numpy().astype(str) == table_ids[first["neg_item_row"].numpy()]).all()
    assert {tuple(x.decode() for x in t) for t in triples} == {
        tuple(r) for r in train_pos[[S.USER_ID, S.ITEM_ID, S.SCENARIO]].astype(str).to_numpy().tolist()}
    # --mask-known-positives: each query's stored history is what leaves its negatives
    masked = next(iter(T.retrieval_dataset(examples, model.spec, dataclasses.replace(cfg, mask_known_positives=True),
                                           shuffle=False, split=rule)))
    history = masked["query"]["history"].numpy().astype(str)
    known = masked["known_rows"].numpy()
    assert known.shape == history.shape and (history != "").any()
    assert ((known >= 0) == (history != "")).all()
    assert (table_ids[known[known >= 0]] == history[history != ""]).all()
    assert "known_rows" not in first

    # the same configuration trained from the tables, on the same split (reused from split/)
    shutil.copytree(ex_run / "split", tab_run / "split")
    assert cli.main(["train", "--run", str(tab_run), "--data", str(data), *TRAIN_FLAGS]) == 0
    capsys.readouterr()
    ex, tab = _figures(ex_run), _figures(tab_run)
    print(f"recall@10 examples-trained {ex['model']:.3f}, tables-trained {tab['model']:.3f}, "
          f"popularity {ex['popularity']:.3f} ({ex['users']} test users)")
    assert ex["users"] == tab["users"] and ex["popularity"] == tab["popularity"]
    assert abs(ex["model"] - tab["model"]) <= 0.1
    assert ex["model"] >= ex["popularity"] + 0.03
    assert tab["model"] >= tab["popularity"] + 0.03


def test_table_training_refuses_several_workers(pre, tmp_path, monkeypatch, capsys):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert cli.main(["train", "--run", str(tmp_path / "run"), "--data", str(pre / "data"), *TRAIN_FLAGS]) == 2
    assert "--examples" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_rerun_with_another_split_is_refused(pre, tmp_path):
    from tfrs_multiscene.config import RunConfig, TrainConfig
    from tfrs_multiscene.training import RunConflict, examples_split

    run = RunDir(tmp_path / "run")
    cfg = RunConfig(train=TrainConfig(run_dir=str(run.path), examples=str(pre / "pre")),
                    split=SplitConfig(split="cold_item", seed=1))
    rule, split = examples_split(run, cfg, log=lambda *a: None)
    assert split.info["test_items"] and not set(split.info["test_items"]) & set(split.train.interactions[S.ITEM_ID])
    again, reused = examples_split(run, cfg, log=lambda *a: None)  # resuming: the saved split is reused
    assert again.to_dict() == rule.to_dict() and reused.info["counts"] == split.info["counts"]
    cfg.split.seed = 2
    with pytest.raises(RunConflict, match="another rule"):
        examples_split(run, cfg, log=lambda *a: None)


@pytest.mark.slow
def test_train_examples_with_ranking(pre, tmp_path, capsys):
    """Both stages: streamed retrieval, ranking on the in-memory training rows."""
    flags = [f for f in TRAIN_FLAGS if f not in ("--stages", "retrieval")]
    assert cli.main(["train", "--run", str(tmp_path / "run"), "--examples", str(pre / "pre"), *flags,
                     "--ranking-epochs", "1"]) == 0
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["retrieval"]["examples"] > 0 and "ranking" in summary
    assert (tmp_path / "run" / "ranking").is_dir()
