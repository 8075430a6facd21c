"""Where a run reports its evaluations: ``metrics.csv`` always, TensorBoard and MLflow
when asked.

Every logger is fed the same rows, the rows of ``metrics.csv`` (``step``, ``epoch``,
``split``, ``loss``, ``accuracy`` or the run's own metrics, ``images_per_s``), by
:func:`~jaxconv.train.fit` after each evaluation and by the caller for the test row.
The TensorBoard and MLflow writers are optional extras (``pip install
'jaxconv[tracking]'``), imported only when a logger of theirs is made.

Both name their values alike: ``train/loss``, ``val/accuracy``, ``test/loss``,
``train/images_per_s`` and ``learning_rate`` (the rate of the last step before the
evaluation, when the logger is given the schedule).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     csv = CsvLogger(Path(d) / "metrics.csv")
    ...     csv.start(0)
    ...     csv.log([{"step": 10, "epoch": 0, "split": "val", "loss": 0.5, "accuracy": 0.75}])
    ...     print((Path(d) / "metrics.csv").read_text().splitlines()[1])
    10,0,val,0.5,0.75,
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxconv._atomic import write_text_atomic
from jaxconv._options import option
from jaxconv.run_layout import read_metrics, write_metrics

#: What ``pip`` installs the optional writers with.
TRACKING_EXTRA = "pip install 'jaxconv[tracking]'"
#: The loggers by name, and the module each one needs (None: always there).
LOGGERS: dict[str, str | None] = {"csv": None, "tensorboard": "tensorboardX", "mlflow": "mlflow"}
#: How a run ended (result.json's status) in MLflow's words.
MLFLOW_STATUS = {"ok": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
#: The keys of a metrics row that are not logged as values (every other one is, when it
#: is a number: loss, accuracy or a run's own metrics, images_per_s).
KEYS = ("step", "epoch", "split")

Row = Mapping[str, Any]


#: Numbers this process's TensorBoard event files apart.
_WRITERS = itertools.count()


_ALSO = "where the metrics are also reported"


@dataclasses.dataclass
class LoggerOptions:
    """The ``logger`` config group: where a run is reported besides metrics.csv (always
    written); ``logger=tensorboard``, ``logger=mlflow`` or ``logger=[tensorboard,mlflow]``."""

    tensorboard: bool = option(False, resume="free", why=_ALSO)  # event files (tensorboardX)
    mlflow: bool = option(False, resume="free", why=_ALSO)  # one MLflow run per training run
    filters: bool = option(True, resume="free", why="what TensorBoard is shown")  # kernels
    tracking_uri: str | None = option(None, resume="free", why=_ALSO)  # null: env or ./mlflow.db
    experiment: str | None = option(None, resume="free", why=_ALSO)  # null: sweep dir or parent


class MissingExtra(ImportError):
    """A logger's writer is not installed; the message names the extra that brings it."""


def require(logger: str) -> Any:
    """The module ``logger`` writes with, imported; :class:`MissingExtra` when absent.

    >>> require("csv") is None
    True
    """
    if logger not in LOGGERS:
        raise ValueError(f"`logger` (={logger!r}) must be one of {tuple(LOGGERS)}")
    module = LOGGERS[logger]
    if module is None:
        return None
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtra(
            f"logger={logger} needs the `{module}` package, which is not installed: "
            f"{TRACKING_EXTRA}"
        ) from err


def scalars(row: Row, learning_rate: Callable[[int], Any] | None = None) -> dict[str, float]:
    """The finite numbers of one metrics row, by the name both trackers log them under;
    with the schedule, a train row also gets the rate of the last step before it.

    >>> scalars({"step": 5, "split": "train", "loss": 0.25, "accuracy": 0.5,
    ...          "images_per_s": float("nan")}, learning_rate=lambda step: 0.1 * step)
    {'train/loss': 0.25, 'train/accuracy': 0.5, 'learning_rate': 0.4}
    """
    out = {}
    for key, value in row.items():
        if (
            key not in KEYS
            and isinstance(value, (int, float, np.floating))
            and math.isfinite(value)
        ):
            out[f"{row['split']}/{key}"] = float(value)
    step = int(row["step"])
    if row["split"] == "train" and learning_rate is not None and step > 0:
        out["learning_rate"] = float(learning_rate(step - 1))
    return out


