"""jaxconv.conv_general_dilated against jax.lax.conv_general_dilated: every layout and
padding form Flax produces, values and gradients, every backend; stock Flax layers run on
a jaxconv backend through it."""

import functools

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import nnx
from jax import lax

import jaxconv

from ..conftest import BACKENDS

ALL = (*BACKENDS, "auto")
#: (dimension_numbers, lhs shape, rhs shape): lax's default, Flax's channels-last 1-3-D,
#: PyTorch's layout, and a shuffled one.
LAYOUTS = [
    (None, (2, 3, 9, 8), (4, 3, 3, 3)),
    (("NWC", "WIO", "NWC"), (2, 11, 3), (3, 3, 4)),
    (("NHWC", "HWIO", "NHWC"), (2, 9, 8, 3), (3, 3, 3, 4)),
    (("NDHWC", "DHWIO", "NDHWC"), (1, 5, 6, 4, 2), (2, 3, 2, 2, 3)),
    (("NCHW", "OIHW", "NCHW"), (2, 3, 9, 8), (4, 3, 3, 3)),
    (("HWNC", "OHWI", "CNHW"), (9, 8, 2, 3), (4, 3, 3, 3)),
]


def _arrays(lhs_shape, rhs_shape):
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    return jax.random.normal(keys[0], lhs_shape), jax.random.normal(keys[1], rhs_shape)


#: Each layout once, and each padding form on Flax's 2-D layout (one compile per case).
CASES = [
    *[
        (layout, pad)
        for layout, pad in zip(LAYOUTS, ["SAME", "pairs", "VALID", "SAME_LOWER", "pairs", "SAME"])
    ],  # fmt: skip
    *[(LAYOUTS[2], pad) for pad in ("SAME", "SAME_LOWER", "pairs")],
]


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize(
    "layout,padding", CASES, ids=lambda v: str(v[0]) if isinstance(v, tuple) else v
)
def test_values_and_gradients_equal_lax(backend, layout, padding):
    dn, lhs_shape, rhs_shape = layout
    x, k = _arrays(lhs_shape, rhs_shape)
    n = len(rhs_shape) - 2
    strides, rhs_dil = (2,) + (1,) * (n - 1), (1,) * (n - 1) + (2,)
    pads = [(1, 2)] * n if padding == "pairs" else padding
    lhs_dil = (1,) * (n - 1) + (2,) if padding == "pairs" else None  # lax: pairs only

    def run(f, a, b):
        return f(a, b, strides, pads, lhs_dilation=lhs_dil, rhs_dilation=rhs_dil,
                 dimension_numbers=dn)  # fmt: skip

    ours = functools.partial(jaxconv.conv_general_dilated, backend=backend)
    np.testing.assert_allclose(run(ours, x, k), run(lax.conv_general_dilated, x, k), atol=2e-5)
    loss = lambda f: lambda a, b: (run(f, a, b) ** 2).sum()  # noqa: E731
    got = jax.grad(loss(ours), argnums=(0, 1))(x, k)
    want = jax.grad(loss(lax.conv_general_dilated), argnums=(0, 1))(x, k)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-3)


def test_feature_groups_and_what_it_refuses():
    x, k = _arrays((2, 9, 8, 4), (3, 3, 2, 6))
    dn = ("NHWC", "HWIO", "NHWC")
    want = lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn,
                                    feature_group_count=2)  # fmt: skip
    got = jaxconv.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn,
                                       feature_group_count=2, backend="window")  # fmt: skip
    np.testing.assert_allclose(got, want, atol=2e-5)
    with pytest.raises(ValueError, match=r"`batch_group_count` \(=2\) must be 1"):
        jaxconv.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn,
                                     batch_group_count=2)  # fmt: skip
    with pytest.raises(ValueError, match=r"`padding` \(='SAME'\) must be \(lo, hi\) pairs"):
        jaxconv.conv_general_dilated(x, k, (1, 1), "SAME", lhs_dilation=(2, 2),
                                     dimension_numbers=dn, feature_group_count=2)  # fmt: skip


@pytest.mark.parametrize("backend", ["window", "fft", "winograd"])
def test_stock_flax_layers_run_on_a_jaxconv_backend(backend):
    ours = functools.partial(jaxconv.conv_general_dilated, backend=backend)
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 10, 10, 3))
    stock = nn.Conv(5, (3, 3), strides=2, kernel_dilation=1, padding="SAME")
    variables = stock.init(jax.random.PRNGKey(3), x)
    mine = nn.Conv(5, (3, 3), strides=2, padding="SAME", conv_general_dilated=ours)
    np.testing.assert_allclose(mine.apply(variables, x), stock.apply(variables, x), atol=2e-5)

    stock_nnx = nnx.Conv(3, 5, (3, 3), padding="SAME", rngs=nnx.Rngs(0))
    mine_nnx = nnx.Conv(3, 5, (3, 3), padding="SAME", conv_general_dilated=ours,
                        rngs=nnx.Rngs(0))  # fmt: skip
    np.testing.assert_allclose(mine_nnx(x), stock_nnx(x), atol=2e-5)  # same init, same rngs
    grads = nnx.grad(lambda m: (m(x) ** 2).sum())(mine_nnx)
    want = nnx.grad(lambda m: (m(x) ** 2).sum())(stock_nnx)
    np.testing.assert_allclose(grads["kernel"][...], want["kernel"][...], rtol=1e-4, atol=1e-3)
