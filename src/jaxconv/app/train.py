"""``jaxconv-train``: one command trains, evaluates, checkpoints and plots.

Hydra stays here, at the edge: :func:`train` is a plain function of a config and a run
directory; :func:`main` is the only thing that knows about Hydra's command line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from jaxconv._atomic import write_text_atomic
from jaxconv.app.config import register
from jaxconv.app.rundir import REFUSAL_FILE, RunDirRefused, check_run_dir, write_config
from jaxconv.app.validate import ConfigError, check_against_data, validate


def _tuples(value: Any) -> Any:
    """Lists from YAML -> tuples (flax modules must hash their attributes)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def build_model(cfg: DictConfig, num_classes: int):
    """Instantiate ``cfg.model`` with the run's ``conv_backend`` and the data's classes."""
    from hydra.utils import get_object

    spec = _tuples(OmegaConf.to_container(cfg.model, resolve=True))
    target = spec.pop("_target_")
    try:
        factory = get_object(target)
    except Exception as err:  # hydra raises ImportError / ValueError variants
        raise ConfigError(f"model._target_ (={target!r}) cannot be imported: {err}") from err
    try:
        return factory(**spec, num_classes=num_classes, conv_backend=cfg.conv_backend)
    except TypeError as err:
        raise ConfigError(f"model {target}: {err}") from err


def check_model_fits(model, example) -> None:
    """Trace the model on one example (no FLOPs): shape errors surface here, in one line."""
    import jax

    try:
        jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), example[:1])
    except (ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"model {type(model).__name__} does not fit inputs of shape "
            f"{tuple(example.shape[1:])}: {first}"
        ) from err


def config_sha256(cfg: DictConfig) -> str:
    """SHA-256 of the resolved config without the keys that never change what a run
    computes (:data:`~jaxconv.app.rundir.RESUME_MAY_CHANGE`: resume, progress, plots,
    checkpointing, where the data lives): a resumed or re-run job has the original's hash."""
    from jaxconv.app.rundir import RESUME_MAY_CHANGE, flatten

    flat = flatten(task_config(cfg))
    kept = {k: v for k, v in flat.items() if k not in RESUME_MAY_CHANGE}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def git_state(start: Path) -> dict[str, Any]:
    """Commit and dirty flag of the checkout holding ``start`` (None outside a checkout)."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", *args], cwd=start, capture_output=True, text=True, timeout=10)

    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
        return {"commit": commit.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def provenance(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """What a rerun needs: config hash, overrides, versions, XLA/JAX settings, device, git."""
    import jax

    from jaxconv.app import jax_env

    flags = {
        name: getattr(jax.config, name)
        for name in (
            "jax_enable_x64",
            "jax_default_matmul_precision",
            "jax_platforms",
            "jax_default_prng_impl",
            "jax_threefry_partitionable",
        )
        if hasattr(jax.config, name)
    }
    package_dir = Path(__file__).resolve().parent
    return {
        "config_sha256": config_sha256(cfg),
        "overrides": overrides,
        "versions": versions(),
        "env": {
            k: os.environ.get(k)
            for k in (
                "XLA_FLAGS",
                "XLA_PYTHON_CLIENT_MEM_FRACTION",
                "XLA_PYTHON_CLIENT_PREALLOCATE",
                "JAX_PLATFORMS",
            )
        },
        "xla_flags_at_backend_start": jax_env.flags_at_start(),
        "host_memory_reused": jax_env.host_memory_reused(),
        "jax_config": flags,
        "device": jax.devices()[0].device_kind,
        "platform": jax.default_backend(),
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "git": git_state(Path.cwd()),
        "git_package": git_state(package_dir),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "jaxconv"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # not installed as a distribution
            out[pkg] = "unknown"
    return out


def write_json(path: Path, payload: dict) -> None:
    """Atomic: a kill mid-write never leaves a truncated file behind."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def _prepare(cfg: DictConfig):
    """Load the data, build the model and the optimizer: every check that needs them, and
    nothing written."""
    from jaxconv.data import load_dataset
    from jaxconv.train import make_optimizer, make_schedule, total_steps

    d, s, o = cfg.data, cfg.schedule, cfg.optimizer
    dataset = load_dataset(
        d.name,
        root=d.root,
        val_fraction=d.val_fraction,
        normalize=d.normalize,
        split_seed=cfg.seed,
        limit_train=d.limit_train,
        download=d.download,
        **OmegaConf.to_container(d.options, resolve=True),
    )
    check_against_data(cfg, dataset)
    model = build_model(cfg, dataset.num_classes)
    check_model_fits(model, dataset.x_train)
    mesh = _mesh(cfg, len(dataset.x_train))
    total = total_steps(len(dataset.x_train), fit_options(cfg))
    schedule = make_schedule(
        s.name, o.lr, total, warmup_fraction=s.warmup_fraction, final_fraction=s.final_fraction
    )
    tx = make_optimizer(
        o.name,
        schedule,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
        clip_norm=o.clip_norm,
        b1=o.b1,
        b2=o.b2,
    )
    return dataset, model, tx, mesh, schedule


