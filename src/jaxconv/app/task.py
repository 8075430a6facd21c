"""``jaxconv-train``'s Hydra side: the entry point, the job (a sweep job's skip or resume,
failures into one line and an exit status) and the run-directory guard callback.

Hydra stays here, at the edge: :func:`jaxconv.app.train.train` is a plain function of a
config and a run directory; this module turns Hydra's job into a call of it. What the
command needs process-wide (quiet library loggers, TensorStore's failed-read noise) is
set in :func:`main` alone.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from jaxconv.app import supervise
from jaxconv.app.config import register, task_config
from jaxconv.app.errors import ONE_LINE_ERRORS, ConfigError
from jaxconv.app.jax_env import BackendStart
from jaxconv.app.record import record_failure, record_refusal
from jaxconv.app.rundir import (
    RunDirBusy,
    RunDirRefused,
    check_writable,
    finished_run,
    previous_result,
)
from jaxconv.app.tracking import hydra_names
from jaxconv.app.train import RUN_LOG, train
from jaxconv.run_layout import FAILED, RunDir
from jaxconv.train import Diverged, Interrupted, MachineFault, parallel
from jaxconv.train.checkpoint import silence_failed_reads

#: What a failed job returns to the sweeper: the worst accuracy, which Optuna accepts
#: (it refuses NaN), so a failed trial ranks last instead of stopping the search.
FAILED_OBJECTIVE = float("-inf")
#: What stops an accepted run, reported in one line with exit status 1 (result.json says
#: "failed" with the same line).
RUN_FAILURES = (Diverged, MachineFault)
#: Loggers whose INFO chatter (saves, TPU probing, the distributed service's addresses,
#: MLflow's database setup) stays out of the command's output.
NOISY_LOGGERS = (
    "jax._src.xla_bridge",
    "jax._src.distributed",
    "mlflow",
    "alembic",
)
#: Loggers of the checkpoint writer (Orbax logs through absl) whose errors, tracebacks
#: included, the command reports itself in one line (a full disk, a removed directory).
QUIET_LOGGERS = ("absl", "orbax")
#: When this process started: a run directory created after it and still empty was made
#: by Hydra for this command, and is removed again when the command is refused.
_STARTED = time.time()


def objective(result: dict) -> float:
    """What a sweeper maximises: validation accuracy, or test accuracy without a val split."""
    value = result.get("val_accuracy")
    return float(value if value is not None else result.get("test_accuracy", float("nan")))


def _made_by_this_command(run_dir: Path) -> bool:
    try:
        return (
            run_dir.is_dir()
            and not any(run_dir.iterdir())
            and run_dir.stat().st_mtime >= _STARTED - 1
        )
    except OSError:
        return False


def _remove_made_dirs(run_dir: Path) -> None:
    """Undo Hydra's mkdir of a refused run's directory (and of its new, empty parents)."""
    stop = Path.cwd().resolve()
    path = run_dir.resolve()
    while path != stop and path != path.parent and _made_by_this_command(path):
        try:
            path.rmdir()
        except OSError:  # another process of the same run removed it first
            return
        path = path.parent


def _save_hydra_files(run_dir: Path, cfg: DictConfig) -> None:
    """What Hydra would have written in ``.hydra/``, written once the run is accepted."""
    full = HydraConfig.instance().cfg
    out = RunDir(run_dir).hydra
    out.mkdir(exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml")
    OmegaConf.save(full, out / "hydra.yaml")
    OmegaConf.save(full.hydra.overrides.task, out / "overrides.yaml")


class _RunLog(logging.FileHandler):
    """The job's log file; when it cannot be written (the disk full, the directory
    removed) it stops quietly: the run's outcome is reported by the command itself."""

    def handleError(self, record: logging.LogRecord) -> None:
        self.close()

    def emit(self, record: logging.LogRecord) -> None:
        if not self._closed_for_good:
            super().emit(record)

    def close(self) -> None:
        self._closed_for_good = True
        try:
            super().close()
        except OSError:
            pass

    _closed_for_good = False


