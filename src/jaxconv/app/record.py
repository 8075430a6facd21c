"""The run record: result.json (its statuses and final numbers), provenance.json and the
resolved config.yaml, written by process 0 once a run is accepted, and the records of a
sweep job that never started (a failed result.json, refused.json)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jax
from omegaconf import DictConfig

from jaxconv.app.config import config_sha256, task_config
from jaxconv.app.jax_env import BackendStart
from jaxconv.app.rundir import write_config
from jaxconv.run_layout import (
    FAILED,
    INTERRUPTED,
    OK,
    REFUSED,
    RUNNING,
    RunDir,
    write_json,
)
from jaxconv.train import Interrupted, parallel
from jaxconv.train.modules import api_of

#: What result.json and provenance.json record about where the run ran.
TOPOLOGY_KEYS = ("devices", "local_devices", "processes", "mesh_shape", "platform")
#: The jax.config flags a rerun must match.
JAX_FLAGS = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_platforms",
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
)
#: The environment variables XLA reads at start.
ENV_KEYS = (
    "XLA_FLAGS",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "JAX_PLATFORMS",
)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "jaxconv"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # not installed as a distribution
            out[pkg] = "unknown"
    return out


def git_state(start: Path) -> dict[str, Any]:
    """Commit and dirty flag of the checkout holding ``start`` (None outside a checkout)."""

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


def provenance(cfg: DictConfig, overrides: list[str], backend: BackendStart) -> dict[str, Any]:
    """What a rerun needs: config hash, overrides, versions, XLA/JAX settings, device, git."""
    return {
        "config_sha256": config_sha256(cfg),
        "overrides": overrides,
        "versions": versions(),
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "xla_flags_at_backend_start": backend.flags,
        "host_memory_reused": backend.host_memory_reused,
        "jax_config": {n: getattr(jax.config, n) for n in JAX_FLAGS if hasattr(jax.config, n)},
        "device": jax.devices()[0].device_kind,
        "platform": jax.default_backend(),
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "git": git_state(Path.cwd()),
        "git_package": git_state(Path(__file__).resolve().parent),
    }


class RunRecord:
    """result.json of one run, from "running" to its outcome; process 0 writes it."""

    def __init__(self, cfg: DictConfig, run_dir: Path, prepared, overrides, start: float):
        """``prepared``: what the run trains with (:class:`~jaxconv.app.build.Prepared`);
        ``start``: ``time.perf_counter()`` when the command's work began (the checks and
        the data loading count in ``wall_seconds``)."""
        model, mesh, dataset = prepared.model, prepared.mesh, prepared.dataset
        self.files, self.start = RunDir(run_dir), start
        self.primary, self.accepted = parallel.is_primary(), False
        self.result: dict[str, Any] = {
            "status": RUNNING,
            "seed": cfg.seed,
            "config_sha256": config_sha256(cfg),
            "versions": versions(),
            "device": jax.devices()[0].device_kind,
            "model": type(model).__name__,
            "model_api": api_of(model),
            # what jaxconv.load_run rebuilds the model with, without the data
            "num_classes": int(dataset.num_classes),
            "input_shape": [int(s) for s in dataset.x_train.shape[1:]],
            "data": cfg.data.name,
            # data.on_bad_file=skip: how many files were left out, and which
            "skipped_files": {"count": len(dataset.skipped), "files": list(dataset.skipped)},
            "conv_backend": cfg.conv_backend,
            "overrides": list(overrides or []),
            "compute_dtype": cfg.trainer.compute_dtype,
            **parallel.describe(mesh),
        }

    def extend(self, extended: list[dict]) -> None:
        """Record the run's extensions on resume (``{"key", "from", "to"}``, oldest first)
        in result.json and provenance.json: the run was trained for longer than planned."""
        if extended:
            self.result["extended"] = list(extended)

    def accept(self, cfg: DictConfig, backend: BackendStart) -> None:
        """The run is accepted; process 0 writes the files it starts with: config.yaml,
        provenance.json, result.json ("running")."""
        self.accepted = True
        if not self.primary:
            return
        self.files.path.mkdir(parents=True, exist_ok=True)
        write_config(self.files.path, task_config(cfg))
        record = provenance(cfg, self.result["overrides"], backend)
        record["topology"] = {k: self.result[k] for k in TOPOLOGY_KEYS}  # as result.json has it
        if "extended" in self.result:
            record["extended"] = self.result["extended"]
        write_json(self.files.provenance, record)
        write_json(self.files.result, self.result)

    def note(self, **values: Any) -> None:
        """Add ``values`` to result.json now (process 0 writes it)."""
        self.result.update(values)
        if self.primary:
            write_json(self.files.result, self.result)

    def finish(self, error: BaseException | None = None, **values: Any) -> dict:
        """The outcome: ok with ``values``, else failed or interrupted with the error."""
        self.result.update(values, wall_seconds=time.perf_counter() - self.start)
        if error is None:
            self.result["status"] = OK
        else:
            stopped = isinstance(error, (Interrupted, KeyboardInterrupt))
            self.result.update(status=INTERRUPTED if stopped else FAILED, error=_text(error))
        if self.primary:
            try:
                write_json(self.files.result, self.result)
            except OSError:  # the directory is gone, or the disk full: the outcome is
                if error is None:  # still reported, in the command's one line
                    raise
        return self.result


def record_failure(
    run_dir: Path, cfg: DictConfig, overrides: list[str], err: BaseException
) -> None:
    """A new sweep job refused before training (a bad value) still ends self-describing."""
    result = {
        "status": FAILED,
        "error": _text(err),
        "overrides": overrides,
        "seed": cfg.get("seed"),
    }
    try:
        result["config_sha256"] = config_sha256(cfg)
    except Exception:  # an unresolvable config is itself the error being recorded
        pass
    run_dir.mkdir(parents=True, exist_ok=True)
    RunDir(run_dir).lock.touch()  # the mark of a directory jaxconv made (for the rerun)
    write_json(RunDir(run_dir).result, result)


def record_refusal(run_dir: Path, overrides: list[str], err: BaseException) -> None:
    """A sweep job refused by a directory that holds another run: the run's files stay as
    they are; ``refused.json`` beside them says why (``jaxconv-summarize`` shows it)."""
    if run_dir.is_dir():
        write_json(
            RunDir(run_dir).refusal,
            {"status": REFUSED, "error": _text(err), "overrides": overrides},
        )


def _text(err: BaseException) -> str:
    """An error as a record keeps it: its type and its message."""
    return f"{type(err).__name__}: {err}"
