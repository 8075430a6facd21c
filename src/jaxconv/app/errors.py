"""The errors a command reports in one line (exit status 2), in the config's words."""

from __future__ import annotations

import re

from jaxconv.app.config import SCHEMAS, library_keys, open_groups, options
from jaxconv.app.jax_env import BackendUnavailable
from jaxconv.app.rundir import RunDirRefused
from jaxconv.data import DataError
from jaxconv.train import CheckpointError
from jaxconv.train.parallel import DistributedError


class ConfigError(ValueError):
    """A well-typed but wrong config value; reported in one line, exit status 2."""


#: Errors that are the user's to fix, reported in one line with exit status 2.
ONE_LINE_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    RunDirRefused,
    DataError,
    CheckpointError,
    DistributedError,
    BackendUnavailable,
)


def as_config_error(err: ValueError, group: str | None = None) -> ConfigError:
    """A library ValueError ("`batch_size` (=0) must be >= 1") in the config's words
    ("trainer.batch_size (=0) must be >= 1"): the library names its arguments, the
    schema says which key each one is (``group``: the config group whose options the
    raising function was given, for names several groups have, like ``name``)."""
    message = str(err)
    match = re.match(r"`([\w.]+)`", message)
    if match:
        message = config_key(match.group(1), group) + message[match.end() :]
    return ConfigError(message.replace(" or None", " or null"))


def config_key(name: str, group: str | None = None) -> str:
    """The config key of the library argument ``name``, given by a function of ``group``.

    >>> config_key("name", "optimizer"), config_key("lr", "schedule"), config_key("seed")
    ('optimizer.name', 'optimizer.lr', 'seed')
    """
    if group is not None and f"{group}.{name.split('.')[0]}" in _KEYS:  # or a nested option's
        return f"{group}.{name}"
    if group in open_groups() and name not in library_keys():  # a keyword passed through
        return f"{group}.{name}"
    return library_keys().get(name, name)


_KEYS = frozenset(info.key for info in options(SCHEMAS))
