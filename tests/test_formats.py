"""Readers and writers: every format round-trips, streams in chunks, and keeps row numbers."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfrs_multiscene.data import formats as F
from tfrs_multiscene.data.schema import Tables

FIXTURES = Path(__file__).parent / "fixtures"
EXT = {"csv": "csv", "tsv": "tsv", "parquet": "parquet", "jsonl": "jsonl", "tfrecord": "tfrecord"}


def _frame(n=23):
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "user_id": [f"u{i % 5}" for i in range(n)],
        "item_id": [f"i{i}" for i in range(n)],
        "title": [f"título {i}, \"quoted\"\tand tab" for i in range(n)],
        "click": rng.integers(0, 2, n),
        "score": np.round(rng.random(n), 3),
    })


@pytest.mark.parametrize("name,fmt", [("a.csv", "csv"), ("a.TSV", "tsv"), ("x/a.parquet", "parquet"),
                                      ("a.jsonl", "jsonl"), ("a.json.gz", "jsonl"), ("a.tfrecord", "tfrecord"),
                                      ("a.tfrecord.gz", "tfrecord"), ("interactions.csv.gz", "csv")])
def test_detect_format_from_extension(name, fmt):
    assert F.detect_format(name) == fmt


def test_detect_format_unknown_extension_names_file():
    with pytest.raises(F.FormatError, match=r"data\.xlsx.*\.csv"):
        F.detect_format("data.xlsx")


@pytest.mark.parametrize("fmt", F.FORMATS)
def test_round_trip_every_format_in_chunks(tmp_path, fmt):
    frame = _frame()
    path = F.write_table(frame, tmp_path / f"t.{EXT[fmt]}")
    chunks = list(F.read_table(path, chunk_rows=10))
    assert [len(c) for c in chunks] == [10, 10, 3]
    back = pd.concat(chunks, ignore_index=True)
    assert back[F.ROW].tolist() == (list(range(2, 25)) if fmt in ("csv", "tsv") else list(range(1, 24)))
    assert back["title"].tolist() == frame["title"].tolist()
    assert back["item_id"].tolist() == frame["item_id"].tolist()
    assert [int(v) for v in back["click"]] == frame["click"].tolist()
    np.testing.assert_allclose([float(v) for v in back["score"]], frame["score"], rtol=1e-6)
    assert F.ERROR not in back.columns


def test_tfrecord_gzip_is_detected_from_magic_bytes(tmp_path):
    frame = _frame(5)
    F.write_tfrecord(frame, tmp_path / "t.tfrecord", compression="GZIP")
    assert (tmp_path / "t.tfrecord").read_bytes()[:2] == b"\x1f\x8b"
    back = pd.concat(F.read_table(tmp_path / "t.tfrecord"))
    assert back["item_id"].tolist() == frame["item_id"].tolist()


def test_tfrecord_missing_values_are_absent_features(tmp_path):
    frame = pd.DataFrame({"item_id": ["a", "b"], "price": [1.5, np.nan], "tags": [["x", "y"], ["z"]]})
    F.write_table(frame, tmp_path / "t.tfrecord")
    back = pd.concat(F.read_table(tmp_path / "t.tfrecord"), ignore_index=True)
    assert back.loc[0, "price"] == 1.5 and back.loc[1, "price"] is None
    assert back.loc[0, "tags"] == ["x", "y"] and back.loc[1, "tags"] == "z"


def test_csv_row_numbers_are_file_lines_and_bad_rows_are_kept(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"user_id,item_id,click\nu1,i1,1\n\nu2,i2\nu3,i3,0,extra\nu\xe94,i4,1\n\"u5\nx\",i5,0\nu6,i6,1\n")
    frame = pd.concat(F.read_table(path), ignore_index=True)
    assert frame[F.ROW].tolist() == [2, 4, 5, 6, 7, 9]  # blank line 3 skipped; quoted newline spans 7-8
    errors = dict(zip(frame[F.ROW], frame[F.ERROR]))
    fields = dict(zip(frame[F.ROW], frame[F.ERROR_FIELD]))
    assert errors[2] is None and errors[9] is None and errors[7] is None
    assert "expected 3 fields" in errors[4] and fields[4] == "click"
    assert "found 4" in errors[5]
    assert "non-UTF-8" in errors[6] and "\\xe9" in errors[6] and fields[6] == "user_id"
    assert frame.loc[frame[F.ROW] == 6, "user_id"].item() == "u\\xe94"


def test_multi_character_separator_and_latin1(tmp_path):
    path = tmp_path / "movies.dat"
    path.write_bytes("1::Amélie (2001)::Comedy|Romance\n2::B::Drama\n".encode("latin-1"))
    frame = pd.concat(F.read_delimited(path, "::", names=["id", "title", "genres"], encoding="latin-1"))
    assert frame["title"].tolist() == ["Amélie (2001)", "B"]
    assert F.ERROR not in frame.columns


def test_jsonl_bad_lines_are_rows_with_errors(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b'{"item_id": "a", "tags": ["x"]}\n{not json\n[1, 2]\n\n{"item_id": "b\xff"}\n')
    frame = pd.concat(F.read_table(path), ignore_index=True)
    assert frame[F.ROW].tolist() == [1, 2, 3, 5]
    assert frame.loc[0, "tags"] == ["x"] and frame.loc[0, F.ERROR] is None
    assert "not valid JSON" in frame.loc[1, F.ERROR]
    assert "expected a JSON object" in frame.loc[2, F.ERROR]
    assert "non-UTF-8" in frame.loc[3, F.ERROR] and frame.loc[3, F.ERROR_FIELD] == "item_id"


def test_empty_and_header_only_files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    assert list(F.read_table(tmp_path / "empty.csv")) == []
    (tmp_path / "header.csv").write_text("item_id,title\n")
    chunks = list(F.read_table(tmp_path / "header.csv"))
    assert len(chunks) == 1 and len(chunks[0]) == 0 and list(chunks[0].columns[:2]) == ["item_id", "title"]
    pd.DataFrame({"a": pd.Series([], dtype="int64")}).to_parquet(tmp_path / "e.parquet")
    chunks = list(F.read_table(tmp_path / "e.parquet"))
    assert len(chunks) == 1 and len(chunks[0]) == 0 and "a" in chunks[0].columns


def test_parquet_is_streamed_by_batches(tmp_path):
    pd.DataFrame({"x": np.arange(1000)}).to_parquet(tmp_path / "big.parquet", row_group_size=100)
    sizes = [len(c) for c in F.read_table(tmp_path / "big.parquet", chunk_rows=250)]
    assert sum(sizes) == 1000 and max(sizes) <= 250


def test_not_a_parquet_file_names_the_file(tmp_path):
    (tmp_path / "bad.parquet").write_text("hello")
    with pytest.raises(F.FormatError, match="bad.parquet"):
        list(F.read_table(tmp_path / "bad.parquet"))


def test_write_tables_layout_and_fixtures_agree_across_formats(tmp_path):
    reference = None
    for fmt in F.FORMATS:
        directory = FIXTURES / "canonical" / fmt
        names = sorted(p.name for p in directory.iterdir())
        assert names == sorted(f"{t}.{EXT[fmt]}" for t in ("interactions", "items", "users"))
        items = pd.concat(F.read_table(directory / f"items.{EXT[fmt]}"), ignore_index=True)
        titles = items.sort_values("item_id")["title"].tolist()
        reference = reference or titles
        assert titles == reference and "Crème brûlée ☕" in titles
    tables = Tables(pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "scenario": ["s"]}),
                    pd.DataFrame({"item_id": ["i"], "title": ["t"]}))
    written = F.write_tables(tables, tmp_path / "out", "parquet")
    assert sorted(written) == ["interactions", "items"]  # no user table -> no users file
    assert (tmp_path / "out" / "items.parquet").is_file()


def test_find_table_file_refuses_ambiguous_layout(tmp_path):
    (tmp_path / "items.csv").write_text("item_id,title\n")
    (tmp_path / "items.jsonl").write_text("")
    (tmp_path / "interactions.csv").write_text("")
    assert F.find_table_file(tmp_path, "interactions").name == "interactions.csv"
    assert F.find_table_file(tmp_path, "users") is None
    with pytest.raises(F.FormatError, match="items.csv.*items.jsonl"):
        F.find_table_file(tmp_path, "items")


def test_truncated_tfrecord_is_reported_not_raised(tmp_path):
    path = F.write_table(_frame(6), tmp_path / "t.tfrecord")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    frame = pd.concat(F.read_table(path), ignore_index=True)
    assert frame[F.ROW].tolist() == [1, 2, 3, 4, 5, 6]
    assert frame[F.ERROR].notna().tolist() == [False] * 5 + [True]
    assert "corrupted TFRecord data after record 5" in frame.loc[5, F.ERROR]


def test_forced_unknown_format_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a\n1\n")
    with pytest.raises(F.FormatError, match="unknown table format 'xls'"):
        F.read_table(tmp_path / "t.csv", fmt="xls")
