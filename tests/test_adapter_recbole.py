"""The RecBole atomic-files adapter: typed headers, MovieLens parity, bad rows, generic sets.

Every data file is written by the test (MovieLens itself may not be redistributed): the
MovieLens case converts the repository's synthetic MovieLens-100K fixture into RecBole's
layout the way RecBole published ml-100k (title without the year, ``release_year``,
genres as a space-separated ``class``).
"""

import re
from pathlib import Path

import pandas as pd
import pytest

from tfrs_multiscene.config import DataConfig
from tfrs_multiscene.data.adapters import ADAPTERS, detect_adapter, load_movielens_100k, load_recbole, raw_recbole
from tfrs_multiscene.data.adapters.movielens import GENRES_100K
from tfrs_multiscene.data.adapters.recbole import parse_header
from tfrs_multiscene.data.formats import FormatError
from tfrs_multiscene.data.loading import DataLayoutError, describe_source, load_tables

ML100K = Path(__file__).parent / "fixtures" / "movielens-100k"


def _write(path: Path, header: str, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header] + ["\t".join(map(str, r)) for r in rows]) + "\n", encoding="utf-8")
    return path


def _as_recbole(out: Path) -> Path:
    """The MovieLens-100K fixture in RecBole's atomic-file layout (out/ml-100k/ml-100k.*)."""
    out = out / "ml-100k"
    ratings = [line.split("\t") for line in (ML100K / "u.data").read_text().splitlines() if line]
    _write(out / "ml-100k.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float", ratings)
    items = []
    for line in (ML100K / "u.item").read_text(encoding="latin-1").splitlines():
        f = line.split("|")
        match = re.fullmatch(r"(.*) \((\d{4})\)", f[1])
        title, year = (match.group(1), match.group(2)) if match else (f[1], "")
        genres = " ".join(g for g, flag in zip(GENRES_100K, f[5:]) if flag == "1")
        items.append((f[0], title, year, genres))
    _write(out / "ml-100k.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq", items)
    users = [line.split("|") for line in (ML100K / "u.user").read_text().splitlines() if line]
    _write(out / "ml-100k.user", "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token", users)
    return out


def test_typed_header_parsing(tmp_path):
    path = _write(tmp_path / "x.item", "\ufeffitem_id:token\tmovie_title:token_seq\tprice:float\temb:float_seq", [])
    assert parse_header(path) == {"item_id": "token", "movie_title": "token_seq", "price": "float", "emb": "float_seq"}
    bad = _write(tmp_path / "y.item", "item_id:token\ttitle:text", [])
    with pytest.raises(FormatError, match=r"y\.item: header column 2 is 'title:text'.*token, token_seq"):
        parse_header(bad)
    with pytest.raises(FormatError, match="header column 1"):
        parse_header(_write(tmp_path / "z.item", "item_id\ttitle:token_seq", []))


def test_movielens_atomic_files_give_the_movielens_tables(tmp_path):
    data = _as_recbole(tmp_path)
    assert detect_adapter(data) == "recbole" and "recbole" in ADAPTERS
    expected = load_movielens_100k(ML100K, scenario_from="age_group")
    got = load_recbole(data, scenario_from="age_group")
    pd.testing.assert_frame_equal(got.interactions, expected.interactions)
    pd.testing.assert_frame_equal(got.items, expected.items)
    pd.testing.assert_frame_equal(got.users, expected.users)
    assert got.tasks == ("liked",)
    assert set(got.scenarios) <= {"under_25", "25_44", "45_plus"} and len(got.scenarios) > 1
    assert "Café Lumière (2003)" in got.items["title"].tolist()  # the year is put back
    for choice in ("gender", "occupation", "genre", "none"):
        assert load_recbole(data, scenario_from=choice).scenarios == \
            load_movielens_100k(ML100K, scenario_from=choice).scenarios
    with pytest.raises(ValueError, match="age_group"):
        raw_recbole(data, scenario_from="zip_code")


def test_liked_threshold(tmp_path):
    data = _as_recbole(tmp_path)
    default = load_recbole(data).interactions
    strict = load_recbole(data, liked_threshold=5.0).interactions
    assert (default["liked"] == (default["rating"] >= 4).astype(int)).all()
    assert (strict["liked"] == (strict["rating"] >= 5).astype(int)).all()
    assert strict["liked"].sum() < default["liked"].sum()


