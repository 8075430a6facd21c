import os
import shutil
import signal
import tempfile

# A suite started in the background by a non-interactive shell (`make test &`) inherits
# SIGINT ignored, and so would every run it starts: the signal tests' SIGINT would then do
# nothing (jaxconv-train leaves an ignored SIGINT alone, as Python does). A handler, unlike
# SIG_IGN, is reset by exec: the runs start with SIGINT's default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# One XLA compilation cache for the whole run, shared by every CLI subprocess a test
# starts (they inherit the environment): most of a small CLI run is compiling its steps,
# and the tests start many runs of a few configs. The test processes themselves
# compile mostly programs no other test runs, and writing each to the cache cost more
# than it saved, so they leave it off (below). A cache the caller set is used as it is.
# The controller makes it; the xdist workers it starts inherit its path.
_OWN_CACHE = os.environ.get("JAXCONV_TESTS_XLA_CACHE")
if _OWN_CACHE is None and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="jaxconv-tests-xla-cache-")
    os.environ["JAXCONV_TESTS_XLA_CACHE"] = _OWN_CACHE
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402

if _OWN_CACHE is not None:
    jax.config.update("jax_enable_compilation_cache", False)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

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


def pytest_unconfigure(config):
    # The process that made the cache (the xdist controller, or a plain pytest) removes it.
    if _OWN_CACHE is not None and not hasattr(config, "workerinput"):
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


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
