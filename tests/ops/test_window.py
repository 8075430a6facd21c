"""The window backend's own paths: the batch-chunked im2col with its JVP rule
(window_chunked) and the block-Toeplitz products for long 1-D kernels (window_toeplitz)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxconv
from tests.ops import reference as R
from tests.ops.test_conv import close


@pytest.mark.parametrize("cin", [1, 3, 9])
@pytest.mark.parametrize(
    "padding,dilation",
    [(((0, 0), (0, 0)), 1), (((1, 1), (1, 0)), 1), (((2, 0), (1, 3)), (2, 1))],
)
def test_window_chunked_im2col_jvp_rule(monkeypatch, x64, cin, padding, dilation):
    """The custom-JVP path of the window backend (no groups, stride 1), split into batch
    chunks plus a remainder: values, both gradients and second order against lax."""
    from jaxconv.ops import policy
    from jaxconv.ops.backends import window_chunked

    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 7, 6, cin))
    k = rng.normal(size=(3, 2, cin, 4))
    padded = (7 + sum(padding[0])) * (6 + sum(padding[1]))
    # Patches of two images per chunk: lax.map over 2 chunks of 2, then 1 left over.
    monkeypatch.setattr(policy, "CHUNK_BYTES", 2 * padded * 3 * 2 * cin * 8)
    monkeypatch.setattr(window_chunked, "GRADIENT_MIN_ROWS", 1)
    f = {
        b: (lambda x, k, b=b: jaxconv.conv(x, k, padding=padding, dilation=dilation, backend=b))
        for b in ("window", "lax")
    }
    # The forward maps over chunks, except with few input channels (shift and add over
    # the whole batch).
    maps = 0 if cin <= window_chunked.SHIFT_ADD_MAX_CHANNELS else 1
    assert str(jax.make_jaxpr(f["window"])(x, k)).count("length=2") == maps
    close(f["window"](x, k), f["lax"](x, k), tol=1e-12)
    ct = rng.normal(size=f["lax"](x, k).shape)
    # Reverse mode runs the forward's map and one more of 2 chunks: dX with dK together.
    backward = str(jax.make_jaxpr(lambda x, k, ct: jax.vjp(f["window"], x, k)[1](ct))(x, k, ct))
    assert backward.count("length=2") == maps + 1, backward.count("length=2")
    for got, want in zip(jax.vjp(f["window"], x, k)[1](ct), jax.vjp(f["lax"], x, k)[1](ct)):
        close(got, want, tol=1e-12)
    tangents = (rng.normal(size=x.shape), rng.normal(size=k.shape))
    close(
        jax.jvp(f["window"], (x, k), tangents)[1], jax.jvp(f["lax"], (x, k), tangents)[1], tol=1e-12
    )
    order = 2 if cin == 9 and dilation != 1 else 1  # second order once keeps the suite short
    check_grads(f["window"], (x, k), order=order, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
    # Gradient with respect to the kernel alone (a first layer): the input term is skipped.
    gk = jax.grad(lambda k: jnp.sum(f["window"](x, k) ** 2))(k)
    close(gk, jax.grad(lambda k: jnp.sum(f["lax"](x, k) ** 2))(k), tol=1e-12)


def test_window_gradient_chunks_hold_at_least_min_rows(monkeypatch):
    """The gradient map's chunks grow past CHUNK_BYTES to GRADIENT_MIN_ROWS output
    positions (a longer kernel-gradient contraction); the forward's stay cache-sized."""
    from jaxconv.ops import policy
    from jaxconv.ops.backends import window_chunked

    x = jnp.zeros((12, 5, 5, 8), jnp.float32)  # 25 output positions per image ("SAME")
    k = jnp.zeros((3, 3, 8, 4), jnp.float32)
    f = lambda x, k: jaxconv.conv(x, k, padding="SAME", backend="window")
    backward = lambda x, k: jax.vjp(f, x, k)[1](jnp.zeros((12, 5, 5, 4), jnp.float32))
    monkeypatch.setattr(
        policy, "CHUNK_BYTES", window_chunked._patch_bytes_per_image(x, k, ((1, 1), (1, 1)))
    )
    for min_rows, length in ((1, 12), (50, 6), (75, 4), (76, 3)):  # images per chunk: 1, 2, 3, 4
        monkeypatch.setattr(window_chunked, "GRADIENT_MIN_ROWS", min_rows)
        jax.clear_caches()  # the JVP rule's trace is cached across calls
        jaxpr = str(jax.make_jaxpr(backward)(x, k))
        # one map in the forward (1 image per chunk, length 12) and one in the gradients
        assert jaxpr.count("length=12") == (2 if length == 12 else 1), (
            min_rows,
            jaxpr.count("length=12"),
        )
        assert length == 12 or jaxpr.count(f"length={length}") == 1, min_rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64, jnp.bfloat16, np.complex64])
