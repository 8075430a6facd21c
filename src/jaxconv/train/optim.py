"""Optax optimizers and learning-rate schedules by name: the presets, or any Optax
function by its name with its own keywords."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import optax

from jaxconv._options import keywords_for, rest_of_group

#: Optimizers with jaxconv's defaults (b1, b2 and momentum 0.9, 0.999, 0.9; decay L2 but
#: for adamw, as in PyTorch). Any other name is an Optax function taking ``learning_rate``.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "one_cycle")
DECAY_MASKS = ("all", "kernels")
#: What the presets call, for the keywords passed through to it.
_PRESET_FUNCTIONS = {"sgd": "sgd", "momentum": "sgd", "nesterov": "sgd", "adam": "adam",
                     "adamw": "adamw"}  # fmt: skip
#: An Optax schedule's arguments filled in when not given: the peak learning rate, and
#: the run's total steps.
_LR_ARGUMENTS = ("init_value", "peak_value", "value")
_STEP_ARGUMENTS = ("decay_steps", "transition_steps", "total_steps")


def planned_over_total(name: str) -> bool:
    """Whether the schedule ``name`` is laid out over the total number of steps: training
    it for longer than planned re-plans the rest of it, which no fresh run would do (an
    Optax schedule is when jaxconv fills in its length)."""
    if name in SCHEDULES:
        return name != "constant"
    try:
        return any(a in _STEP_ARGUMENTS for a in _parameters(optax_function(name, "schedule")))
    except ValueError:
        return True


@dataclasses.dataclass
class OptimizerOptions:
    """The ``optimizer`` config group: :func:`make_optimizer`'s keywords, and the peak
    learning rate its schedule reaches (``lr``, given to :func:`make_schedule`).

    ``b1``, ``b2``, ``momentum``: None is the optimizer's own default (a preset's is
    jaxconv's; see :data:`OPTIMIZERS`). ``keywords``: the group's other keys
    (``+optimizer.eps=1e-6``), passed to the Optax function."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    decay_mask: str = "all"
    momentum: float | None = None
    clip_norm: float | None = None
    b1: float | None = None
    b2: float | None = None
    keywords: dict = rest_of_group()


@dataclasses.dataclass
class ScheduleOptions:
    """The ``schedule`` config group: :func:`make_schedule`'s keywords (``keywords``: the
    group's other keys, passed to an Optax schedule function)."""

    name: str = "constant"
    warmup_fraction: float = 0.05
    final_fraction: float = 0.0
    keywords: dict = rest_of_group()


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


def optax_function(name: str, kind: str = "optimizer") -> Callable:
    """The Optax function ``name`` (``"lion"``, ``"contrib.prodigy"``, ...): an optimizer
    takes ``learning_rate``, a schedule returns a function of the step. One line listing
    what exists for a name Optax does not have."""
    found: Any = optax
    for part in name.split("."):
        found = getattr(found, part, None) if part and not part.startswith("_") else None
    wanted = _is_optimizer if kind == "optimizer" else _is_schedule
    if found is None or not wanted(found):
        presets = OPTIMIZERS if kind == "optimizer" else SCHEDULES
        raise ValueError(
            f"`name` (={name!r}) is neither a preset {presets} nor an Optax {kind}; Optax "
            f"has {', '.join(optax_names(kind))}"
        )
    return found


def optax_names(kind: str = "optimizer") -> list[str]:
    """The Optax functions :func:`optax_function` accepts, ``contrib.`` ones included."""
    wanted = _is_optimizer if kind == "optimizer" else _is_schedule
    names = [n for n in dir(optax) if not n.startswith("_") and wanted(getattr(optax, n))]
    names += [f"contrib.{n}" for n in dir(optax.contrib)
              if not n.startswith("_") and wanted(getattr(optax.contrib, n))]  # fmt: skip
    return names


def _parameters(function: Callable) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return {}


#: Optax functions that take ``learning_rate`` but are not optimizers ``fit`` can step
#: (their update needs the loss or per-example gradients), or are deprecated.
_NOT_STEPPABLE = ("lbfgs", "contrib.momo", "contrib.momo_adam", "contrib.dpsgd",
                  "contrib.sophia", "optimistic_adam")  # fmt: skip


