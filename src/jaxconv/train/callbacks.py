"""What :func:`~jaxconv.train.fit` calls as it trains, and the callbacks built on it.

A :class:`Callback` overrides the hooks it needs; every one does nothing here:

- :meth:`~Callback.on_start` once before the first step (the step a resumed run starts
  at, and the metrics rows up to it);
- :meth:`~Callback.on_step` after every optimizer step, with that step's metrics as
  device arrays (reading them waits for the step: do that rarely);
- :meth:`~Callback.on_eval` after every evaluation, with its metrics rows, before the
  checkpoint of that step is written;
- :meth:`~Callback.on_checkpoint` after a checkpoint is written;
- :meth:`~Callback.on_end` once training has ended (not when it was interrupted).

A callback stops training by setting :attr:`~Callback.stop_reason`: the loop writes a
checkpoint of that step and returns normally, the run's outcome ``ok``. What it must
remember across a resume, it returns from :meth:`~Callback.state_dict` (JSON values);
that goes into every checkpoint, and :meth:`~Callback.load_state_dict` gets it back, so
a resumed run's callbacks decide as the uninterrupted run's did. Under several
processes every process calls its callbacks alike, with the same evaluation rows.

The loggers (:class:`~jaxconv.train.loggers.Logger`) reach the loop as
:class:`LoggerCallback`; :class:`EarlyStopping` and :class:`BestMonitor` are callbacks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

Row = dict[str, Any]
MODES = ("min", "max")
SPLITS = ("train", "val")


class Callback:
    """The hooks :func:`~jaxconv.train.fit` calls (see the module docstring)."""

    #: set to a sentence saying why, to end training after this step
    stop_reason: str | None = None

    def on_start(self, step: int, rows: Sequence[Row]) -> None:
        """Training starts at ``step``; ``rows``: the run's metrics rows up to it."""

    def on_step(self, step: int, metrics: dict) -> None:
        """Optimizer step ``step`` (counted from 1) is done; ``metrics`` on the device."""

    def on_eval(self, step: int, rows: Sequence[Row], state: Any) -> None:
        """The evaluation after ``step``: its train and val rows, and the state."""

    def on_checkpoint(self, step: int, state: Any) -> None:
        """A checkpoint of ``step`` was written."""

    def on_end(self, state: Any, rows: Sequence[Row]) -> None:
        """Training ended at ``state.step`` (normally, or stopped by a callback)."""

    def state_dict(self) -> dict:
        """What a resume needs to continue as this callback would have (JSON values)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`'s value at the checkpoint resumed from."""


class LoggerCallback(Callback):
    """A :class:`~jaxconv.train.loggers.Logger` fed by the hooks: started with the rows
    so far, given every evaluation's rows and the parameters (its maker finishes it)."""

    def __init__(self, logger):
        self.logger = logger

    def on_start(self, step: int, rows: Sequence[Row]) -> None:
        self.logger.start(step, list(rows))

    def on_eval(self, step: int, rows: Sequence[Row], state: Any) -> None:
        self.logger.log(rows, state.params)


def parse_monitor(monitor: str, names: Sequence[str], has_val: bool = True) -> tuple[str, str]:
    """``"val/accuracy"`` as ``("val", "accuracy")``; one line for anything else.

    >>> parse_monitor("val/loss", ("loss", "accuracy"))
    ('val', 'loss')
    """
    split, _, name = str(monitor).partition("/")
    if split not in SPLITS or name not in names:
        raise ValueError(
            f"`monitor` (={monitor!r}) must be split/metric with split one of {SPLITS} and "
            f"metric one of {tuple(names)}"
        )
    if split == "val" and not has_val:
        raise ValueError(f"`monitor` (={monitor!r}) follows the validation split, which is empty")
    return split, name


def _value(rows: Sequence[Row], split: str, name: str) -> float | None:
    found = [r for r in rows if r.get("split") == split and name in r]
    return float(found[-1][name]) if found else None


@dataclasses.dataclass
class EarlyStoppingOptions:
    """``trainer.early_stopping``: stop once ``monitor`` (``"val/accuracy"``,
    ``"val/loss"``, ``"train/loss"``, ...) has not improved on its best by more than
    ``min_delta`` (in the direction ``mode``) for ``patience`` evaluations in a row.
    ``monitor`` None: no early stopping."""

    monitor: str | None = None
    mode: str = "max"
    patience: int = 5
    min_delta: float = 0.0


def check_early_stopping(o: EarlyStoppingOptions) -> None:
    if o.mode not in MODES:
        raise ValueError(f"`early_stopping.mode` (={o.mode!r}) must be one of {MODES}")
    if isinstance(o.patience, bool) or not isinstance(o.patience, int) or o.patience < 1:
        raise ValueError(f"`early_stopping.patience` (={o.patience!r}) must be an int >= 1")
    if not (math.isfinite(o.min_delta) and o.min_delta >= 0):
        raise ValueError(f"`early_stopping.min_delta` (={o.min_delta}) must be >= 0")


class EarlyStopping(Callback):
    """Stops training when the monitored value stops improving (see
    :class:`EarlyStoppingOptions`)."""

    def __init__(self, monitor: str = "val/loss", mode: str = "min", patience: int = 5,
                 min_delta: float = 0.0):  # fmt: skip
        check_early_stopping(EarlyStoppingOptions(monitor, mode, patience, min_delta))
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.split, self.name = str(monitor).partition("/")[::2]
        self.best: float | None = None
        self.best_step = 0
        self.bad = 0  # evaluations in a row without improvement

    def on_eval(self, step: int, rows: Sequence[Row], state: Any) -> None:
        value = _value(rows, self.split, self.name)
        if value is None:
            return
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.best_step, self.bad = value, step, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            self.stop_reason = (
                f"early stopping: {self.monitor} did not improve by more than {self.min_delta} "
                f"for {self.patience} evaluations (best {self.best:.6g} at step {self.best_step})"
            )

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad,
                "stop_reason": self.stop_reason}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step, self.bad = state["best"], state["best_step"], state["bad"]
        self.stop_reason = state.get("stop_reason")


@dataclasses.dataclass
class BestOptions:
    """``trainer.best``: what the best checkpoint follows. ``monitor`` None: validation
    accuracy when it is a metric, else the validation loss; ``mode`` None: ``max`` for
    accuracy, ``min`` for anything else."""

    monitor: str | None = None
    mode: str | None = None


def best_of(o: BestOptions, default: tuple[str, str], names: Sequence[str],
            has_val: bool) -> tuple[str, str, str]:  # fmt: skip
    """``(split, metric, mode)`` the best checkpoint follows (``default``: the
    objective's ``(metric, mode)`` on the validation split)."""
    if o.mode is not None and o.mode not in MODES:
        raise ValueError(f"`best.mode` (={o.mode!r}) must be one of {MODES} or None")
    if o.monitor is None:
        return "val", default[0], o.mode or default[1]
    split, name = parse_monitor(o.monitor, names, has_val)
    return split, name, o.mode or ("max" if name == "accuracy" else "min")


def options_of(cls: type, value: Any) -> Any:
    """``value`` as a ``cls`` (the config gives a dict; None: the defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"`{unknown[0]}` is not an option of {cls.__name__}")
        return cls(**value)
    raise ValueError(f"expected a {cls.__name__} or a dict, got {type(value).__name__}")
