"""The winograd backend: its Toom-Cook matrices, values, gradients, rounding and fallback."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxconv
from jaxconv.ops.backends import window, winograd
from tests.ops import reference as R


def correlate_1d(d, g):
    return np.array(
        [sum(d[i + j] * g[j] for j in range(len(g))) for i in range(len(d) - len(g) + 1)]
    )


@pytest.mark.parametrize("m,r", [(2, 3), (4, 3), (3, 2), (5, 2), (2, 5), (3, 4), (1, 1), (1, 6)])
def test_transform_matrices_compute_the_correlation(m, r, rng):
    at, g, bt = winograd.transform_matrices(m, r)
    a = m + r - 1
    assert at.shape == (m, a) and g.shape == (a, r) and bt.shape == (a, a)
    np.testing.assert_array_equal(bt, np.round(bt))  # integer input transform
    for _ in range(3):
        d, taps = rng.normal(size=a), rng.normal(size=r)
        np.testing.assert_allclose(at @ ((g @ taps) * (bt @ d)), correlate_1d(d, taps), atol=1e-12)
    with pytest.raises(ValueError, match="interpolation points"):
        winograd.transform_matrices(4, 4)


def test_f23_by_hand():
    # y0 = d0 g0 + d1 g1 + d2 g2, y1 = d1 g0 + d2 g1 + d3 g2 from the module docstring's
    # four products (d0 - d2) g0, (d1 + d2)(g0 + g1 + g2)/2, (d2 - d1)(g0 - g1 + g2)/2,
    # (d3 - d1) g2.
    d, g = np.array([3.0, -1, 4, 2]), np.array([2.0, 5, -3])
    p = [
        (d[0] - d[2]) * g[0],
        (d[1] + d[2]) * g.sum() / 2,
        (d[2] - d[1]) * (g[0] - g[1] + g[2]) / 2,
        (d[3] - d[1]) * g[2],
    ]
    assert [p[0] + p[1] + p[2], p[1] - p[2] + p[3]] == correlate_1d(d, g).tolist() == [-11.0, 12.0]
    at, gm, bt = winograd.transform_matrices(2, 3)
    np.testing.assert_allclose((gm @ g) * (bt @ d), p, atol=1e-12)


CASES = [  # x shape, kernel shape, explicit pads: remainders of partial tiles, 1-D to 3-D
    ((2, 7, 9, 3), (3, 3, 3, 4), ((1, 1), (1, 1))),
    ((1, 10, 6, 2), (3, 3, 2, 5), ((2, 0), (1, 3))),
    ((2, 9, 8, 3), (5, 5, 3, 2), ((2, 2), (0, 1))),
    ((2, 6, 11, 2), (2, 4, 2, 3), ((0, 0), (1, 2))),
    ((3, 13, 4), (3, 4, 2), ((1, 1),)),
    ((1, 5, 6, 7, 2), (3, 3, 3, 2, 3), ((1, 1), (0, 0), (1, 2))),
    ((2, 8, 8, 2), (1, 3, 2, 2), ((0, 0), (1, 1))),
]


@pytest.mark.parametrize("x_shape,k_shape,pads", CASES)
def test_values_and_gradients_against_reference(x_shape, k_shape, pads, x64):
    rng = np.random.default_rng(7)
    x, k = rng.normal(size=x_shape), rng.normal(size=k_shape)
    n = len(x_shape) - 2
    ones = (1,) * n
    f = jax.jit(lambda x, k: jaxconv.conv(x, k, padding=pads, backend="winograd"))
    np.testing.assert_allclose(f(x, k), R.conv(x, k, ones, pads, ones, ones, 1), atol=1e-10)
    jaxpr = str(jax.make_jaxpr(f)(x, k))
    assert "_input_transform" in jaxpr and "_chunked_conv" not in jaxpr  # transformed, no fallback
    check_grads(f, (x, k), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "x_shape,k_shape,pads",
    [
        ((2, 9, 8, 3), (3, 3, 3, 2), ((-1, 2), (1, -2))),
        ((1, 2, 3, 2), (3, 3, 2, 2), ((6, 5), (0, 7))),
        ((2, 11, 3), (5, 3, 2), ((3, 0),)),
    ],
)
def test_the_two_input_transforms_agree(x_shape, k_shape, pads, x64):
    # The forward slices x (padding each slice), reverse mode transposes the padded form:
    # the same linear map, including tiles that lie wholly in the padding.
    rng = np.random.default_rng(2)
    x = rng.normal(size=x_shape)
    taps = k_shape[:-2]
    m = tuple(winograd.tile_outputs(r) for r in taps)
    outs = [s + lo + hi - r + 1 for s, (lo, hi), r in zip(x_shape[1:-1], pads, taps)]
    tiles = tuple(-(-length // mi) for length, mi in zip(outs, m))
    args = (pads, m, taps, tiles)
    np.testing.assert_array_equal(
        winograd._sliced_tiles(x, *args), winograd._padded_tiles(x, *args)
    )


def test_transform_gradients_are_concatenations_not_padded_sums(x64):
    # The gradient of a layer transposes the output transform and the padded input
    # transform. Built from lax.split and whole-block shifts, their transposes are
    # concatenations plus a few shifts; indexing one sample at a time would transpose to
    # one zero-padded full-size array per sample (6 per axis), summed.
    rng = np.random.default_rng(4)
    x, k = rng.normal(size=(2, 10, 9, 3)), rng.normal(size=(3, 3, 3, 2))
    f = lambda x: winograd.conv(
        x,
        k,
        strides=(1, 1),
        dilation=(1, 1),
        input_dilation=(1, 1),
        groups=1,
        pads=((1, 1), (1, 1)),
    )
    y = f(x)
    jaxpr = jax.make_jaxpr(jax.linear_transpose(jax.linearize(f, x)[1], x))(y)
    eqns = jaxpr.jaxpr.eqns
    assert sum(e.primitive.name == "concatenate" for e in eqns) >= 4  # 2 transforms x 2 axes
    pads = [
        [tuple(int(v) for v in c) for c in e.params["padding_config"]]
        for e in eqns
        if e.primitive.name == "pad"
    ]
    assert not any(interior for config in pads for _, _, interior in config)  # no strided scatters
    # every pad shifts by at most one block, except the output crop's transpose and the
    # input padding's (a crop): indexing sample j instead pads j and a - 1 - j around it.
    wide = [config for config in pads if any(abs(lo) + abs(hi) > 1 for lo, hi, _ in config)]
    assert len(wide) <= 2, wide
    # the input gradient transposes the axes one at a time, with a barrier between them
    # (one on 2 axes; the forward's sliced transform and the output transform have none)
    assert sum(e.primitive.name == "optimization_barrier" for e in eqns) == 1
    assert "optimization_barrier" not in str(jax.make_jaxpr(f)(x))
    # and the samples themselves: block sampling equals strided slicing
    v = jnp.asarray(rng.normal(size=(2, 4 * 5, 3)))
    for j, part in enumerate(winograd._block_samples(v, 1, 4, 4, 6)):
        np.testing.assert_array_equal(part, winograd._strided(v, 1, j, 4, 4))


def test_negative_pads_crop_like_window(x64):
    rng = np.random.default_rng(1)
    x, k = rng.normal(size=(2, 9, 8, 3)), rng.normal(size=(3, 3, 3, 2))
    opts = dict(
        strides=(1, 1), dilation=(1, 1), input_dilation=(1, 1), groups=1, pads=((-1, 2), (1, -2))
    )
    np.testing.assert_allclose(winograd.conv(x, k, **opts), window.conv(x, k, **opts), atol=1e-12)


def test_float32_rounding_stays_near_direct():
    # A 64-channel 3x3 layer in float32 against a float64 reference: F(4x4, 3x3) rounds
    # more than a direct sum (transform coefficients up to 5, |G| entries 1/24..1/4) but
    # stays within a few 1e-6 of the largest output (the module docstring's claim).
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 12, 12, 64)).astype(np.float32)
    k = (rng.normal(size=(3, 3, 64, 64)) / 24).astype(np.float32)
    ref = R.conv(
        x.astype(np.float64), k.astype(np.float64), (1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1), 1
    )
    scale = np.abs(ref).max()
    err = {
        b: np.abs(np.asarray(jaxconv.conv(x, k, padding=1, backend=b), np.float64) - ref).max()
        / scale
        for b in ("winograd", "lax")
    }
    assert err["winograd"] < 2e-5, err
    assert err["lax"] < err["winograd"], err  # the direct sum is the more exact one


def test_half_precision_runs_in_float32(rng):
    x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
    k = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    out = jaxconv.conv(
        jnp.asarray(x, jnp.bfloat16), jnp.asarray(k, jnp.bfloat16), padding=1, backend="winograd"
    )
    assert out.dtype == jnp.bfloat16
    exact = jaxconv.conv(
        jnp.asarray(x, jnp.bfloat16).astype(jnp.float32),
        jnp.asarray(k, jnp.bfloat16).astype(jnp.float32),
        padding=1,
        backend="lax",
    )
    # One rounding to bfloat16 at the end (at most 2^-9 relative), not one per transform step.
    np.testing.assert_allclose(
        np.asarray(out, np.float32), exact, atol=1e-5 * float(jnp.abs(exact).max()), rtol=2**-8
    )


@pytest.mark.parametrize(
    "options",
    [dict(stride=2), dict(dilation=2), dict(groups=2), dict(stride=(1, 2))],
)
def test_outside_its_scope_it_is_the_window_backend(options, rng):
    x = rng.normal(size=(2, 9, 9, 4)).astype(np.float32)
    k = rng.normal(size=(3, 3, 2 if "groups" in options else 4, 6)).astype(np.float32)
    got = jaxconv.conv(x, k, padding=1, backend="winograd", **options)
    np.testing.assert_array_equal(got, jaxconv.conv(x, k, padding=1, backend="window", **options))
    kernel_size, n = k.shape[:2], 2
    strides = jaxconv.ops._validate.ntuple(options.get("stride", 1), n, "stride")
    dilation = jaxconv.ops._validate.ntuple(options.get("dilation", 1), n, "dilation")
    assert not winograd.applies(kernel_size, strides, dilation, (1, 1), options.get("groups", 1))
    # One-tap kernels and kernels longer than MAX_TAPS go there too.
    assert not winograd.applies((1, 1), (1, 1), (1, 1), (1, 1), 1)
    assert not winograd.applies((3, winograd.MAX_TAPS + 1), (1, 1), (1, 1), (1, 1), 1)


def test_conv_transpose_and_model_layers_accept_it(rng):
    y = rng.normal(size=(2, 5, 5, 3)).astype(np.float32)
    k = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    for stride in (1, 2):
        got = jaxconv.conv_transpose(y, k, stride=stride, padding=1, backend="winograd")
        np.testing.assert_allclose(
            got, jaxconv.conv_transpose(y, k, stride=stride, padding=1, backend="lax"), atol=2e-5
        )
    pooled = jaxconv.max_pool(y, 2, backend="winograd")
    np.testing.assert_array_equal(pooled, jaxconv.max_pool(y, 2, backend="window"))
