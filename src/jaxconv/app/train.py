"""``train(cfg, run_dir)``: one run of ``jaxconv-train`` as a plain function of a config
and a directory (instantiate, check, fit, test, record). Hydra's side of the command, the
sweep job and the exit status, is :mod:`jaxconv.app.task`."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from omegaconf import DictConfig

from jaxconv._atomic import write_text_atomic
from jaxconv._errors import first_line
from jaxconv.app import debug, tracking
from jaxconv.app.build import Prepared, fit_options, prepare
from jaxconv.app.config import config_sha256, flatten, group_options, task_config
from jaxconv.app.errors import ONE_LINE_ERRORS, ConfigError
from jaxconv.app.jax_env import BackendStart, start_backend
from jaxconv.app.record import RunRecord
from jaxconv.app.rundir import Hold, check_run_dir, finished_run, held, previous_result
from jaxconv.app.validate import validate
from jaxconv.data.batching import steps_per_epoch
from jaxconv.report import plot_learning_curves
from jaxconv.run_layout import RunDir
from jaxconv.train import (
    Diverged,
    Interrupted,
    Logger,
    MachineFault,
    evaluate,
    fit,
    machine_fault,
    parallel,
    params_sha256,
    stop_on_signals,
)
from jaxconv.train.faults import peer_fault
from jaxconv.train.parallel import DistributedOptions
from jaxconv.train.plots import plot_feature_maps, plot_filters
from jaxconv.train.state import create_state, ema_weights, variables_of
from jaxconv.train.summary import summarize


def train(
    cfg: DictConfig,
    run_dir: str | Path,
    overrides: list[str] | None = None,
    *,
    on_accept: Callable[[Path], None] | None = None,
    names: dict[str, Any] | None = None,
    backend: BackendStart | None = None,
) -> dict:
    """Train, evaluate, checkpoint and plot one run into ``run_dir``; return result.json's dict.

    Every check runs before anything is written: config values (:class:`ConfigError`),
    the data (:class:`~jaxconv.data.DataError`), the run directory
    (:class:`~jaxconv.app.rundir.RunDirRefused`) and, on resume, the checkpoints
    (:class:`~jaxconv.train.CheckpointError`). A refused call changes nothing on disk.
    Once the run is accepted it writes the run record (:class:`~jaxconv.app.record.RunRecord`:
    result.json "running", then "ok", "failed" or "interrupted") and calls
    ``on_accept(run_dir)``; the ``logger`` group's loggers are fed every evaluation
    (``names``: MLflow's experiment, run name and tags). ``backend`` says what the XLA
    backend started with (one per process; a new one by default).

    Raises:
      Diverged: a non-finite loss (result.json says "failed"; checkpoints stay finite).
      Interrupted: SIGINT or SIGTERM (a checkpoint is saved between two steps).
    """
    start, run_dir, backend = time.perf_counter(), Path(run_dir), backend or BackendStart()
    cfg = _start(cfg, backend)
    if cfg.trainer.resume and finished_run(done := previous_result(run_dir), task_config(cfg)):
        if parallel.is_primary():
            print(_finished(done, run_dir), flush=True)
        return done
    with held(run_dir, primary=parallel.is_primary()) as hold, stop_on_signals() as stop:
        prepared, extended = _checked_by_all(cfg, run_dir)
        record = RunRecord(cfg, run_dir, prepared, overrides, start)
        record.extend(extended)
        loggers = _loggers(cfg, run_dir, prepared, names, hold, record.primary)

        def accept() -> None:  # the checkpoints (if any) restored: from here on we write
            hold.keep = True  # the lock file stays with the run
            record.accept(cfg, backend)  # process 0 writes the run's files
            if record.primary and on_accept is not None:
                on_accept(run_dir)
            if record.primary:
                _describe(cfg, prepared, record)

        try:
            model, data, tx = prepared.model, prepared.dataset, prepared.optimizer
            state, history = fit(model, data, tx, fit_options(cfg), run_dir=run_dir,
                                 should_stop=stop, on_start=accept, loggers=loggers)  # fmt: skip
            if stop() and jax.process_count() == 1:  # several: fit stopped them together
                raise Interrupted(stop(), int(state.step), saved=True)
            values = _test(cfg, run_dir, prepared, state, history, loggers)
        except BaseException as err:
            _record_failure(err, record, loggers, hold, run_dir)  # and raise
    stopped = tracking.failures(loggers)
    result = record.finish(**values, **({"logger_errors": stopped} if stopped else {}))
    tracking.finish_all(loggers, result["status"], run_dir)
    if record.primary:
        announce(_outcome(result, run_dir))
    return result


def _describe(cfg: DictConfig, prepared: Prepared, record: RunRecord) -> None:
    """Print what the data and the model are, write the model's summary to model.txt, and
    put its parameter count and FLOPs per step into result.json."""
    data = prepared.dataset
    announce(data.summary())
    try:
        state = jax.eval_shape(lambda: create_state(prepared.model, data.x_train[:1],
                                                    prepared.optimizer, cfg.seed,
                                                    cfg.trainer.compute_dtype))  # fmt: skip
        summary = summarize(prepared.model, data.x_train[:1], state=state,
                            batch_size=min(cfg.trainer.batch_size, len(data.x_train)),
                            accumulate=cfg.trainer.accumulate_steps)  # fmt: skip
    except Exception as err:  # a summary is a description: it never stops the run
        announce(f"no model summary: {type(err).__name__}: {first_line(err)}")
        return
    table = summary.table()
    announce(table)
    write_text_atomic(record.files.model_summary, table + "\n")
    record.note(params=summary.params, flops_per_step=summary.flops_per_step)


def _outcome(result: dict, run_dir: Path) -> str:
    line = (
        f"test accuracy {100 * result['test_accuracy']:.2f}% (loss {result['test_loss']:.4f}) "
        f"after {result['steps']} steps in {result['wall_seconds']:.1f} s; "
        f"run directory: {run_dir}"
    )
    return f"{line}\n{debug.report(result)}" if "debug" in result else line


#: The run's own records (the dataset, every evaluation, the outcome): the job's log file
#: (``train.log``, :mod:`jaxconv.app.task`) holds them; the console gets them by print.
RUN_LOG = logging.getLogger("jaxconv.run")
RUN_LOG.propagate = False  # printed already: the console's handler would repeat them
RUN_LOG.setLevel(logging.INFO)
RUN_LOG.addHandler(logging.NullHandler())  # without a run's file: nowhere (not stderr)


def announce(message: str) -> None:
    """A line of the run for the console and the run's log."""
    print(message, flush=True)
    RUN_LOG.info(message)


class _LogRows(Logger):
    """Every evaluation's rows into the run's log, one line each."""

    def start(self, step: int, history=None) -> None:
        RUN_LOG.info("training from step %d", step)

    def log(self, rows, params=None) -> None:
        for r in rows:
            RUN_LOG.info(
                "step %s epoch %s %s: loss %.4f accuracy %.4f",
                r["step"], r["epoch"], r["split"], r["loss"], r["accuracy"],
            )  # fmt: skip


class _Watch(Logger):
    """Stops the run when its directory is removed under it (the lock file process 0
    holds lost its last link): checked at every evaluation and when the run fails."""

    def __init__(self, hold: Hold, run_dir: Path):
        self.hold, self.run_dir = hold, run_dir

    def fault(self) -> MachineFault | None:
        if self.hold.lost():
            return MachineFault(f"run directory {self.run_dir} was removed during the run")
        return None

    def log(self, rows, params=None) -> None:
        fault = self.fault()
        if fault is not None:
            raise fault


def _start(cfg: DictConfig, backend: BackendStart) -> DictConfig:
    """The checks of the config values, then ``jax.distributed`` and the backend (a
    platform that cannot start is one line), before anything is written. Returns the
    config to run: shortened for ``trainer=debug``."""
    cfg = debug.debug_config(cfg) if cfg.trainer.get("debug") else cfg
    validate(cfg)
    # jax.distributed installs its own SIGTERM handler (a preemption notice): start it
    # before ours, which must be the one that sees SIGTERM
    parallel.initialize(**dataclasses.asdict(group_options(cfg, DistributedOptions, "distributed")))
    backend.note(reuse_memory=cfg.trainer.reuse_host_memory)
    start_backend()
    return cfg


def _record_failure(err: BaseException, record: RunRecord, loggers, hold, run_dir) -> None:
    """Record why an accepted run stopped (result.json, the loggers), then raise it: as a
    one-line :class:`MachineFault` when the machine stopped it. A refusal is raised as is."""
    if not record.accepted:
        raise err
    fault = _fault_of(err, hold, run_dir)
    tracking.finish_all(loggers, record.finish(fault or err)["status"], run_dir)
    if fault is None or fault is err:
        raise err
    raise fault from err


def _fault_of(err: BaseException, hold: Hold, run_dir: Path) -> MachineFault | None:
    """What stopped an accepted run, when the machine did: its directory removed, a full
    disk, no memory, or (several processes) a peer that stopped answering."""
    if not isinstance(err, Exception):  # a second signal
        return None
    fault = _Watch(hold, run_dir).fault() or machine_fault(err, run_dir)
    if fault is None and jax.process_count() > 1:
        fault = peer_fault(err)
    return fault


def _finished(result: dict, run_dir: Path) -> str:
    return (
        f"nothing to do: {run_dir} holds this run, finished (result.json says ok: test "
        f"accuracy {100 * result.get('test_accuracy', float('nan')):.2f}% after "
        f"{result.get('steps')} steps); raise trainer.max_steps to train it for longer"
    )


def _loggers(cfg: DictConfig, run_dir: Path, prepared: Prepared, names, hold, primary) -> list:
    """The watch on the run directory, then process 0's: metrics.csv's, the tracking
    loggers the config asks for, the run's log."""
    if not primary:
        return [_Watch(hold, run_dir)]
    hparams = flatten(task_config(cfg))
    chosen = tracking.make_loggers(cfg, run_dir, hparams, prepared.schedule, **(names or {}))
    return [_Watch(hold, run_dir), *chosen, _LogRows()]


def _checked_by_all(cfg: DictConfig, run_dir: Path) -> tuple[Prepared, list[dict]]:
    """The run directory and everything :func:`~jaxconv.app.build.prepare` loads, checked
    on every process; with several, the processes then agree: all go on, or all stop
    (the one that found the problem says what it is), and none writes before. Also
    returns the run's extensions (:func:`~jaxconv.app.rundir.check_run_dir`)."""
    failure = None
    try:
        extended = check_run_dir(run_dir, task_config(cfg), resume=cfg.trainer.resume)
        prepared = prepare(cfg)
    except ONE_LINE_ERRORS as err:
        failure = err
    if jax.process_count() > 1:
        anyone_failed, same = parallel.agree(
            failure is not None, f"{run_dir.resolve()}|{config_sha256(cfg)}"
        )
        if failure is None and not same:
            raise ConfigError(
                "the processes were given different run directories or configs: pass the "
                "same hydra.run.dir (the default name carries the start time) and overrides "
                "to every process"
            )
        if failure is None and anyone_failed:
            raise parallel.DistributedError(
                "another process refused the run (its output says why); nothing was written"
            )
    if failure is not None:
        raise failure
    return prepared, extended


def _test(cfg: DictConfig, run_dir: Path, prepared: Prepared, state, history, loggers) -> dict:
    """Test, log the test row and draw the plots of a run that trained to the end; the
    values result.json adds (every process tests: the evaluation is collective)."""
    dataset = prepared.dataset
    test = evaluate(state, dataset.x_test, dataset.y_test)
    steps = int(state.step)
    epoch = steps // steps_per_epoch(len(dataset.x_train), cfg.trainer.batch_size)
    history.add(step=steps, epoch=epoch, split="test", images_per_s="", **test)
    for logger in loggers:  # process 0's (metrics.csv first)
        logger.log(history.rows[-1:])
    if not math.isfinite(test["loss"]):
        raise Diverged(f"non-finite test loss ({test['loss']}) after training step {steps}")
    if cfg.trainer.plots and parallel.is_primary():
        _plot(run_dir, prepared, ema_weights(state))
    val = history.last("val")
    out = dict(
        test_accuracy=test["accuracy"],
        test_loss=test["loss"],
        val_accuracy=val["accuracy"] if val else None,
        steps=steps,
        params_sha256=params_sha256(state.params),
        # which weights the accuracies are of: the trained ones, or their moving average
        evaluated_weights="ema" if state.ema is not None else "trained",
    )
    if history.stopped is not None:  # a callback ended it (early stopping): still ok
        out["stopped_early"] = history.stopped
    if cfg.trainer.debug:
        out["debug"] = debug.checked(prepared, fit_options(cfg), state, history)
        if out["debug"]["resume"] == "OTHER parameters":
            raise RuntimeError(debug.report(out))
    if state.ema is not None:
        out["ema_decay"] = state.ema_decay
        out["ema_params_sha256"] = params_sha256(state.ema["params"])
    return out


def _plot(run_dir: Path, prepared: Prepared, state) -> None:
    """Learning curves, first-layer filters and feature maps (process 0's local arrays)."""
    files = RunDir(run_dir)
    plot_learning_curves(run_dir)
    plot_filters(jax.device_get(state.params), files.plot("filters"))
    host = jax.device_get(variables_of(state))
    plot_feature_maps(prepared.model, host, prepared.dataset.x_test[0], files.plot("feature_maps"))
