"""Config values checked before any work: each wrong value is one line naming its key.

Hydra's structured configs already refuse a wrong type or an unknown key; these checks
refuse well-typed values that cannot be right (a negative seed, a NaN learning rate, a
momentum of 1, a batch larger than the training set). The data-dependent ones run once
the dataset is loaded, still before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A well-typed but wrong config value; reported in one line, exit status 2."""


def _in(lo: float, hi: float, value: Any, *, hi_open: bool = True) -> bool:
    return value is not None and lo <= value and (value < hi if hi_open else value <= hi)


def non_finite_floats(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of every NaN or infinite float in a (nested) config.

    >>> non_finite_floats({"optimizer": {"lr": float("inf"), "b1": 0.9}, "seed": 0})
    ['optimizer.lr']
    """
    bad = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            bad += non_finite_floats(value, name + ".")
        elif isinstance(value, (list, tuple)):
            bad += [
                f"{name}[{i}]"
                for i, v in enumerate(value)
                if isinstance(v, float) and not math.isfinite(v)
            ]
        elif isinstance(value, float) and not math.isfinite(value):
            bad.append(name)
    return bad


def validate(cfg: DictConfig) -> None:
    """Reject wrong values before any work, naming the key.

    (Over 60 lines: one row per checked key, kept as one readable table.)
    """
    import jaxconv
    from jaxconv.data import DATASETS
    from jaxconv.train.optim import OPTIMIZERS, SCHEDULES

    container = OmegaConf.to_container(cfg, resolve=True)
    for key in non_finite_floats({k: v for k, v in container.items() if k != "hydra"}):
        raise ConfigError(
            f"{key} (={OmegaConf.select(cfg, key.split('[')[0])}) must be a finite number"
        )
    t, o, s, d = cfg.trainer, cfg.optimizer, cfg.schedule, cfg.data
    dropout = cfg.model.get("dropout", 0.0) if isinstance(cfg.model, DictConfig) else 0.0
    checks = [
        (cfg.seed >= 0, f"seed (={cfg.seed}) must be >= 0"),
        (o.name in OPTIMIZERS, f"optimizer.name (={o.name!r}) must be one of {OPTIMIZERS}"),
        (s.name in SCHEDULES, f"schedule.name (={s.name!r}) must be one of {SCHEDULES}"),
        (o.lr > 0, f"optimizer.lr (={o.lr}) must be > 0"),
        (o.weight_decay >= 0, f"optimizer.weight_decay (={o.weight_decay}) must be >= 0"),
        (_in(0, 1, o.momentum), f"optimizer.momentum (={o.momentum}) must be in [0, 1)"),
        (_in(0, 1, o.b1), f"optimizer.b1 (={o.b1}) must be in [0, 1)"),
        (_in(0, 1, o.b2), f"optimizer.b2 (={o.b2}) must be in [0, 1)"),
        (
            o.clip_norm is None or o.clip_norm > 0,
            f"optimizer.clip_norm (={o.clip_norm}) must be > 0 or null",
        ),
        (
            _in(0, 1, s.warmup_fraction, hi_open=False),
            f"schedule.warmup_fraction (={s.warmup_fraction}) must be in [0, 1]",
        ),
        (
            _in(0, 1, s.final_fraction, hi_open=False),
            f"schedule.final_fraction (={s.final_fraction}) must be in [0, 1]",
        ),
        (t.batch_size >= 1, f"trainer.batch_size (={t.batch_size}) must be >= 1"),
        (
            t.max_steps is None or t.max_steps >= 1,
            f"trainer.max_steps (={t.max_steps}) must be >= 1 or null",
        ),
        (t.max_steps is not None or t.epochs >= 1, f"trainer.epochs (={t.epochs}) must be >= 1"),
        (
            t.eval_every is None or t.eval_every >= 1,
            f"trainer.eval_every (={t.eval_every}) must be >= 1 or null",
        ),
        (
            t.checkpoint_every is None or t.checkpoint_every >= 1,
            f"trainer.checkpoint_every (={t.checkpoint_every}) must be >= 1 or null",
        ),
        (t.keep_checkpoints >= 1, f"trainer.keep_checkpoints (={t.keep_checkpoints}) must be >= 1"),
        (
            _in(0, 1, t.label_smoothing),
            f"trainer.label_smoothing (={t.label_smoothing}) must be in [0, 1)",
        ),
        (
            cfg.conv_backend in jaxconv.backends(),
            f"conv_backend (={cfg.conv_backend!r}) must be one of {jaxconv.backends()}",
        ),
        (d.name in DATASETS, f"data.name (={d.name!r}) must be one of {DATASETS}"),
        (_in(0, 1, d.val_fraction), f"data.val_fraction (={d.val_fraction}) must be in [0, 1)"),
        (
            d.limit_train is None or d.limit_train >= 1,
            f"data.limit_train (={d.limit_train}) must be >= 1 or null",
        ),
        (d.augment_shift >= 0, f"data.augment_shift (={d.augment_shift}) must be >= 0"),
        ("_target_" in cfg.model, "model must name a `_target_` (e.g. jaxconv.models.CNN)"),
        (
            not isinstance(dropout, (int, float)) or _in(0, 1, dropout),
            f"model.dropout (={dropout}) must be in [0, 1)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def check_against_data(cfg: DictConfig, dataset) -> None:
    """The values that can only be checked against the loaded dataset."""
    n, spatial = len(dataset.x_train), dataset.x_train.shape[1:-1]
    if n == 0:
        raise ConfigError(
            f"the training split of {dataset.name} is empty "
            f"(data.limit_train={cfg.data.limit_train}, "
            f"data.val_fraction={cfg.data.val_fraction})"
        )
    if cfg.trainer.batch_size > n:
        raise ConfigError(
            f"trainer.batch_size (={cfg.trainer.batch_size}) must be <= the training set size "
            f"(={n} examples of {dataset.name})"
        )
    if spatial and cfg.data.augment_shift >= min(spatial):
        raise ConfigError(
            f"data.augment_shift (={cfg.data.augment_shift}) must be smaller than the input "
            f"length (={min(spatial)})"
        )
