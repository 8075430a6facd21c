"""jit, vmap, first and second order gradients, float64 and bfloat16 on every backend."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxconv
from tests.conftest import BACKENDS
from tests.ops import reference as R
from tests.ops.test_conv import close


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_grads_second_order(backend, x64):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 5, 4))
    k = rng.normal(size=(3, 2, 2, 6))
    f = lambda x, k: jaxconv.conv(
        x,
        k,
        stride=(2, 1),
        padding=((1, 0), (1, 1)),
        dilation=(1, 2),
        groups=2,
        padding_mode=("reflect", "zeros"),
        backend=backend,
    )
    check_grads(f, (x, k), order=2, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_transpose_and_signal_grads(backend, x64):
    rng = np.random.default_rng(2)
    y = rng.normal(size=(1, 3, 4))
    k = rng.normal(size=(3, 4, 2))
    f = lambda y, k: jaxconv.conv_transpose(
        y, k, stride=2, padding=1, output_padding=1, groups=2, backend=backend
    )
    check_grads(f, (y, k), order=2, atol=1e-5, rtol=1e-5)
    a, v = rng.normal(size=(7, 5)), rng.normal(size=(3, 2))
    g = lambda a, v: jaxconv.convolve(a, v, "same", backend=backend)
    check_grads(g, (a, v), order=2, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_grads(backend, x64):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 6, 2))  # distinct values: max is differentiable
    avg = lambda x: jaxconv.avg_pool(x, 3, stride=2, padding=1, ceil_mode=True, backend=backend)
    check_grads(avg, (x,), order=2, atol=1e-5, rtol=1e-5)
    mx = lambda x: jaxconv.max_pool(x, (2, 3), stride=1, backend=backend)
    check_grads(mx, (x,), order=1, atol=1e-5, rtol=1e-5)
    lp = lambda x: jaxconv.lp_pool(jnp.abs(x) + 1.0, 2, backend=backend)
    check_grads(lp, (x,), order=2, atol=1e-5, rtol=1e-5)


def test_max_pool_gradient_routes_to_argmax():
    x = jnp.array([1.0, 5, 2, 4]).reshape(1, 4, 1)
    for backend in BACKENDS:
        g = jax.grad(lambda x: jaxconv.max_pool(x, 2, backend=backend).sum())(x)
        assert g[0, :, 0].tolist() == [0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_jit_and_vmap(backend, rng):
    x = rng.normal(size=(3, 2, 8, 7, 3)).astype(np.float32)  # a leading vmap axis of 3
    k = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    f = jax.jit(lambda x: jaxconv.conv(x, k, padding="SAME", backend=backend))
    eager = np.stack([np.asarray(jaxconv.conv(xi, k, padding="SAME", backend=backend)) for xi in x])
    close(jax.vmap(f)(x), eager)
    # vmapping over kernels too
    ks = rng.normal(size=(3, 3, 3, 3, 4)).astype(np.float32)
    out = jax.vmap(lambda xi, ki: jaxconv.conv(xi, ki, backend=backend))(x, ks)
    close(out[1], R.conv(x[1], ks[1], (1, 1), ((0, 0), (0, 0)), (1, 1), (1, 1), 1))
    pooled = jax.jit(jax.vmap(lambda xi: jaxconv.max_pool(xi, 2, backend=backend)))(x)
    close(pooled[2], R.pool(x[2], "max", (2, 2), (2, 2), (0, 0), (1, 1), False))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64(backend, x64):
    rng = np.random.default_rng(4)
    x, k = rng.normal(size=(2, 9, 3)), rng.normal(size=(4, 3, 2))
    out = jaxconv.conv(x, k, padding="SAME", backend=backend)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(out, R.conv(x, k, (1,), ((1, 2),), (1,), (1,), 1), atol=1e-12)
    a, v = rng.normal(size=50), rng.normal(size=7)
    np.testing.assert_allclose(
        jaxconv.convolve(a, v, backend=backend), np.convolve(a, v), atol=1e-12
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16(backend, rng):
    x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
    k = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    ref = R.conv(x, k, (1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1), 1)
    out = jaxconv.conv(
        jnp.asarray(x, jnp.bfloat16), jnp.asarray(k, jnp.bfloat16), padding=1, backend=backend
    )
    assert out.dtype == jnp.bfloat16
    # bfloat16 has an 8-bit mantissa: inputs round by 2^-9 relative; sums of 36 terms.
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=0.15, rtol=0.05)
    pooled = jaxconv.avg_pool(jnp.asarray(x, jnp.bfloat16), 2, backend=backend)
    assert pooled.dtype == jnp.bfloat16
