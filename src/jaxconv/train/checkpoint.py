"""Orbax checkpoints of the train state: the last few, and the best on validation.

Orbax writes each step into a temporary directory and renames it when complete, so a
kill during a save never leaves a half-written step in place of a good one. On top of
that every save records the parameters' SHA-256 in ``checkpoints/manifest/<step>.json``;
a restore that cannot read a step, or reads parameters with another hash, says so and
falls back to the previous step.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxconv.train.state import TrainState, params_sha256


class CheckpointError(RuntimeError):
    """No readable checkpoint was found."""


def _pytree(state: TrainState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats, "opt_state": state.opt_state,
            "step": state.step, "rng": state.rng}


class Checkpoints:
    """``run_dir/checkpoints/last`` keeps ``keep`` latest; ``.../best`` keeps the best.

    ``extras`` is a dict of small numpy arrays saved in the step's manifest beside the
    state (the loop keeps its partial metrics window there, so a resumed run writes the
    same metrics.csv); float32 values survive the JSON round trip exactly.
    """

    def __init__(self, run_dir: Path, keep: int = 3):
        self.base = Path(run_dir).absolute() / "checkpoints"
        options = dict(enable_async_checkpointing=False, create=True)
        self.last = ocp.CheckpointManager(self.base / "last", options=ocp.CheckpointManagerOptions(max_to_keep=keep, **options))
        self.best = ocp.CheckpointManager(self.base / "best", options=ocp.CheckpointManagerOptions(max_to_keep=1, **options))
        self.manifest = self.base / "manifest"
        self.manifest.mkdir(parents=True, exist_ok=True)
        self.best_metric = -np.inf

    def _record(self, which: str, step: int, digest: str, extras: dict | None) -> None:
        path = self.manifest / f"{which}-{step}.json"
        tmp = path.with_suffix(".json.tmp")
        payload = {"step": step, "params_sha256": digest}
        if extras is not None:
            payload["extras"] = {k: {"dtype": str(np.asarray(v).dtype), "values": np.asarray(v).tolist()}
                                 for k, v in extras.items()}
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, path)

    def save(self, state: TrainState, *, metric: float | None = None, extras: dict | None = None) -> None:
        step = int(state.step)
        digest = params_sha256(state.params)
        tree = _pytree(state)
        if self.last.latest_step() != step:
            self.last.save(step, args=ocp.args.StandardSave(tree))
            self._record("last", step, digest, extras)
        if metric is not None and metric > self.best_metric:
            self.best_metric = metric
            if self.best.latest_step() != step:
                self.best.save(step, args=ocp.args.StandardSave(tree))
                self._record("best", step, digest, extras)

    def latest_step(self) -> int | None:
        return self.last.latest_step()

    def restore(self, state: TrainState, *, which: str = "last", log=None) -> tuple[TrainState, dict | None]:
        """The newest readable, uncorrupted checkpoint, restored into ``state``'s structure.

        Returns the state and the extras saved with it (None if there were none).
        """
        log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        manager = self.last if which == "last" else self.best
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _pytree(state))
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                tree = manager.restore(step, args=ocp.args.StandardRestore(abstract))
                extras = self._verify(which, step, tree["params"])
            except Exception as err:  # unreadable files, shape mismatches, a wrong hash
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                log(f"checkpoint at step {step} in {manager.directory} is unreadable or corrupt "
                    f"({first[:200]}); falling back to the previous one")
                continue
            return state.replace(**tree), extras
        raise CheckpointError(f"no readable checkpoint in {manager.directory}")

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
        self.last.close()
        self.best.close()