@pytest.mark.parametrize("shape", [(1, 3, 2), (5, 4, 3), (32, 7)])
def test_window_sum_leading_matches_numpy(x64, rng, dtype, shape):
    """The kernel gradient's per-chunk sum (a product with ones, not XLA's slow reduce
    over a short leading axis): equal to NumPy's float64 sum, in the input's dtype."""
    from jaxconv.ops.backends import window_chunked

    a = rng.normal(size=shape) + (1j * rng.normal(size=shape) if dtype == np.complex64 else 0)
    got = window_chunked.sum_leading(jnp.asarray(a, dtype))
    assert got.dtype == jnp.dtype(dtype) and got.shape == shape[1:]
    want = np.asarray(jnp.asarray(a, dtype)).astype(np.complex128).sum(axis=0)
    tol = {jnp.bfloat16: 1e-2, np.float32: 1e-6, np.complex64: 1e-6, np.float64: 1e-13}[dtype]
    np.testing.assert_allclose(
        np.asarray(got).astype(np.complex128), want, rtol=tol, atol=tol * shape[0]
    )


def test_window_chunked_im2col_under_vmap_and_jit(rng):
    x = jnp.asarray(rng.normal(size=(3, 4, 9, 9, 10)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 10, 5)), jnp.float32)
    conv = lambda b: jax.jit(jax.vmap(lambda x: jaxconv.conv(x, k, padding="SAME", backend=b)))
    assert "custom_jvp_call" in str(jax.make_jaxpr(conv("window"))(x))
    close(conv("window")(x), conv("lax")(x), tol=1e-5)
    grad = lambda b: jax.grad(lambda x: jnp.sum(jnp.tanh(conv(b)(x))))(x)
    close(grad("window"), grad("lax"), tol=1e-5)


