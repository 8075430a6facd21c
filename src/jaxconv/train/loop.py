"""``fit`` and ``evaluate``: the training loop, usable from Python without Hydra."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxconv._options import option
from jaxconv.data import Dataset, steps_per_epoch, transforms
from jaxconv.data.batching import eval_batches
from jaxconv.data.datasets import check_dataset, check_labels, check_targets
from jaxconv.data.loader import StepBatch, TrainBatches
from jaxconv.run_layout import METRICS_FIELDS, RunDir, read_metrics, write_metrics  # noqa: F401  (re-exported)
from jaxconv.train import parallel
from jaxconv.train.callbacks import (
    BestOptions,
    Callback,
    EarlyStopping,
    EarlyStoppingOptions,
    LoggerCallback,
    best_of,
    check_early_stopping,
    options_of,
    parse_monitor,
)
from jaxconv.train.checkpoint import Checkpoints
from jaxconv.train.loggers import CsvLogger, Logger
from jaxconv.train.objectives import Objective, PerExample
from jaxconv.train.signals import Interrupted
from jaxconv.train.state import (
    TrainState,
    check_compute_dtype,
    check_ema_decay,
    create_state,
    ema_weights,
    make_eval_step,
    make_train_step,
    with_ema,
)


@dataclasses.dataclass
class History:
    """Every evaluation: one dict per row of ``metrics.csv``; ``stopped``: the step and
    reason when a callback ended training early (None when it ran to the end)."""

    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stopped: dict[str, Any] | None = None

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def split(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["split"] == name]

    def last(self, name: str) -> dict[str, Any] | None:
        rows = self.split(name)
        return rows[-1] if rows else None


def evaluate(
    state: TrainState,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 512,
    *,
    loss: PerExample | None = None,
    metrics: dict[str, PerExample] | None = None,
) -> dict[str, float]:
    """Mean loss and metrics of ``state`` on every example of ``(x, y)`` in eval mode:
    cross-entropy and accuracy, or ``loss`` and ``metrics`` as :func:`fit` takes them.
    A state that keeps a moving average of its weights (``ema_decay``) is evaluated
    with the average.

    On the state's mesh when it has one (as :func:`fit` returns it): each batch is
    sharded over the devices, the last one padded to the same shape (one compilation)
    and its padding masked out. With several processes every process passes the same
    ``(x, y)`` and holds only its rows of each batch.
    """
    return _evaluate(state, x, y, Objective.of(loss, metrics), batch_size)


def _evaluate(state, x, y, objective: Objective, batch_size: int = 512) -> dict[str, float]:
    state = ema_weights(state)
    if objective.class_labels:
        check_labels(x, y, split="evaluated")
    else:
        check_targets(x, y, split="evaluated")
    if len(x) == 0:
        return dict.fromkeys(objective.names, float("nan"))
    mesh = parallel.mesh_of(state.params)
    step = _eval_step(objective, mesh)
    ways = mesh.devices.size if mesh is not None else 1
    rows = -(-min(batch_size, len(x)) // ways) * ways  # every batch, padded
    totals = dict.fromkeys(objective.names, 0.0)
    for part in eval_batches(len(x), rows):
        xb, yb = x[part], y[part]
        mask = np.arange(rows) < len(xb)
        pad = rows - len(xb)
        xb, yb = (np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
                  for a in (xb, yb))  # fmt: skip
        if mesh is not None:
            mine = parallel.local_rows(rows, mesh)
            xb, yb, mask = (parallel.shard_batch(a[mine], mesh, rows) for a in (xb, yb, mask))
        sums = step(state, jnp.asarray(xb), jnp.asarray(yb), jnp.asarray(mask))
        for name, value in jax.device_get(sums).items():
            totals[name] += float(value)
    return {name: total / len(x) for name, total in totals.items()}


_EVAL_STEPS: dict = {}
_TRAIN_STEPS: dict = {}


def _train_step(objective: Objective, mesh, accumulate: int):
    """One jitted train step per objective, mesh and accumulation: a later ``fit`` of the
    same model and shapes reuses its compilation."""
    key = (objective, mesh, accumulate)
    if key not in _TRAIN_STEPS:
        _TRAIN_STEPS[key] = make_train_step(objective, mesh, accumulate)
    return _TRAIN_STEPS[key]


def _eval_step(objective: Objective, mesh):
    """One jit-compiled eval step per objective and mesh (the mesh fixes its shardings)."""
    if (objective, mesh) not in _EVAL_STEPS:
        _EVAL_STEPS[objective, mesh] = make_eval_step(objective, mesh)
    return _EVAL_STEPS[objective, mesh]


class Diverged(RuntimeError):
    """Training produced a non-finite loss or non-finite parameters."""


class _MetricsBuffer:
    """Per-step training metrics since the last evaluation, in a fixed-size buffer that
    is checkpointed with the state: a resumed run averages exactly what an uninterrupted
    one would. It also remembers the first step whose loss was not finite."""

    def __init__(self, size: int, objective: Objective):
        self.size, self.objective, self.names = size, objective, objective.names
        self.data_state: str | None = None  # the restored checkpoint's data iterator
        self.callbacks_state: str | None = None  # and its callbacks' states (JSON)
        self.first_nonfinite: tuple[int, float] | None = None
        self.reset()

    def reset(self) -> None:
        self.pending: list[tuple[int, dict]] = []
        self.window = {name: np.zeros(self.size, np.float32) for name in self.names}
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
            for name in self.names:
                self.window[name][self.count] = m[name]
            self.count += 1
        self.pending = []

    def check_finite(self, last_checkpoint: int | None) -> None:
        """Raise :class:`Diverged` if any loss so far was NaN or infinite."""
        self._flush()
        if self.first_nonfinite is not None:
            step, value = self.first_nonfinite
            kept = (
                f"last finite checkpoint: step {last_checkpoint}"
                if last_checkpoint
                else "no checkpoint kept"
            )
            raise Diverged(f"non-finite loss ({value}) at training step {step}; {kept}")

    def means(self) -> dict[str, float]:
        self._flush()
        k = self.count
        return {name: float(np.mean(v[:k], dtype=np.float64)) for name, v in self.window.items()}

    def extras(self) -> dict:
        self._flush()
        return {
            **{f"window_{name}": values.copy() for name, values in self.window.items()},
            "window_count": np.array([self.count], np.int32),
        }

    def load(self, extras: dict | None) -> None:
        if extras is None:
            return
        self.data_state = str(extras["data_state"]) if "data_state" in extras else None
        self.callbacks_state = str(extras["callbacks"]) if "callbacks" in extras else None
        saved = sorted(
            k[len("window_") :] for k in extras if k.startswith("window_") and k != "window_count"
        )
        if saved != sorted(self.names):
            raise ValueError(
                f"the checkpoint was trained with the metrics {', '.join(saved)}; this run "
                f"computes {', '.join(sorted(self.names))}: resume with the same `loss` and "
                "`metrics`"
            )
        self.count = int(np.asarray(extras["window_count"])[0])
        size = self.count + self.size  # room for the rest of the window, whatever eval_every is now
        for name in self.names:
            values = np.asarray(extras[f"window_{name}"], np.float32)[: self.count]
            self.window[name] = np.zeros(size, np.float32)
            self.window[name][: self.count] = values


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [
        jnp.isfinite(leaf).all()
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _save(
    ckpt: Checkpoints,
    state: TrainState,
    buffer: _MetricsBuffer,
    metric: float | None,
    batches: TrainBatches | None = None,
    hooks: Sequence[Callback] = (),
) -> None:
    """Checkpoint ``state`` (and the data iterator's position, and the callbacks' states)
    unless training has diverged: a saved step is always finite."""
    buffer.check_finite(ckpt.latest_step())
    if not bool(_all_finite((state.params, state.batch_stats))):
        raise Diverged(
            f"non-finite parameters after training step {int(state.step)} "
            f"(non-finite loss or gradient); last finite checkpoint: step {ckpt.latest_step()}"
        )
    extras = buffer.extras()
    if batches is not None:
        extras["data_state"] = np.asarray(batches.state())
    if hooks:
        extras["callbacks"] = np.asarray(json.dumps([h.state_dict() for h in hooks]))
    ckpt.save(state, metric=metric, extras=extras)
    for hook in hooks:
        hook.on_checkpoint(int(state.step), state)


def refuse_to_overwrite(run_dir: Path) -> None:
    """A run directory that already holds checkpoints is continued, never overwritten."""
    if RunDir(run_dir).has_checkpoints():
        raise FileExistsError(
            f"run directory {run_dir} already holds checkpoints: pass resume=True "
            "(trainer.resume=true) to continue it, or choose another directory"
        )


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How :func:`fit` trains (every field is also a keyword argument of :func:`fit`).

    It is also ``jaxconv-train``'s schema of the ``trainer`` group (and of ``seed`` and
    ``data.augment_*``): each field's metadata (:func:`jaxconv._options.option`) gives
    its config key and whether a resume may change it. A new option is one field here.

    Attributes:
      epochs: passes over the training set; ``max_steps`` wins when given.
      max_steps: total optimizer steps.
      batch_size: examples per step (the last partial batch of an epoch is dropped).
      eval_every: steps between validation passes (default: once per epoch).
      seed: parameters, dropout, data order and augmentation all follow from it.
      checkpoint_every: steps between checkpoints (default: at evals and at the end).
      keep_checkpoints: how many of the latest checkpoints stay on disk.
      resume: continue from the latest checkpoint in ``run_dir``.
      progress: a tqdm bar (only when stderr is a terminal).
      augment_shift, augment_flip: random translation by up to ``augment_shift``
        samples per axis; horizontal flips (images only).
      workers: processes computing the batches ahead (Grain's ``mp_prefetch``); 0: the
        calling process. The batches are the same whatever it is.
      transforms: per-example augmentations, ``[{"name": "random_crop", "padding": 4},
        {"name": "hflip"}, ...]`` (:mod:`jaxconv.data.transforms`).
      mix, mix_alpha: ``"mixup"`` or ``"cutmix"`` (None: neither), ``lam ~ Beta(alpha,
        alpha)``: each batch mixed with a permutation of itself, the labels mixed in the
        (default) loss.
      label_smoothing: of the cross-entropy targets.
      devices: how many of each process's local devices the batch is split over
        (``"all"``: every one; see :mod:`jaxconv.train.parallel`). ``batch_size`` is
        the global batch and must be divisible by the total device count.
      compute_dtype: ``"float32"`` or ``"bfloat16"``: what the layers compute in;
        parameters, optimizer state and the loss stay float32.
      ema_decay: keep an exponential moving average of the weights (parameters and
        BatchNorm statistics) with this decay; evaluations and the best checkpoint are
        then of the average (0: none).
      accumulate_steps: split each batch into this many micro-batches whose gradients
        are averaged before one optimizer step (see
        :func:`~jaxconv.train.state.make_train_step`).
      early_stopping: an :class:`~jaxconv.train.callbacks.EarlyStoppingOptions` (or its
        dict): stop when ``monitor`` stops improving.
      best: a :class:`~jaxconv.train.callbacks.BestOptions` (or its dict): what the best
        checkpoint follows.
    """

    epochs: int = option(10, resume="extend")
    max_steps: int | None = option(None, resume="extend")
    batch_size: int = 128
    eval_every: int | None = None
    seed: int = option(0, key="seed")
    checkpoint_every: int | None = option(
        None, resume="free", why="how often checkpoints are written"
    )
    keep_checkpoints: int = option(3, resume="free", why="how many checkpoints are kept")
    resume: bool = option(False, resume="free", why="how the command starts")
    progress: bool = option(True, resume="free", why="the progress bar")
    augment_shift: int = option(0, key="data.augment_shift")
    augment_flip: bool = option(False, key="data.augment_flip")
    workers: int = option(
        0, key="data.workers", resume="free", why="how many processes compute the batches"
    )
    transforms: list | None = option(None, key="data.transforms")
    mix: str | None = option(None, key="data.mix")
    mix_alpha: float = option(0.2, key="data.mix_alpha")
    label_smoothing: float = 0.0
    devices: int | str = option(
        "all",
        resume="free",
        why="the topology (recorded in result.json; numbers agree to rounding)",
    )
    compute_dtype: str = "float32"
    ema_decay: float = 0.0
    accumulate_steps: int = 1
    early_stopping: EarlyStoppingOptions = option(default_factory=EarlyStoppingOptions)
    best: BestOptions = option(default_factory=BestOptions)


