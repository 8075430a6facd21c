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

import jaxconv
from jaxconv.app.build import fit_options
from jaxconv.app.config import group_options, unknown_keys
from jaxconv.app.errors import ConfigError, as_config_error
from jaxconv.app.tracking import check_installed, check_tracking_store
from jaxconv.data.datasets import DataOptions, check_data_options
from jaxconv.train.loop import check_fit_options
from jaxconv.train.optim import (
    OptimizerOptions,
    ScheduleOptions,
    check_optimizer_options,
    check_schedule_options,
)


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

    Values the library checks are checked by the library's own functions (the checks
    ``fit``, ``make_optimizer``, ``make_schedule`` and ``load_dataset`` make), their
    errors put in the config's words; the rest (finiteness, the backend, the model's
    target and dropout) here.
    """
    container = OmegaConf.to_container(cfg, resolve=True)
    for key, close in unknown_keys(container).items():
        hint = f" (did you mean {close}?)" if close else ""
        raise ConfigError(
            f"{key} is not a config key{hint}; `jaxconv-train --cfg job` prints them all"
        )
    for key in non_finite_floats({k: v for k, v in container.items() if k != "hydra"}):
        raise ConfigError(
            f"{key} (={OmegaConf.select(cfg, key.split('[')[0])}) must be a finite number"
        )
    _library_checks(cfg)
    dropout = cfg.model.get("dropout", 0.0) if isinstance(cfg.model, DictConfig) else 0.0
    checks = [
        (
            cfg.conv_backend in jaxconv.backends(),
            f"conv_backend (={cfg.conv_backend!r}) must be one of {jaxconv.backends()}",
        ),
        (
            "_target_" in cfg.model or "target" in cfg.model,
            "model must name a `_target_` (e.g. jaxconv.models.CNN), or `target` (model=custom)",
        ),
        (
            not isinstance(dropout, (int, float)) or _in(0, 1, dropout),
            f"model.dropout (={dropout}) must be in [0, 1)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    check_installed(cfg)
    check_tracking_store(cfg)


def _library_checks(cfg: DictConfig) -> None:
    """The checks the library's functions make, each given its group's options; an error
    (naming the function's argument) is put in the config's words."""
    optimizer = group_options(cfg, OptimizerOptions, "optimizer")
    schedule = group_options(cfg, ScheduleOptions, "schedule")
    checks = (
        ("trainer", lambda: check_fit_options(fit_options(cfg))),
        ("optimizer", lambda: check_optimizer_options(optimizer)),
        ("schedule", lambda: check_schedule_options(schedule, optimizer.lr)),
        ("data", lambda: check_data_options(group_options(cfg, DataOptions, "data"))),
    )
    for group, check in checks:
        try:
            check()
        except ValueError as err:
            raise as_config_error(err, group) from err
