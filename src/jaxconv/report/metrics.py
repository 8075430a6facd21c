"""``metrics.csv``, the one per-evaluation record of a run: written by the training loop,
read back on resume, by the plots and by the sweep summaries (the only parser)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from jaxconv._atomic import write_text_atomic

#: The columns, in order. ``split`` is train, val or test; ``images_per_s`` is empty
#: outside train rows.
METRICS_FIELDS = ("step", "epoch", "split", "loss", "accuracy", "images_per_s")
SPLITS = ("train", "val", "test")


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically: a kill mid-write never leaves a truncated file."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=METRICS_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in METRICS_FIELDS})
    write_text_atomic(path, text.getvalue())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows with ints for step/epoch and floats (NaN when empty) for the rest.

    Raises ValueError naming the line when the file is not a metrics.csv (a missing
    column, a short or long row, an unknown split, a value that is not a number).
    """
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"step", "split", "loss", "accuracy"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"no column {', '.join(sorted(missing))}")
        rows = []
        for row in reader:
            if row.get("split") not in SPLITS or None in row or None in row.values():
                raise ValueError(f"line {reader.line_num} is not a metrics row")
            try:
                for key in ("step", "epoch"):
                    row[key] = int(float(row[key])) if row.get(key) not in ("", None) else 0
                for key in ("loss", "accuracy", "images_per_s"):
                    row[key] = float(row[key]) if row.get(key) not in ("", None) else float("nan")
            except ValueError as err:
                raise ValueError(f"line {reader.line_num}: {err}") from err
            rows.append(row)
    return rows
