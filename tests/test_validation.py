"""Validation rules: each bad row is reported with file/row/field and quarantined, none lost."""

import pandas as pd
import pytest

from tfrs_multiscene.data import formats as F
from tfrs_multiscene.data.validation import (
    ValidationReport,
    closest_name,
    validate_tables,
)

ITEMS = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "title": ["A", "B", "C"], "price": ["1.5", "2", ""]})


def _inter(**cols):
    base = {"user_id": ["u1", "u2", "u3"], "item_id": ["i1", "i2", "i3"], "scenario": ["home", "home", "search"]}
    base.update(cols)
    return pd.DataFrame(base)


def _check(inter, items=ITEMS, users=None, **kwargs):
    tables, report = validate_tables(inter, items, users, files={"interactions": "inter.csv", "items": "items.csv",
                                                                 "users": "users.csv"}, **kwargs)
    for c in report.counts.values():
        assert c.read == c.used + c.quarantined
    return tables, report


def _only_problem(report, table="interactions"):
    problems = [p for p in report.errors if p.table == table]
    assert len(problems) == 1, [str(p) for p in report.problems]
    return problems[0]


def test_clean_tables_pass_and_get_types():
    tables, report = _check(_inter(click=["1", "0", "true"], timestamp=["10", "20", "30"], rating=["4.5", "1", "3"]))
    assert report.ok and report.quarantine_path is None
    assert tables.interactions["click"].tolist() == [1, 0, 1]
    assert tables.interactions["timestamp"].dtype == "int64"
    assert tables.tasks == ("click",)
    assert tables.items["price"].isna().tolist() == [False, False, True]  # numeric column inferred from text
    assert report.counts["interactions"].used == 3


@pytest.mark.parametrize("column,values,field,reason,row", [
    ("click", ["1", "2", "0"], "click", "outside its range", 2),
    ("click", ["1", "yes!", "0"], "click", "must be a 0/1 label", 2),
    ("timestamp", ["10", "noon", "30"], "timestamp", "integer seconds", 2),
    ("timestamp", ["10", "20", "30.5"], "timestamp", "integer seconds", 3),
    ("rating", ["1", "2", "inf"], "rating", "must be finite", 3),
    ("weight", ["1", "-0.5", "1"], "weight", "outside its range", 2),
    ("true_p_click", ["0.2", "1.2", "0.1"], "true_p_click", "outside its range", 2),
    ("user_id", ["u1", " ", "u3"], "user_id", "empty user_id", 2),
    ("item_id", ["i1", "i2", "i9"], "item_id", "item not in the item table", 3),
    ("scenario", ["", "home", "x"], "scenario", "empty scenario", 1),
])
def test_row_rules_quarantine_the_offending_row(column, values, field, reason, row):
    tables, report = _check(_inter(**{column: values}))
    problem = _only_problem(report)
    assert (problem.file, problem.row, problem.field) == ("inter.csv", row, field)
    assert reason in problem.reason
    assert report.counts["interactions"].quarantined == 1 and len(tables.interactions) == 2
    assert not report.ok


def test_rating_range_and_unknown_scenarios():
    _, report = _check(_inter(rating=[1, 6, 3]), rating_range=(1, 5), scenarios=["home"])
    rows = {p.row: p for p in report.errors}
    assert "outside its range [1, 5]" in rows[2].reason
    assert rows[3].field == "scenario" and "unknown scenario" in rows[3].reason and rows[3].value == "search"


def test_missing_required_column_suggests_the_misnamed_one():
    inter = pd.DataFrame({"user_id": ["u1", "u2"], "ItemID": ["i1", "i2"], "scenario": ["a", "a"]})
    tables, report = _check(inter)
    column_problem = next(p for p in report.errors if p.row is None)
    assert "missing required column 'item_id'" in column_problem.reason and "did you mean 'ItemID'" in column_problem.reason
    assert report.counts["interactions"].quarantined == 2 and len(tables.interactions) == 0


def test_misspelt_optional_column_is_a_warning_and_kept():
    tables, report = _check(_inter(timestmp=["1", "2", "3"]))
    warning = report.warnings[0]
    assert warning.field == "timestmp" and "did you mean 'timestamp'" in warning.reason
    assert report.ok and "timestmp" in tables.interactions.columns