class Logger:
    """The interface: :func:`~jaxconv.train.fit` calls :meth:`start` once before the
    first step and :meth:`log` after every evaluation; whoever made the logger calls
    :meth:`finish` (or uses it as a context manager, which does). Every method does
    nothing here; a logger overrides what it needs, and writes nothing before
    :meth:`start`."""

    def start(self, step: int, history: Sequence[Row] | None = None) -> None:
        """Training starts at ``step`` (above 0 when a run is resumed); ``history`` is
        what the run's metrics.csv holds up to it (given by :func:`~jaxconv.train.fit`,
        which reads the file once on resume)."""

    def log(self, rows: Sequence[Row], params: Any = None) -> None:
        """The rows of one evaluation, and the parameters then (a pytree, or None)."""

    def finish(self, status: str = "ok", files: Sequence[Path] = ()) -> None:
        """The run ended with ``status`` (ok, failed, interrupted); ``files`` are its
        plots and records, for loggers that keep copies."""

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, kind, error, trace) -> None:
        from jaxconv.train.signals import Interrupted

        stopped = kind is not None and issubclass(kind, (KeyboardInterrupt, Interrupted))
        self.finish("ok" if kind is None else "interrupted" if stopped else "failed")


class CsvLogger(Logger):
    """``metrics.csv``, rewritten whole and atomically at each evaluation. On resume
    it keeps the rows up to the step training restarts from."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def start(self, step: int, history: Sequence[Row] | None = None) -> None:
        if history is None and step > 0 and self.path.exists():  # used alone: read the file
            history = read_metrics(self.path)
        self.rows = [dict(r) for r in history or () if r["step"] <= step] if step > 0 else []

    def log(self, rows: Sequence[Row], params: Any = None) -> None:
        self.rows += [dict(r) for r in rows]
        write_metrics(self.path, self.rows)


class TensorBoardLogger(Logger):
    """Event files in ``log_dir`` (``tensorboard --logdir`` on it or any folder above).

    Scalars per evaluation (loss, accuracy, images/s and the learning rate), the first
    convolution's filters as an image, and ``hparams`` (a flat ``{name: value}``) in
    TensorBoard's HParams tab. A resumed run purges what the first run wrote after the
    step it restarts from, so each step is shown once.

    Args:
      log_dir: where the event files go (created at :meth:`start`).
      hparams: hyperparameters; values that are not numbers, strings or bools are
        shown as strings.
      learning_rate: the schedule, ``step -> rate`` (an Optax schedule).
      filters: log the first convolution's kernels as an image at each evaluation.
    """

    def __init__(
        self,
        log_dir: str | Path,
        *,
        hparams: Mapping[str, Any] | None = None,
        learning_rate: Callable[[int], Any] | None = None,
        filters: bool = True,
    ):
        self._tbx = require("tensorboard")
        self.log_dir = Path(log_dir)
        self.hparams = dict(hparams or {})
        self.learning_rate = learning_rate
        self.filters = filters
        self.writer = None

    def start(self, step: int, history: Sequence[Row] | None = None) -> None:
        self.writer = self._tbx.SummaryWriter(
            logdir=str(self.log_dir),
            purge_step=step + 1 if step > 0 else None,  # resumed: drop what came after it
            flush_secs=10,
            # event files are named by the second they start in: two writers started in
            # the same second would otherwise share (and truncate) one file
            filename_suffix=f".{os.getpid()}.{next(_WRITERS):06d}",
        )
        if self.hparams:
            from tensorboardX.summary import hparams

            shown = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                     for k, v in self.hparams.items()}  # fmt: skip
            metrics = {f"{s}/{v}": 0.0 for s in ("val", "test") for v in ("accuracy", "loss")}
            for summary in hparams(shown, metrics):
                self.writer._get_file_writer().add_summary(summary)

    def log(self, rows: Sequence[Row], params: Any = None) -> None:
        for row in rows:
            for tag, value in scalars(row, self.learning_rate).items():
                self.writer.add_scalar(tag, value, int(row["step"]))
        if self.filters and params is not None and rows:
            from jaxconv.train.plots import filter_image, first_conv_kernel

            kernel = first_conv_kernel(params)
            if kernel is not None:
                image = filter_image(kernel)
                self.writer.add_image("filters", image, int(rows[0]["step"]), dataformats="HWC")
        self.writer.flush()

    def finish(self, status: str = "ok", files: Sequence[Path] = ()) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _sqlite_database(tracking_uri: str) -> Path | None:
    """The database file of a local SQLite store (``sqlite:///path``); None otherwise."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///")).resolve()


def _artifact_root(tracking_uri: str) -> str | None:
    """Artifacts of a local SQLite store go beside its database (``mlruns/`` next to
    ``mlflow.db``), not in whatever directory the run happens to start in; other stores
    keep their server's default (None).

    >>> _artifact_root("sqlite:////data/runs/mlflow.db")
    'file:///data/runs/mlruns'
    >>> _artifact_root("http://localhost:5000") is None
    True
    """
    database = _sqlite_database(tracking_uri)
    return None if database is None else (database.parent / "mlruns").as_uri()


@contextlib.contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold an exclusive lock on a local SQLite store's directory: jobs of a sweep that
    start together would otherwise race to create its tables (and fail). Other stores
    (servers) need none."""
    database = _sqlite_database(tracking_uri)
    if database is None:
        yield
        return
    import fcntl

    folder = database.parent
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


class MLflowLogger(Logger):
    """One MLflow run: ``params`` at the start, the scalars of every evaluation as
    metrics, ``files`` as artifacts and the run's status at the end.

    Written through :class:`mlflow.tracking.MlflowClient`, so nothing touches MLflow's
    global "active run". With ``run_file``, the run's id is kept there and a resumed
    training run continues the same MLflow run.

    Args:
      tracking_uri: a server (``http://host:5000``) or a local store
        (``sqlite:///path/mlflow.db``); None: MLflow's default (``MLFLOW_TRACKING_URI``,
        else ``mlflow.db`` in the working directory).
      experiment: the experiment's name; made when it does not exist.
      run_name: the run's name in the UI.
      params: logged once when the run is made (values as strings).
      tags: set when the run is made.
      learning_rate: the schedule, ``step -> rate``.
      run_file: a JSON file that remembers the run (tracking URI, experiment, id).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = "jaxconv",
        *,
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        learning_rate: Callable[[int], Any] | None = None,
        run_file: str | Path | None = None,
    ):
        require("mlflow")
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.params, self.tags = dict(params or {}), dict(tags or {})
        self.learning_rate = learning_rate
        self.run_file = Path(run_file) if run_file is not None else None
        self.client = None
        self.run_id: str | None = None

    def start(self, step: int, history: Sequence[Row] | None = None) -> None:
        import mlflow

        uri = self.tracking_uri or mlflow.get_tracking_uri()  # the default, resolved
        with _store_lock(uri):  # jobs started together share a local store
            self.client = mlflow.MlflowClient(uri)  # makes a new store's tables
            self._start(step)

    def _start(self, step: int) -> None:
        from mlflow.entities import Param

        uri = self.client.tracking_uri
        previous = self._previous_run(uri) if step > 0 else None
        if previous is not None:
            self.run_id = previous
            self.client.update_run(self.run_id, status="RUNNING")
            return
        tags = {k: str(v) for k, v in self.tags.items()}
        run = self.client.create_run(self._experiment_id(), run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k, str(v)) for k, v in self.params.items()]
        for i in range(0, len(params), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        if self.run_file is not None:
            record = {"tracking_uri": uri, "experiment": self.experiment, "run_id": self.run_id}
            write_text_atomic(self.run_file, json.dumps(record, indent=2) + "\n")

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(
                self.experiment, artifact_location=_artifact_root(self.client.tracking_uri)
            )
        except Exception:  # another job of the sweep made it first
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def _previous_run(self, uri: str) -> str | None:
        """The run a resumed training run continues: the one ``run_file`` names, when it
        is in the same store and still there."""
        if self.run_file is None or not self.run_file.exists():
            return None
        try:
            record = json.loads(self.run_file.read_text())
            if record.get("tracking_uri") != uri:
                return None
            return self.client.get_run(record["run_id"]).info.run_id
        except Exception:  # unreadable, or the run was deleted: start a new one
            return None

    def log(self, rows: Sequence[Row], params: Any = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for row in rows:
            values = scalars(row, self.learning_rate)
            metrics += [Metric(k, v, now, int(row["step"])) for k, v in values.items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, status: str = "ok", files: Sequence[Path] = ()) -> None:
        if self.client is None or self.run_id is None:
            return
        for path in files:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS.get(status, "FAILED"))
        self.client = None
