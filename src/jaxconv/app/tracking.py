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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from jaxconv.app.errors import ConfigError
from jaxconv.run_layout import RunDir
from jaxconv.train.loggers import CsvLogger, MissingExtra, MLflowLogger, TensorBoardLogger, require


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
            TensorBoardLogger(
                run_dir, hparams=hparams, learning_rate=learning_rate, filters=log.filters
            )
        )
    if log.mlflow:
        loggers.append(
            MLflowLogger(
                log.tracking_uri,
                log.experiment or experiment or run_dir.resolve().parent.name,
                run_name=run_name or run_dir.name,
                params=hparams,
                tags={"jaxconv.run_dir": str(run_dir.resolve()), **(tags or {})},
                learning_rate=learning_rate,
                run_file=files.mlflow_run,
            )
        )
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