def test_missing_scenario_column_defaults_with_a_warning():
    tables, report = _check(pd.DataFrame({"user_id": ["u1"], "item_id": ["i1"]}))
    assert tables.scenarios == ["default"] and any(p.field == "scenario" for p in report.warnings)


def test_duplicates_across_chunks_and_duplicate_ids():
    inter = _inter(click=["1", "0", "1"])
    chunks = [inter.assign(**{F.ROW: [1, 2, 3]}), inter.iloc[[1]].assign(**{F.ROW: [4]})]
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3", "i2"], "title": ["A", "B", "C", "B again"]})
    tables, report = _check(chunks, items=items)
    dup = _only_problem(report)
    assert dup.row == 4 and "duplicate of the interaction at row 2" in dup.reason
    item_dup = _only_problem(report, "items")
    assert item_dup.row == 4 and item_dup.field == "item_id" and "first at row 2" in item_dup.reason
    assert tables.items["title"].tolist() == ["A", "B", "C"]


def test_reader_errors_and_non_utf8_are_quarantined_with_field(tmp_path):
    path = tmp_path / "interactions.csv"
    path.write_bytes(b"user_id,item_id,scenario\nu1,i1,home\nu\xff2,i2,home\nu3,i3\n")
    tables, report = _check(F.read_table(path))
    by_row = {p.row: p for p in report.errors}
    assert by_row[3].field == "user_id" and "non-UTF-8" in by_row[3].reason and by_row[3].value == "u\\xff2"
    assert by_row[4].field == "scenario" and "expected 3 fields" in by_row[4].reason
    assert tables.interactions["user_id"].tolist() == ["u1"]


def test_empty_file_is_reported(tmp_path):
    (tmp_path / "items.csv").write_text("")
    _, report = _check(_inter(), items=F.read_table(tmp_path / "items.csv"))
    assert any(p.table == "items" and p.reason.startswith("empty file") for p in report.errors)
    assert report.counts["interactions"].quarantined == 3  # no items -> every interaction's item is unknown


def test_quarantine_files_hold_reason_and_original_values(tmp_path):
    _, report = _check(_inter(click=["1", "7", "0"]), quarantine_dir=tmp_path)
    assert report.quarantine_path == tmp_path
    rows = pd.read_csv(tmp_path / "quarantine_interactions.csv", dtype=str)
    assert rows[["file", "row", "field"]].values.tolist() == [["inter.csv", "2", "click"]]
    assert rows.loc[0, "click"] == "7" and "range" in rows.loc[0, "reason"]
    assert not (tmp_path / "quarantine_items.csv").exists()


def test_report_summary_and_dict():
    _, report = _check(_inter(item_id=["i1", "zz", "i3"]))
    text = report.format_summary()
    assert "inter.csv:2 [item_id] item not in the item table (got 'zz')" in text
    assert "NOT OK" in text
    d = report.to_dict()
    assert d["counts"]["interactions"] == {"read": 3, "used": 2, "quarantined": 1}
    assert d["reasons"]["interactions"] == {"item not in the item table": 1}
    assert ValidationReport().ok


def test_users_table_rules():
    users = pd.DataFrame({"user_id": ["u1", "", "u1"], "profile": ["x", "y", None], "age": ["20", "30", "40"]})
    tables, report = _check(_inter(), users=users, column_types={"users": {"age": "int"}})
    assert [(p.row, p.field) for p in report.errors] == [(2, "user_id"), (3, "user_id")]
    assert tables.users["age"].tolist() == [20]


def test_closest_name():
    assert closest_name("item_id", ["ItemId", "title"]) == "ItemId"
    assert closest_name("scenario", ["scenaro", "x"]) == "scenaro"
    assert closest_name("user_id", ["title"]) is None


def test_configured_task_that_is_absent_is_reported():
    tables, report = _check(_inter(clicked=["1", "0", "1"]), tasks=["click"])
    problem = next(p for p in report.errors if p.field == "click")
    assert problem.row is None and "did you mean 'clicked'" in problem.reason
    assert tables.tasks == () and not report.ok


def test_exit_code_strict_and_not():
    _, clean = _check(_inter())
    _, dirty = _check(_inter(item_id=["i1", "zz", "i3"]))
    _, unusable = _check(_inter(item_id=["x", "y", "z"]))
    assert (clean.exit_code(), clean.exit_code(strict=True)) == (0, 0)
    assert (dirty.exit_code(), dirty.exit_code(strict=True)) == (0, 1)
    assert unusable.exit_code() == 1


