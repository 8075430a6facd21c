"""The ``logger`` config group, turned into the loggers of one run.

``logger=csv`` (the default) writes ``metrics.csv`` alone; ``logger=tensorboard``,
``logger=mlflow`` or ``logger=[tensorboard,mlflow]`` add those writers. metrics.csv is
always written. TensorBoard's event files go in the run directory, so
``tensorboard --logdir outputs`` (or ``multirun``) shows every run under its directory's
name. Each run is one MLflow run: of the experiment named after the sweep directory in
a multirun (one experiment per sweep), else after the run directory's parent
(``outputs/cnn1d_mnist1d``); ``logger.experiment`` names it instead.
"""

from __future__ import annotations

import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from jaxconv._atomic import unwritable
from jaxconv._errors import first_line
from jaxconv.app.errors import ConfigError
from jaxconv.run_layout import RunDir
from jaxconv.train.loggers import (
    CsvLogger,
    Logger,
    MissingExtra,
    MLflowLogger,
    TensorBoardLogger,
    require,
)


def chosen(cfg: DictConfig) -> list[str]:
    """The optional loggers a config asks for, by name."""
    log = cfg.get("logger") or {}
    return [name for name in ("tensorboard", "mlflow") if log.get(name)]


def check_installed(cfg: DictConfig) -> None:
    """Every chosen logger's writer can be imported, or one :class:`ConfigError` line
    naming the extra to install."""
    for name in chosen(cfg):
        try:
            require(name)
        except MissingExtra as err:
            raise ConfigError(str(err)) from None


#: Seconds a tracking server has to answer before a run is refused.
SERVER_TIMEOUT = 5


def check_tracking_store(cfg: DictConfig) -> None:
    """With ``logger=mlflow``, the tracking store answers, before anything is written: a
    server answers HTTP within :data:`SERVER_TIMEOUT` seconds, a sqlite file can be made
    where it is named, and the URI is not MLflow's retired file store. One
    :class:`ConfigError` line otherwise (MLflow itself would retry for minutes)."""
    if "mlflow" not in chosen(cfg):
        return
    given = cfg.logger.get("tracking_uri")
    uri = given or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    where = f"logger.tracking_uri (={uri})" if given else f"MLFLOW_TRACKING_URI (={uri})"
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme in ("http", "https"):
        problem = _server_problem(uri)
    elif scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        problem = unwritable(path.parent) if path is not None and path.name else None
    elif scheme in ("", "file") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "") != "true":
        problem = (
            "names MLflow's file store, which MLflow has retired: use a database "
            "(sqlite:///PATH/mlflow.db) or a server (http://HOST:PORT), or set "
            "MLFLOW_ALLOW_FILE_STORE=true as MLflow asks"
        )
    else:
        problem = None  # another database: MLflow says what is wrong with it
    if problem:
        raise ConfigError(f"{where}: {problem}")


def _server_problem(uri: str) -> str | None:
    """Why the MLflow server at ``uri`` cannot be used (None: it answered)."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=SERVER_TIMEOUT):
            return None
    except urllib.error.HTTPError:  # it answered, if not on /health: a server is there
        return None
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return (
            f"no MLflow server answered within {SERVER_TIMEOUT} s ({reason}); start it "
            "(mlflow server) or choose another store"
        )


class Guarded(Logger):
    """A tracking logger whose failure mid-run (a server gone away) does not stop the
    run: it is reported once, the logger is dropped, and :attr:`failure` says why
    (result.json records it); metrics.csv and the checkpoints go on."""

    def __init__(self, inner: Logger):
        self.inner, self.failure = inner, None

    def _call(self, method: str, *args) -> None:
        if self.failure is not None:
            return
        try:
            getattr(self.inner, method)(*args)
        except Exception as err:  # noqa: BLE001 (any writer's error)
            self.failure = f"{type(self.inner).__name__} stopped: {first_line(err)}"
            print(f"jaxconv-train: warning: {self.failure}; the run goes on without it",
                  file=sys.stderr, flush=True)  # fmt: skip

    def start(self, step, history=None) -> None:
        self._call("start", step, history)

    def log(self, rows, params=None) -> None:
        self._call("log", rows, params)

    def finish(self, status="ok", files=()) -> None:
        self._call("finish", status, files)


def failures(loggers: list) -> list[str]:
    """What the run's tracking loggers reported when they stopped (result.json's
    ``logger_errors``)."""
    return [lg.failure for lg in loggers if isinstance(lg, Guarded) and lg.failure]


def make_loggers(
    cfg: DictConfig,
    run_dir: Path,
    hparams: dict[str, Any],
    learning_rate: Callable[[int], Any] | None,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: dict[str, Any] | None = None,
) -> list:
    """The loggers of one run: metrics.csv's first, then the chosen ones. Nothing is
    written until :func:`~jaxconv.train.fit` starts them.

    Args:
      hparams: the flattened config (TensorBoard's hyperparameters, MLflow's params).
      learning_rate: the run's schedule.
      experiment: the MLflow experiment when ``logger.experiment`` is null (the
        default: the run directory's parent).
      run_name: the MLflow run's name (default: the run directory's name).
    """
    log, files = cfg.logger, RunDir(run_dir)
    loggers = [CsvLogger(files.metrics)]
    if log.tensorboard:
        loggers.append(
            Guarded(TensorBoardLogger(
                run_dir, hparams=hparams, learning_rate=learning_rate, filters=log.filters
            ))
        )  # fmt: skip
    if log.mlflow:
        loggers.append(
            Guarded(MLflowLogger(
                log.tracking_uri,
                log.experiment or experiment or run_dir.resolve().parent.name,
                run_name=run_name or run_dir.name,
                params=hparams,
                tags={"jaxconv.run_dir": str(run_dir.resolve()), **(tags or {})},
                learning_rate=learning_rate,
                run_file=files.mlflow_run,
            ))
        )  # fmt: skip
        # mlflow sets its own logger to INFO when imported (above): its database setup
        # chatter stays out of the run's output
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    return loggers


def finish_all(loggers: list, status: str, run_dir: Path) -> None:
    """Finish every logger; one that fails to (a tracking server gone) is reported and
    does not stop the others, nor change the run's own record."""
    for logger in loggers:
        try:
            logger.finish(status, RunDir(run_dir).artifacts())
        except Exception as err:  # the run's own files are already written
            print(
                f"jaxconv-train: warning: {type(logger).__name__} did not finish: "
                f"{type(err).__name__}: {err}",
                file=sys.stderr,
                flush=True,
            )


def hydra_names(hydra_cfg, multirun: bool) -> dict[str, Any]:
    """MLflow's experiment, run name and tags for a Hydra job: in a sweep, the
    experiment is the sweep directory and the run is named after the job's overrides."""
    if not multirun:
        return {"experiment": None, "run_name": None, "tags": {"hydra.job": hydra_cfg.job.name}}
    num = hydra_cfg.job.get("num")
    overrides = hydra_cfg.job.get("override_dirname") or ""
    return {
        "experiment": str(hydra_cfg.sweep.dir),
        "run_name": f"{num}: {overrides}" if overrides else f"job {num}",
        "tags": {"hydra.job": hydra_cfg.job.name, "hydra.job.num": num},
    }
