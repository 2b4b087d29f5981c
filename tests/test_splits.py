"""Split kinds: disjoint parts that cover the data, fractions, determinism, per-kind rules."""

import numpy as np
import pytest

from tfrs_multiscene.config import GenerateConfig, SplitConfig
from tfrs_multiscene.data import synthetic
from tfrs_multiscene.data.splits import make_split

KINDS = ("random", "temporal", "leave_last_out", "cold_item")


@pytest.fixture(scope="module")
def tables():
    t = synthetic.generate(GenerateConfig(users=120, items=90, impressions=4000, seed=3))
    t.interactions["row"] = np.arange(len(t.interactions))  # identity of each interaction
    return t


def _rows(part):
    return set(part.interactions["row"]) if part is not None else set()


@pytest.mark.parametrize("kind", KINDS)
def test_parts_are_disjoint_cover_everything_and_share_tables(tables, kind):
    split = make_split(tables, SplitConfig(split=kind, test_fraction=0.2, valid_fraction=0.1, seed=1))
    train, valid, test = _rows(split.train), _rows(split.valid), _rows(split.test)
    assert not (train & valid) and not (train & test) and not (valid & test)
    assert train | valid | test == set(range(len(tables.interactions)))
    assert len(test) > 0 and len(valid) > 0 and len(train) > len(test)
    for part in (split.train, split.valid, split.test):
        assert part.items is tables.items and part.users is tables.users
        assert part.tasks == tables.tasks
    assert split.info["kind"] == kind and split.info["seed"] == 1
    assert split.info["counts"] == {"train": len(train), "valid": len(valid), "test": len(test)}


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_split(tables, kind):
    cfg = SplitConfig(split=kind, seed=5)
    a, b = make_split(tables, cfg), make_split(tables, cfg)
    assert _rows(a.test) == _rows(b.test) and _rows(a.valid) == _rows(b.valid)


@pytest.mark.parametrize("kind", ("random", "cold_item"))
def test_other_seed_other_split(tables, kind):
    a = make_split(tables, SplitConfig(split=kind, seed=5))
    b = make_split(tables, SplitConfig(split=kind, seed=6))
    assert _rows(a.test) != _rows(b.test)


@pytest.mark.parametrize("kind", ("random", "temporal"))
def test_fractions_of_interactions(tables, kind):
    n = len(tables.interactions)
    split = make_split(tables, SplitConfig(split=kind, test_fraction=0.25, valid_fraction=0.2))
    assert len(split.test.interactions) == round(0.25 * n)
    assert len(split.valid.interactions) == round(0.2 * (n - round(0.25 * n)))


def test_temporal_parts_are_ordered_in_time(tables):
    split = make_split(tables, SplitConfig(split="temporal"))
    ts = [p.interactions.timestamp for p in (split.train, split.valid, split.test)]
    assert ts[0].max() <= ts[1].min() and ts[1].max() <= ts[2].min()
    assert split.info["test_start_timestamp"] == ts[2].min()


def test_leave_last_out_holds_out_each_users_latest(tables):
    split = make_split(tables, SplitConfig(split="leave_last_out", valid_fraction=0.1))
    inter = tables.interactions
    test = split.test.interactions
    counts = inter.user_id.value_counts()
    assert test.user_id.is_unique
    assert set(test.user_id) == set(counts.index[counts > 1])  # single-interaction users train
    latest = inter.groupby("user_id").timestamp.max()
    assert (test.set_index("user_id").timestamp == latest[test.user_id]).all()
    valid = split.valid.interactions.set_index("user_id")
    train_latest = split.train.interactions.groupby("user_id").timestamp.max()
    shared = valid.index.intersection(train_latest.index)
    assert (valid.timestamp[shared] >= train_latest[shared]).all()


def test_cold_item_test_items_never_in_training(tables):
    split = make_split(tables, SplitConfig(split="cold_item", test_fraction=0.2, valid_fraction=0.1, seed=2))
    train_items = set(split.train.interactions.item_id)
    test_items = set(split.test.interactions.item_id)
    valid_items = set(split.valid.interactions.item_id)
    assert not (train_items & test_items) and not (train_items & valid_items)
    assert not (valid_items & test_items)
    assert test_items == set(split.info["test_items"])
    n_items = tables.interactions.item_id.nunique()
    assert len(test_items) == round(0.2 * n_items)


def test_zero_valid_fraction_gives_no_valid(tables):
    split = make_split(tables, SplitConfig(split="random", valid_fraction=0.0))
    assert split.valid is None and split.info["counts"]["valid"] == 0


def test_bad_requests_are_refused(tables):
    with pytest.raises(ValueError, match="unknown split kind"):
        make_split(tables, SplitConfig(split="by_magic"))
    with pytest.raises(ValueError, match="test_fraction"):
        make_split(tables, SplitConfig(test_fraction=1.0))
    no_time = tables.with_interactions(tables.interactions.drop(columns="timestamp"))
    with pytest.raises(ValueError, match="timestamp"):
        make_split(no_time, SplitConfig(split="temporal"))
