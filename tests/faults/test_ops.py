"""Empty batches and zero channels on every backend; what each backend
does with a NaN or infinity in its input (documented in the backends' docstrings)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv.ops.backends import window

from ..conftest import BACKENDS

ALL = (*BACKENDS, "auto")


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize(
    "x_shape,k_shape,out_shape",
    [
        ((0, 8, 8, 3), (3, 3, 3, 4), (0, 6, 6, 4)),  # empty batch
        ((2, 8, 8, 0), (3, 3, 0, 4), (2, 6, 6, 4)),  # no input channels: the empty sum, zeros
        ((2, 8, 8, 3), (3, 3, 3, 0), (2, 6, 6, 0)),  # no output channels
    ],
)
def test_empty_batch_and_zero_channels(backend, x_shape, k_shape, out_shape):
    x, k = jnp.ones(x_shape), jnp.ones(k_shape)
    y = jaxconv.conv(x, k, backend=backend)
    assert y.shape == out_shape and not np.asarray(y).any()
    grad = jax.grad(lambda a: jaxconv.conv(a, k, backend=backend).sum())(x)
    assert grad.shape == x_shape and not np.asarray(grad).any()
    t = jaxconv.conv_transpose(
        jnp.ones((0, 4, 4, 3)), jnp.ones((3, 3, 3, 2)), stride=2, backend=backend
    )
    assert t.shape == (0, 9, 9, 2)


@pytest.mark.parametrize("pool", [jaxconv.global_avg_pool, jaxconv.global_max_pool])
def test_global_pooling_of_nothing_is_an_error(pool):
    with pytest.raises(
        ValueError, match=r"`x` has shape \(2, 0, 3\): global pooling needs every spatial axis"
    ):
        pool(jnp.ones((2, 0, 3)))
    with pytest.raises(ValueError, match="global pooling"):
        pool(jnp.ones((2, 3, 4, 0)), layout="channels_first")


def non_finite_outputs(backend, x, k, **kw):
    y = np.asarray(jaxconv.conv(x, k, backend=backend, **kw))
    return ~np.isfinite(y)


def receptive_field_mask(shape, where, taps):
    """Outputs of a SAME 'k'-tap stride-1 conv whose window covers input position ``where``."""
    mask = np.zeros(shape, bool)
    lo = [w - (t - 1 - (t - 1) // 2) for w, t in zip(where, taps)]
    hi = [w + (t - 1) // 2 for w, t in zip(where, taps)]
    mask[tuple(slice(max(a, 0), b + 1) for a, b in zip(lo, hi))] = True
    return mask


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_patterns(bad):
    x = np.ones((2, 16, 16, 32), np.float32)
    x[0, 7, 9, 3] = bad
    k = np.full((3, 3, 32, 32), 0.01, np.float32)
    expected = receptive_field_mask((16, 16), (7, 9), (3, 3))
    patterns = {b: non_finite_outputs(b, x, k, padding="SAME") for b in BACKENDS}
    for b, pattern in patterns.items():
        assert not pattern[1].any(), f"{b}: a non-finite sample reached another sample"
    for b in ("lax", "window"):  # direct sums: exactly the receptive field, every channel
        np.testing.assert_array_equal(
            patterns[b][0], np.broadcast_to(expected[..., None], (16, 16, 32))
        )
    wino = patterns["winograd"][0].any(-1)
    assert (wino >= expected).all() and wino.sum() > expected.sum()  # whole tiles around it
    rows, cols = np.nonzero(wino)
    assert rows.max() - rows.min() < 8 and cols.max() - cols.min() < 8  # within neighbouring tiles
    assert patterns["fft"][0].all()  # the whole sample
    auto = non_finite_outputs("auto", x, k, padding="SAME")  # auto follows the backend it picks
    assert any((auto == p).all() for p in patterns.values())


def test_window_toeplitz_path_spoils_whole_blocks():
    x = np.ones((2, 512, 4), np.float32)
    x[0, 200, 0] = np.nan
    k = np.ones((16, 4, 4), np.float32)
    assert window.toeplitz_applies(k.shape, (1,), (1,), (1,), 1)
    direct = non_finite_outputs("lax", x, k)[0, :, 0]
    blocks = non_finite_outputs("window", x, k)[0, :, 0]
    assert np.flatnonzero(direct).tolist() == list(range(185, 201))
    assert (blocks >= direct).all() and blocks.sum() <= 2 * window.toeplitz_block(16)
    assert not non_finite_outputs("window", x, k)[1].any()
