"""The sub-pixel form of a strided transposed convolution (jaxconv.ops.phases): the same
values and gradients as XLA's own transposed convolution (``lax``), on every backend,
at the layer shapes that take it under ``auto`` and at the edges of its padding
arithmetic; and ``auto`` takes it where the policy says."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv.ops import phases
from tests.conftest import BACKENDS
from tests.ops.test_conv import close

# (y shape, kernel shape, stride, padding, output_padding, dilation, groups)
CASES = [
    ((2, 7, 7, 6), (4, 4, 6, 8), 2, 1, 0, 1, 1),  # a decoder layer, PyTorch's padding=1
    ((2, 5, 6, 4), (3, 3, 4, 8), 2, 1, 1, 1, 1),  # k not a multiple of s, output_padding
    ((1, 4, 3, 2), (2, 5, 2, 8), (3, 1), ((4, 0), (0, 2)), (2, 0), (1, 2), 2),  # mixed axes
    ((2, 6, 3), (5, 3, 8), 3, 0, 2, 1, 1),  # 1-D
    ((1, 3, 4, 3, 4), (2, 3, 2, 4, 8), 2, (0, 1, 0), (1, 0, 0), 1, 1),  # 3-D
    ((2, 3, 3), (3, 3, 8), 2, ((5, 0),), 0, 1, 1),  # a crop past the first samples
    ((2, 2, 2), (2, 2, 8), 4, ((0, 3),), 1, 1, 1),  # kernel shorter than the stride
]


def _run(backend, y, k, stride, padding, opad, dilation, groups):
    return jaxconv.conv_transpose(
        y,
        k,
        stride=stride,
        padding=padding,
        output_padding=opad,
        dilation=dilation,
        groups=groups,
        backend=backend,
    )


@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
def test_values_and_gradients_match_xla(case):
    yshape, kshape, *args = case
    rng = np.random.default_rng(0)
    y = jnp.asarray(rng.normal(size=yshape), jnp.float32)
    k = jnp.asarray(rng.normal(size=kshape), jnp.float32)
    ref, ref_vjp = jax.vjp(lambda y, k: _run("lax", y, k, *args), y, k)
    ct = jnp.asarray(rng.normal(size=ref.shape), jnp.float32)
    ref_grads = ref_vjp(ct)
    for backend in (*BACKENDS, "auto"):
        out, vjp = jax.vjp(lambda y, k: _run(backend, y, k, *args), y, k)
        assert out.shape == ref.shape, backend
        close(out, ref, tol=1e-5)
        for got, want in zip(vjp(ct), ref_grads):
            close(got, want, tol=1e-5)


def test_second_order_matches_xla():
    rng = np.random.default_rng(1)
    y = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 3, 8)), jnp.float32)

    def hvp(backend):
        loss = lambda k: jnp.sum(jnp.tanh(jaxconv.conv_transpose(y, k, stride=2, backend=backend)))
        return jax.jvp(jax.grad(loss), (k,), (jnp.ones_like(k),))[1]

    close(hvp("window"), hvp("lax"), tol=1e-4)


def test_phase_kernel_by_hand():
    # 1-D, stride 2, taps [1, 2, 3, 4]: phase 0 reads taps 0 and 2, phase 1 taps 1 and 3,
    # each flipped for a correlation: [[3, 4], [1, 2]] as (tap, phase).
    k = jnp.arange(1.0, 5.0).reshape(4, 1, 1)
    w = phases.phase_kernel(k, (2,), 1)
    assert w.shape == (2, 1, 2)
    np.testing.assert_array_equal(w[:, 0, :], [[3, 4], [1, 2]])


def _has_input_dilated_conv(fn, *args) -> bool:
    jaxpr = jax.make_jaxpr(fn)(*args)
    return any(
        e.primitive.name == "conv_general_dilated" and any(d > 1 for d in e.params["lhs_dilation"])
        for e in jaxpr.jaxpr.eqns
    )


def test_auto_takes_the_subpixel_form_where_the_policy_says():
    y = jnp.ones((4, 7, 7, 16))
    wide, narrow = jnp.ones((4, 4, 16, 32)), jnp.ones((4, 4, 16, 1))
    up = lambda backend: (
        lambda y, k: jaxconv.conv_transpose(y, k, stride=2, padding=1, backend=backend)
    )
    assert not _has_input_dilated_conv(up("auto"), y, wide)  # 32 output channels: sub-pixel
    assert _has_input_dilated_conv(up("auto"), y, narrow)  # one output channel: XLA's
    assert _has_input_dilated_conv(up("lax"), y, wide)  # lax is XLA's own, always
    assert all(not _has_input_dilated_conv(up(b), y, wide) for b in ("window", "fft", "winograd"))


# (x shape, kernel shape, stride, padding): strided convolutions whose kernel the stride
# divides, which auto runs on the space-to-depth input on CPU
STRIDED = [
    ((2, 14, 14, 8), (4, 4, 8, 6), 2, 1),  # the autoencoder's encoder layer
    ((2, 9, 8, 8), (2, 6, 8, 4), (2, 3), ((0, 1), (2, 0))),  # odd sizes, a crop
    ((2, 11, 8), (3, 8, 5), 3, 2),  # 1-D
    ((1, 6, 5, 7, 8), (2, 2, 2, 8, 3), 2, 0),  # 3-D
]


@pytest.mark.parametrize("case", STRIDED, ids=range(len(STRIDED)))
def test_space_to_depth_matches_xla(case):
    xshape, kshape, stride, padding = case
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=xshape), jnp.float32)
    k = jnp.asarray(rng.normal(size=kshape), jnp.float32)
    run = lambda backend: (
        lambda x, k: jaxconv.conv(x, k, stride=stride, padding=padding, backend=backend)
    )
    ref, ref_vjp = jax.vjp(run("lax"), x, k)
    out, vjp = jax.vjp(run("auto"), x, k)
    assert out.shape == ref.shape
    close(out, ref, tol=1e-5)
    ct = jnp.asarray(rng.normal(size=ref.shape), jnp.float32)
    for got, want in zip(vjp(ct), ref_vjp(ct)):
        close(got, want, tol=1e-5)
    # no strided convolution or strided slice of the input is left: one stride-1 form
    jaxpr = jax.make_jaxpr(run("auto"))(x, k).jaxpr
    assert all(
        e.params.get("window_strides", (1,)) == (1,) * (x.ndim - 2)
        for e in jaxpr.eqns
        if e.primitive.name == "conv_general_dilated"
    )


def test_space_to_depth_decision():
    from jaxconv.ops import ConvProblem
    from jaxconv.ops.policy import space_to_depth

    layer = dict(kernel_size=(4, 4), in_channels=32, out_channels=64, strides=(2, 2))
    assert space_to_depth(ConvProblem(**layer))
    assert not space_to_depth(ConvProblem(**{**layer, "kernel_size": (3, 3)}))  # zero taps
    assert not space_to_depth(ConvProblem(**{**layer, "in_channels": 1}))  # a first layer
    assert not space_to_depth(ConvProblem(**{**layer, "strides": (1, 1)}))
    assert not space_to_depth(ConvProblem(**layer, platform="gpu"))
    assert not space_to_depth(ConvProblem(**layer, groups=2))
