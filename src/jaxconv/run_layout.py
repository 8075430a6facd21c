"""What a run directory holds: the file names, the ``metrics.csv`` format and the statuses.

The one place that knows the layout. ``train`` writes metrics.csv and checkpoints into it,
``app`` the records (result.json, config.yaml, provenance.json, refused.json) and
``report`` reads them all back; each asks :class:`RunDir` for a path instead of spelling
the name. Below every layer: it imports nothing of jaxconv but the atomic writer.

    >>> run = RunDir("outputs/run")
    >>> run.result.as_posix(), run.checkpoints.as_posix()
    ('outputs/run/result.json', 'outputs/run/checkpoints')
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from jaxconv._atomic import write_text_atomic

#: result.json's ``status``: ``running`` while it trains, then one of the other three.
RUNNING, OK, FAILED, INTERRUPTED = "running", "ok", "failed", "interrupted"
RUN_STATUSES = (RUNNING, OK, FAILED, INTERRUPTED)
#: What a summary may also say of a job: refused (its directory holds another run) or
#: corrupt (a record that cannot be read).
REFUSED, CORRUPT = "refused", "corrupt"

#: The plots a finished run draws, by what they show.
PLOT_FILES = {
    "learning_curves": "learning_curves.png",
    "filters": "filters.png",
    "feature_maps": "feature_maps.png",
}


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is read or made by building one)."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    @property
    def result(self) -> Path:
        """``result.json``: status, final metrics, hashes, versions, wall time."""
        return self.path / "result.json"

    @property
    def config(self) -> Path:
        """``config.yaml``: the resolved config of the accepted run."""
        return self.path / "config.yaml"

    @property
    def provenance(self) -> Path:
        """``provenance.json``: what a rerun needs (overrides, versions, devices, git)."""
        return self.path / "provenance.json"

    @property
    def metrics(self) -> Path:
        """``metrics.csv``: one row per evaluation (:data:`METRICS_FIELDS`)."""
        return self.path / "metrics.csv"

    @property
    def model_summary(self) -> Path:
        """``model.txt``: the model's layers, output shapes, parameters and FLOPs per step."""
        return self.path / "model.txt"

    @property
    def refusal(self) -> Path:
        """``refused.json``: why the last command refused this sweep job's directory."""
        return self.path / "refused.json"

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: Orbax's ``last/`` and ``best/`` and the ``manifest/``."""
        return self.path / "checkpoints"

    @property
    def last_checkpoints(self) -> Path:
        return self.checkpoints / "last"

    @property
    def lock(self) -> Path:
        """``.jaxconv.lock``: the file whose OS lock the process writing the run holds."""
        return self.path / ".jaxconv.lock"

    @property
    def mlflow_run(self) -> Path:
        """``mlflow_run.json``: the MLflow run a resume continues."""
        return self.path / "mlflow_run.json"

    @property
    def hydra(self) -> Path:
        """``.hydra/``: Hydra's config.yaml, hydra.yaml and overrides.yaml of the job."""
        return self.path / ".hydra"

    def plot(self, name: str) -> Path:
        """The file of one of :data:`PLOT_FILES`."""
        return self.path / PLOT_FILES[name]

    def has_checkpoints(self) -> bool:
        """Whether a step was ever saved here (the run can be resumed)."""
        last = self.last_checkpoints
        return last.is_dir() and any(p.name.isdigit() for p in last.iterdir())

    def misplaced(self) -> list[str]:
        """The entries that exist with the wrong kind (a file named ``checkpoints``, a
        directory named ``result.json``), as ``"NAME is a file/directory"``: jaxconv could
        write neither."""
        dirs = (self.checkpoints, self.last_checkpoints, self.hydra)
        files = (self.result, self.config, self.provenance, self.metrics, self.refusal,
                 self.lock, self.mlflow_run, self.model_summary,
                 *(self.plot(name) for name in PLOT_FILES))  # fmt: skip
        out = [f"{p.relative_to(self.path)} is a file" for p in dirs if _is(p, file=True)]
        out += [f"{p.relative_to(self.path)} is a directory" for p in files if _is(p, file=False)]
        return out

    def artifacts(self) -> list[Path]:
        """The records and plots that exist (what a tracking server keeps of a run)."""
        records = (self.result, self.metrics, self.config, self.provenance, self.model_summary)
        plots = (self.plot(name) for name in PLOT_FILES)
        return [p for p in (*records, *plots) if p.is_file()]


def _is(path: Path, *, file: bool) -> bool:
    """Whether ``path`` exists and is not a directory (``file``), or is one (not ``file``)."""
    return path.exists() and path.is_dir() != file


def write_json(path: Path, payload: dict) -> None:
    """A JSON record, atomically: a kill mid-write never leaves a truncated file."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object."""
    try:
        loaded = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


#: metrics.csv's columns, in order, for the default loss and metrics. ``split`` is
#: train, val or test; ``images_per_s`` is empty outside train rows. A run with metrics
#: of its own (``fit(metrics=...)``) has their columns in accuracy's place.
METRICS_FIELDS = ("step", "epoch", "split", "loss", "accuracy", "images_per_s")
SPLITS = ("train", "val", "test")
_KEYS = ("step", "epoch", "split", "loss")  # every metrics.csv begins with these


def metrics_fields(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The columns of a metrics.csv holding ``rows``: step, epoch, split, loss, every
    other value in the order rows first have it, images_per_s.

    >>> metrics_fields([{"step": 1, "split": "val", "loss": 0.5, "mae": 0.25}])
    ('step', 'epoch', 'split', 'loss', 'mae', 'images_per_s')
    """
    named = dict.fromkeys(k for row in rows for k in row)
    values = [k for k in named if k not in _KEYS and k != "images_per_s"]
    return (*_KEYS, *(values if rows else ["accuracy"]), "images_per_s")


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """metrics.csv, atomically: a kill mid-write never leaves a truncated file."""
    fields = metrics_fields(rows)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in fields})
    write_text_atomic(path, text.getvalue())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv's rows with ints for step/epoch and floats (NaN when empty) for the rest.

    Raises ValueError naming the line when the file is not a metrics.csv (a missing
    column, a short or long row, an unknown split, a value that is not a number).
    """
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"step", "split", "loss"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"no column {', '.join(sorted(missing))}")
        return [_metrics_row(row, reader.line_num) for row in reader]


def _metrics_row(row: dict, line: int) -> dict[str, Any]:
    if row.get("split") not in SPLITS or None in row or None in row.values():
        raise ValueError(f"line {line} is not a metrics row")
    try:
        for key in ("step", "epoch"):
            row[key] = int(float(row[key])) if row.get(key) not in ("", None) else 0
        for key in set(row) - {"step", "epoch", "split"}:
            row[key] = float(row[key]) if row[key] != "" else float("nan")
    except ValueError as err:
        raise ValueError(f"line {line}: {err}") from err
    return row
