"""jaxconv.nnx.Conv and ConvTranspose against flax.nnx's: the same state, outputs and
gradients on every backend; padding modes as the Linen layer computes them."""

import functools

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


TRANSPOSES = [  # flax's padding forms, each through one of the two computations
    dict(kernel_size=(3, 3), strides=2, padding="SAME"),
    dict(kernel_size=(2, 4), strides=(3, 2), padding="VALID", kernel_dilation=2),
    dict(kernel_size=(3, 2), strides=2, padding="CIRCULAR", transpose_kernel=True),
    dict(kernel_size=(4, 3), strides=(1, 2), padding="CIRCULAR"),
    dict(kernel_size=(3, 3), strides=(2, 1), padding=((2, 0), (0, 3)), transpose_kernel=True),
    # negative padding crops; this high side is beyond conv_transpose's output_padding
    dict(kernel_size=(3, 3), strides=2, padding=((-1, 4), (5, 1))),
    dict(kernel_size=(1, 1), strides=3, padding="SAME", transpose_kernel=True),
]


def _outputs_and_gradients(layer, x):
    """The layer's output and the gradients of a fixed loss for its parameters and input,
    in one compiled function."""
    graphdef, params = nnx.split(layer)

    def loss(params, x):
        y = nnx.merge(graphdef, params)(x)
        return (y * jnp.cos(jnp.arange(y.size).reshape(y.shape))).sum(), y

    (_, y), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)
    return y, grads[0]["kernel"][...], grads[0]["bias"][...], grads[1]


@functools.cache
def _stock_transpose(case: int):
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 7, 6, 3))
    stock = nnx.ConvTranspose(3, 5, **TRANSPOSES[case], rngs=nnx.Rngs(0))
    return x, stock.kernel[...], _outputs_and_gradients(stock, x)


@pytest.mark.parametrize("backend", (*BACKENDS, "auto"))
def test_conv_transpose_equals_the_stock_nnx_layer(backend):
    for case, options in enumerate(TRANSPOSES):
        x, kernel, want = _stock_transpose(case)
        mine = jnnx.ConvTranspose(3, 5, **options, backend=backend, rngs=nnx.Rngs(0))
        np.testing.assert_array_equal(mine.kernel[...], kernel)  # the same initialisation
        got = _outputs_and_gradients(mine, x)
        for what, g, w in zip(("output", "d kernel", "d bias", "d input"), got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-4, err_msg=f"{what} {options}")


def test_conv_transpose_loads_stock_state_and_takes_any_batch_shape():
    stock = nnx.ConvTranspose(2, 4, (3,), strides=2, mask=jnp.tril(jnp.ones((3, 2, 4))),
                              rngs=nnx.Rngs(1))  # fmt: skip
    mine = jnnx.ConvTranspose(2, 4, (3,), strides=2, mask=jnp.tril(jnp.ones((3, 2, 4))),
                              backend="window", rngs=nnx.Rngs(9))  # fmt: skip
    assert jax.tree.map(jnp.shape, nnx.state(mine)) == jax.tree.map(jnp.shape, nnx.state(stock))
    nnx.update(mine, nnx.state(stock))
    x = jax.random.normal(jax.random.PRNGKey(5), (3, 2, 5, 2))  # two batch axes
    np.testing.assert_allclose(mine(x), stock(x), atol=2e-5)
    assert mine(x).shape == (3, 2, 10, 4)
    np.testing.assert_allclose(mine(x[0, 0]), stock(x[0, 0]), atol=2e-5)  # unbatched


def test_bad_arguments_are_one_line():
    with pytest.raises(ValueError, match=r"`backend` \(='bogus'\) must be one of"):
        jnnx.Conv(2, 4, 3, backend="bogus", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`backend` \(='bogus'\) must be one of"):
        jnnx.ConvTranspose(2, 4, 3, backend="bogus", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`padding_mode` \(='reflect'\) must be 'zeros'"):
        jnnx.ConvTranspose(2, 4, 3, padding_mode="reflect", rngs=nnx.Rngs(0))
    layer = jnnx.ConvTranspose(2, 4, (5,), padding=0, kernel_dilation=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`padding` \(=0\) leaves an empty output \(0,\)"):
        layer(jnp.ones((1, 8, 2)))
    layer = jnnx.ConvTranspose(2, 4, (3,), padding="CAUSAL", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`padding` \(='CAUSAL'\) must be 'SAME', 'VALID'"):
        layer(jnp.ones((1, 8, 2)))
    with pytest.raises(ValueError, match=r"`inputs` must be \(\*batch, \*spatial, C\)"):
        layer(jnp.ones((8,)))


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
