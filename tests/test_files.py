"""Checksums of sealed folders: an intact folder has no changed files; a damaged file or marker is reported."""

from bif.core.files import changed_files, seal


def test_a_sealed_folder_reports_damaged_files_and_an_unreadable_marker(tmp_path):
    (tmp_path / "a.json").write_text('{"x": 1}')
    seal(tmp_path, ["a.json"])
    assert changed_files(tmp_path, rehash=True) == []
    (tmp_path / "a.json").write_text('{"x": 2}')
    assert changed_files(tmp_path, rehash=True) == ["a.json"]
    (tmp_path / "COMPLETE").write_text("{not json")  # a marker that cannot be read vouches for nothing
    assert changed_files(tmp_path, rehash=True) == ["COMPLETE"]
    assert changed_files(tmp_path) == ["COMPLETE"]
