"""Adapters turn the public data sets' own file layouts into the three tables."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tfrs_multiscene.data.adapters import (
    detect_adapter,
    load_amazon,
    load_mind,
    load_movielens_1m,
    load_movielens_100k,
    raw_mind,
    raw_movielens_100k,
)
from tfrs_multiscene.data.adapters.movielens import age_group

FIXTURES = Path(__file__).parent / "fixtures"
ML100K = FIXTURES / "movielens-100k"


def _raw_lines(path, sep):
    return [line.split(sep) for line in path.read_text(encoding="latin-1").splitlines() if line]


def test_movielens_100k_counts_titles_and_features():
    tables = load_movielens_100k(ML100K)
    ratings = _raw_lines(ML100K / "u.data", "\t")
    assert len(tables.interactions) == len(ratings) == 300
    assert tables.items.shape[0] == 40 and tables.users.shape[0] == 30
    assert "Café Lumière (2003)" in tables.items["title"].tolist()  # Latin-1 decoded
    assert tables.scenarios == ["default"] and tables.tasks == ("liked",)
    first = ratings[0]
    row = tables.interactions.iloc[0]
    assert (row.user_id, row.item_id, row.rating, row.timestamp) == (first[0], first[1], float(first[2]), int(first[3]))
    item = tables.items.set_index("item_id").loc["13"]
    assert item.title == "unknown" and item.genre == "unknown"
    assert {"age", "gender", "occupation", "age_group", "profile"} <= set(tables.users.columns)


def test_liked_follows_the_threshold():
    strict = load_movielens_100k(ML100K, liked_threshold=5.0).interactions
    default = load_movielens_100k(ML100K).interactions
    assert (default["liked"] == (default["rating"] >= 4).astype(int)).all()
    assert (strict["liked"] == (strict["rating"] >= 5).astype(int)).all()
    assert strict["liked"].sum() < default["liked"].sum()


@pytest.mark.parametrize("scenario_from,column", [("age_group", "age_group"), ("gender", "gender"),
                                                   ("occupation", "occupation")])
def test_scenario_from_user_columns(scenario_from, column):
    tables = load_movielens_100k(ML100K, scenario_from=scenario_from)
    users = tables.users.set_index("user_id")[column]
    assert (tables.interactions["scenario"] == tables.interactions["user_id"].map(users)).all()
    assert len(tables.scenarios) > 1


def test_age_groups_and_genre_scenario():
    assert [age_group(a) for a in (1, 18, 24, 25, 35, 44, 45, 56)] == ["under_25"] * 3 + ["25_44"] * 3 + ["45_plus"] * 2
    tables = load_movielens_100k(ML100K, scenario_from="genre")
    genre = tables.items.set_index("item_id")["genre"]
    assert (tables.interactions["scenario"] == tables.interactions["item_id"].map(genre)).all()


def test_unknown_scenario_from_is_refused():
    with pytest.raises(ValueError, match="age_group"):
        load_movielens_100k(ML100K, scenario_from="zip")


def test_corrupted_movielens_rows_are_reported_and_quarantined(tmp_path):
    data = tmp_path / "ml"
    shutil.copytree(ML100K, data)
    good = (data / "u.data").read_bytes()
    n_good = good.count(b"\n")
    first_line = good.split(b"\n")[0]
    bad = [b"5\t3\t9\t881250949",        # rating outside 1-5
           b"6\t4\t3",                    # missing field
           b"7\t9999\t4\t881250949",      # unknown item
           b"\xff8\t5\t4\t881250949",     # non-UTF-8 byte
           b"9\t5\tfour\t881250949",      # wrong type
           first_line]                    # duplicate of line 1
    (data / "u.data").write_bytes(good + b"\n".join(bad) + b"\n")
    with open(data / "u.user", "ab") as f:
        f.write(b"31|abc|M|writer|12345\n")  # bad age in the user table
    raw = raw_movielens_100k(data, scenario_from="none")
    tables, report = raw.validate(quarantine_dir=tmp_path / "q")
    counts = report.counts["interactions"]
    assert (counts.read, counts.used, counts.quarantined) == (n_good + 6, n_good, 6)
    assert report.counts["users"].quarantined == 1
    found = {p.row: p for p in report.errors if p.table == "interactions"}
    expected = {n_good + 1: "rating", n_good + 2: "timestamp", n_good + 3: "item_id", n_good + 4: "user_id",
                n_good + 5: "rating", n_good + 6: None}
    assert {r: p.field for r, p in found.items()} == expected
    assert all(p.file.endswith("u.data") for p in found.values())
    assert "duplicate of the interaction at row 1" in found[n_good + 6].reason
    quarantined = pd.read_csv(tmp_path / "q" / "quarantine_interactions.csv", dtype=str)
    assert sorted(quarantined["row"].astype(int)) == sorted(expected)
    assert len(tables.interactions) == n_good


def test_movielens_1m_codes_become_text():
    tables = load_movielens_1m(FIXTURES / "movielens-1m", scenario_from="age_group")
    assert len(tables.interactions) == 150 and len(tables.items) == 25 and len(tables.users) == 20
    assert "Amélie (2001)" in tables.items["title"].tolist()
    assert set(tables.users["age"]) <= {1, 18, 25, 35, 45, 50, 56}
    assert not tables.users["occupation"].str.fullmatch(r"\d+").any()
    assert set(tables.scenarios) <= {"under_25", "25_44", "45_plus"}


def test_mind_impressions_become_click_rows():
    directory = FIXTURES / "mind"
    tables = load_mind(directory)
    lines = [line.split("\t") for line in (directory / "behaviors.tsv").read_text().splitlines()]
    tokens = [t for line in lines for t in line[4].split()]
    assert len(tables.interactions) == len(tokens)
    assert tables.interactions["click"].sum() == sum(t.endswith("-1") for t in tokens)
    category = tables.items.set_index("item_id")["category"]
    assert (tables.interactions["scenario"] == tables.interactions["item_id"].map(category)).all()
    assert 'He said "never again" at the game.' in tables.items["description"].tolist()
    assert tables.users is None and tables.tasks == ("click",)


def test_mind_bad_impressions_are_quarantined(tmp_path):
    shutil.copytree(FIXTURES / "mind", tmp_path / "mind")
    with open(tmp_path / "mind" / "behaviors.tsv", "a") as f:
        f.write("99\tU1\t11/11/2019 9:05:58 AM\t\tN1-1 N2-x N404-0\n")
        f.write("100\tU1\tyesterday\t\tN1-0\n")
    _, report = raw_mind(tmp_path / "mind").validate()
    reasons = {(p.row, p.field): p.reason for p in report.errors}
    assert "NEWSID-0 or NEWSID-1" in reasons[(26, "impressions")]
    assert reasons[(26, "item_id")] == "item not in the item table"
    assert "time must look like" in reasons[(27, "time")]
    assert report.counts["interactions"].quarantined == 3


def test_amazon_one_scenario_per_review_file():
    tables = load_amazon(FIXTURES / "amazon")
    assert tables.scenarios == ["Musical_Instruments", "Video_Games"]
    assert len(tables.interactions) == 40 and len(tables.items) == 14
    assert tables.items["description"].str.contains("Second paragraph.").all()
    assert "brand" in tables.items.columns and (tables.items["brand"] == "").sum() >= 1
    assert ((tables.interactions["rating"] >= 4).astype(int) == tables.interactions["liked"]).all()
    assert load_amazon(FIXTURES / "amazon", scenario_from="none").scenarios == ["default"]


def test_detect_adapter_from_files(tmp_path):
    assert detect_adapter(ML100K) == "movielens-100k"
    assert detect_adapter(FIXTURES / "movielens-1m") == "movielens-1m"
    assert detect_adapter(FIXTURES / "mind") == "mind"
    assert detect_adapter(FIXTURES / "amazon") == "amazon"
    assert detect_adapter(FIXTURES / "canonical" / "csv") is None


def _amazon_dir(tmp_path, with_meta=("Books",), without_meta=("Toys",)):
    """Review files for ``with_meta`` + ``without_meta`` categories, metadata for the first only."""
    import json

    tmp_path.mkdir(parents=True, exist_ok=True)
    for cat in with_meta + without_meta:
        reviews = [{"reviewerID": f"U{u}", "asin": f"{cat}-{j}", "overall": float(1 + (u + j) % 5),
                    "unixReviewTime": 1_500_000_000 + 10 * u + j} for u in range(4) for j in range(3)]
        (tmp_path / f"{cat}_5.json").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    for cat in with_meta:
        meta = [{"asin": f"{cat}-{j}", "title": f"{cat} title {j}", "main_cat": cat} for j in range(3)]
        (tmp_path / f"meta_{cat}.json").write_text("".join(json.dumps(m) + "\n" for m in meta))
    return tmp_path


def test_amazon_reviews_without_metadata_become_id_only_items(tmp_path):
    from tfrs_multiscene.config import DataConfig
    from tfrs_multiscene.data.loading import load_tables

    data = _amazon_dir(tmp_path / "data")
    tables, report = load_tables(DataConfig(data=str(data), format="amazon"), quarantine_dir=tmp_path / "q")
    assert report.ok and report.counts["interactions"].used == 24 and report.id_only_items == 3
    assert tables.scenarios == ["Books", "Toys"]
    titles = tables.items.set_index("item_id")["title"]
    assert titles["Books-0"] == "Books title 0" and (titles[[f"Toys-{j}" for j in range(3)]] == "").all()
    assert "3 items without metadata kept as id-only items" in report.format_summary()
    # off: the reviews of the category without metadata are quarantined
    _, off = load_tables(DataConfig(data=str(data), format="amazon", id_only_items=False), quarantine_dir=tmp_path / "q")
    assert off.counts["interactions"].quarantined == 12 and off.id_only_items == 0
    assert off.kind_counts()["interactions"] == {"item not in the item table": 12}


def test_amazon_review_only_directory(tmp_path):
    from tfrs_multiscene.config import DataConfig
    from tfrs_multiscene.data.adapters import raw_amazon
    from tfrs_multiscene.data.loading import load_tables

    data = _amazon_dir(tmp_path / "data", with_meta=(), without_meta=("Toys", "Tools"))
    tables, report = load_tables(DataConfig(data=str(data), format="amazon"))
    assert report.ok and report.counts["interactions"].used == 24 and report.id_only_items == 6
    assert len(tables.items) == 6 and (tables.items["title"] == "").all()
    assert sorted(tables.scenarios) == ["Tools", "Toys"]
    with pytest.raises(FileNotFoundError, match=r"data: no Amazon 2018 metadata files .*--id-only-items"):
        raw_amazon(data, id_only_items=False)
