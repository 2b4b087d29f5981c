"""load_tables: canonical directories in any format, adapters by name or by their files."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tfrs_multiscene.config import DataConfig
from tfrs_multiscene.data.formats import FORMATS, write_tables
from tfrs_multiscene.data.loading import DataLayoutError, describe_source, load_tables
from tfrs_multiscene.data.schema import Tables

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("fmt", FORMATS)
def test_canonical_directory_in_every_format_loads_the_same(fmt, tmp_path):
    tables, report = load_tables(DataConfig(data=str(FIXTURES / "canonical" / fmt)), quarantine_dir=tmp_path)
    assert report.ok and report.balanced()
    reference = pd.read_csv(FIXTURES / "canonical" / "csv" / "interactions.csv", dtype=str)
    assert tables.interactions["item_id"].tolist() == reference["item_id"].tolist()
    assert tables.interactions["click"].tolist() == reference["click"].astype(int).tolist()
    assert tables.tasks == ("click", "conversion")
    assert sorted(tables.scenarios) == sorted(reference["scenario"].unique())
    assert len(tables.users) == 6 and tables.users["user_id"].map(type).eq(str).all()


def test_mixed_formats_in_one_directory(tmp_path):
    for table, fmt in (("interactions", "parquet"), ("items", "jsonl"), ("users", "tsv")):
        ext = {"parquet": "parquet", "jsonl": "jsonl", "tsv": "tsv"}[fmt]
        shutil.copy(FIXTURES / "canonical" / fmt / f"{table}.{ext}", tmp_path)
    tables, report = load_tables(DataConfig(data=str(tmp_path)))
    assert report.ok and len(tables.interactions) == 30 and len(tables.items) == 12


@pytest.mark.parametrize("name,expected", [("movielens-100k", 300), ("movielens-1m", 150), ("mind", 89),
                                           ("amazon", 40)])
def test_adapters_are_detected_from_their_files(name, expected):
    cfg = DataConfig(data=str(FIXTURES / name))
    assert describe_source(cfg) == name
    tables, report = load_tables(cfg)
    assert report.ok and len(tables.interactions) == expected
    assert report.counts["interactions"].read == expected


def test_config_fields_reach_the_adapter_and_the_rules(tmp_path):
    cfg = DataConfig(data=str(FIXTURES / "movielens-100k"), format="movielens-100k", scenario_from="age_group",
                     scenarios=["under_25", "25_44"], liked_threshold=5.0)
    tables, report = load_tables(cfg, quarantine_dir=tmp_path)
    assert set(tables.scenarios) == {"under_25", "25_44"}
    assert (tables.interactions["liked"] == (tables.interactions["rating"] >= 5).astype(int)).all()
    old = report.counts["interactions"]
    assert old.quarantined > 0 and old.read == 300 == old.used + old.quarantined
    assert all("unknown scenario" in p.reason for p in report.errors)
    assert (tmp_path / "quarantine_interactions.csv").is_file() and not report.ok


def test_quarantine_dir_precedence(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "canonical" / "csv", data)
    with open(data / "interactions.csv", "a") as f:
        f.write("u1,nope,home,1700000000,1,0,1.0\n")
    _, report = load_tables(DataConfig(data=str(data)))
    assert report.quarantine_path == data  # default: next to the data
    _, report = load_tables(DataConfig(data=str(data)), quarantine_dir=tmp_path / "run")
    assert report.quarantine_path == tmp_path / "run"
    _, report = load_tables(DataConfig(data=str(data), quarantine_dir=str(tmp_path / "q")), quarantine_dir=tmp_path / "run")
    assert report.quarantine_path == tmp_path / "q"
    rows = pd.read_csv(tmp_path / "q" / "quarantine_interactions.csv", dtype=str)
    assert rows.loc[0, "row"] == "32" and rows.loc[0, "field"] == "item_id"


def test_generated_layout_round_trips(tmp_path):
    tables, _ = load_tables(DataConfig(data=str(FIXTURES / "movielens-100k")))
    write_tables(tables, tmp_path / "out", "tfrecord")
    again, report = load_tables(DataConfig(data=str(tmp_path / "out")))
    assert report.ok and len(again.interactions) == 300 and len(again.items) == 40
    assert sorted(again.items["title"]) == sorted(tables.items["title"])


def test_layout_errors_say_what_was_expected(tmp_path):
    with pytest.raises(DataLayoutError, match="no --data"):
        load_tables(DataConfig())
    (tmp_path / "items.csv").write_text("item_id,title\n")
    with pytest.raises(DataLayoutError, match=r"no interactions\.\* file"):
        load_tables(DataConfig(data=str(tmp_path)))
    with pytest.raises(DataLayoutError, match="--format 'xls'"):
        load_tables(DataConfig(data=str(tmp_path), format="xls"))
    with pytest.raises(FileNotFoundError, match="u.data"):
        load_tables(DataConfig(data=str(tmp_path), format="movielens-100k"))


def test_scenario_from_that_does_not_apply_is_a_layout_error():
    with pytest.raises(DataLayoutError, match="not available for MIND; choose one of"):
        load_tables(DataConfig(data=str(FIXTURES / "mind"), scenario_from="age_group"))
    with pytest.raises(DataLayoutError, match="canonical tables carry their own 'scenario'"):
        load_tables(DataConfig(data=str(FIXTURES / "canonical" / "csv"), scenario_from="genre"))


@pytest.mark.parametrize("fmt,expected", [("csv", "int64"), ("parquet", "str"), ("jsonl", "str")])
def test_numeric_looking_text_stays_text_in_typed_formats(tmp_path, fmt, expected):
    items = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"], "zip": ["01234", "99999"]})
    inter = pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "scenario": ["s"]})
    write_tables(Tables(inter, items), tmp_path, fmt)
    tables, _ = load_tables(DataConfig(data=str(tmp_path)))
    assert str(tables.items["zip"].dtype) == expected
    if expected == "str":
        assert tables.items["zip"].tolist() == ["01234", "99999"]


def test_corrupted_fixture_reports_each_bad_line(tmp_path):
    cfg = DataConfig(data=str(FIXTURES / "movielens-100k-corrupted"), format="movielens-100k",
                     quarantine_dir=str(tmp_path))
    tables, report = load_tables(cfg)
    assert len(tables.interactions) == 300
    counts = report.counts["interactions"]
    assert (counts.read, counts.used, counts.quarantined) == (306, 300, 6)
    assert [p.row for p in report.errors] == list(range(301, 307))
    assert "read = used + quarantined: 376 = 370 + 6" in report.format_summary()
    assert report.exit_code() == 0 and report.exit_code(strict=True) == 1
    assert len(pd.read_csv(tmp_path / "quarantine_interactions.csv")) == 6
