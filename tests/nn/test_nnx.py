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


POOLS = [
    ("MaxPool", dict(window=3, strides=2, padding=1)),
    ("MinPool", dict(window=2)),
    ("AvgPool", dict(window=3, strides=2, padding=1, count_include_pad=False)),
    ("LPPool", dict(window=2, norm_type=3.0)),
    ("AdaptiveAvgPool", dict(output_size=(3, 2))),
    ("AdaptiveMaxPool", dict(output_size=3)),
    ("GlobalAvgPool", {}),
    ("GlobalMaxPool", {}),
]


@pytest.mark.parametrize("name,arguments", POOLS, ids=[p[0] for p in POOLS])
def test_pooling_layers_equal_the_linen_ones(name, arguments):
    x = jax.random.uniform(jax.random.PRNGKey(3), (2, 9, 8, 3))
    expected = getattr(jnn, name)(**arguments).apply({}, x)  # the same arguments
    layer = getattr(jnnx, name)(**arguments)
    assert nnx.state(layer, nnx.Param) == nnx.State({})  # no parameters
    np.testing.assert_allclose(layer(x), expected, rtol=1e-6)
