"""conv_transpose: PyTorch semantics (scatter reference) and the adjoint of conv (VJP)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import jaxconv
from tests.conftest import BACKENDS
from tests.ops import reference as R
from tests.ops.test_conv import close


@pytest.mark.parametrize("backend", BACKENDS)
def test_by_hand(backend):
    y = jnp.array([1.0, 2.0]).reshape(1, 2, 1)
    k = jnp.array([1.0, 10.0, 100.0]).reshape(3, 1, 1)
    # each input sample drops a scaled copy of the kernel at i * stride
    out = jaxconv.conv_transpose(y, k, stride=2, backend=backend)
    close(out[0, :, 0], [1, 10, 102, 20, 200])
    out = jaxconv.conv_transpose(y, k, stride=2, padding=1, output_padding=1, backend=backend)
    close(out[0, :, 0], [10, 102, 20, 200])


@st.composite
def transpose_cases(draw):
    n = draw(st.sampled_from([1, 2, 2, 3]))
    ksize = tuple(draw(st.integers(1, 3 if n < 3 else 2)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    pad = tuple(draw(st.integers(0, 2)) for _ in range(n))
    opad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    sizes = tuple(draw(st.integers(1, 4)) for _ in range(n))
    for size, k, s, d, p, o in zip(sizes, ksize, stride, dilation, pad, opad):
        assume((size - 1) * s - 2 * p + d * (k - 1) + o + 1 >= 1)
    groups = draw(st.sampled_from([1, 2]))
    cin_g, cout_g = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    layout = draw(st.sampled_from(["channels_last", "channels_first"]))
    return (
        n,
        ksize,
        stride,
        dilation,
        pad,
        opad,
        sizes,
        groups,
        cin_g,
        cout_g,
        layout,
        draw(st.integers(0, 999)),
    )


@given(transpose_cases())
def test_matches_scatter_reference_and_conv_vjp(case):
    n, ksize, stride, dilation, pad, opad, sizes, groups, cin_g, cout_g, layout, seed = case
    rng = np.random.default_rng(seed)
    cin = cin_g * groups
    y = rng.normal(size=(2, *sizes, cin)).astype(np.float32)
    k = rng.normal(size=(*ksize, cin, cout_g)).astype(np.float32)
    expected = R.conv_transpose(y, k, stride, tuple((p, p) for p in pad), opad, dilation, groups)
    yin, kin = y, k
    if layout == "channels_first":
        yin, kin = np.moveaxis(y, -1, 1), np.transpose(k, (n, n + 1, *range(n)))
    for backend in BACKENDS:
        out = jaxconv.conv_transpose(
            yin,
            kin,
            stride=stride,
            padding=pad,
            output_padding=opad,
            dilation=dilation,
            groups=groups,
            layout=layout,
            backend=backend,
        )
        if layout == "channels_first":
            out = np.moveaxis(np.asarray(out), 1, -1)
        close(out, expected, tol=5e-5)

    # The adjoint: the VJP of conv with the same kernel, read as a conv kernel
    # (*k, C_out // g, C_in): conv maps x (C_out channels) back to y (C_in channels).
    x_shape = (2, *expected.shape[1:-1], cout_g * groups)
    conv_k = np.swapaxes(k, n, n + 1)
    f = lambda x: jaxconv.conv(
        x, conv_k, stride=stride, padding=pad, dilation=dilation, groups=groups, backend="lax"
    )
    primal, vjp = jax.vjp(f, jnp.zeros(x_shape, jnp.float32))
    # output_padding may reach up to the dilation; only sizes that conv maps back onto
    # y's size are adjoint pairs (always the case when output_padding < stride).
    if all(o < s for o, s in zip(opad, stride)):
        assert primal.shape == y.shape
    if primal.shape != y.shape:
        return
    close(vjp(jnp.asarray(y))[0], expected, tol=5e-5)