def check_fit_options(o: FitOptions, names: Sequence[str] = Objective().names) -> None:
    """The checks :func:`fit` makes before anything else, for callers that check first
    (``names``: the metrics the loop computes, which a monitor may follow)."""
    at_least_one = [("batch_size", o.batch_size), ("keep_checkpoints", o.keep_checkpoints)]
    at_least_one += [
        (k, v)
        for k, v in (
            ("max_steps", o.max_steps),
            ("eval_every", o.eval_every),
            ("checkpoint_every", o.checkpoint_every),
            ("accumulate_steps", o.accumulate_steps),
        )
        if v is not None
    ]
    if o.max_steps is None:
        at_least_one.append(("epochs", o.epochs))
    for key, value in at_least_one:
        if not value >= 1:
            raise ValueError(f"`{key}` (={value}) must be >= 1")
    if not o.seed >= 0:
        raise ValueError(f"`seed` (={o.seed}) must be >= 0")
    if isinstance(o.workers, bool) or not isinstance(o.workers, int) or o.workers < 0:
        raise ValueError(f"`workers` (={o.workers!r}) must be an int >= 0")
    transforms.from_config(o.transforms)  # a bad name or argument: one line
    transforms.mix_from_config(o.mix, o.mix_alpha)
    if not o.augment_shift >= 0:
        raise ValueError(f"`augment_shift` (={o.augment_shift}) must be >= 0")
    if not 0 <= o.label_smoothing < 1:
        raise ValueError(f"`label_smoothing` (={o.label_smoothing}) must be in [0, 1)")
    check_ema_decay(o.ema_decay)
    if o.batch_size % o.accumulate_steps:
        raise ValueError(f"`accumulate_steps` (={o.accumulate_steps}) must divide `batch_size` "
                         f"(={o.batch_size}) into equal micro-batches")  # fmt: skip
    early = options_of(EarlyStoppingOptions, o.early_stopping)
    check_early_stopping(early)
    for key, monitor in (("early_stopping", early.monitor), ("best", _best(o).monitor)):
        if monitor is not None:
            try:
                parse_monitor(monitor, names)
            except ValueError as err:
                raise ValueError(f"`{key}.{str(err)[1:]}") from None
    parallel.check_devices(o.devices)
    check_compute_dtype(o.compute_dtype)