def test_load_tables_by_name_and_by_files(tmp_path):
    data = _as_recbole(tmp_path)
    assert describe_source(DataConfig(data=str(data))) == "recbole"
    tables, report = load_tables(DataConfig(data=str(data), format="recbole", scenario_from="age_group",
                                            liked_threshold=5.0, chunk_rows=7), quarantine_dir=tmp_path / "q")
    assert report.ok and report.balanced() and len(tables.interactions) == 300
    assert (tables.interactions["liked"] == (tables.interactions["rating"] >= 5).astype(int)).all()
    with pytest.raises(DataLayoutError, match="--scenario-from 'brand'"):
        load_tables(DataConfig(data=str(data), format="recbole", scenario_from="brand"))


def test_bad_rows_are_quarantined_with_file_and_line(tmp_path):
    data = _as_recbole(tmp_path)
    inter = data / "ml-100k.inter"
    n_lines = len(inter.read_text().splitlines())  # header + ratings
    with open(inter, "a") as f:
        f.write("5\t3\t9\t881250949\n")    # rating outside 1-5
        f.write("6\t\t4\t881250949\n")     # missing item id
        f.write("7\t3\t4\tyesterday\n")    # timestamp not a number
        f.write("8\t3\t4\n")               # a field short
    with open(data / "ml-100k.user", "a") as f:
        f.write("31\tabc\tM\twriter\t12345\n")  # age not a number
    tables, report = raw_recbole(data, scenario_from="none", chunk_rows=50).validate(quarantine_dir=tmp_path / "q")
    counts = report.counts["interactions"]
    assert (counts.read, counts.used, counts.quarantined) == (304, 300, 4) and report.balanced()
    found = {p.row: p for p in report.errors if p.table == "interactions"}
    assert {r: p.field for r, p in found.items()} == {n_lines + 1: "rating", n_lines + 2: "item_id",
                                                      n_lines + 3: "timestamp", n_lines + 4: "timestamp"}
    assert all(p.file.endswith("ml-100k.inter") for p in found.values())
    assert "outside its range" in found[n_lines + 1].reason and found[n_lines + 1].value == "9"
    assert found[n_lines + 2].reason == "empty item_id"
    user = [p for p in report.errors if p.table == "users"]
    assert len(user) == 1 and user[0].file.endswith("ml-100k.user") and user[0].row == 32 and user[0].field == "age"
    quarantined = pd.read_csv(tmp_path / "q" / "quarantine_interactions.csv", dtype=str)
    assert sorted(quarantined["row"].astype(int)) == [n_lines + i for i in range(1, 5)]
    assert set(quarantined["file"].map(lambda f: Path(f).name)) == {"ml-100k.inter"}


def test_missing_inter_file_names_the_directory_and_the_file(tmp_path):
    data = tmp_path / "books"
    _write(data / "books.item", "item_id:token\ttitle:token_seq", [(1, "A")])
    with pytest.raises(FileNotFoundError, match=r"books: RecBole atomic file books\.inter not found"):
        raw_recbole(data)
    with pytest.raises(DataLayoutError, match="u.data"):  # no .inter: not detected as RecBole
        load_tables(DataConfig(data=str(data)))


def _generic(root: Path) -> Path:
    data = root / "shop"
    _write(data / "shop.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\tclicks:float",
           [("u1", "i1", 5, 100, 3), ("u1", "i2", 2, 200, 1), ("u2", "i1", 4, 300, 0), ("u3", "i3", 3, 400, 2),
            ("u2", "i2", 1.5, 500.0, 1)])
    _write(data / "shop.item",
           "item_id:token\ttitle:token_seq\tcategories:token_seq\tbrand:token\tsku:token\tprice:float\temb:float_seq",
           [("i1", "Red Kettle", "Kitchen Appliances", "Acme", "0042", 19.5, "0.1 0.2"),
            ("i2", "Blue Mug", "Kitchen", "Cupco", "0043", 4, "0.3 0.4"),
            ("i3", "Desk Lamp", "", "Acme", "0044", "", "0.5 0.6")])
    _write(data / "shop.user", "user_id:token\tcountry:token\tzip:token\tinterests:token_seq",
           [("u1", "FR", "01234", "cooking tea"), ("u2", "DE", "10115", ""), ("u3", "", "75001", "design")])
    return data


