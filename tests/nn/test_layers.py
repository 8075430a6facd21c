"""jaxconv.nn layers against flax.linen with the same parameters."""

import flax.linen as fnn
import jax
import jax.numpy as jnp
import pytest

import jaxconv
from jaxconv import nn as jnn
from tests.conftest import BACKENDS
from tests.ops.test_conv import close


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "kwargs,shape",
    [
        (dict(features=6, kernel_size=(3, 3)), (2, 9, 8, 4)),
        (
            dict(features=6, kernel_size=(3, 3), strides=2, padding="VALID", kernel_dilation=2),
            (2, 11, 12, 4),
        ),
        (dict(features=4, kernel_size=(5,), padding=[(2, 1)], feature_group_count=2), (3, 20, 4)),
        (dict(features=8, kernel_size=(3, 3), feature_group_count=4, use_bias=False), (1, 7, 7, 4)),
        (dict(features=3, kernel_size=(3, 3), padding="CIRCULAR"), (2, 6, 6, 2)),
        (dict(features=3, kernel_size=(2, 2, 2), input_dilation=2, padding=1), (1, 4, 4, 4, 2)),
    ],
)
def test_conv_matches_flax_linen_conv(backend, kwargs, shape):
    x = jax.random.normal(jax.random.key(0), shape)
    ref_layer = fnn.Conv(**kwargs)
    params = ref_layer.init(jax.random.key(1), x)
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape), params)
    ours = jnn.Conv(**kwargs, backend=backend)
    assert jax.tree.structure(ours.init(jax.random.key(1), x)) == jax.tree.structure(params)
    close(ours.apply(params, x), ref_layer.apply(params, x), tol=5e-5)


def test_conv_unbatched_and_padding_mode():
    x = jnp.arange(10.0).reshape(10, 1)
    layer = jnn.Conv(
        1,
        (3,),
        padding=1,
        padding_mode="replicate",
        use_bias=False,
        kernel_init=jax.nn.initializers.ones,
    )
    y, _ = layer.init_with_output(jax.random.key(0), x)
    assert y.shape == (10, 1)
    assert y[:, 0].tolist() == [1.0, 3, 6, 9, 12, 15, 18, 21, 24, 26]


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_transpose_layer_is_the_op(backend):
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 4))
    layer = jnn.ConvTranspose(
        6, (3, 3), strides=2, padding=1, output_padding=1, feature_group_count=2, backend=backend
    )
    variables = layer.init(jax.random.key(1), x)
    k = variables["params"]["kernel"]
    assert k.shape == (3, 3, 4, 3)
    expected = jaxconv.conv_transpose(
        x, k, stride=2, padding=1, output_padding=1, groups=2, backend="lax"
    )
    out = layer.apply(variables, x)
    assert out.shape == (2, 10, 12, 6)
    close(out, expected + variables["params"]["bias"])


def test_conv_transpose_matches_flax_transpose_kernel():
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 4))
    ours = jnn.ConvTranspose(3, (3, 3), strides=2, padding=1, output_padding=1)
    variables = ours.init(jax.random.key(1), x)
    k = variables["params"]["kernel"]  # (3, 3, C_in=4, C_out=3)
    # flax transpose_kernel=True expects (kh, kw, C_out, C_in) and pads the dilated input
    # with (k - 1 - p, k - 1 - p + output_padding).
    ref = fnn.ConvTranspose(
        3, (3, 3), strides=(2, 2), padding=((1, 2), (1, 2)), transpose_kernel=True
    )
    ref_vars = {"params": {"kernel": jnp.swapaxes(k, -1, -2), "bias": variables["params"]["bias"]}}
    close(ours.apply(variables, x), ref.apply(ref_vars, x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_layers(backend):
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    close(
        jnn.MaxPool((2, 2), backend=backend).apply({}, x), fnn.max_pool(x, (2, 2), strides=(2, 2))
    )
    close(
        jnn.AvgPool((3, 3), strides=1, backend=backend).apply({}, x),
        fnn.avg_pool(x, (3, 3), strides=(1, 1)),
    )
    close(
        jnn.MinPool(2, backend=backend).apply({}, x[:, :, 0]),
        -fnn.max_pool(-x[:, :, 0], (2,), strides=(2,)),
    )
    assert jnn.AdaptiveAvgPool((3, 3)).apply({}, x).shape == (2, 3, 3, 3)
    close(jnn.GlobalAvgPool().apply({}, x), x.mean((1, 2)))
    close(jnn.GlobalMaxPool().apply({}, x), x.max((1, 2)))
    close(jnn.AdaptiveMaxPool(1).apply({}, x)[:, 0, 0], x.max((1, 2)))
    close(
        jnn.LPPool(2, norm_type=1, backend=backend).apply({}, jnp.abs(x)),
        4 * fnn.avg_pool(jnp.abs(x), (2, 2), strides=(2, 2)),
    )


def test_layer_errors():
    with pytest.raises(
        ValueError, match="`feature_group_count` \\(=3\\) must divide the input channels \\(=4\\)"
    ):
        jnn.Conv(6, (3, 3), feature_group_count=3).init(jax.random.key(0), jnp.ones((1, 5, 5, 4)))
    with pytest.raises(
        ValueError, match="`Conv` input must be \\(N, \\*spatial, C\\) with 2 spatial axes"
    ):
        jnn.Conv(6, (3, 3)).init(jax.random.key(0), jnp.ones((5, 5)))