def test_required_column_absent_from_some_jsonl_rows(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"title": "no id"}\n{"item_id": "i1", "title": "A"}\n{"item_id": "i2"}\n{"item_id": "i3"}\n')
    tables, report = _check(_inter(), items=F.read_table(path, chunk_rows=1))
    assert tables.items["item_id"].tolist() == ["i1", "i2", "i3"] and tables.items["title"].tolist() == ["A", "", ""]
    problems = [(p.row, p.field) for p in report.errors if p.table == "items"]
    assert problems == [(None, "item_id"), (1, "item_id"), (None, "title")]
    assert report.counts["items"].quarantined == 1


def test_summary_counts_problems_by_kind_not_by_row():
    """5 duplicate rows (of 5 different first rows) are one kind of problem: one summary line."""
    users = [f"u{i}" for i in range(8)]
    inter = pd.DataFrame({"user_id": users + users[:5], "item_id": ["i1"] * 13, "scenario": ["home"] * 13})
    _, report = _check(inter)
    dups = [p for p in report.errors if p.table == "interactions"]
    assert len(dups) == 5 and len({p.reason for p in dups}) == 5  # the detail per row keeps the first row
    assert {p.kind for p in dups} == {"duplicate of an earlier interaction (identical in every column)"}
    assert report.kind_counts()["interactions"] == {"duplicate of an earlier interaction (identical in every column)": 5}
    text = report.format_summary(max_problems=2)
    by_kind = text.split("by kind of problem:")[1].splitlines()
    assert [line.strip() for line in by_kind if line.startswith("    ")] == [
        "interactions: 5 x duplicate of an earlier interaction (identical in every column)"]
    assert report.to_dict()["reason_kinds"]["interactions"] == {
        "duplicate of an earlier interaction (identical in every column)": 5}


def test_duplicate_items_and_reader_errors_have_row_free_kinds(tmp_path):
    from tfrs_multiscene.data.validation import reason_kind

    items = pd.DataFrame({"item_id": ["i1", "i2", "i3", "i1", "i2", "i1"], "title": list("ABCDEF")})
    _, report = _check(_inter(), items=items, quarantine_dir=tmp_path)
    assert report.kind_counts()["items"] == {"duplicate item_id": 3}
    detail = pd.read_csv(tmp_path / "quarantine_items.csv", dtype=str)["reason"].tolist()
    assert detail == ["duplicate item_id; first at row 1", "duplicate item_id; first at row 2",
                      "duplicate item_id; first at row 1"]
    assert reason_kind("non-UTF-8 text (bytes \\xff)") == "non-UTF-8 text"
    assert reason_kind("expected 3 fields separated by ',', found 5") == "expected 3 fields separated by ',', found N"
    assert reason_kind("not valid JSON: Expecting value at column 7") == "not valid JSON: Expecting value at column N"
    assert reason_kind("cannot derive scenario from age: user 'u7' has no valid row in u.user") == \
        "cannot derive scenario from age: user <id> has no valid row in u.user"
    assert reason_kind("rating outside its range [1.0, 5.0]") == "rating outside its range [1.0, 5.0]"


def test_id_only_items_keep_interactions_of_items_without_a_row():
    inter = _inter(item_id=["i1", "x9", "x8"])
    _, strict = _check(inter)
    assert strict.counts["interactions"].quarantined == 2 and strict.id_only_items == 0
    tables, report = _check(inter, id_only_items=True)
    assert report.counts["interactions"].used == 3 and report.id_only_items == 2
    assert report.counts["items"].read == 3  # the item table's own counts are unchanged
    added = tables.items.set_index("item_id").loc[["x9", "x8"]]
    assert added["title"].tolist() == ["", ""] and added["price"].isna().all()
    assert "2 items without metadata kept as id-only items" in report.format_summary()
    assert report.to_dict()["id_only_items"] == 2
    # no item table at all: every item is id-only
    tables, report = validate_tables(inter, None, id_only_items=True)
    assert report.id_only_items == 3 and tables.items["item_id"].tolist() == ["i1", "x9", "x8"]
    assert tables.items["title"].tolist() == ["", "", ""] and "items" not in report.counts and report.ok
