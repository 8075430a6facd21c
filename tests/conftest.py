import os

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

from jaxconv.ops import BACKENDS as _REGISTRY  # noqa: E402

#: Every built-in backend, from the registry (read once: tests that register one add it later).
BACKENDS = tuple(_REGISTRY)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture
def on_cpu():
    """Pin JAX's default device to the CPU: tests that read ``auto``'s CPU choices off a
    jaxpr then hold on a machine whose default platform is a GPU too."""
    with jax.default_device(jax.devices("cpu")[0]):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def hydra_compose():
    """``compose(overrides)`` of jaxconv's config, as ``jaxconv-train`` would."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from jaxconv.app.config import register

    register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="jaxconv.conf", version_base="1.3"):
        yield lambda overrides=(): compose("config", overrides=list(overrides))
    GlobalHydra.instance().clear()