def _best(o: FitOptions) -> BestOptions:
    return options_of(BestOptions, o.best)


def total_steps(n_train: int, options: FitOptions) -> int:
    """The steps a run takes: ``max_steps``, else ``epochs`` passes of full batches."""
    return (
        options.max_steps
        if options.max_steps
        else options.epochs * steps_per_epoch(n_train, options.batch_size)
    )


def fit(
    model: nn.Module,
    data: Dataset,
    optimizer: optax.GradientTransformation,
    options: FitOptions | None = None,
    *,
    run_dir: str | Path | None = None,
    should_stop: Callable[[], int | None] | None = None,
    on_start: Callable[[], None] | None = None,
    loggers: Sequence[Logger] = (),
    loss: PerExample | None = None,
    metrics: dict[str, PerExample] | None = None,
    callbacks: Sequence[Callback] = (),
    **option_values: Any,
) -> tuple[TrainState, History]:
    """Train ``model`` on ``data.x_train`` with ``optimizer``; evaluate on val as it goes.

    Data order is a pure function of ``(seed, epoch)`` and augmentation of ``(seed,
    step)``, so a resumed run sees the same batches as an uninterrupted one. Each batch is
    split over ``devices`` and the result is that of one device on the whole batch; under
    ``jax.distributed`` every process calls ``fit`` alike and loads its rows of each batch.

    Args:
      model: a Flax Linen or NNX module, called as ``model(x)``, or ``model(x,
        train=...)`` when its ``__call__`` takes ``train``.
      data: a :class:`jaxconv.data.Dataset`; optimizer: an Optax transformation.
      options: a :class:`FitOptions`; its fields may also be given as keywords, which win
        (``fit(model, data, opt, max_steps=100, batch_size=64)``).
      run_dir: where ``metrics.csv`` and ``checkpoints/`` go (nothing written if None).
      should_stop: polled between steps; when it returns a signal number, the state is
        checkpointed and :class:`~jaxconv.train.Interrupted` raised.
      on_start: called once the state is ready (restored on resume), before the first
        step: a caller that writes files of its own waits for it.
      loggers: :class:`~jaxconv.train.loggers.Logger` s started after ``on_start`` and fed
        every evaluation's rows on process 0 (a metrics.csv one is added with
        ``run_dir``); the caller finishes them.
      callbacks: :class:`~jaxconv.train.callbacks.Callback` s, called on every process;
        their states go into every checkpoint and come back on resume. One that sets
        ``stop_reason`` ends training (``History.stopped`` says where and why).
      loss, metrics: ``loss(outputs, targets)`` and ``{name: fn(outputs, targets)}``,
        each one value per example (:mod:`jaxconv.train.objectives`); default
        cross-entropy on class indices and ``{"accuracy": ...}``.

    Returns the final state and the :class:`History` of evaluations; raises
    :class:`Diverged` when a loss or a parameter became NaN or infinite (never saved).
    """
    o = dataclasses.replace(options or FitOptions(), **option_values)
    objective = Objective.of(loss, metrics, o.label_smoothing)
    checked = _checked(data, o, run_dir, objective, callbacks)
    return _fit(model, data, optimizer, o, objective, checked, run_dir, should_stop, on_start,
                loggers)  # fmt: skip


