"""One registry: a backend registered at run time is accepted and used by every op."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
import jaxconv.nn
from jaxconv.ops.backends import window

registry = importlib.import_module(
    "jaxconv.ops.backends"
)  # the module, not the backends() function


@pytest.fixture
def spy():
    """A backend that counts its calls and computes with window's core."""
    calls = []

    def core(x, kernel, **options):
        calls.append(options)
        return window.conv(x, kernel, **options)

    jaxconv.register_backend("spy", core)
    try:
        yield calls
    finally:
        registry.BACKENDS.pop("spy")
        registry.POOLS_BY_CONVOLUTION.discard("spy")


def test_registered_backend_runs_every_op(spy, rng):
    assert jaxconv.backends()[-2:] == ("spy", "auto")
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    k = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    checks = [
        (lambda b: jaxconv.conv(x, k, padding="SAME", backend=b), "conv"),
        (lambda b: jaxconv.conv_transpose(x, k[..., :3, :], stride=2, backend=b), "conv_transpose"),
        (lambda b: jaxconv.convolve(x[0, :, :, 0], k[:, :, 0, 0], backend=b), "convolve"),
        (lambda b: jaxconv.correlate(x[0, :, 0, 0], k[:, 0, 0, 0], "same", backend=b), "correlate"),
        (lambda b: jaxconv.avg_pool(x, 2, backend=b), "avg_pool"),
    ]
    for run, name in checks:
        before = len(spy)
        np.testing.assert_allclose(
            np.asarray(run("spy")), np.asarray(run("lax")), rtol=1e-5, atol=1e-5
        )
        assert len(spy) == before + 1, f"{name} did not call the registered core"
    # max pooling has no convolution form: it accepts the name and uses window's core
    np.testing.assert_array_equal(
        np.asarray(jaxconv.max_pool(x, 2, backend="spy")),
        np.asarray(jaxconv.max_pool(x, 2, backend="lax")),
    )
    layer = jaxconv.nn.Conv(features=4, kernel_size=(3, 3), backend="spy")
    params = layer.init(jax.random.key(0), jnp.asarray(x))
    before = len(spy)
    layer.apply(params, jnp.asarray(x))
    assert len(spy) == before + 1


def test_registered_backend_may_opt_out_of_pooling_by_convolution(spy, rng):
    jaxconv.register_backend("spy", registry.BACKENDS["spy"], pools_by_convolution=False)
    before = len(spy)
    jaxconv.avg_pool(rng.normal(size=(1, 4, 4, 2)).astype(np.float32), 2, backend="spy")
    assert len(spy) == before


def test_unknown_backend_is_refused_by_every_op():
    x = jnp.ones((1, 4, 4, 1))
    for call in (
        lambda: jaxconv.conv(x, jnp.ones((1, 1, 1, 1)), backend="nope"),
        lambda: jaxconv.max_pool(x, 2, backend="nope"),
    ):
        with pytest.raises(
            ValueError,
            match=r"`backend` \(='nope'\) must be one of "
            r"\('lax', 'window', 'fft', 'winograd', 'auto'\)",
        ):
            call()
