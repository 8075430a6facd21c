"""Orbax checkpoints of the train state: the last few, and the best on validation."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxconv.train.state import TrainState


def _pytree(state: TrainState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats, "opt_state": state.opt_state,
            "step": state.step, "rng": state.rng}


class Checkpoints:
    """``run_dir/checkpoints/last`` keeps ``keep`` latest; ``.../best`` keeps the best."""

    def __init__(self, run_dir: Path, keep: int = 3):
        base = Path(run_dir).absolute() / "checkpoints"
        options = dict(enable_async_checkpointing=False, create=True)
        self.last = ocp.CheckpointManager(base / "last", options=ocp.CheckpointManagerOptions(max_to_keep=keep, **options))
        self.best = ocp.CheckpointManager(base / "best", options=ocp.CheckpointManagerOptions(max_to_keep=1, **options))
        self.best_metric = -np.inf

    def save(self, state: TrainState, *, metric: float | None = None) -> None:
        step = int(state.step)
        if self.last.latest_step() != step:
            self.last.save(step, args=ocp.args.StandardSave(_pytree(state)))
        if metric is not None and metric > self.best_metric:
            self.best_metric = metric
            if self.best.latest_step() != step:
                self.best.save(step, args=ocp.args.StandardSave(_pytree(state)))

    def latest_step(self) -> int | None:
        return self.last.latest_step()

    def restore(self, state: TrainState, step: int | None = None, which: str = "last") -> TrainState:
        manager = self.last if which == "last" else self.best
        step = manager.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _pytree(state))
        tree = manager.restore(step, args=ocp.args.StandardRestore(abstract))
        return state.replace(**tree)

    def close(self) -> None:
        self.last.close()
        self.best.close()