def _fit(model, data, optimizer, o, objective, checked, run_dir, should_stop, on_start, loggers):
    """:func:`fit` once its arguments are checked."""
    total, mesh, best, hooks = checked
    run_dir = Path(run_dir) if run_dir is not None else None
    ckpt = Checkpoints(run_dir, o.keep_checkpoints) if run_dir is not None else None
    size = o.eval_every or steps_per_epoch(len(data.x_train), o.batch_size)
    buffer = _MetricsBuffer(size, objective)  # and what the steps compute
    initial = create_state(model, data.x_train, optimizer, o.seed, o.compute_dtype)
    stop = _stop_poll(should_stop)
    state, history = _restored(parallel.replicate(with_ema(initial, o.ema_decay), mesh), ckpt,
                               buffer, o.resume, stop, best, hooks)  # fmt: skip
    if on_start is not None:
        on_start()
    hooks += [LoggerCallback(logger) for logger in _primary_loggers(loggers, run_dir)]
    for hook in hooks:
        hook.on_start(int(state.step), history.rows)
    step = _train_step(objective, mesh, o.accumulate_steps)
    loop = _Loop(data, o, total, buffer, ckpt, history, run_dir, step, int(state.step), mesh,
                 hooks, best)  # fmt: skip
    return loop.run(state, stop), history


