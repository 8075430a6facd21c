"""``fit`` and ``evaluate``: the training loop, usable from Python without Hydra."""

from __future__ import annotations

import csv
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxconv.data import Dataset, augment, batch_indices, steps_per_epoch
from jaxconv.data.batching import eval_batches
from jaxconv.train.checkpoint import Checkpoints
from jaxconv.train.signals import Interrupted
from jaxconv.train.state import TrainState, create_state, eval_step, make_train_step

METRICS_FIELDS = ("step", "epoch", "split", "loss", "accuracy", "images_per_s")


@dataclasses.dataclass
class History:
    """Every evaluation: one dict per row of ``metrics.csv``."""

    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def split(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["split"] == name]

    def last(self, name: str) -> dict[str, Any] | None:
        rows = self.split(name)
        return rows[-1] if rows else None


def evaluate(state: TrainState, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> dict[str, float]:
    """Mean loss and accuracy of ``state`` on ``(x, y)`` in eval mode."""
    if len(x) == 0:
        return {"loss": float("nan"), "accuracy": float("nan")}
    total_loss, correct = 0.0, 0
    for part in eval_batches(len(x), batch_size):
        loss, right = eval_step(state, jnp.asarray(x[part]), jnp.asarray(y[part]))
        total_loss += float(loss)
        correct += int(right)
    return {"loss": total_loss / len(x), "accuracy": correct / len(x)}


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRICS_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in METRICS_FIELDS})
    tmp.replace(path)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("step", "epoch"):
            row[key] = int(float(row[key]))
        for key in ("loss", "accuracy", "images_per_s"):
            row[key] = float(row[key]) if row[key] not in ("", None) else float("nan")
    return rows


class Diverged(RuntimeError):
    """Training produced a non-finite loss or non-finite parameters."""


class _Window:
    """Per-step training metrics since the last evaluation, in a fixed-size buffer that
    is checkpointed with the state: a resumed run averages exactly what an uninterrupted
    one would. It also remembers the first step whose loss was not finite."""

    def __init__(self, size: int):
        self.size = size
        self.first_nonfinite: tuple[int, float] | None = None
        self.reset()

    def reset(self) -> None:
        self.pending: list[tuple[int, dict]] = []
        self.loss = np.zeros(self.size, np.float32)
        self.accuracy = np.zeros(self.size, np.float32)
        self.count = 0
        self.images = 0

    def add(self, metrics: dict, images: int, step: int) -> None:
        self.pending.append((step, metrics))
        self.images += images

    def _flush(self) -> None:
        steps = [s for s, _ in self.pending]
        for step, m in zip(steps, jax.device_get([m for _, m in self.pending])):
            if self.first_nonfinite is None and not np.isfinite(m["loss"]):
                self.first_nonfinite = (step, float(m["loss"]))
            self.loss[self.count] = m["loss"]
            self.accuracy[self.count] = m["accuracy"]
            self.count += 1
        self.pending = []

    def check_finite(self, last_checkpoint: int | None) -> None:
        """Raise :class:`Diverged` if any loss so far was NaN or infinite."""
        self._flush()
        if self.first_nonfinite is not None:
            step, value = self.first_nonfinite
            kept = f"last finite checkpoint: step {last_checkpoint}" if last_checkpoint else "no checkpoint kept"
            raise Diverged(f"non-finite loss ({value}) at training step {step}; {kept}")

    def means(self) -> tuple[float, float]:
        self._flush()
        k = self.count
        return float(np.mean(self.loss[:k], dtype=np.float64)), float(np.mean(self.accuracy[:k], dtype=np.float64))

    def extras(self) -> dict:
        self._flush()
        return {"window_loss": self.loss.copy(), "window_accuracy": self.accuracy.copy(),
                "window_count": np.array([self.count], np.int32)}

    def load(self, extras: dict | None) -> None:
        if extras is None:
            return
        self.count = int(np.asarray(extras["window_count"])[0])
        size = self.count + self.size  # room for the rest of the window, whatever eval_every is now
        for name in ("loss", "accuracy"):
            saved = np.asarray(extras[f"window_{name}"], np.float32)[: self.count]
            buffer = np.zeros(size, np.float32)
            buffer[: self.count] = saved
            setattr(self, name, buffer)


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _save(ckpt: Checkpoints, state: TrainState, window: _Window, metric: float | None) -> None:
    """Checkpoint ``state`` unless training has diverged: a saved step is always finite."""
    window.check_finite(ckpt.latest_step())
    if not bool(_all_finite((state.params, state.batch_stats))):
        raise Diverged(f"non-finite parameters after training step {int(state.step)} "
                       f"(non-finite loss or gradient); last finite checkpoint: step {ckpt.latest_step()}")
    ckpt.save(state, metric=metric, extras=window.extras())


def refuse_to_overwrite(run_dir: Path) -> None:
    """A run directory that already holds checkpoints is continued, never overwritten."""
    existing = run_dir / "checkpoints" / "last"
    if existing.is_dir() and any(p.name.isdigit() for p in existing.iterdir()):
        raise FileExistsError(
            f"run directory {run_dir} already holds checkpoints: pass resume=True "
            "(trainer.resume=true) to continue it, or choose another directory"
        )


