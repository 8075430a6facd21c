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


def test_metrics_csv_bytes_are_what_csv_writes_to_a_file(tmp_path):
    """metrics.csv goes through the atomic writer as text; its bytes (csv's \\r\\n line
    endings included) equal the csv module writing straight to a file."""
    import csv

    from jaxconv.run_layout import METRICS_FIELDS, read_metrics, write_metrics

    rows = [
        {
            "step": 10,
            "epoch": 0,
            "split": "train",
            "loss": 0.5,
            "accuracy": 0.75,
            "images_per_s": 1e4,
        },
        {"step": 10, "epoch": 0, "split": "val", "loss": 0.625, "accuracy": 0.5},
    ]
    write_metrics(tmp_path / "metrics.csv", rows)
    with open(tmp_path / "reference.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRICS_FIELDS)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in METRICS_FIELDS} for r in rows)
    assert (tmp_path / "metrics.csv").read_bytes() == (tmp_path / "reference.csv").read_bytes()
    assert b"\r\n" in (tmp_path / "metrics.csv").read_bytes()
    back = read_metrics(tmp_path / "metrics.csv")
    assert [(r["step"], r["split"], r["loss"]) for r in back] == [
        (10, "train", 0.5),
        (10, "val", 0.625),
    ]
