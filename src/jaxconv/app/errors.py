"""The errors a command reports in one line (exit status 2), in the config's words."""

from __future__ import annotations

import re

from jaxconv.app.config import library_keys
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
)


def as_config_error(err: ValueError) -> ConfigError:
    """A library ValueError ("`batch_size` (=0) must be >= 1") in the config's words
    ("trainer.batch_size (=0) must be >= 1"): the library names its arguments, the
    schema (:func:`~jaxconv.app.config.library_keys`) says which key each one is."""
    message = str(err)
    match = re.match(r"`([\w.]+)`", message)
    if match:
        key = library_keys().get(match.group(1), match.group(1))
        message = key + message[match.end() :]
    return ConfigError(message.replace(" or None", " or null"))
