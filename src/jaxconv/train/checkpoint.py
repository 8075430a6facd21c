"""Orbax checkpoints of the train state: the last few, and the best on validation.

Orbax writes each step into a temporary directory and renames it when complete, so a
kill during a save never leaves a half-written step in place of a good one. On top of
that every save records the parameters' SHA-256 in ``checkpoints/manifest/<step>.json``;
a restore that cannot read a step, or reads parameters with another hash, says so in one
line and falls back to the previous step. A step whose arrays do not match the model
(another architecture) is named as such, not as corrupt; when no step is usable,
:class:`CheckpointError` says why for each, and the files stay where they are.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxconv._atomic import write_text_atomic
from jaxconv._errors import first_line
from jaxconv.run_layout import RunDir
from jaxconv.train.faults import MachineFault, machine_fault
from jaxconv.train.state import TrainState, params_sha256


class CheckpointError(RuntimeError):
    """No usable checkpoint was found; the message says why for each step."""


class ModelMismatch(ValueError):
    """A checkpoint holds arrays of another model."""


def _pytree(state: TrainState) -> dict:
    tree = {
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
        "step": state.step,
        "rng": state.rng,
    }
    if state.ema is not None:  # the moving average of the weights, when the run keeps one
        tree["ema"] = state.ema
    return tree


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def array_layout(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"params/Conv_0/kernel": (shape, dtype), ...}`` for a state or its checkpoint metadata."""
    return {
        "/".join(_key_name(k) for k in path): (
            tuple(np.shape(leaf)),
            str(getattr(leaf, "dtype", "")),
        )
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def layout_mismatch(saved: dict, model: dict) -> str | None:
    """The first difference between two :func:`array_layout` dicts, in words (None if equal)."""

    def order(keys):  # the parameters first: they name the layers a reader knows
        return sorted(keys, key=lambda k: (not k.startswith("params/"), k))

    problems = [f"{k} is not in the checkpoint" for k in order(set(model) - set(saved))]
    problems += [
        f"{k} is in the checkpoint but not in the model" for k in order(set(saved) - set(model))
    ]
    problems += [
        f"{k} has shape {saved[k][0]} in the checkpoint, {model[k][0]} in the model"
        for k in order(set(saved) & set(model))
        if saved[k][0] != model[k][0]
    ]
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else ""
    return problems[0] + more


#: The loggers a failed TensorStore read writes to: Orbax's (absl) and asyncio's.
_READ_LOGGERS = ("absl", "asyncio")


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def _quiet_read_logs() -> Iterator[None]:
    """While a checkpoint is read, drop what Orbax and asyncio log of a failed read (the
    restore reports each failure itself, in one line). The filter is added to the named
    loggers for the read only, and removed after it."""
    drop, logs = _DropAll(), [logging.getLogger(name) for name in _READ_LOGGERS]
    for log in logs:
        log.addFilter(drop)
    try:
        yield
    finally:
        gc.collect()  # a failed read's futures are reported when collected: here, dropped
        for log in logs:
            log.removeFilter(drop)


class _FailedReadFilter(logging.Filter):
    """Drops asyncio's "... exception was never retrieved" records of TensorStore reads
    and Orbax writes (a failed save is reported by :meth:`Checkpoints.save` in one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            "never retrieved" in message and ("tensorstore" in message or "orbax" in message)
        )


def silence_failed_reads() -> None:
    """Process-wide, for programs that own the process (``jaxconv-train`` calls it in its
    entry point; a notebook may too): keep quiet what a failed TensorStore read leaves
    behind after :meth:`Checkpoints.restore` has reported it.

    TensorStore's threads call back into Orbax's event loop after it closed, each
    callback raising an unraisable "Event loop is closed" (up to a few milliseconds
    after the read failed, so no scope around the read can hold them), and the read's
    futures are logged by asyncio when collected. This installs, once: an
    ``sys.unraisablehook`` that drops those and hands every other to the hook it
    replaced; a filter on asyncio's logger for those records; and a warnings filter for
    the read's coroutines that were never awaited.
    """
    if getattr(sys.unraisablehook, "_jaxconv_failed_reads", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            previous(unraisable)

    hook._jaxconv_failed_reads = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_FailedReadFilter())
    warnings.filterwarnings(
        "ignore", message=r"coroutine '.*' was never awaited", category=RuntimeWarning
    )


def _identity(path: Path | int) -> tuple[int, int] | None:
    """The (device, inode) of ``path`` (or of an open descriptor)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _open_dir(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # made later, by the first save
        return None


class Checkpoints:
    """``run_dir/checkpoints/last`` keeps ``keep`` latest; ``.../best`` keeps the best.

    ``extras`` is a dict of small numpy arrays saved in the step's manifest beside the
    state (the loop keeps its partial metrics window there, so a resumed run writes the
    same metrics.csv); float32 values survive the JSON round trip exactly.
    """

    def __init__(self, run_dir: Path, keep: int = 3):
        self.base = RunDir(Path(run_dir).absolute()).checkpoints
        self.manifest = self.base / "manifest"  # made by the first save (not by a refusal)
        # the folders the managers make now; those still empty at close go again
        self._made = [p for p in (self.base / "last", self.base / "best", self.manifest,
                                  self.base) if not p.exists()]  # fmt: skip
        options = dict(enable_async_checkpointing=False, create=True)
        handler = ocp.StandardCheckpointHandler  # lets a new process read a step's metadata
        self.last = ocp.CheckpointManager(
            self.base / "last",
            item_handlers=handler(),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, **options),
        )
        self.best = ocp.CheckpointManager(
            self.base / "best",
            item_handlers=handler(),
            options=ocp.CheckpointManagerOptions(max_to_keep=1, **options),
        )
        # held open so the directory's inode is never reused: removed, it has no links
        self._run_dir_fd = _open_dir(self.base.parent)
        self.best_metric = -np.inf
        self._swept = False

    def _record(self, which: str, step: int, digest: str, extras: dict | None) -> None:
        if jax.process_index() != 0:  # Orbax saved collectively; the manifest is one file
            return
        payload = {"step": step, "params_sha256": digest}
        if extras is not None:
            payload["extras"] = {
                k: {"dtype": str(np.asarray(v).dtype), "values": np.asarray(v).tolist()}
                for k, v in extras.items()
            }
        self.manifest.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.manifest / f"{which}-{step}.json", json.dumps(payload))

    def save(
        self, state: TrainState, *, metric: float | None = None, extras: dict | None = None
    ) -> None:
        step = int(state.step)
        digest = params_sha256(state.params)
        tree = _pytree(state)
        self._check_run_dir()
        if not self._swept:  # what a killed run's unfinished save left
            self.remove_partial()
            self._swept = True
        try:
            if self.last.latest_step() != step:
                self.last.save(step, args=ocp.args.StandardSave(tree))
                self._record("last", step, digest, extras)
            if metric is not None and metric > self.best_metric:
                self.best_metric = metric
                if self.best.latest_step() != step:
                    self.best.save(step, args=ocp.args.StandardSave(tree))
                    self._record("best", step, digest, extras)
        except Exception as err:  # a full disk, a removed directory: the earlier steps stay
            self.remove_partial()
            self._check_run_dir()
            fault = machine_fault(err, self.base.parent, writing_run_dir=True)
            if fault is None:
                raise
            raise MachineFault(f"{fault} (saving the checkpoint of step {step})") from err

    def _check_run_dir(self) -> None:
        """:class:`MachineFault` when the run directory was removed (Orbax would make the
        path again, and a run would go on into a directory without its records)."""
        if self._run_dir_fd is None:
            return
        removed = os.fstat(self._run_dir_fd).st_nlink == 0
        if removed or _identity(self.base.parent) != _identity(self._run_dir_fd):
            raise MachineFault(f"run directory {self.base.parent} was removed during the run")

    def remove_partial(self) -> None:
        """Remove what unfinished saves left (Orbax's ``*.orbax-checkpoint-tmp*`` folders):
        a resume never sees them, and they hold no step."""
        if jax.process_index() != 0:
            return
        for folder in (self.base / "last", self.base / "best"):
            for partial in folder.glob("*.orbax-checkpoint-tmp*") if folder.is_dir() else ():
                shutil.rmtree(partial, ignore_errors=True)

    def latest_step(self) -> int | None:
        return self.last.latest_step()

    def restore(
        self, state: TrainState, *, which: str = "last", log=None
    ) -> tuple[TrainState, dict | None]:
        """The newest readable, uncorrupted checkpoint, restored into ``state``'s structure.

        Returns the state and the extras saved with it (None if there were none). Each step
        that cannot be used is reported by ``log`` in one line when an older one is left to
        try; :class:`CheckpointError` when none is usable.
        """
        log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        manager = self.last if which == "last" else self.best
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _pytree(state))
        steps = sorted(manager.all_steps(), reverse=True)
        reasons = []
        for i, step in enumerate(steps):
            try:
                with _quiet_read_logs():
                    self._check_layout(manager, step, abstract)
                    tree = manager.restore(step, args=ocp.args.StandardRestore(abstract))
                extras = self._verify(which, step, tree["params"])
            except ModelMismatch as err:
                reasons.append(f"checkpoint at step {step} has parameters of another model: {err}")
            except Exception as err:  # unreadable files, a wrong hash
                reasons.append(
                    f"checkpoint at step {step} is unreadable or corrupt ({first_line(err)})"
                )
            else:
                return state.replace(**tree), extras
            if i + 1 < len(steps):
                log(f"{reasons[-1]}; falling back to step {steps[i + 1]}")
        if not reasons:
            raise CheckpointError(f"no checkpoint in {manager.directory}")
        raise CheckpointError(
            f"no usable checkpoint in {manager.directory} (files kept): " + "; ".join(reasons)
        )

    @staticmethod
    def _check_layout(manager: ocp.CheckpointManager, step: int, abstract: Any) -> None:
        """Raise :class:`ModelMismatch` when the step's arrays are not the model's."""
        try:
            metadata = manager.item_metadata(step)
        except Exception:  # unreadable metadata: the restore itself will say so
            return
        if metadata is None:
            return
        problem = layout_mismatch(array_layout(metadata), array_layout(abstract))
        if problem:
            raise ModelMismatch(problem)

    def _verify(self, which: str, step: int, params: Any) -> dict | None:
        """Check the restored parameters against the manifest; return its extras."""
        path = self.manifest / f"{which}-{step}.json"
        if not path.exists():
            raise ValueError(f"no manifest for step {step} (a save that never finished)")
        manifest = json.loads(path.read_text())
        if params_sha256(params) != manifest["params_sha256"]:
            raise ValueError("parameters do not match the hash recorded at save time")
        extras = manifest.get("extras")
        if extras is None:
            return None
        return {k: np.asarray(v["values"], dtype=v["dtype"]) for k, v in extras.items()}

    def close(self) -> None:
        """Close the managers; a run that saved no step leaves no empty folders, a failed
        save no partial one (swept again here: a writer thread of the failed save may
        have added to it after the first sweep)."""
        self.last.close()
        self.best.close()
        if self._swept:
            self.remove_partial()
        if self._run_dir_fd is not None:
            os.close(self._run_dir_fd)
            self._run_dir_fd = None
        if jax.process_index() == 0:
            for folder in self._made:
                with contextlib.suppress(OSError):  # not empty, or already gone
                    folder.rmdir()
