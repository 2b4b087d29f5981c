"""Beam preprocessing: same validation as the data layer, joined TFRecords that read back."""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines import beam_preprocess as B
from tfrs_multiscene.config import DataConfig, GenerateConfig
from tfrs_multiscene.data import examples as E
from tfrs_multiscene.data.formats import write_tables
from tfrs_multiscene.data.loading import load_tables
from tfrs_multiscene.data.pipeline import history_features, interaction_features
from tfrs_multiscene.data.synthetic import generate
from tfrs_multiscene.data.vocab import Vocabularies
from tfrs_multiscene.retrieval.features import positive_interactions

CHUNK = 400  # several chunks, so duplicates across chunks are exercised


def _dirty_copy(tables, directory, fmt):
    """Write ``tables`` with three bad interactions appended: a duplicate of an early row
    (other chunk), an unknown item and a label outside {0, 1}."""
    inter = tables.interactions
    bad = inter.iloc[[1, 2, 3]].copy()
    bad.iloc[1, bad.columns.get_loc("item_id")] = "no_such_item"
    bad.iloc[2, bad.columns.get_loc("click")] = 7
    dirty = tables.with_interactions(pd.concat([inter, bad], ignore_index=True))
    write_tables(dirty, directory, fmt)
    return directory


@pytest.fixture(scope="module")
def world():
    return generate(GenerateConfig(users=120, items=60, impressions=2000, seed=3))


@pytest.fixture(scope="module")
def run(world, tmp_path_factory):
    data = _dirty_copy(world, tmp_path_factory.mktemp("data"), "csv")
    out = tmp_path_factory.mktemp("pre")
    code = B.main(["--data", str(data), "--out", str(out), "--shards", "3", "--chunk-rows", str(CHUNK)])
    return data, out, code, json.loads((out / E.STATS_FILE).read_text())


def test_counts_and_quarantine_match_the_data_layer(run, tmp_path):
    data, out, code, stats = run
    _, report = load_tables(DataConfig(data=str(data), chunk_rows=CHUNK), quarantine_dir=tmp_path)
    assert code == 1  # rows were quarantined, output still written
    assert stats["balanced"]
    for table, counts in report.counts.items():
        assert stats["counts"][table] == {"read": counts.read, "used": counts.used, "quarantined": counts.quarantined}
    assert stats["counts"]["interactions"]["quarantined"] == 3
    assert stats["reasons"]["interactions"] == report.reason_counts()["interactions"]
    quarantined = (out / "quarantine" / "quarantine_interactions.csv").read_text()
    assert "duplicate of the interaction at row 3" in quarantined and "no_such_item" in quarantined


def test_vocabularies_and_item_frequencies_match_the_data_layer(run):
    data, out, _, stats = run
    tables, _ = load_tables(DataConfig(data=str(data)))
    assert Vocabularies.load(out / E.VOCAB_DIR) == Vocabularies.from_tables(tables)
    freq = json.loads((out / E.ITEM_FREQUENCY_FILE).read_text())
    expected = positive_interactions(tables)["item_id"].value_counts().to_dict()
    assert freq == expected
    inter = tables.interactions
    for scen, s in stats["scenarios"].items():
        part = inter[inter.scenario == scen]
        assert s["interactions"] == len(part) and s["users"] == part.user_id.nunique()
        assert s["label_rates"]["click"] == pytest.approx(part.click.mean())


def test_examples_read_back_with_joined_features(run):
    import tensorflow as tf

    data, out, _, stats = run
    tables, _ = load_tables(DataConfig(data=str(data)))
    expected = interaction_features(tables)
    ds, info = E.read_examples(out, batch_size=256, shuffle=False)
    assert len(info["files"]) == 3
    got = {}
    for batch in ds:
        for k, v in batch.items():
            got.setdefault(k, []).append(v.numpy())
    got = {k: np.concatenate(v) for k, v in got.items()}
    assert set(expected) <= set(got) and {"true_p_click", "history"} <= set(got)
    assert len(got["item_id"]) == stats["examples"] == len(tables.interactions)
    def rows(f):
        ids = [np.char.decode(v.astype(bytes)) if v.dtype == object and isinstance(v[0], bytes) else v.astype(str)
               for v in (np.asarray(f["user_id"]), np.asarray(f["item_id"]), np.asarray(f["title"]))]
        return sorted(zip(*ids, np.asarray(f["timestamp"]).tolist()))

    assert rows(got) == rows(expected)
    # the history feature is the data layer's leak-free history of the same interaction
    hist = history_features(tables, 20, label="click")
    want = {(u, i, t): tuple(h) for u, i, t, h in zip(expected["user_id"], expected["item_id"],
                                                      expected["timestamp"].tolist(), hist.tolist())}
    got_hist = [tuple(x.decode() for x in h) for h in got["history"]]
    got_keys = zip((x.decode() for x in got["user_id"]), (x.decode() for x in got["item_id"]), got["timestamp"].tolist())
    assert got["history"].shape[1] == 20 and any(h[-1] for h in got_hist)
    assert all(want[k] == h for k, h in zip(got_keys, got_hist))
    assert got["click"].sum() == pytest.approx(expected["click"].sum())
    assert got["price"].sum() == pytest.approx(expected["price"].sum(), rel=1e-4)
    # worker sharding: two input pipelines read disjoint shards covering everything
    sizes = []
    for i in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2)
        ds_i, _ = E.read_examples(out, batch_size=64, shuffle=True, input_context=ctx)
        sizes.append(sum(int(b["item_id"].shape[0]) for b in ds_i))
    assert sum(sizes) == stats["examples"] and min(sizes) > 0


def test_example_encoding_parses_like_tensorflow():
    import tensorflow as tf

    cols = {"s": np.array(["héllo", "", "x"], object), "f": np.array([0.5, -1.25, 3e9], np.float32),
            "i": np.array([-5, 0, 1_700_000_000_123], np.int64)}
    records = E.encode_examples(cols)
    parsed = tf.io.parse_example(records, E.parsing_spec(E.feature_spec(cols)))
    assert [v.decode() for v in parsed["s"].numpy()] == list(cols["s"])
    np.testing.assert_array_equal(parsed["f"].numpy(), cols["f"])
    np.testing.assert_array_equal(parsed["i"].numpy(), cols["i"])


def test_bad_layout_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "readme.txt").write_text("nothing here")
    assert B.main(["--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "interactions" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="not a complete"):
        E.read_examples(tmp_path)


@pytest.mark.slow
def test_parquet_input_multi_process_direct_runner(world, tmp_path):
    data = _dirty_copy(world, tmp_path / "data", "parquet")
    stats = B.run_preprocess(data, tmp_path / "out", beam_args=["--direct_num_workers=2"], shards=2)
    assert stats["counts"]["interactions"]["quarantined"] == 3
    assert stats["examples"] == len(world.interactions) and stats["shards"] == 2