def fit(
    model: nn.Module,
    data: Dataset,
    optimizer: optax.GradientTransformation,
    *,
    epochs: int = 10,
    max_steps: int | None = None,
    batch_size: int = 128,
    eval_every: int | None = None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    resume: bool = False,
    progress: bool = True,
    augment_shift: int = 0,
    augment_flip: bool = False,
    label_smoothing: float = 0.0,
    should_stop: Callable[[], int | None] | None = None,
    on_start: Callable[[], None] | None = None,
) -> tuple[TrainState, History]:
    """Train ``model`` on ``data.x_train`` with ``optimizer``; evaluate on val as it goes.

    Data order is a pure function of ``(seed, epoch)`` and augmentation of ``(seed,
    step)``, so a resumed run sees the same batches as an uninterrupted one.

    Args:
      model: a flax Module called as ``model(x, train=...)``.
      data: a :class:`jaxconv.data.Dataset`.
      optimizer: an Optax transformation (see :func:`jaxconv.train.make_optimizer`).
      epochs: passes over the training set; ``max_steps`` wins when given.
      batch_size: examples per step (the last partial batch of an epoch is dropped).
      eval_every: steps between validation passes (default: once per epoch).
      run_dir: where ``metrics.csv`` and ``checkpoints/`` go (nothing written if None).
      checkpoint_every: steps between checkpoints (default: at evals and at the end).
      resume: continue from the latest checkpoint in ``run_dir``.
      progress: a tqdm bar (only when stderr is a terminal).
      augment_shift, augment_flip: random translation by up to ``augment_shift``
        samples per axis; horizontal flips (images only).

    Returns:
      The final state and the :class:`History` of evaluations.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` (={batch_size}) must be >= 1")
    n = len(data.x_train)
    per_epoch = steps_per_epoch(n, batch_size)
    total = max_steps if max_steps else epochs * per_epoch
    if total < 1:
        raise ValueError(f"training must take at least one step (epochs={epochs}, max_steps={max_steps})")
    eval_every = eval_every or per_epoch
    if run_dir is not None and not resume:
        refuse_to_overwrite(Path(run_dir))
    state = create_state(model, data.x_train, optimizer, seed)
    history = History()
    run_dir = Path(run_dir) if run_dir is not None else None
    ckpt = Checkpoints(run_dir, keep_checkpoints) if run_dir is not None else None
    window = _Window(eval_every)
    if resume and ckpt is not None and ckpt.latest_step() is not None:
        state, extras = ckpt.restore(state)
        window.load(extras)
        metrics_path = run_dir / "metrics.csv"
        if metrics_path.exists():
            history.rows = [r for r in read_metrics(metrics_path) if r["step"] <= int(state.step)]
        best = [r["accuracy"] for r in history.split("val")]
        ckpt.best_metric = max(best) if best else -np.inf
    if should_stop is not None and should_stop():  # asked to stop before anything was written
        raise Interrupted(should_stop(), None, False)
    if on_start is not None:
        on_start()
    train_step = make_train_step(label_smoothing)
    start = int(state.step)
    show = progress and sys.stderr.isatty()
    bar = tqdm(total=total, initial=start, disable=not show, unit="step", dynamic_ncols=True, desc=data.name)
    clock = time.perf_counter()
    try:
        for step in range(start, total):
            if should_stop is not None and should_stop():
                _stop(should_stop(), state, window, ckpt)
            epoch, in_epoch = divmod(step, per_epoch)
            idx = batch_indices(n, batch_size, seed, epoch, in_epoch)
            xb = augment(data.x_train[idx], shift=augment_shift, flip=augment_flip, seed=seed, step=step)
            state, metrics = train_step(state, jnp.asarray(xb), jnp.asarray(data.y_train[idx]))
            done = step + 1
            window.add(metrics, len(idx), done)
            if done % 25 == 0 or done == total:
                loss = float(metrics["loss"])  # the step's result is needed here anyway
                if not np.isfinite(loss):
                    window.check_finite(ckpt.latest_step() if ckpt else None)
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{float(metrics['accuracy']):.3f}",
                                img_s=f"{window.images / max(time.perf_counter() - clock, 1e-9):.0f}")
            bar.update(1)
            at_eval = done % eval_every == 0 or done == total
            at_checkpoint = checkpoint_every is None and at_eval or bool(checkpoint_every) and done % checkpoint_every == 0
            if at_eval:
                window.check_finite(ckpt.latest_step() if ckpt else None)
                seconds = time.perf_counter() - clock
                loss, accuracy = window.means()
                history.add(step=done, epoch=done // per_epoch, split="train", loss=loss, accuracy=accuracy,
                            images_per_s=window.images / seconds if seconds > 0 else float("nan"))
                val = evaluate(state, data.x_val, data.y_val) if len(data.x_val) else None
                if val is not None:
                    history.add(step=done, epoch=done // per_epoch, split="val", images_per_s="", **val)
                window.reset()
                clock = time.perf_counter()
                if ckpt is not None:
                    write_metrics(run_dir / "metrics.csv", history.rows)
            if ckpt is not None and (at_checkpoint or done == total):
                val_row = history.last("val")
                metric = val_row["accuracy"] if at_eval and val_row and val_row["step"] == done else None
                _save(ckpt, state, window, metric)
        window.check_finite(ckpt.latest_step() if ckpt else None)
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.close()
    return state, history


def _stop(signum: int, state: TrainState, window: _Window, ckpt: Checkpoints | None):
    """Checkpoint the whole state between two steps, then raise :class:`Interrupted`."""
    step = int(state.step)
    if ckpt is not None and step > 0 and ckpt.latest_step() != step:
        _save(ckpt, state, window, None)
    raise Interrupted(signum, step, ckpt is not None and step > 0 and ckpt.latest_step() == step)