def test_generic_data_set_mapping(tmp_path):
    data = _generic(tmp_path)
    tables, report = raw_recbole(data).validate()
    assert report.ok and report.balanced(), report.format_summary()
    items = tables.items.set_index("item_id")
    assert items.loc["i1", "title"] == "Red Kettle"
    assert items.loc["i1", "description"] == "Kitchen, Appliances" and items.loc["i3", "description"] == ""
    assert list(items["genre"]) == ["Kitchen", "Kitchen", "unknown"]
    assert list(items["brand"]) == ["Acme", "Cupco", "Acme"]
    assert list(items["sku"]) == ["0042", "0043", "0044"]  # a token stays text
    assert items["price"].iloc[0] == 19.5 and "emb" not in items.columns
    users = tables.users.set_index("user_id")
    assert list(users["zip"]) == ["01234", "10115", "75001"]
    assert users.loc["u1", "profile"] == "country FR, zip 01234, interests cooking tea"
    inter = tables.interactions
    assert list(inter.columns[:4]) == ["user_id", "item_id", "scenario", "timestamp"]
    assert tables.scenarios == ["default"] and tables.tasks == ("liked",) and "clicks" not in inter.columns
    assert list(inter["liked"]) == [1, 0, 1, 0, 0] and list(inter["timestamp"]) == [100, 200, 300, 400, 500]

    by_brand = load_recbole(data, scenario_from="brand").interactions
    assert list(by_brand["scenario"]) == ["Acme", "Cupco", "Acme", "Acme", "Cupco"]
    assert list(load_recbole(data, scenario_from="genre").interactions["scenario"]) == \
        ["Kitchen", "Kitchen", "Kitchen", "unknown", "Kitchen"]
    _, report = raw_recbole(data, scenario_from="country").validate()  # u3 has no country
    assert report.counts["interactions"].quarantined == 1
    [problem] = report.errors
    assert problem.row == 5 and problem.field == "scenario" and "user 'u3' has no country" in problem.reason
    with pytest.raises(ValueError, match="brand"):
        raw_recbole(data, scenario_from="age_group")


def test_generic_without_item_file(tmp_path):
    data = tmp_path / "plays"
    _write(data / "plays.inter", "user_id:token\titem_id:token\ttimestamp:float",
           [("u1", "s1", 1), ("u2", "s2", 2), ("u1", "s2", 3), ("u3", "", 4)])
    tables, report = raw_recbole(data).validate()
    assert report.balanced() and report.counts["interactions"].quarantined == 1  # the empty item id
    assert len(tables.interactions) == 3 and tables.users is None and tables.tasks == ()
    assert list(tables.items["item_id"]) == ["s1", "s2"] and (tables.items["title"] == "").all()


def test_other_key_and_field_names(tmp_path):
    data = tmp_path / "yelp"
    _write(data / "yelp.inter", "user_id:token\tbusiness_id:token\tstars:float\tdate:float",
           [("u1", "b1", 5, 1), ("u2", "b2", 3, 2), ("u1", "b2", 4, 3)])
    _write(data / "yelp.item", "business_id:token\tname:token_seq\tcity:token",
           [("b1", "Cafe One", "Lyon"), ("b2", "Bar Two", "Nice")])
    tables = load_recbole(data, scenario_from="City")
    assert list(tables.items["title"]) == ["Cafe One", "Bar Two"]
    assert list(tables.interactions["scenario"]) == ["Lyon", "Nice", "Nice"]
    assert list(tables.interactions["rating"]) == [5.0, 3.0, 4.0] and list(tables.interactions["liked"]) == [1, 0, 1]
    assert list(tables.interactions["timestamp"]) == [1, 2, 3]
    (data / "yelp.item").unlink()
    with pytest.raises(FormatError, match="no 'item_id' field"):
        raw_recbole(data)