def test_window_paths_by_shape(rng):
    """Ungrouped stride-1 layers take the custom-JVP path at any batch size; strided or
    grouped ones, or patches larger than CHUNK_BYTES per image, the tap-chunked one."""
    from jaxconv.ops import policy

    k = jnp.zeros((3, 3, 10, 5), jnp.float32)
    jaxpr = lambda x, **kw: str(
        jax.make_jaxpr(lambda x: jaxconv.conv(x, k, backend="window", **kw))(x)
    )
    assert "custom_jvp_call" in jaxpr(jnp.zeros((2, 9, 9, 10), jnp.float32))
    assert "custom_jvp_call" not in jaxpr(jnp.zeros((2, 9, 9, 10), jnp.float32), stride=2)
    side = math.isqrt(policy.CHUNK_BYTES // (9 * 10 * 4)) + 1  # one image's patches > CHUNK_BYTES
    big = jaxpr(jax.ShapeDtypeStruct((1, side, side, 10), jnp.float32))
    assert "custom_jvp_call" not in big and "dot_general" in big


def test_toeplitz_matrix_is_the_kernels_band(rng):
    """T[j, c, r, o] = K[j - r, c, o] inside the band, zero outside: built from an
    explicit double loop here."""
    from jaxconv.ops.backends import window_toeplitz

    taps, cin, cout, block = 5, 2, 3, 4
    k = rng.normal(size=(taps, cin, cout)).astype(np.float32)
    want = np.zeros((block + taps - 1, cin, block, cout), np.float32)
    for j in range(block + taps - 1):
        for r in range(block):
            if 0 <= j - r < taps:
                want[j, :, r, :] = k[j - r]
    got = window_toeplitz._toeplitz_matrix(jnp.asarray(k), block)
    close(got, want.reshape((block + taps - 1) * cin, block * cout), tol=0)


@pytest.mark.parametrize(
    "length,taps,cin,cout,padding",
    [
        (50, 8, 1, 1, "SAME"),  # shift-and-add forward, block-product derivatives
        (37, 9, 1, 1, ((8, 8),)),  # "full"; output not a whole number of blocks
        (70, 40, 1, 1, ((3, 0),)),  # asymmetric; blocks of 16, each reading 4 input blocks
        (45, 70, 1, 1, ((69, 0),)),  # kernel longer than the signal; block product forward
        (30, 16, 2, 4, "VALID"),  # channels: block product both ways
        (20, 12, 8, 8, ((2, 1),)),  # 64 channel pairs, the most the path takes
        (11, 11, 1, 1, "VALID"),  # a single output
    ],
)
def test_window_toeplitz_path_against_reference(x64, length, taps, cin, cout, padding):
    """Long 1-D kernels on few channels: block-Toeplitz products (and shift and add for a
    one-channel forward); values against the NumPy reference, both gradients against
    lax, first and second order in both modes."""
    rng = np.random.default_rng(taps)
    x = rng.normal(size=(3, length, cin))
    k = rng.normal(size=(taps, cin, cout))
    f = {
        b: (lambda x, k, b=b: jaxconv.conv(x, k, padding=padding, backend=b))
        for b in ("window", "lax")
    }
    jaxpr = str(jax.make_jaxpr(f["window"])(x, k))
    assert "custom_jvp_call" in jaxpr  # the signal path
    y = f["window"](x, k)
    pads = (
        [(taps - 1) // 2, taps - 1 - (taps - 1) // 2]
        if padding == "SAME"
        else ([0, 0] if padding == "VALID" else list(padding[0]))
    )
    want = R.conv(x, k, (1,), [tuple(pads)], (1,), (1,), 1)
    assert y.shape == want.shape
    close(y, want, tol=1e-10)
    ct = rng.normal(size=y.shape)
    for got, ref in zip(jax.vjp(f["window"], x, k)[1](ct), jax.vjp(f["lax"], x, k)[1](ct)):
        close(got, ref, tol=1e-10)
    tangents = (rng.normal(size=x.shape), rng.normal(size=k.shape))
    close(
        jax.jvp(f["window"], (x, k), tangents)[1], jax.jvp(f["lax"], (x, k), tangents)[1], tol=1e-10
    )
    check_grads(f["window"], (x, k), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_window_toeplitz_path_by_shape(monkeypatch):
    """Only stride-1, undilated, ungrouped 1-D kernels of TOEPLITZ_MIN_TAPS or more taps
    on at most TOEPLITZ_MAX_CHANNEL_PRODUCT channel pairs take the block products."""
    from jaxconv.ops.backends import window_toeplitz

    calls = []
    block_product = window_toeplitz._toeplitz_conv
    monkeypatch.setattr(
        window_toeplitz, "_toeplitz_conv", lambda *a: calls.append(1) or block_product(*a)
    )

    def path(taps, cin, cout, **kw):
        x = jnp.ones((2, 64, cin * kw.get("groups", 1)), jnp.float32)
        k = jnp.ones((taps, cin, cout), jnp.float32)
        calls.clear()
        jax.grad(lambda x, k: jaxconv.conv(x, k, backend="window", **kw).sum(), (0, 1))(x, k)
        return "block" if calls else "other"

    m = window_toeplitz.TOEPLITZ_MIN_TAPS
    assert path(m, 1, 1) == "block" and path(m, 8, 8) == "block"
    assert path(m - 1, 1, 1) == "other"
    assert path(m, 8, 9) == "other"  # 72 channel pairs: the batch-chunked im2col
    assert path(m, 1, 1, stride=2) == "other"
    assert path(m, 1, 1, dilation=2) == "other"
    assert path(m, 1, 2, groups=2) == "other"


def test_window_toeplitz_under_vmap_jit_and_bfloat16(rng):
    x = rng.normal(size=(4, 2, 300, 1))
    k = rng.normal(size=(24, 1, 1))
    conv = lambda b, dt: jax.jit(
        jax.vmap(lambda x: jaxconv.conv(x, k.astype(dt), padding="SAME", backend=b))
    )
    want = conv("lax", jnp.float32)(jnp.asarray(x, jnp.float32))
    close(conv("window", jnp.float32)(jnp.asarray(x, jnp.float32)), want, tol=1e-5)
    got16 = conv("window", jnp.bfloat16)(jnp.asarray(x, jnp.bfloat16))
    assert got16.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(got16, np.float32), want, atol=0.1 * float(jnp.abs(want).max())
    )
    grad = lambda b: jax.grad(lambda x: jnp.sum(jnp.tanh(conv(b, jnp.float32)(x))))(
        jnp.asarray(x, jnp.float32)
    )
    close(grad("window"), grad("lax"), tol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"stride": 2},
        {"stride": (1, 2), "padding": ((1, 0), (2, 1))},
        {"input_dilation": 2, "padding": 1},
        {"layout": "channels_first"},
    ],
)
def test_pointwise_matches_lax_with_gradients(kwargs):
    # window's 1x1 path: one matrix product over all positions (and its two gradients)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 5, 6, 4)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 4, 3)), jnp.float32)
    if kwargs.get("layout") == "channels_first":
        x, k = jnp.moveaxis(x, -1, 1), jnp.transpose(k, (3, 2, 0, 1))

    def run(backend):
        f = lambda x, k: jaxconv.conv(x, k, backend=backend, **kwargs)
        y, vjp = jax.vjp(f, x, k)
        return y, vjp(jnp.cos(y))

    (y, grads), (y_ref, grads_ref) = run("window"), run("lax")
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, grads_ref):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