def _mesh(cfg: DictConfig, n_train: int):
    """The devices the run splits its batches over; a count that is not there, or that
    does not divide the batch, is a :class:`ConfigError`."""
    from jaxconv.train import parallel

    try:
        mesh = parallel.data_mesh(cfg.trainer.devices)
        parallel.check_batch(min(cfg.trainer.batch_size, n_train), mesh)
    except ValueError as err:
        from jaxconv.app.validate import as_config_error

        raise as_config_error(err) from err
    return mesh


def fit_options(cfg: DictConfig):
    """The :class:`~jaxconv.train.FitOptions` of a config."""
    from jaxconv.train import FitOptions

    t, d = cfg.trainer, cfg.data
    return FitOptions(
        epochs=t.epochs,
        max_steps=t.max_steps,
        batch_size=t.batch_size,
        eval_every=t.eval_every,
        seed=cfg.seed,
        checkpoint_every=t.checkpoint_every,
        keep_checkpoints=t.keep_checkpoints,
        resume=t.resume,
        progress=t.progress,
        augment_shift=d.augment_shift,
        augment_flip=d.augment_flip,
        label_smoothing=t.label_smoothing,
        devices=t.devices,
        compute_dtype=t.compute_dtype,
    )


def task_config(cfg: DictConfig) -> dict:
    """The resolved config without Hydra's own node: what a run records and compares."""
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "hydra"}