def _is_optimizer(obj: Any) -> bool:
    if not inspect.isfunction(obj) or obj.__name__.startswith("scale_by"):
        return False
    name = obj.__name__ if obj.__module__.startswith("optax._src") else f"contrib.{obj.__name__}"
    return next(iter(_parameters(obj)), None) == "learning_rate" and name not in _NOT_STEPPABLE


def _is_schedule(obj: Any) -> bool:
    """A function returning a function of the step, with a value jaxconv fills from ``lr``."""
    if not inspect.isfunction(obj):
        return False
    returns = str(inspect.signature(obj).return_annotation)
    lr_argument = any(a in _LR_ARGUMENTS for a in _parameters(obj))
    return returns.startswith(("collections.abc.Callable", "Callable")) and lr_argument


def check_keywords(function: Callable, keywords: dict, given: tuple[str, ...] = ()) -> None:
    """Every key of ``keywords`` is one of ``function``'s arguments, none of those set
    for it (``given``); a stray one is one line listing what it takes."""
    taken = [p for p in _parameters(function) if p != "learning_rate"]
    for key in keywords:
        if key not in taken or key in given:
            raise ValueError(f"`{key}` is not an argument of optax.{function.__name__}; it "
                             f"takes {', '.join(taken) or 'nothing more'}")  # fmt: skip


def check_schedule(
    name: str,
    lr: float,
    *,
    warmup_fraction: float = 0.05,
    final_fraction: float = 0.0,
    keywords: dict | None = None,
) -> None:
    """The checks :func:`make_schedule` makes, for callers that check a config first."""
    if not lr > 0:
        raise ValueError(f"`lr` (={lr}) must be > 0")
    if name not in SCHEDULES:
        check_keywords(optax_function(name, "schedule"), keywords or {})
        return
    if keywords:
        raise ValueError(f"`{next(iter(keywords))}`: the {name!r} schedule takes "
                         "warmup_fraction and final_fraction only")  # fmt: skip
    for key, value in (("warmup_fraction", warmup_fraction), ("final_fraction", final_fraction)):
        if not 0 <= value <= 1:
            raise ValueError(f"`{key}` (={value}) must be in [0, 1]")


def check_optimizer(
    name: str,
    *,
    momentum: float | None = None,
    weight_decay: float = 0.0,
    decay_mask: str = "all",
    clip_norm: float | None = None,
    b1: float | None = None,
    b2: float | None = None,
    keywords: dict | None = None,
) -> None:
    """The checks :func:`make_optimizer` makes, for callers that check a config first."""
    function = optax_function(_PRESET_FUNCTIONS.get(name, name))
    if not weight_decay >= 0:
        raise ValueError(f"`weight_decay` (={weight_decay}) must be >= 0")
    if decay_mask not in DECAY_MASKS:
        raise ValueError(f"`decay_mask` (={decay_mask!r}) must be one of {DECAY_MASKS}")
    for key, value in (("momentum", momentum), ("b1", b1), ("b2", b2)):
        if value is not None and not 0 <= value < 1:
            raise ValueError(f"`{key}` (={value}) must be in [0, 1)")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"`clip_norm` (={clip_norm}) must be > 0 or None")
    named = {"momentum": momentum, "b1": b1, "b2": b2}
    if name in OPTIMIZERS:  # what the preset passes itself
        given = ("b1", "b2", "weight_decay", "mask") if name.startswith("adam") else (
            "momentum", "nesterov")  # fmt: skip
    else:
        taken = _parameters(function)
        for key, value in named.items():
            if value is not None and key not in taken:
                raise ValueError(f"`{key}` (={value}): optax.{name} takes no {key}; it "
                                 f"takes {', '.join(taken)}")  # fmt: skip
        given = tuple(k for k, v in named.items() if v is not None)
        given += ("weight_decay", "mask") if weight_decay else ()
    check_keywords(function, keywords or {}, given)


