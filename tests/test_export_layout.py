"""TF Serving layout: integer versions, atomic writes, no half-written versions."""

import pytest

from tfrs_multiscene.export import layout


def _fake_save(path):
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"pb")
    (path / "variables").mkdir()


def test_versions_increase_and_ignore_non_integer_dirs(tmp_path):
    assert layout.next_version(tmp_path, "retrieval") == 1
    first = layout.write_version(tmp_path, "retrieval", _fake_save)
    assert first == tmp_path / "retrieval" / "1"
    (tmp_path / "retrieval" / "notes").mkdir()
    (tmp_path / "retrieval" / ".tmp-7-abc").mkdir()
    second = layout.write_version(tmp_path, "retrieval", _fake_save)
    assert second.name == "2" and (second / "saved_model.pb").is_file()
    assert layout.versions(tmp_path, "retrieval") == [1, 2]
    assert layout.latest_version_dir(tmp_path / "retrieval") == second


def test_failed_save_leaves_nothing_visible(tmp_path):
    def broken(path):
        _fake_save(path)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        layout.write_version(tmp_path, "ranking", broken)
    assert list((tmp_path / "ranking").iterdir()) == []
    with pytest.raises(RuntimeError, match="saved_model.pb"):
        layout.write_version(tmp_path, "ranking", lambda p: p.mkdir())
    assert layout.versions(tmp_path, "ranking") == []


def test_version_is_only_visible_after_save_completes(tmp_path):
    seen = []

    def save(path):
        _fake_save(path)
        seen.append(layout.versions(tmp_path, "m"))  # what a polling server would see now

    layout.write_version(tmp_path, "m", save)
    assert seen == [[]] and layout.versions(tmp_path, "m") == [1]


def test_existing_version_is_never_overwritten(tmp_path):
    layout.write_version(tmp_path, "m", _fake_save, version=5)
    with pytest.raises(FileExistsError):
        layout.write_version(tmp_path, "m", _fake_save, version=5)
    assert layout.next_version(tmp_path, "m") == 6
    with pytest.raises(FileNotFoundError):
        layout.latest_version_dir(tmp_path / "other")