def train(
    cfg: DictConfig,
    run_dir: str | Path,
    overrides: list[str] | None = None,
    *,
    on_accept: Callable[[Path], None] | None = None,
    names: dict[str, Any] | None = None,
) -> dict:
    """Train, evaluate, checkpoint and plot one run into ``run_dir``; return result.json's dict.

    Every check runs before anything is written: config values (:class:`ConfigError`),
    the data (:class:`~jaxconv.data.DataError`), the run directory (:class:`RunDirRefused`:
    a file, not writable, holding checkpoints without ``trainer.resume``, or holding a run
    of another config) and, on resume, the checkpoints
    (:class:`~jaxconv.train.CheckpointError`). A refused call changes nothing on disk.

    Once the run is accepted it writes ``config.yaml`` (resolved), ``provenance.json`` and
    ``result.json`` (status "running", then "ok", "failed" with the error, or
    "interrupted" on SIGINT/SIGTERM) atomically, and calls ``on_accept(run_dir)``.
    The ``logger`` group's loggers (:mod:`jaxconv.app.tracking`) are fed every
    evaluation and finished with the run's status; ``names`` gives MLflow's
    ``experiment``, ``run_name`` and ``tags`` (the Hydra job's, from :func:`main`).

    Raises:
      Diverged: a non-finite loss (result.json says "failed"; checkpoints stay finite).
      Interrupted: SIGINT or SIGTERM (a checkpoint is saved between two steps).

    (Over 60 lines: one ``try`` turns every outcome into result.json's status, and it
    must hold the whole run; each step inside it is a helper.)
    """
    import jax

    from jaxconv.app import jax_env, tracking
    from jaxconv.app.rundir import flatten
    from jaxconv.train import Interrupted, fit, parallel, stop_on_signals

    start = time.perf_counter()
    # INFO chatter: saves, TPU probing, the distributed service's addresses
    for noisy in (
        "absl",
        "orbax",
        "jax._src.xla_bridge",
        "jax._src.distributed",
        "mlflow",
        "alembic",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run_dir = Path(run_dir)
    validate(cfg)
    # jax.distributed installs its own SIGTERM handler (a preemption notice): start it
    # before ours, which must be the one that sees SIGTERM
    parallel.initialize(**OmegaConf.to_container(cfg.distributed, resolve=True))
    jax_env.note_start(reuse_memory=cfg.trainer.get("reuse_host_memory", True))
    with stop_on_signals() as stop:
        config = task_config(cfg)
        dataset, model, tx, mesh, schedule = _checked_by_all(cfg, run_dir, config)
        primary = parallel.is_primary()
        result = _running_record(cfg, model, overrides, mesh)
        accepted = []
        loggers = (
            tracking.make_loggers(cfg, run_dir, flatten(config), schedule, **(names or {}))
            if primary
            else []
        )

        def accept() -> None:  # the checkpoints (if any) restored: from here on we write
            accepted.append(True)
            if primary:  # process 0 writes the run's files; the others only train
                _write_accepted_run(run_dir, cfg, config, overrides, result)
                if on_accept is not None:
                    on_accept(run_dir)
                print(dataset.summary(), flush=True)

        try:
            state, history = fit(
                model,
                dataset,
                tx,
                fit_options(cfg),
                run_dir=run_dir,
                should_stop=stop,
                on_start=accept,
                loggers=loggers,
            )
            if stop() and jax.process_count() == 1:  # several: fit stopped them together
                raise Interrupted(stop(), int(state.step), saved=True)
            _finish(cfg, run_dir, model, dataset, state, history, result, loggers)
            result["wall_seconds"] = time.perf_counter() - start
        except BaseException as err:
            if accepted and primary:
                interrupted = isinstance(err, (Interrupted, KeyboardInterrupt))
                result.update(
                    status="interrupted" if interrupted else "failed",
                    error=f"{type(err).__name__}: {err}",
                    wall_seconds=time.perf_counter() - start,
                )
                write_json(run_dir / "result.json", result)
                tracking.finish_all(loggers, result["status"], run_dir)
            raise
    if primary:
        write_json(run_dir / "result.json", result)
        tracking.finish_all(loggers, "ok", run_dir)
        print(
            f"test accuracy {100 * result['test_accuracy']:.2f}% "
            f"(loss {result['test_loss']:.4f}) after "
            f"{result['steps']} steps in {result['wall_seconds']:.1f} s; run directory: {run_dir}",
            flush=True,
        )
    return result


def _checked_by_all(cfg: DictConfig, run_dir: Path, config: dict):
    """The run directory and everything :func:`_prepare` loads, checked on every process;
    with several, the processes then agree: all go on, or all stop (the one that found
    the problem says what it is), and none writes before."""
    import jax

    from jaxconv.train import parallel

    failure = None
    try:
        check_run_dir(run_dir, config, resume=cfg.trainer.resume)
        prepared = _prepare(cfg)
    except _one_line_errors() as err:
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
    return prepared


def _running_record(cfg: DictConfig, model, overrides: list[str] | None, mesh) -> dict:
    """result.json of a run that has started: what it is, before any outcome (with the
    topology: devices in all, this process's, processes, the mesh's shape, the platform)."""
    import jax

    from jaxconv.train import parallel

    return {
        "status": "running",
        "seed": cfg.seed,
        "config_sha256": config_sha256(cfg),
        "versions": versions(),
        "device": jax.devices()[0].device_kind,
        "model": type(model).__name__,
        "data": cfg.data.name,
        "conv_backend": cfg.conv_backend,
        "overrides": list(overrides or []),
        "compute_dtype": cfg.trainer.compute_dtype,
        **parallel.describe(mesh),
    }


#: What result.json and provenance.json record about where the run ran.
TOPOLOGY_KEYS = ("devices", "local_devices", "processes", "mesh_shape", "platform")


def _write_accepted_run(
    run_dir: Path, cfg: DictConfig, config: dict, overrides, result: dict
) -> None:
    """The files an accepted run starts with: config.yaml, provenance.json, result.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    record = provenance(cfg, list(overrides or []))
    record["topology"] = {k: result[k] for k in TOPOLOGY_KEYS}  # as result.json has it
    write_json(run_dir / "provenance.json", record)
    write_json(run_dir / "result.json", result)


def _finish(
    cfg: DictConfig, run_dir: Path, model, dataset, state, history, result: dict, loggers: list
) -> None:
    """Test, log the test row and write the plots, and fill ``result`` of a run that
    trained to the end (every process tests: the evaluation is collective; process 0
    writes)."""
    import jax

    from jaxconv.data.batching import steps_per_epoch
    from jaxconv.report import plot_learning_curves
    from jaxconv.train import Diverged, evaluate, parallel, params_sha256
    from jaxconv.train.plots import plot_feature_maps, plot_filters
    from jaxconv.train.state import variables_of

    test = evaluate(state, dataset.x_test, dataset.y_test)
    steps = int(state.step)
    history.add(
        step=steps,
        epoch=steps // steps_per_epoch(len(dataset.x_train), cfg.trainer.batch_size),
        split="test",
        images_per_s="",
        **test,
    )
    for logger in loggers:  # process 0's (metrics.csv first)
        logger.log(history.rows[-1:])
    if not math.isfinite(test["loss"]):
        raise Diverged(f"non-finite test loss ({test['loss']}) after training step {steps}")
    if cfg.trainer.plots and parallel.is_primary():
        plot_learning_curves(run_dir)
        plot_filters(jax.device_get(state.params), run_dir / "filters.png")
        host = jax.device_get(variables_of(state))  # plotted on process 0 alone: local arrays
        plot_feature_maps(model, host, dataset.x_test[0], run_dir / "feature_maps.png")
    val = history.last("val")
    result.update(
        status="ok",
        test_accuracy=test["accuracy"],
        test_loss=test["loss"],
        val_accuracy=val["accuracy"] if val else None,
        steps=steps,
        params_sha256=params_sha256(state.params),
    )


#: What a failed job returns to the sweeper: the worst accuracy, which Optuna accepts
#: (it refuses NaN), so a failed trial ranks last instead of stopping the search.
FAILED_OBJECTIVE = float("-inf")


def objective(result: dict) -> float:
    """What a sweeper maximises: validation accuracy, or test accuracy without a val split."""
    value = result.get("val_accuracy")
    return float(value if value is not None else result.get("test_accuracy", float("nan")))


def _previous_result(run_dir: Path) -> dict | None:
    try:
        loaded = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _record_failure(
    run_dir: Path, cfg: DictConfig, overrides: list[str], err: BaseException
) -> None:
    """A new sweep job refused before training (a bad value) still ends self-describing."""
    result = {
        "status": "failed",
        "error": f"{type(err).__name__}: {err}",
        "overrides": overrides,
        "seed": cfg.get("seed"),
    }
    try:
        result["config_sha256"] = config_sha256(cfg)
    except Exception:  # an unresolvable config is itself the error being recorded
        pass
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "result.json", result)


#: When this process started: a run directory created after it and still empty was made
#: by Hydra for this command, and is removed again when the command is refused.
_STARTED = time.time()


def _one_line_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix, reported in one line with exit status 2."""
    from jaxconv.data import DataError
    from jaxconv.train import CheckpointError
    from jaxconv.train.parallel import DistributedError

    return (ConfigError, RunDirRefused, DataError, CheckpointError, DistributedError)


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
    from hydra.core.hydra_config import HydraConfig

    full = HydraConfig.instance().cfg
    out = run_dir / ".hydra"
    out.mkdir(exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml")
    OmegaConf.save(full, out / "hydra.yaml")
    OmegaConf.save(full.hydra.overrides.task, out / "overrides.yaml")


def _log_to_file(run_dir: Path, job_name: str) -> logging.Handler:
    handler = logging.FileHandler(run_dir / f"{job_name}.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _record_refusal(run_dir: Path, overrides: list[str], err: BaseException) -> None:
    """A sweep job refused by a directory that holds another run: the run's files stay as
    they are; ``refused.json`` beside them says why (``jaxconv-summarize`` shows it)."""
    if run_dir.is_dir():
        write_json(
            run_dir / REFUSAL_FILE,
            {"status": "refused", "error": f"{type(err).__name__}: {err}", "overrides": overrides},
        )


def _task(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    made_here = _made_by_this_command(run_dir)
    handlers: list[logging.Handler] = []

    def on_accept(directory: Path) -> None:
        _save_hydra_files(directory, cfg)
        handlers.append(_log_to_file(directory, hydra_cfg.job.name))
        (directory / REFUSAL_FILE).unlink(missing_ok=True)

    if multirun:
        previous = _previous_result(run_dir)
        if (
            previous
            and previous.get("status") == "ok"
            and previous.get("config_sha256") == config_sha256(cfg)
        ):
            (run_dir / REFUSAL_FILE).unlink(missing_ok=True)
            print(f"skipping {run_dir}: result.json says ok (same config)", flush=True)
            return objective(previous)
        if previous is not None:  # failed or interrupted: continue it, if it is the same experiment
            cfg.trainer.resume = True
    from jaxconv.app.tracking import hydra_names

    try:
        names = hydra_names(hydra_cfg, multirun)
        return objective(train(cfg, run_dir, overrides, on_accept=on_accept, names=names))
    except BaseException as err:
        return _failed(
            err,
            cfg,
            run_dir,
            overrides,
            multirun=multirun,
            accepted=bool(handlers),
            made_here=made_here,
            job=hydra_cfg.job.get("num"),
        )
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _failed(
    err: BaseException,
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    *,
    multirun: bool,
    accepted: bool,
    made_here: bool,
    job: int | None,
) -> float:
    """Report a job that did not finish: one line for what the user can fix, the exit
    status for a single run, the worst objective for a sweep (which goes on)."""
    from jaxconv.train import Diverged, Interrupted, parallel

    def say(message: str) -> None:
        print(f"jaxconv-train: {message}", file=sys.stderr, flush=True)

    if isinstance(err, (Interrupted, KeyboardInterrupt)):  # the user asked: the sweep stops too
        say(str(err) if isinstance(err, Interrupted) else "interrupted")
        sys.exit(err.exit_status if isinstance(err, Interrupted) else 130)
    one_line = isinstance(err, (*_one_line_errors(), Diverged))
    if not accepted:
        if multirun and parallel.is_primary():  # process 0 alone writes a job's record
            previous = _previous_result(run_dir)
            same_failure = previous and previous.get("status") == "failed"
            try:
                if not (run_dir / "result.json").exists():  # a new job: its result says why
                    _record_failure(run_dir, cfg, overrides, err)
                elif not (same_failure and isinstance(err, ConfigError)):
                    _record_refusal(run_dir, overrides, err)
            except OSError:  # a directory we may not write to: the line below is all there is
                pass
        elif made_here:
            _remove_made_dirs(run_dir)
    if multirun:
        say(f"job {job} failed: {type(err).__name__}: {err}")
        return FAILED_OBJECTIVE
    if not one_line:
        raise err
    say(f"error: {err}")
    sys.exit(1 if isinstance(err, Diverged) else 2)


def _callback_base():
    from hydra.experimental.callback import Callback

    return Callback


class RunDirGuard(_callback_base()):
    """Hydra callback: refuse a run directory that is a file or cannot be created, in one
    line, before Hydra's own ``mkdir`` fails with a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        from omegaconf.errors import OmegaConfBaseException

        from jaxconv.app.rundir import check_writable

        try:
            path = Path(OmegaConf.select(config, key))
        except OmegaConfBaseException:  # names only Hydra's runtime can resolve (the default
            return  # dir names the model): checked again in the job
        try:
            check_writable(path)
        except RunDirRefused as err:
            print(f"jaxconv-train: error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)


def main() -> None:
    """Console entry point (``jaxconv-train``, ``python -m jaxconv``)."""
    import hydra

    register()
    hydra.main(version_base="1.3", config_path="../conf", config_name="config")(_task)()


if __name__ == "__main__":
    main()
