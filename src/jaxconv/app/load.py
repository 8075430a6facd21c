"""``jaxconv.load_run``: a finished (or stopped) run back from its directory, for
inference: the model, its variables, the config and a jitted, batched ``predict``.

Nothing in the run directory is written: the model is rebuilt from config.yaml (and the
input shape and class count result.json records), the checkpoint restored read-only and
checked against the parameter hash its manifest recorded.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jaxconv.app.build import build_model
from jaxconv.app.config import group_options
from jaxconv.data.datasets import DataOptions, dataset_from
from jaxconv.run_layout import RunDir, read_json
from jaxconv.train import Checkpoints, TrainState
from jaxconv.train.optim import OptimizerOptions, ScheduleOptions, optimizer_from, schedule_from
from jaxconv.train.state import create_state, ema_weights, variables_of, with_ema

CHECKPOINTS = ("last", "best")


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """A run loaded by :func:`load_run`.

    Attributes:
      model: the Linen or NNX module the run trained (rebuilt from its config).
      variables: ``{"params": ..., "batch_stats": ...}`` of the checkpoint (as nested
        dicts; for an NNX model, ``jaxconv.models.nnx.from_linen(model, variables)``
        loads them into the module).
      config: the run's resolved config (config.yaml).
      state: the restored :class:`~jaxconv.train.TrainState` (for
        :func:`jaxconv.train.evaluate`).
      checkpoint, step: which checkpoint, of which training step.
    """

    model: Any
    variables: dict
    config: DictConfig
    state: TrainState
    checkpoint: str
    step: int

    def predict(self, x: Any, batch_size: int = 512) -> np.ndarray:
        """Logits of the model in eval mode for a batch ``x`` (channels last, shaped as
        the training examples), computed ``batch_size`` rows at a time (one compilation:
        the last batch is padded)."""
        x = np.asarray(x, np.float32)
        if x.ndim < 2:
            raise ValueError(f"`x` must be a batch (N, *example_shape); got shape {x.shape}")
        rows = max(1, min(batch_size, len(x)))
        out = []
        for start in range(0, len(x), rows):
            part = x[start : start + rows]
            pad = rows - len(part)
            if pad:
                part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), part.dtype)])
            out.append(np.asarray(_logits(self.state, jnp.asarray(part)))[: rows - pad])
        return np.concatenate(out) if out else np.zeros((0,), np.float32)


@functools.partial(jax.jit)
def _logits(state: TrainState, x: jax.Array) -> jax.Array:
    return state.apply_fn(variables_of(state), x, train=False).astype(jnp.float32)


def load_run(run_dir: str | Path, checkpoint: str = "last") -> FinishedRun:
    """The model of ``run_dir`` with the weights of its ``checkpoint``: ``"last"`` (the
    weights result.json's test accuracy is of) or ``"best"`` (best on validation).

    Raises:
      FileNotFoundError: ``run_dir`` is not a jaxconv run directory.
      CheckpointError: it holds no usable checkpoint of that kind.
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"`checkpoint` (={checkpoint!r}) must be one of {CHECKPOINTS}")
    files = RunDir(run_dir)
    if not files.config.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a jaxconv run directory (it has no {files.config.name})"
        )
    cfg = OmegaConf.load(files.config)
    result = read_json(files.result) or {}
    num_classes, input_shape = _data_shape(cfg, result)
    model = build_model(cfg, num_classes, input_shape)
    state = create_state(model, np.zeros((1, *input_shape), np.float32),
                         _optimizer(cfg, result), cfg.seed, cfg.trainer.compute_dtype)  # fmt: skip
    state = with_ema(state, cfg.trainer.get("ema_decay", 0.0))
    ckpt = Checkpoints(files.path)
    try:
        state, _ = ckpt.restore(state, which=checkpoint, log=lambda message: None)
    finally:
        ckpt.close()
    state = ema_weights(state)  # a run that kept an average is evaluated with it
    variables = jax.device_get(variables_of(state))
    return FinishedRun(model, dict(variables), cfg, state, checkpoint, int(state.step))


def _data_shape(cfg: DictConfig, result: dict) -> tuple[int, tuple[int, ...]]:
    """The class count and one example's shape: from result.json, else from the data."""
    if "num_classes" in result and "input_shape" in result:
        return int(result["num_classes"]), tuple(result["input_shape"])
    data = dataset_from(group_options(cfg, DataOptions, "data"), split_seed=cfg.seed)
    return data.num_classes, tuple(data.x_train.shape[1:])


def _optimizer(cfg: DictConfig, result: dict):
    """The run's optimizer (the checkpoint holds its state; the schedule's length does
    not change that state's structure)."""
    opt = group_options(cfg, OptimizerOptions, "optimizer")
    total = int(result.get("steps") or cfg.trainer.max_steps or 1)
    return optimizer_from(
        opt, schedule_from(group_options(cfg, ScheduleOptions, "schedule"), opt, total)
    )
