"""conv against the numpy loop reference, lax's own padding rules and hand-computed cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import jaxconv
from tests.conftest import BACKENDS
from tests.ops import reference as R


def close(actual, expected, tol=2e-5):
    expected = np.asarray(expected)
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(finite.max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, atol=tol * scale, rtol=tol)


@pytest.mark.parametrize("backend", BACKENDS + ("auto",))
def test_seed_example_1d(backend):
    x = jnp.array([1.0, 2, 3, 4, 5]).reshape(1, 5, 1)
    k = jnp.ones((3, 1, 1))
    close(jaxconv.conv(x, k, backend=backend)[0, :, 0], [6, 9, 12])
    close(jaxconv.conv(x, k, padding="FULL", backend=backend)[0, :, 0], [1, 3, 6, 9, 12, 9, 5])
    close(jaxconv.conv(x, k, padding="CAUSAL", backend=backend)[0, :, 0], [1, 3, 6, 9, 12])
    close(jaxconv.conv(x, k, stride=2, padding=1, backend=backend)[0, :, 0], [3, 9, 9])


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_example_2d_formula(backend):
    # O[i, j] = sum_m sum_n I[i + m, j + n] K[m, n]: a 5x5 image, a 3x3 kernel -> 3x3.
    image = np.arange(25.0).reshape(5, 5)
    kernel = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])  # Sobel-x
    expected = np.array(
        [
            [
                sum(image[i + m, j + n] * kernel[m, n] for m in range(3) for n in range(3))
                for j in range(3)
            ]
            for i in range(3)
        ]
    )
    assert expected.tolist() == [[-8.0] * 3] * 3  # a linear ramp has a constant gradient
    out = jaxconv.conv(image[None, :, :, None], kernel[:, :, None, None], backend=backend)
    close(out[0, :, :, 0], expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "mode,expected",
    [
        ("zeros", [3, 6, 9, 12, 9]),
        ("reflect", [5, 6, 9, 12, 13]),
        ("replicate", [4, 6, 9, 12, 14]),
        ("circular", [8, 6, 9, 12, 10]),
    ],
)
def test_padding_modes_by_hand(backend, mode, expected):
    x = jnp.array([1.0, 2, 3, 4, 5]).reshape(1, 5, 1)
    out = jaxconv.conv(x, jnp.ones((3, 1, 1)), padding="SAME", padding_mode=mode, backend=backend)
    close(out[0, :, 0], expected)


@st.composite
def conv_cases(draw):
    n = draw(st.sampled_from([1, 1, 2, 2, 3]))
    small = n == 3
    ksize = tuple(draw(st.integers(1, 2 if small else 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    idil = tuple(draw(st.integers(1, 2)) for _ in range(n))
    sizes = tuple(draw(st.integers(1, 4 if small else 7)) for _ in range(n))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(n))
    modes = tuple(
        draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"])) for _ in range(n)
    )
    groups = draw(st.sampled_from([1, 2, 3]))
    cin_g, cout_g = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    batch = draw(st.integers(1, 2))
    layout = draw(st.sampled_from(["channels_last", "channels_first"]))
    dsizes = [(s - 1) * d + 1 for s, d in zip(sizes, idil)]
    for ds, (lo, hi), k, d, m in zip(dsizes, pads, ksize, dilation, modes):
        assume(ds + lo + hi >= (k - 1) * d + 1)
        assume(m != "reflect" or max(lo, hi) < ds)
        assume(m != "circular" or max(lo, hi) <= ds)
    seed = draw(st.integers(0, 2**16))
    return dict(
        n=n,
        ksize=ksize,
        dilation=dilation,
        stride=stride,
        idil=idil,
        sizes=sizes,
        pads=pads,
        modes=modes,
        groups=groups,
        cin_g=cin_g,
        cout_g=cout_g,
        batch=batch,
        layout=layout,
        seed=seed,
    )


@given(conv_cases())
def test_conv_matches_reference_on_every_backend(c):
    rng = np.random.default_rng(c["seed"])
    cin, cout = c["cin_g"] * c["groups"], c["cout_g"] * c["groups"]
    x = rng.normal(size=(c["batch"], *c["sizes"], cin)).astype(np.float32)
    k = rng.normal(size=(*c["ksize"], c["cin_g"], cout)).astype(np.float32)
    expected = R.conv(
        x, k, c["stride"], c["pads"], c["dilation"], c["idil"], c["groups"], c["modes"]
    )
    n = c["n"]
    xin, kin = x, k
    if c["layout"] == "channels_first":
        xin = np.moveaxis(x, -1, 1)
        kin = np.transpose(k, (n + 1, n, *range(n)))
    for backend in BACKENDS:
        out = jaxconv.conv(
            xin,
            kin,
            stride=c["stride"],
            padding=c["pads"],
            dilation=c["dilation"],
            input_dilation=c["idil"],
            groups=c["groups"],
            padding_mode=c["modes"],
            layout=c["layout"],
            backend=backend,
        )
        if c["layout"] == "channels_first":
            out = np.moveaxis(np.asarray(out), 1, -1)
        close(out, expected, tol=5e-5)


@pytest.mark.parametrize("padding", ["SAME", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_padding_strings_agree_with_lax(padding, stride):
    rng = np.random.default_rng(stride)
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    k = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    ref = jax.lax.conv_general_dilated(
        x, k, (stride,) * 2, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    for backend in BACKENDS:
        out = jaxconv.conv(x, k, stride=stride, padding=padding, backend=backend)
        close(out, ref)
    if padding.startswith("SAME"):
        assert out.shape[1:3] == (-(-7 // stride), -(-6 // stride))


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_and_causal_padding(backend, rng):
    x = rng.normal(size=(1, 6, 2)).astype(np.float32)
    k = rng.normal(size=(3, 2, 1)).astype(np.float32)
    full = jaxconv.conv(x, k, padding="full", dilation=2, backend=backend)
    close(full, R.conv(x, k, (1,), ((4, 4),), (2,), (1,), 1))
    causal = jaxconv.conv(x, k, padding="CAUSAL", backend=backend)
    close(causal, R.conv(x, k, (1,), ((2, 0),), (1,), (1,), 1))
    # causal: output t depends on inputs <= t only
    x2 = x.copy()
    x2[0, 4:] += 10.0
    causal2 = jaxconv.conv(x2, k, padding="CAUSAL", backend=backend)
    close(causal2[0, :4], causal[0, :4])


@pytest.mark.parametrize("backend", BACKENDS)
def test_four_spatial_dims(backend, rng):
    x = rng.normal(size=(1, 3, 4, 3, 4, 2)).astype(np.float32)
    k = rng.normal(size=(2, 2, 1, 3, 2, 3)).astype(np.float32)
    out = jaxconv.conv(x, k, stride=(1, 2, 1, 1), padding=1, backend=backend)
    close(out, R.conv(x, k, (1, 2, 1, 1), ((1, 1),) * 4, (1,) * 4, (1,) * 4, 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_depthwise_and_pointwise(backend, rng):
    x = rng.normal(size=(2, 9, 8, 4)).astype(np.float32)
    depthwise = rng.normal(size=(3, 3, 1, 8)).astype(np.float32)  # multiplier 2
    out = jaxconv.conv(x, depthwise, padding="SAME", groups=4, backend=backend)
    close(out, R.conv(x, depthwise, (1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1), 4))
    pointwise = rng.normal(size=(1, 1, 4, 5)).astype(np.float32)
    close(
        jaxconv.conv(x, pointwise, backend=backend), np.einsum("nhwc,co->nhwo", x, pointwise[0, 0])
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_and_non_square(backend):
    x = jnp.full((1, 1, 1), 3.0)
    assert jaxconv.conv(x, jnp.full((1, 1, 1), 2.0), backend=backend).tolist() == [[[6.0]]]
    x = jnp.ones((1, 1, 9, 2))
    out = jaxconv.conv(x, jnp.ones((1, 4, 2, 3)), stride=(1, 2), backend=backend)
    assert out.shape == (1, 1, 3, 3)
    close(out, np.full((1, 1, 3, 3), 8.0))


def test_precision_is_accepted(rng):
    x = rng.normal(size=(1, 5, 5, 2)).astype(np.float32)
    k = rng.normal(size=(3, 3, 2, 2)).astype(np.float32)
    for backend in BACKENDS:
        out = jaxconv.conv(x, k, precision=jax.lax.Precision.HIGHEST, backend=backend)
        close(out, R.conv(x, k, (1, 1), ((0, 0), (0, 0)), (1, 1), (1, 1), 1))


def test_pad_function_matches_numpy(rng):
    x = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
    for mode, np_mode in R.NP_MODE.items():
        out = jaxconv.pad(x, ((2, 1), (0, 3)), mode=mode)
        ref = np.pad(x, ((0, 0), (2, 1), (0, 3), (0, 0)), mode=np_mode)
        np.testing.assert_array_equal(np.asarray(out), ref)
    mixed = jaxconv.pad(
        np.moveaxis(x, -1, 1), 1, mode=("reflect", "circular"), layout="channels_first"
    )
    ref = np.pad(
        np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)), "reflect"),
        ((0, 0), (0, 0), (1, 1), (0, 0)),
        "wrap",
    )
    np.testing.assert_array_equal(np.asarray(mixed), np.moveaxis(ref, -1, 1))


@pytest.mark.slow
@settings(max_examples=60)
@given(conv_cases())
def test_conv_matches_reference_long_run(c):
    """The same property over many more cases (run in CI; skip with -m 'not slow')."""
    test_conv_matches_reference_on_every_backend.hypothesis.inner_test(c)