def make_schedule(
    name: str,
    lr: float,
    total_steps: int,
    *,
    warmup_fraction: float = 0.05,
    final_fraction: float = 0.0,
    keywords: dict | None = None,
) -> optax.Schedule:
    """``lr`` over ``total_steps``: constant, cosine decay, linear warmup + cosine,
    one-cycle; or any Optax schedule function by name, called with ``keywords`` and, when
    they are not among them, its start or peak value (``init_value``, ``peak_value``,
    ``value``) at ``lr`` and its length (``decay_steps``, ``transition_steps``,
    ``total_steps``) at ``total_steps``."""
    check_schedule(name, lr, warmup_fraction=warmup_fraction, final_fraction=final_fraction,
                   keywords=keywords)  # fmt: skip
    if total_steps < 1:
        raise ValueError(f"the number of training steps (={total_steps}) must be >= 1")
    if name not in SCHEDULES:
        function = optax_function(name, "schedule")
        taken, filled = _parameters(function), dict(keywords or {})
        for argument in taken:
            if argument in _LR_ARGUMENTS:
                filled.setdefault(argument, lr)
            elif argument in _STEP_ARGUMENTS:
                filled.setdefault(argument, total_steps)
        return function(**filled)
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


def decay_mask_of(decay_mask: str) -> Callable | None:
    """The parameters weight decay applies to: ``"all"``, or ``"kernels"`` (arrays of
    two or more dimensions: not biases, nor normalisation scales and offsets)."""
    if decay_mask == "all":
        return None
    return lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(
    name: str,
    schedule: optax.Schedule | float,
    *,
    momentum: float | None = None,
    weight_decay: float = 0.0,
    decay_mask: str = "all",
    clip_norm: float | None = None,
    b1: float | None = None,
    b2: float | None = None,
    keywords: dict | None = None,
) -> optax.GradientTransformation:
    """An Optax chain: optional global-norm clipping, then the optimizer.

    ``name`` is a preset (:data:`OPTIMIZERS`) or any Optax optimizer function
    (``"lion"``, ``"lamb"``, ``"contrib.schedule_free_adamw"``, ...), called with the
    schedule as its ``learning_rate``, ``b1``/``b2``/``momentum`` when given, and
    ``keywords``. ``weight_decay`` is decoupled for ``adamw`` and for Optax functions
    that take ``weight_decay``, and L2 (added to the gradient) otherwise, as in
    PyTorch's optimizers; ``decay_mask`` says which parameters it applies to.
    """
    check_optimizer(name, momentum=momentum, weight_decay=weight_decay, decay_mask=decay_mask,
                    clip_norm=clip_norm, b1=b1, b2=b2, keywords=keywords)  # fmt: skip
    mask, keywords = decay_mask_of(decay_mask), dict(keywords or {})
    if name in OPTIMIZERS:
        opt = _preset(name, schedule, momentum, weight_decay, mask, b1, b2, keywords)
    else:
        function = optax_function(name)
        taken = _parameters(function)
        given = {"momentum": momentum, "b1": b1, "b2": b2}
        keywords.update({k: v for k, v in given.items() if v is not None})
        if weight_decay and "weight_decay" in taken:
            keywords["weight_decay"] = weight_decay
            if mask is not None and "mask" in taken:
                keywords["mask"] = mask
        opt = function(schedule, **keywords)
        if weight_decay and "weight_decay" not in taken:
            opt = optax.chain(optax.add_decayed_weights(weight_decay, mask), opt)
    if clip_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
    return opt


def _preset(name, schedule, momentum, weight_decay, mask, b1, b2, keywords):
    b1, b2 = 0.9 if b1 is None else b1, 0.999 if b2 is None else b2
    momentum = 0.9 if momentum is None else momentum
    if name == "adamw":
        return optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=mask,
                           **keywords)  # fmt: skip
    if name == "sgd":
        opt = optax.sgd(schedule, **keywords)
    elif name in ("momentum", "nesterov"):
        opt = optax.sgd(schedule, momentum=momentum, nesterov=name == "nesterov", **keywords)
    else:
        opt = optax.adam(schedule, b1=b1, b2=b2, **keywords)
    if weight_decay:
        opt = optax.chain(optax.add_decayed_weights(weight_decay, mask), opt)
    return opt
