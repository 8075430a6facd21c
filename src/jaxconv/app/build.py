"""Config -> library objects: the dataset, the model, the device mesh, the optimizer and
the :class:`~jaxconv.train.FitOptions`, each checked as it is built (nothing written)."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import optax
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from jaxconv._errors import first_line
from jaxconv.app.config import group_options
from jaxconv.app.errors import ConfigError, as_config_error
from jaxconv.data import Dataset
from jaxconv.data.datasets import DataOptions, dataset_from
from jaxconv.train import FitOptions, parallel, total_steps
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


def build_model(cfg: DictConfig, num_classes: int):
    """Instantiate ``cfg.model`` with the run's ``conv_backend`` and the data's classes."""
    spec = _tuples(OmegaConf.to_container(cfg.model, resolve=True))
    target = spec.pop("_target_")
    try:
        factory = get_object(target)
    except Exception as err:  # hydra raises ImportError / ValueError variants
        raise ConfigError(f"model._target_ (={target!r}) cannot be imported: {err}") from err
    try:
        return factory(**spec, num_classes=num_classes, conv_backend=cfg.conv_backend)
    except TypeError as err:
        raise ConfigError(f"model {target}: {err}") from err


def check_model_fits(model, example) -> None:
    """Trace the model on one example (no FLOPs): shape errors surface here, in one line."""
    try:
        jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), example[:1])
    except (ValueError, TypeError) as err:
        named = re.match(r"`(\w+)` (\(=.*)", first_line(err))
        if named and hasattr(model, named.group(1)):  # a value of the model's config
            raise ConfigError(f"model.{named.group(1)} {named.group(2)}") from err
        raise ConfigError(
            f"model {type(model).__name__} does not fit inputs of shape "
            f"{tuple(example.shape[1:])}: {first_line(err)}"
        ) from err


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
    model = build_model(cfg, dataset.num_classes)
    check_model_fits(model, dataset.x_train)
    mesh = make_mesh(cfg, len(dataset.x_train))
    opt = group_options(cfg, OptimizerOptions, "optimizer")
    total = total_steps(len(dataset.x_train), fit_options(cfg))
    schedule = schedule_from(group_options(cfg, ScheduleOptions, "schedule"), opt, total)
    return Prepared(dataset, model, optimizer_from(opt, schedule), mesh, schedule)
