"""``jaxconv-train``: one command trains, evaluates, checkpoints and plots.

Hydra stays here, at the edge: :func:`train` is a plain function of a config and a run
directory; :func:`main` is the only thing that knows about Hydra's command line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from jaxconv.app.config import register


class ConfigError(ValueError):
    """A well-typed but wrong config value; reported in one line, exit status 2."""


def _tuples(value: Any) -> Any:
    """Lists from YAML -> tuples (flax modules must hash their attributes)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def validate(cfg: DictConfig) -> None:
    """Reject wrong values before any work, naming the key."""
    import jaxconv
    from jaxconv.data import DATASETS

    t, o, d = cfg.trainer, cfg.optimizer, cfg.data
    checks = [
        (o.lr > 0, f"optimizer.lr (={o.lr}) must be > 0"),
        (o.weight_decay >= 0, f"optimizer.weight_decay (={o.weight_decay}) must be >= 0"),
        (t.batch_size >= 1, f"trainer.batch_size (={t.batch_size}) must be >= 1"),
        (t.max_steps is None or t.max_steps >= 1, f"trainer.max_steps (={t.max_steps}) must be >= 1 or null"),
        (t.max_steps is not None or t.epochs >= 1, f"trainer.epochs (={t.epochs}) must be >= 1"),
        (t.eval_every is None or t.eval_every >= 1, f"trainer.eval_every (={t.eval_every}) must be >= 1 or null"),
        (t.checkpoint_every is None or t.checkpoint_every >= 1,
         f"trainer.checkpoint_every (={t.checkpoint_every}) must be >= 1 or null"),
        (t.keep_checkpoints >= 1, f"trainer.keep_checkpoints (={t.keep_checkpoints}) must be >= 1"),
        (0 <= t.label_smoothing < 1, f"trainer.label_smoothing (={t.label_smoothing}) must be in [0, 1)"),
        (cfg.conv_backend in jaxconv.backends(), f"conv_backend (={cfg.conv_backend!r}) must be one of {jaxconv.backends()}"),
        (d.name in DATASETS, f"data.name (={d.name!r}) must be one of {DATASETS}"),
        (0 <= d.val_fraction < 1, f"data.val_fraction (={d.val_fraction}) must be in [0, 1)"),
        (d.augment_shift >= 0, f"data.augment_shift (={d.augment_shift}) must be >= 0"),
        ("_target_" in cfg.model, "model must name a `_target_` (e.g. jaxconv.models.CNN)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


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
        raise ConfigError(f"model {type(model).__name__} does not fit inputs of shape "
                          f"{tuple(example.shape[1:])}: {first}") from err


#: Keys that control how a run is carried out, not what it computes: left out of the hash.
RUN_CONTROL_KEYS = ("resume", "progress", "plots", "reuse_host_memory")


def config_sha256(cfg: DictConfig) -> str:
    """SHA-256 of the resolved config, without the run-control keys (resume, progress,
    plots, reuse_host_memory): a resumed or re-run job has the same hash as the original."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container = {k: v for k, v in container.items() if k != "hydra"}
    container["trainer"] = {k: v for k, v in container.get("trainer", {}).items() if k not in RUN_CONTROL_KEYS}
    return hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()


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

    flags = {name: getattr(jax.config, name) for name in (
        "jax_enable_x64", "jax_default_matmul_precision", "jax_platforms", "jax_default_prng_impl",
        "jax_threefry_partitionable") if hasattr(jax.config, name)}
    package_dir = Path(__file__).resolve().parent
    return {
        "config_sha256": config_sha256(cfg), "overrides": overrides, "versions": versions(),
        "env": {k: os.environ.get(k) for k in ("XLA_FLAGS", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                                                  "XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_PLATFORMS")},
        "xla_flags_at_backend_start": jax_env.flags_at_start(),
        "host_memory_reused": jax_env.host_memory_reused(),
        "jax_config": flags, "device": jax.devices()[0].device_kind, "platform": jax.default_backend(),
        "device_count": jax.device_count(), "cwd": os.getcwd(), "argv": sys.argv,
        "git": git_state(Path.cwd()), "git_package": git_state(package_dir),
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
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def train(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None) -> dict:
    """Train, evaluate, checkpoint and plot one run into ``run_dir``; return result.json's dict.

    Writes ``provenance.json`` (what a rerun needs) and ``result.json`` (status "running",
    then "ok" or "failed" with the error) atomically.
    """
    import jax

    from jaxconv.app import jax_env
    from jaxconv.data import load_dataset
    from jaxconv.data.batching import steps_per_epoch
    from jaxconv.report import plot_learning_curves
    from jaxconv.train import evaluate, fit, make_optimizer, make_schedule, params_sha256
    from jaxconv.train.loop import refuse_to_overwrite, write_metrics
    from jaxconv.train.plots import plot_feature_maps, plot_filters
    from jaxconv.train.state import variables_of

    jax_env.note_start(reuse_memory=cfg.trainer.get("reuse_host_memory", True))
    start = time.perf_counter()
    for noisy in ("absl", "orbax", "jax._src.xla_bridge"):  # INFO chatter: saves, TPU probing
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    validate(cfg)
    if not cfg.trainer.resume:
        refuse_to_overwrite(run_dir)
    d, t = cfg.data, cfg.trainer
    dataset = load_dataset(
        d.name, root=d.root, val_fraction=d.val_fraction, normalize=d.normalize, split_seed=cfg.seed,
        limit_train=d.limit_train, download=d.download, **OmegaConf.to_container(d.options, resolve=True),
    )
    model = build_model(cfg, dataset.num_classes)
    check_model_fits(model, dataset.x_train)
    total = t.max_steps or t.epochs * steps_per_epoch(len(dataset.x_train), t.batch_size)
    s, o = cfg.schedule, cfg.optimizer
    schedule = make_schedule(s.name, o.lr, total, warmup_fraction=s.warmup_fraction, final_fraction=s.final_fraction)
    tx = make_optimizer(o.name, schedule, momentum=o.momentum, weight_decay=o.weight_decay,
                        clip_norm=o.clip_norm, b1=o.b1, b2=o.b2)
    print(dataset.summary(), flush=True)
    write_json(run_dir / "provenance.json", provenance(cfg, list(overrides or [])))
    result = {
        "status": "running", "seed": cfg.seed, "config_sha256": config_sha256(cfg),
        "versions": versions(), "device": jax.devices()[0].device_kind, "platform": jax.default_backend(),
        "model": type(model).__name__, "data": d.name, "conv_backend": cfg.conv_backend,
        "overrides": list(overrides or []),
    }
    write_json(run_dir / "result.json", result)
    try:
        state, history = fit(
            model, dataset, tx, epochs=t.epochs, max_steps=t.max_steps, batch_size=t.batch_size,
            eval_every=t.eval_every, seed=cfg.seed, run_dir=run_dir, checkpoint_every=t.checkpoint_every,
            keep_checkpoints=t.keep_checkpoints, resume=t.resume, progress=t.progress,
            augment_shift=d.augment_shift, augment_flip=d.augment_flip, label_smoothing=t.label_smoothing,
        )
        test = evaluate(state, dataset.x_test, dataset.y_test)
        steps = int(state.step)
        history.add(step=steps, epoch=steps // steps_per_epoch(len(dataset.x_train), t.batch_size),
                    split="test", images_per_s="", **test)
        write_metrics(run_dir / "metrics.csv", history.rows)
        if t.plots:
            plot_learning_curves(run_dir)
            plot_filters(state.params, run_dir / "filters.png")
            plot_feature_maps(model, variables_of(state), dataset.x_test[0], run_dir / "feature_maps.png")
        val = history.last("val")
        result.update(
            status="ok", test_accuracy=test["accuracy"], test_loss=test["loss"],
            val_accuracy=val["accuracy"] if val else None, steps=steps,
            params_sha256=params_sha256(state.params), wall_seconds=time.perf_counter() - start,
        )
    except BaseException as err:
        result.update(status="failed", error=f"{type(err).__name__}: {err}", wall_seconds=time.perf_counter() - start)
        write_json(run_dir / "result.json", result)
        raise
    write_json(run_dir / "result.json", result)
    print(f"test accuracy {100 * result['test_accuracy']:.2f}% (loss {result['test_loss']:.4f}) after "
          f"{result['steps']} steps in {result['wall_seconds']:.1f} s; run directory: {run_dir}", flush=True)
    return result


#: What a failed job returns to the sweeper: the worst accuracy, which Optuna accepts
#: (it refuses NaN), so a failed trial ranks last instead of stopping the search.
FAILED_OBJECTIVE = float("-inf")


def objective(result: dict) -> float:
    """What a sweeper maximises: validation accuracy, or test accuracy without a val split."""
    value = result.get("val_accuracy")
    return float(value if value is not None else result.get("test_accuracy", float("nan")))


def _previous_result(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None


def _record_failure(run_dir: Path, cfg: DictConfig, overrides: list[str], err: BaseException) -> None:
    """Every job directory ends self-describing, also when the job failed before training."""
    result = _previous_result(run_dir) or {}
    if result.get("status") == "failed":
        return
    result.update(status="failed", error=f"{type(err).__name__}: {err}", overrides=overrides,
                  seed=cfg.get("seed"))
    try:
        result.setdefault("config_sha256", config_sha256(cfg))
    except Exception:  # an unresolvable config is itself the error being recorded
        pass
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "result.json", result)


def _task(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from jaxconv.data import DataError

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:
        previous = _previous_result(run_dir)
        if previous and previous.get("status") == "ok" and previous.get("config_sha256") == config_sha256(cfg):
            print(f"skipping {run_dir}: result.json says ok (same config)", flush=True)
            return objective(previous)
        if previous is not None:  # failed or interrupted: continue from its checkpoints
            cfg.trainer.resume = True
    try:
        return objective(train(cfg, run_dir, overrides))
    except FileExistsError as err:  # never touch a directory that holds another run
        print(f"jaxconv-train: error: {err}", file=sys.stderr, flush=True)
        if multirun:
            return FAILED_OBJECTIVE
        sys.exit(2)
    except Exception as err:
        _record_failure(run_dir, cfg, overrides, err)
        one_line = isinstance(err, (ConfigError, DataError))
        if multirun:  # one failed job must not stop the sweep: its result.json says why
            print(f"jaxconv-train: job {hydra_cfg.job.num} failed: {type(err).__name__}: {err}",
                  file=sys.stderr, flush=True)
            return FAILED_OBJECTIVE
        if one_line:
            print(f"jaxconv-train: error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        raise


def main() -> None:
    """Console entry point (``jaxconv-train``, ``python -m jaxconv``)."""
    import hydra

    register()
    hydra.main(version_base="1.3", config_path="../conf", config_name="config")(_task)()


if __name__ == "__main__":
    main()