def _early_stopping(o: FitOptions, objective: Objective, has_val: bool) -> list[Callback]:
    es = options_of(EarlyStoppingOptions, o.early_stopping)
    if es.monitor is None:
        return []
    parse_monitor(es.monitor, objective.names, has_val)
    return [EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta)]


def _checked(data: Dataset, o: FitOptions, run_dir, objective: Objective, callbacks):
    """The checks :func:`fit` makes before it builds anything; the total steps, the mesh,
    what the best checkpoint follows and the callbacks (early stopping's added)."""
    check_fit_options(o, objective.names)
    check_dataset(data, class_labels=objective.class_labels)
    if o.mix and not objective.class_labels:
        raise ValueError("`mix` mixes class labels: it needs the default loss (no `loss=`)")
    total = total_steps(len(data.x_train), o)
    if total < 1:
        raise ValueError(
            f"training must take at least one step (epochs={o.epochs}, max_steps={o.max_steps})"
        )
    if run_dir is not None and not o.resume:
        refuse_to_overwrite(Path(run_dir))
    mesh = parallel.data_mesh(o.devices)
    rows = min(o.batch_size, len(data.x_train))
    parallel.check_batch(rows, mesh)
    ways = mesh.devices.size if mesh is not None else 1
    if o.accumulate_steps > 1 and rows % (o.accumulate_steps * ways):
        raise ValueError(f"`accumulate_steps` (={o.accumulate_steps}) times the {ways} devices "
                         f"must divide the batch of {rows} rows: every device holds its rows "
                         "of each micro-batch")  # fmt: skip
    has_val = len(data.x_val) > 0
    best = best_of(_best(o), objective.best, objective.names, has_val)
    return total, mesh, best, [*callbacks, *_early_stopping(o, objective, has_val)]


def _primary_loggers(loggers: Sequence[Logger], run_dir: Path | None) -> list[Logger]:
    """The loggers this process feeds (none but process 0's), with metrics.csv's."""
    if not parallel.is_primary():
        return []
    active = list(loggers)
    if run_dir is not None and not any(isinstance(lg, CsvLogger) for lg in active):
        active.insert(0, CsvLogger(RunDir(run_dir).metrics))
    return active


