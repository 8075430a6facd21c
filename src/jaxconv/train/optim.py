"""Optax optimizers and learning-rate schedules by name."""

from __future__ import annotations

import dataclasses

import optax

from jaxconv._options import keywords_for

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "one_cycle")


def planned_over_total(name: str) -> bool:
    """Whether the schedule ``name`` is laid out over the total number of steps: training
    it for longer than planned re-plans the rest of it, which no fresh run would do."""
    return name != "constant"


@dataclasses.dataclass
class OptimizerOptions:
    """The ``optimizer`` config group: :func:`make_optimizer`'s keywords, and the peak
    learning rate its schedule reaches (``lr``, given to :func:`make_schedule`)."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    clip_norm: float | None = None
    b1: float = 0.9
    b2: float = 0.999


@dataclasses.dataclass
class ScheduleOptions:
    """The ``schedule`` config group: :func:`make_schedule`'s keywords."""

    name: str = "constant"
    warmup_fraction: float = 0.05
    final_fraction: float = 0.0


def schedule_from(
    options: ScheduleOptions, optimizer: OptimizerOptions, total_steps: int
) -> optax.Schedule:
    """:func:`make_schedule` of the two groups' options."""
    return make_schedule(
        lr=optimizer.lr, total_steps=total_steps, **keywords_for(make_schedule, options)
    )


def optimizer_from(
    options: OptimizerOptions, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """:func:`make_optimizer` of the group's options (every field but ``lr`` is a keyword)."""
    return make_optimizer(schedule=schedule, **keywords_for(make_optimizer, options))


def check_optimizer_options(options: OptimizerOptions) -> None:
    """The checks :func:`optimizer_from` makes (errors name the fields)."""
    check_optimizer(**keywords_for(check_optimizer, options))


def check_schedule_options(options: ScheduleOptions, lr: float) -> None:
    """The checks :func:`schedule_from` makes for a peak learning rate ``lr``."""
    check_schedule(lr=lr, **keywords_for(check_schedule, options))


def check_schedule(
    name: str, lr: float, *, warmup_fraction: float = 0.05, final_fraction: float = 0.0
) -> None:
    """The checks :func:`make_schedule` makes, for callers that check a config first."""
    if not lr > 0:
        raise ValueError(f"`lr` (={lr}) must be > 0")
    if name not in SCHEDULES:
        raise ValueError(f"`name` (={name!r}) must be one of {SCHEDULES}")
    for key, value in (("warmup_fraction", warmup_fraction), ("final_fraction", final_fraction)):
        if not 0 <= value <= 1:
            raise ValueError(f"`{key}` (={value}) must be in [0, 1]")


def check_optimizer(
    name: str,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
) -> None:
    """The checks :func:`make_optimizer` makes, for callers that check a config first."""
    if name not in OPTIMIZERS:
        raise ValueError(f"`name` (={name!r}) must be one of {OPTIMIZERS}")
    if not weight_decay >= 0:
        raise ValueError(f"`weight_decay` (={weight_decay}) must be >= 0")
    for key, value in (("momentum", momentum), ("b1", b1), ("b2", b2)):
        if not 0 <= value < 1:
            raise ValueError(f"`{key}` (={value}) must be in [0, 1)")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"`clip_norm` (={clip_norm}) must be > 0 or None")


def make_schedule(
    name: str,
    lr: float,
    total_steps: int,
    *,
    warmup_fraction: float = 0.05,
    final_fraction: float = 0.0,
) -> optax.Schedule:
    """``lr`` over ``total_steps``: constant, cosine decay, linear warmup + cosine, one-cycle."""
    check_schedule(name, lr, warmup_fraction=warmup_fraction, final_fraction=final_fraction)
    if total_steps < 1:
        raise ValueError(f"the number of training steps (={total_steps}) must be >= 1")
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, total_steps, alpha=final_fraction)
    warmup = max(int(total_steps * warmup_fraction), 1)
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, lr, warmup, max(total_steps, warmup + 1), lr * final_fraction
        )
    return optax.cosine_onecycle_schedule(total_steps, lr, pct_start=max(warmup_fraction, 1e-3))


def make_optimizer(
    name: str,
    schedule: optax.Schedule,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
) -> optax.GradientTransformation:
    """An Optax chain: optional global-norm clipping, then the optimizer.

    ``weight_decay`` is decoupled for ``adamw`` and L2 (added to the gradient) for the
    others, as in PyTorch's optimizers.
    """
    check_optimizer(
        name, momentum=momentum, weight_decay=weight_decay, clip_norm=clip_norm, b1=b1, b2=b2
    )
    if name == "adamw":
        opt = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay)
    else:
        if name == "sgd":
            opt = optax.sgd(schedule)
        elif name == "momentum":
            opt = optax.sgd(schedule, momentum=momentum)
        elif name == "nesterov":
            opt = optax.sgd(schedule, momentum=momentum, nesterov=True)
        else:
            opt = optax.adam(schedule, b1=b1, b2=b2)
        if weight_decay:
            opt = optax.chain(optax.add_decayed_weights(weight_decay), opt)
    if clip_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
    return opt
