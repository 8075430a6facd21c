"""The one atomic small-file writer every layer shares (run files, manifests, metrics)."""

import os

import pytest

from jaxconv._atomic import write_text_atomic


def test_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    write_text_atomic(path, "first\n")
    write_text_atomic(path, "second\n")
    assert path.read_text() == "second\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text("kept: 1\n")

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "lost: 2\n")
    assert path.read_text() == "kept: 1\n"