def _stop_poll(should_stop: Callable[[], int | None] | None) -> Callable[[Any], int | None]:
    """``should_stop`` as the loop polls it, given the latest state: with several
    processes, :class:`~jaxconv.train.parallel.AgreedStop` (all stop at one step)."""
    if should_stop is None:
        return lambda state: None
    if jax.process_count() > 1:
        return parallel.AgreedStop(should_stop)
    return lambda state: should_stop()


def _restored(state: TrainState, ckpt: Checkpoints | None, buffer: _MetricsBuffer, resume: bool,
              stop, best, hooks) -> tuple[TrainState, History]:  # fmt: skip
    """:func:`_restore`, then :class:`Interrupted` if asked to stop before anything was
    written; a refused resume closes the checkpoints (no folder the managers made stays)."""
    try:
        state, history = _restore(state, ckpt, buffer, resume, best)
        _load_hooks(hooks, buffer.callbacks_state)
        signum = stop(state)
        if signum:
            raise Interrupted(signum, None, False)
    except BaseException:
        if ckpt is not None:
            ckpt.close()
        raise
    return state, history


def _load_hooks(hooks: Sequence[Callback], saved: str | None) -> None:
    """The callbacks' states as the checkpoint resumed from holds them."""
    if saved is None:
        return
    states = json.loads(saved)
    if len(states) != len(hooks):
        raise ValueError(
            f"the checkpoint holds the states of {len(states)} callback(s); this run has "
            f"{len(hooks)}: resume with the same callbacks and early stopping"
        )
    for hook, value in zip(hooks, states):
        hook.load_state_dict(value)


def _restore(state: TrainState, ckpt: Checkpoints | None, buffer: _MetricsBuffer, resume: bool,
             best: tuple[str, str, str]):  # fmt: skip
    """The state to start from (the newest usable checkpoint on resume) and the history
    of evaluations up to it."""
    history = History()
    if not (resume and ckpt is not None and ckpt.latest_step() is not None):
        return state, history
    state, extras = ckpt.restore(state)
    buffer.load(extras)
    metrics_path = RunDir(ckpt.base.parent).metrics
    if metrics_path.exists():  # read once: the loggers start from these rows
        history.rows = [r for r in read_metrics(metrics_path) if r["step"] <= int(state.step)]
    values = [_best_value(r, best) for r in history.split(best[0])]
    ckpt.best_metric = max(values) if values else -np.inf
    return state, history


def _best_value(row: dict, best: tuple[str, str, str]) -> float:
    """A row's value for the best checkpoint (``best``: split, metric, mode), larger
    being better."""
    _, name, mode = best
    return row[name] if mode == "max" else -row[name]


