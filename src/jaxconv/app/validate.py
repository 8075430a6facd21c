"""Config values checked before any work: each wrong value is one line naming its key.

Hydra's structured configs already refuse a wrong type or an unknown key; these checks
refuse well-typed values that cannot be right (a negative seed, a NaN learning rate, a
momentum of 1, a batch larger than the training set). The data-dependent ones run once
the dataset is loaded, still before anything is written.
"""

from __future__ import annotations

import math
import re
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


#: The library's argument names that are config keys under another name.
LIBRARY_KEYS = {
    "batch_size": "trainer.batch_size",
    "epochs": "trainer.epochs",
    "max_steps": "trainer.max_steps",
    "eval_every": "trainer.eval_every",
    "checkpoint_every": "trainer.checkpoint_every",
    "keep_checkpoints": "trainer.keep_checkpoints",
    "label_smoothing": "trainer.label_smoothing",
    "augment_shift": "data.augment_shift",
    "val_fraction": "data.val_fraction",
    "limit_train": "data.limit_train",
    "devices": "trainer.devices",
    "compute_dtype": "trainer.compute_dtype",
}


def as_config_error(err: ValueError) -> ConfigError:
    """A library ValueError ("`batch_size` (=0) must be >= 1") in the config's words
    ("trainer.batch_size (=0) must be >= 1")."""
    message = str(err)
    match = re.match(r"`([\w.]+)`", message)
    if match:
        key = LIBRARY_KEYS.get(match.group(1), match.group(1))
        message = key + message[match.end() :]
    return ConfigError(message.replace(" or None", " or null"))


def validate(cfg: DictConfig) -> None:
    """Reject wrong values before any work, naming the key.

    Values the library checks are checked by the library's own functions (the checks
    ``fit``, ``make_optimizer``, ``make_schedule`` and ``load_dataset`` make), their
    errors put in the config's words; the rest (finiteness, the backend, the model's
    target and dropout) here.
    """
    import jaxconv
    from jaxconv.app.train import fit_options  # the app's config -> FitOptions
    from jaxconv.data.datasets import check_dataset_args
    from jaxconv.train.loop import check_fit_options
    from jaxconv.train.optim import check_optimizer, check_schedule

    container = OmegaConf.to_container(cfg, resolve=True)
    for key in non_finite_floats({k: v for k, v in container.items() if k != "hydra"}):
        raise ConfigError(
            f"{key} (={OmegaConf.select(cfg, key.split('[')[0])}) must be a finite number"
        )
    o, s, d = cfg.optimizer, cfg.schedule, cfg.data
    try:
        check_fit_options(fit_options(cfg))
        check_optimizer(o.name, momentum=o.momentum, weight_decay=o.weight_decay,
                        clip_norm=o.clip_norm, b1=o.b1, b2=o.b2)  # fmt: skip
        check_schedule(s.name, o.lr, warmup_fraction=s.warmup_fraction,
                       final_fraction=s.final_fraction)  # fmt: skip
        check_dataset_args(d.name, d.val_fraction, d.limit_train)
    except ValueError as err:
        raise as_config_error(err) from err
    dropout = cfg.model.get("dropout", 0.0) if isinstance(cfg.model, DictConfig) else 0.0
    checks = [
        (
            cfg.conv_backend in jaxconv.backends(),
            f"conv_backend (={cfg.conv_backend!r}) must be one of {jaxconv.backends()}",
        ),
        ("_target_" in cfg.model, "model must name a `_target_` (e.g. jaxconv.models.CNN)"),
        (
            not isinstance(dropout, (int, float)) or _in(0, 1, dropout),
            f"model.dropout (={dropout}) must be in [0, 1)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    from jaxconv.app.tracking import check_installed

    check_installed(cfg)


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
