"""convolve / correlate against scipy.signal and numpy.convolve."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

import jaxconv
from tests.conftest import BACKENDS
from tests.ops.test_conv import close

MODES = ("full", "same", "valid")


@pytest.mark.parametrize("backend", BACKENDS + ("auto",))
def test_seed_example(backend):
    out = jaxconv.convolve([1, 2, 3, 4, 5], [1, 1, 1], backend=backend)
    close(out, [1, 3, 6, 9, 12, 9, 5])
    assert jaxconv.convolve([1, 2, 3, 4, 5], [1, 1, 1], "same", backend=backend).shape == (5,)
    close(jaxconv.convolve([1, 2, 3, 4, 5], [1, 1, 1], "valid", backend=backend), [6, 9, 12])


@pytest.mark.parametrize("backend", BACKENDS)
def test_2d_formula_5x5_3x3(backend):
    image = np.arange(25.0).reshape(5, 5) ** 1.5
    kernel = np.array([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]) + np.eye(3) * 0.5
    expected = np.array(
        [
            [
                sum(image[i + m, j + n] * kernel[m, n] for m in range(3) for n in range(3))
                for j in range(3)
            ]
            for i in range(3)
        ]
    )
    out = jaxconv.correlate(image, kernel, "valid", backend=backend)
    assert out.shape == (3, 3)
    close(out, expected)


@given(
    st.integers(1, 3),
    st.data(),
    st.sampled_from(MODES),
)
def test_against_scipy(ndim, data, mode):
    a_shape = tuple(data.draw(st.integers(1, 9 if ndim < 3 else 4)) for _ in range(ndim))
    if mode == "valid" and data.draw(st.booleans()):
        v_shape = tuple(data.draw(st.integers(1, s)) for s in a_shape)
        if data.draw(st.booleans()):  # scipy swaps when v is the larger one
            a_shape, v_shape = v_shape, a_shape
    else:
        v_shape = tuple(data.draw(st.integers(1, 6 if ndim < 3 else 3)) for _ in range(ndim))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    a = rng.normal(size=a_shape).astype(np.float32)
    v = rng.normal(size=v_shape).astype(np.float32)
    ok = (
        mode != "valid"
        or all(x >= y for x, y in zip(a_shape, v_shape))
        or all(y >= x for x, y in zip(a_shape, v_shape))
    )
    if not ok:
        with pytest.raises(ValueError, match="valid"):
            jaxconv.convolve(a, v, mode)
        return
    for backend in BACKENDS:
        close(
            jaxconv.convolve(a, v, mode, backend=backend),
            scipy.signal.convolve(a, v, mode, method="direct"),
        )
        close(
            jaxconv.correlate(a, v, mode, backend=backend),
            scipy.signal.correlate(a, v, mode, method="direct"),
        )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_numpy_1d(mode, backend, rng):
    a, v = rng.normal(size=11), rng.normal(size=4)
    close(jaxconv.convolve(a, v, mode, backend=backend), np.convolve(a, v, mode))
    close(jaxconv.correlate(a, v, mode, backend=backend), np.correlate(a, v, mode))


def test_long_kernel_fft_matches_scipy(rng):
    a, v = rng.normal(size=500), rng.normal(size=129)
    ref = scipy.signal.convolve(a, v)
    for backend in BACKENDS + ("auto",):
        close(jaxconv.convolve(a, v, backend=backend), ref, tol=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_filter_lengths_auto_sends_to_window(mode, rng, on_cpu):
    """On CPU, ``auto`` runs 1-D filters of 8-64 taps on ``window``'s block-Toeplitz
    path (its custom JVP in the jaxpr) and longer ones on ``fft``; values and gradients
    against NumPy / lax either way, complex included."""
    from jaxconv.ops import ConvProblem, select_backend

    a, v = rng.normal(size=300), rng.normal(size=24)
    assert (
        select_backend(ConvProblem(v.shape, 1, 1, spatial=a.shape, dtype="float64", platform="cpu"))
        == "window"
    )
    assert "custom_jvp_call" in str(jax.make_jaxpr(lambda a, v: jaxconv.convolve(a, v, mode))(a, v))
    close(jaxconv.convolve(a, v, mode), np.convolve(a, v, mode), tol=1e-4)
    grad = lambda b: jax.grad(lambda v: jnp.sum(jnp.sin(jaxconv.correlate(a, v, mode, backend=b))))(
        v
    )
    close(grad("auto"), grad("lax"), tol=1e-4)
    c = (a + 1j * rng.normal(size=300)).astype(np.complex64)
    np.testing.assert_allclose(
        np.asarray(jaxconv.correlate(c, v.astype(np.complex64), mode)),
        np.correlate(c, v, mode),
        atol=1e-4,
    )
    assert "custom_jvp_call" not in str(
        jax.make_jaxpr(lambda a: jaxconv.convolve(a, np.ones(65), mode))(a)
    )


def test_complex_correlate_conjugates(rng):
    a = rng.normal(size=8) + 1j * rng.normal(size=8)
    v = rng.normal(size=3) + 1j * rng.normal(size=3)
    for backend in ("lax", "fft"):
        out = np.asarray(
            jaxconv.correlate(a.astype(np.complex64), v.astype(np.complex64), backend=backend)
        )
        np.testing.assert_allclose(out, scipy.signal.correlate(a, v), atol=1e-4)


def test_batched_with_vmap(rng):
    a = rng.normal(size=(4, 20)).astype(np.float32)
    v = rng.normal(size=(4, 5)).astype(np.float32)
    out = jax.vmap(lambda x, y: jaxconv.convolve(x, y, "same", backend="window"))(a, v)
    close(out, np.stack([np.convolve(x, y, "same") for x, y in zip(a, v)]))
    assert jnp.issubdtype(jaxconv.convolve([1, 2], [3, 4]).dtype, jnp.floating)