class _Loop:
    """One training step after another: the batch, the step, the progress bar, the
    divergence check, the evaluations and the checkpoints."""

    def __init__(self, data, options, total, buffer, ckpt, history, run_dir, train_step, start,
                 mesh, hooks, best):  # fmt: skip
        self.data, self.o, self.total, self.buffer = data, options, total, buffer
        self.ckpt, self.history, self.run_dir, self.train_step = ckpt, history, run_dir, train_step
        self.mesh, self.primary, self.hooks, self.best = mesh, parallel.is_primary(), hooks, best
        # the callbacks whose states are checkpointed: every process's (not the loggers)
        self.stateful = [h for h in hooks if not isinstance(h, LoggerCallback)]
        self.objective = buffer.objective
        self.per_epoch = steps_per_epoch(len(data.x_train), options.batch_size)
        self.eval_every = options.eval_every or self.per_epoch
        show = options.progress and sys.stderr.isatty() and self.primary
        self.bar = tqdm(
            total=total,
            initial=start,
            disable=not show,
            unit="step",
            dynamic_ncols=True,
            desc=data.name,
        )
        self.clock = time.perf_counter()
        self.batches = _train_batches(data, options, total, mesh)

    def run(self, state: TrainState, stop: Callable[[Any], int | None]) -> TrainState:
        """Every step from the state's to the last; stop (checkpointed) when asked."""
        try:
            self.batches.start(int(state.step), self.buffer.data_state)
            for step in range(int(state.step), self.total):
                if self._stopped(int(state.step)):
                    break
                signum = stop(state)  # polled once: with processes, each poll agrees
                if signum:
                    _stop(signum, state, self.buffer, self.ckpt, self.batches, self.stateful)
                state = self.step(state, step)
            self.buffer.check_finite(self.ckpt.latest_step() if self.ckpt else None)
            for hook in self.hooks:
                hook.on_end(state, self.history.rows)
        finally:
            self.batches.close()
            self.bar.close()
            if self.ckpt is not None:
                self.ckpt.close()
        return state

    def _stopped(self, step: int) -> bool:
        """Whether a callback asked to stop (after ``step``): recorded in the history."""
        reason = next((h.stop_reason for h in self.stateful if h.stop_reason), None)
        if reason is not None and self.history.stopped is None:
            self.history.stopped = {"step": step, "reason": reason}
        return reason is not None

    def step(self, state: TrainState, step: int) -> TrainState:
        o = self.o
        x, y = self.batches.next()  # step's global batch, sharded (this process's rows)
        state, metrics = self.train_step(state, x, y)
        done = step + 1
        for hook in self.hooks:
            hook.on_step(done, metrics)
        self.buffer.add(metrics, min(o.batch_size, len(self.data.x_train)), done)
        if done % 25 == 0 or done == self.total:
            self._show(metrics)
        self.bar.update(1)
        at_eval = done % self.eval_every == 0 or done == self.total
        if at_eval:
            self._evaluate(state, done)
        every = o.checkpoint_every
        stopping = any(h.stop_reason for h in self.stateful)  # set at this step or before
        if self.ckpt is not None and (
            (every is None and at_eval)
            or (every and done % every == 0)
            or done == self.total
            or stopping
        ):
            row = self.history.last(self.best[0])
            metric = (
                _best_value(row, self.best) if at_eval and row and row["step"] == done else None
            )
            _save(self.ckpt, state, self.buffer, metric, self.batches, self.stateful)
        return state

    def _show(self, metrics) -> None:
        loss = float(metrics["loss"])  # the step's result is needed here anyway
        if not np.isfinite(loss):
            self.buffer.check_finite(self.ckpt.latest_step() if self.ckpt else None)
        rate = self.buffer.images / max(time.perf_counter() - self.clock, 1e-9)
        shown = {"acc" if k == "accuracy" else k: f"{float(v):.3g}" for k, v in metrics.items()}
        self.bar.set_postfix(**shown, img_s=f"{rate:.0f}")

    def _evaluate(self, state: TrainState, done: int) -> None:
        self.buffer.check_finite(self.ckpt.latest_step() if self.ckpt else None)
        seconds = time.perf_counter() - self.clock
        epoch = done // self.per_epoch
        before = len(self.history.rows)
        self.history.add(
            step=done,
            epoch=epoch,
            split="train",
            **self.buffer.means(),
            images_per_s=self.buffer.images / seconds if seconds > 0 else float("nan"),
        )
        if len(self.data.x_val):
            val = _evaluate(state, self.data.x_val, self.data.y_val, self.objective)
            self.history.add(step=done, epoch=epoch, split="val", images_per_s="", **val)
        for hook in self.hooks:
            hook.on_eval(done, self.history.rows[before:], state)
        self.buffer.reset()
        self.clock = time.perf_counter()


def _stop(signum: int, state: TrainState, buffer: _MetricsBuffer, ckpt: Checkpoints | None,
          batches: TrainBatches, hooks: Sequence[Callback]):  # fmt: skip
    """Checkpoint the whole state between two steps, then raise :class:`Interrupted`."""
    step = int(state.step)
    if ckpt is not None and step > 0 and ckpt.latest_step() != step:
        _save(ckpt, state, buffer, None, batches, hooks)
    raise Interrupted(signum, step, ckpt is not None and step > 0 and ckpt.latest_step() == step)


def _train_batches(data: Dataset, o: FitOptions, total: int, mesh) -> TrainBatches:
    """Every step's batch on Grain (:mod:`jaxconv.data.loader`): this process's rows of
    each global batch, augmented, placed on the mesh with the batch sharding."""
    rows = min(o.batch_size, len(data.x_train))  # a global batch
    mine = parallel.local_rows(rows, mesh)
    first, count = mine.start, mine.stop - mine.start
    pipeline = transforms.from_config(o.transforms)
    mix = transforms.mix_from_config(o.mix, o.mix_alpha)
    batches = StepBatch(data.x_train, data.y_train, o.batch_size, o.seed, (first, count),
                        o.augment_shift, o.augment_flip, pipeline, mix,
                        data.num_classes)  # fmt: skip

    def place(x, y):
        return parallel.shard_batch(x, mesh, rows), parallel.shard_batch(y, mesh, rows)

    return TrainBatches(batches, total, workers=o.workers, place=place)
