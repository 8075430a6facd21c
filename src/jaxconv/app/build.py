"""Config -> library objects: the dataset, the model, the device mesh, the optimizer and
the :class:`~jaxconv.train.FitOptions`, each checked as it is built (nothing written)."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import optax
from flax import nnx
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from jaxconv._errors import first_line
from jaxconv.app.config import group_options
from jaxconv.app.errors import ConfigError, as_config_error
from jaxconv.data import Dataset
from jaxconv.data.datasets import DataOptions, dataset_from
from jaxconv.models import nnx as nnx_models
from jaxconv.train import FitOptions, parallel, total_steps
from jaxconv.train.modules import NNXApply, api_of, functional
from jaxconv.train.optim import OptimizerOptions, ScheduleOptions, optimizer_from, schedule_from


def fit_options(cfg: DictConfig) -> FitOptions:
    """The :class:`~jaxconv.train.FitOptions` of a config (its fields' keys say where)."""
    return group_options(cfg, FitOptions, "trainer")


def _tuples(value: Any) -> Any:
    """Lists from YAML -> tuples (flax modules must hash their attributes)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


#: ``model.api``: which Flax API a preset is built in
APIS = ("linen", "nnx")


def build_model(cfg: DictConfig, num_classes: int, input_shape: tuple[int, ...]):
    """Instantiate ``cfg.model``: a preset (``_target_``, in ``model.api``) with the run's
    ``conv_backend``, or the user's class (``model.target``, see :func:`custom_model`),
    for the data's classes and one example's ``input_shape``."""
    spec = _tuples(OmegaConf.to_container(cfg.model, resolve=True))
    api = spec.pop("api", "linen")
    if "target" in spec:
        return custom_model(spec.pop("target"), spec, num_classes, input_shape, cfg.seed)
    if api not in APIS:
        raise ConfigError(f"model.api (={api!r}) must be one of {APIS}")
    target = spec.pop("_target_")
    if api == "nnx":
        target = _nnx_twin(target)
        spec.update(input_shape=input_shape, rngs=nnx.Rngs(cfg.seed))
    factory = _imported(target, "model._target_")
    try:
        return factory(**spec, num_classes=num_classes, conv_backend=cfg.conv_backend)
    except TypeError as err:
        raise ConfigError(f"model {target}: {err}") from err


def _nnx_twin(target: str) -> str:
    """``jaxconv.models.CNN`` -> ``jaxconv.models.nnx.CNN``: the preset's NNX twin."""
    prefix = "jaxconv.models."
    name = target[len(prefix) :] if target.startswith(prefix) else ""
    if not name or "." in name or not hasattr(nnx_models, name):
        raise ConfigError(
            f"model.api=nnx: {target!r} is not a jaxconv preset with an NNX twin "
            "(your own NNX class: model=custom model.target=...)"
        )
    return prefix + "nnx." + name


def _imported(target: str, key: str):
    try:
        return get_object(target)
    except Exception as err:  # hydra raises ImportError / ValueError variants
        raise ConfigError(f"{key} (={target!r}) cannot be imported: {first_line(err)}") from err


def custom_model(target: Any, options: dict, num_classes: int, input_shape, seed: int):
    """The user's module class ``target`` constructed by the documented contract: a
    Linen class with ``num_classes=`` and ``options``; an NNX class also with
    ``input_shape=`` (one example's shape, channels last) and ``rngs=nnx.Rngs(seed)``."""
    if not isinstance(target, str) or target in ("", "???"):
        raise ConfigError(
            "model.target must name your module class: model=custom model.target=pkg.module.Class"
        )
    cls = _imported(target, "model.target")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module | nnx.Module)):
        raise ConfigError(
            f"model.target (={target!r}) must be a flax.linen.Module or flax.nnx.Module "
            f"class; it is {type(cls).__name__} {getattr(cls, '__name__', cls)!r}"
        )
    extra = (
        {} if issubclass(cls, nn.Module) else {"input_shape": input_shape, "rngs": nnx.Rngs(seed)}
    )
    try:
        return cls(**options, num_classes=num_classes, **extra)
    except Exception as err:
        given = ", ".join(sorted([*options, "num_classes", *extra]))
        raise ConfigError(
            f"model.target {target} cannot be constructed with ({given}): {first_line(err)}"
        ) from err


def check_model_fits(model, example, num_classes: int | None = None) -> None:
    """Trace the model on one example (no FLOPs): shape errors surface here, in one line;
    with ``num_classes``, the output must be one logit per class."""
    try:
        out = model_output_shape(model, example[:1])
    except (ValueError, TypeError) as err:
        named = re.match(r"`(\w+)` (\(=.*)", first_line(err))
        if named and hasattr(model, named.group(1)):  # a value of the model's config
            raise ConfigError(f"model.{named.group(1)} {named.group(2)}") from err
        raise ConfigError(
            f"model {type(model).__name__} does not fit inputs of shape "
            f"{tuple(example.shape[1:])}: {first_line(err)}"
        ) from err
    if num_classes is not None and tuple(out) != (1, num_classes):
        raise ConfigError(
            f"model {type(model).__name__} returns shape {tuple(out)} for one example; "
            f"expected (1, {num_classes}): one logit per class"
        )


def model_output_shape(model, example) -> tuple[int, ...]:
    """The shape of ``model``'s eval-mode output on ``example``, computed without FLOPs."""
    key = jax.random.PRNGKey(0)
    if api_of(model) == "nnx":
        apply = NNXApply(model)
        return jax.eval_shape(lambda x: apply(apply.variables(), x), example).shape

    def init_and_apply(x):
        apply, variables = functional(model, x, {"params": key, "dropout": key})
        return apply(variables, x, train=False)

    return jax.eval_shape(init_and_apply, example).shape


def check_against_data(cfg: DictConfig, dataset: Dataset) -> None:
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


def make_mesh(cfg: DictConfig, n_train: int):
    """The devices the run splits its batches over; a count that is not there, or that
    does not divide the batch, is a :class:`ConfigError`."""
    try:
        mesh = parallel.data_mesh(cfg.trainer.devices)
        parallel.check_batch(min(cfg.trainer.batch_size, n_train), mesh)
    except ValueError as err:
        raise as_config_error(err) from err
    return mesh


class Prepared(NamedTuple):
    """What a run trains with."""

    dataset: Dataset
    model: Any
    optimizer: optax.GradientTransformation
    mesh: Any
    schedule: optax.Schedule


def prepare(cfg: DictConfig) -> Prepared:
    """Load the data, build the model, the mesh and the optimizer: every check that
    needs them, and nothing written."""
    dataset = dataset_from(group_options(cfg, DataOptions, "data"), split_seed=cfg.seed)
    check_against_data(cfg, dataset)
    model = build_model(cfg, dataset.num_classes, tuple(dataset.x_train.shape[1:]))
    check_model_fits(model, dataset.x_train, dataset.num_classes)
    mesh = make_mesh(cfg, len(dataset.x_train))
    opt = group_options(cfg, OptimizerOptions, "optimizer")
    total = total_steps(len(dataset.x_train), fit_options(cfg))
    schedule = schedule_from(group_options(cfg, ScheduleOptions, "schedule"), opt, total)
    return Prepared(dataset, model, optimizer_from(opt, schedule), mesh, schedule)
