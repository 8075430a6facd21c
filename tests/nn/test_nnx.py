"""jaxconv.nnx.Conv against flax.nnx.Conv: the same state, outputs and gradients on every
backend; padding modes as the Linen layer computes them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxconv
from jaxconv import nn as jnn
from jaxconv import nnx as jnnx

from ..conftest import BACKENDS


@pytest.mark.parametrize("backend", (*BACKENDS, "auto"))
def test_conv_equals_the_stock_nnx_layer(backend):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
    options = dict(strides=(2, 1), padding="SAME", kernel_dilation=(1, 2))
    stock = nnx.Conv(3, 5, (3, 3), **options, rngs=nnx.Rngs(0))
    mine = jnnx.Conv(3, 5, (3, 3), **options, backend=backend, rngs=nnx.Rngs(0))
    assert jax.tree.map(jnp.shape, nnx.state(mine)) == jax.tree.map(jnp.shape, nnx.state(stock))
    np.testing.assert_array_equal(mine.kernel[...], stock.kernel[...])  # same init
    np.testing.assert_allclose(mine(x), stock(x), atol=2e-5)
    np.testing.assert_allclose(mine(x[0]), stock(x[0]), atol=2e-5)  # unbatched, as flax

    def loss(m):
        return (m(x) ** 2).sum()

    got, want = nnx.grad(loss)(mine), nnx.grad(loss)(stock)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(got[name][...], want[name][...], rtol=1e-4, atol=1e-3)


def test_a_stock_layers_state_loads_and_padding_modes_match_linen():
    stock = nnx.Conv(2, 4, (3, 3), padding="SAME", rngs=nnx.Rngs(1))
    mine = jnnx.Conv(2, 4, (3, 3), padding="SAME", padding_mode="reflect", backend="window",
                     rngs=nnx.Rngs(7))  # fmt: skip
    nnx.update(mine, nnx.state(stock))
    x = jax.random.normal(jax.random.PRNGKey(2), (1, 8, 8, 2))
    linen = jnn.Conv(4, (3, 3), padding="SAME", padding_mode="reflect", backend="lax")
    params = {"params": {"kernel": stock.kernel[...], "bias": stock.bias[...]}}
    np.testing.assert_allclose(mine(x), linen.apply(params, x), atol=2e-5)
    reflected = jaxconv.pad(x, ((1, 1), (1, 1)), mode="reflect")  # the spatial axes
    expected = jaxconv.conv(reflected, stock.kernel[...]) + stock.bias[...]
    np.testing.assert_allclose(mine(x), expected, atol=2e-5)


def test_bad_arguments_are_one_line():
    with pytest.raises(ValueError, match=r"`backend` \(='bogus'\) must be one of"):
        jnnx.Conv(2, 4, 3, backend="bogus", rngs=nnx.Rngs(0))