def _log_to_file(run_dir: Path, job_name: str) -> logging.Handler:
    """``<job>.log`` in the run directory: the run's own lines (``jaxconv.run``: the
    dataset, each evaluation, the outcome or the error) and every library's warnings."""
    handler = _RunLog(run_dir / f"{job_name}.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    for name in ("", RUN_LOG.name):
        logging.getLogger(name).addHandler(handler)
    return handler


def _task(cfg: DictConfig, backend: BackendStart) -> float:
    """One Hydra job: skip a sweep job that finished, resume one that did not, train."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    made_here = _made_by_this_command(run_dir)
    supervise.note_run_dir(run_dir, made_here)
    handlers: list[logging.Handler] = []

    def on_accept(directory: Path) -> None:
        _save_hydra_files(directory, cfg)
        handlers.append(_log_to_file(directory, hydra_cfg.job.name))
        RunDir(directory).refusal.unlink(missing_ok=True)

    if multirun:
        previous = previous_result(run_dir)
        if finished_run(previous, task_config(cfg)):
            RunDir(run_dir).refusal.unlink(missing_ok=True)
            print(f"skipping {run_dir}: result.json says ok (same config)", flush=True)
            return objective(previous)
        if previous is not None:  # failed or interrupted: continue it, if it is the same
            cfg.trainer.resume = True  # experiment
    try:
        names = hydra_names(hydra_cfg, multirun)
        result = train(cfg, run_dir, overrides, on_accept=on_accept, names=names, backend=backend)
        return objective(result)
    except BaseException as err:
        job = _Job(cfg, run_dir, overrides, multirun, bool(handlers), made_here)
        return job.failed(err, hydra_cfg.job.get("num"))
    finally:
        for handler in handlers:
            for name in ("", RUN_LOG.name):
                logging.getLogger(name).removeHandler(handler)
            handler.close()


def _say(message: str) -> None:
    print(f"jaxconv-train: {message}", file=sys.stderr, flush=True)
    RUN_LOG.error(message)  # the run's log, when the run was accepted


class _Job:
    """A job that did not finish, as the command reports it."""

    def __init__(self, cfg, run_dir, overrides, multirun, accepted, made_here):
        self.cfg, self.run_dir, self.overrides = cfg, run_dir, overrides
        self.multirun, self.accepted, self.made_here = multirun, accepted, made_here

    def failed(self, err: BaseException, job: int | None) -> float:
        """One line for what the user can fix, the exit status for a single run, the worst
        objective for a sweep (which goes on); a signal stops the sweep too."""
        if isinstance(err, (Interrupted, KeyboardInterrupt)):
            for signum in (signal.SIGINT, signal.SIGTERM):  # stopping already: a further
                signal.signal(signum, signal.SIG_IGN)  # signal must not raise in shutdown
            if not self.accepted and not self.multirun and self.made_here:
                _remove_made_dirs(self.run_dir)  # stopped before anything was written
            _say(str(err) if isinstance(err, Interrupted) else "interrupted")
            sys.exit(err.exit_status if isinstance(err, Interrupted) else 130)
        if not self.accepted:
            self._records_of_refused(err)
        if self.multirun:
            _say(f"job {job} failed: {type(err).__name__}: {err}")
            return FAILED_OBJECTIVE
        if not isinstance(err, (*ONE_LINE_ERRORS, *RUN_FAILURES)):
            raise err
        _say(f"error: {err}")
        sys.exit(1 if isinstance(err, RUN_FAILURES) else 2)

    def _records_of_refused(self, err: BaseException) -> None:
        """A refused sweep job's record (process 0 alone writes it); a refused single run
        leaves nothing, not even the directory Hydra made for it."""
        if not self.multirun:
            if self.made_here:
                _remove_made_dirs(self.run_dir)
            return
        if not parallel.is_primary() or isinstance(err, RunDirBusy):
            return  # a directory another process is writing is left to it
        previous = previous_result(self.run_dir)
        same_failure = previous and previous.get("status") == FAILED
        try:
            if not RunDir(self.run_dir).result.exists():  # a new job: its result says why
                record_failure(self.run_dir, self.cfg, self.overrides, err)
            elif not (same_failure and isinstance(err, ConfigError)):
                record_refusal(self.run_dir, self.overrides, err)
        except OSError:  # a directory we may not write to: the one line is all there is
            pass


def _fixed_part(config: DictConfig, key: str) -> Path:
    """The directory ``key`` names, up to its first interpolation (``outputs/`` of the
    default ``outputs/${hydra:runtime.choices.model}_...``)."""
    text = str(OmegaConf.select(config, key, throw_on_resolution_failure=False) or "")
    if not text:
        node = config.hydra.run if key == "hydra.run.dir" else config.hydra.sweep
        text = str(node._get_node("dir")._value())
    return Path(text.split("${", 1)[0] or ".")


class RunDirGuard(Callback):
    """Hydra callback: refuse a run directory that is a file or cannot be created, in one
    line, before Hydra's own ``mkdir`` fails with a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        try:
            path = Path(OmegaConf.select(config, key))
        except OmegaConfBaseException:  # names only Hydra's runtime can resolve (the default
            path = _fixed_part(config, key)  # dir names the model): the part before them
        try:
            check_writable(path)
        except RunDirRefused as err:
            _say(f"error: {err}")
            sys.exit(2)


def main() -> None:
    """Console entry point (``jaxconv-train``, ``python -m jaxconv``): the process-wide
    settings the command needs, then Hydra's command line (a run of several processes
    under a watcher, :mod:`jaxconv.app.supervise`)."""
    if supervise.wanted(sys.argv[1:]):
        sys.exit(supervise.run(sys.argv[1:]))
    # a tracking server that goes away mid-run costs seconds, not MLflow's minutes of
    # retries (its requests read these; a user's own settings win)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    silence_failed_reads()
    register()
    backend = BackendStart()  # one per process: what its XLA backend started with

    def jaxconv_train(cfg: DictConfig) -> float:
        return _task(cfg, backend)

    hydra.main(version_base="1.3", config_path="../conf", config_name="config")(jaxconv_train)()


if __name__ == "__main__":
    main()
