"""Pooling against a loop reference of PyTorch's semantics."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import jaxconv
from tests.conftest import BACKENDS
from tests.ops import reference as R
from tests.ops.test_conv import close

POOLS = {
    "max": jaxconv.max_pool,
    "min": jaxconv.min_pool,
    "avg": jaxconv.avg_pool,
    "lp": jaxconv.lp_pool,
}


@st.composite
def pool_cases(draw):
    n = draw(st.sampled_from([1, 2, 2, 3]))
    window = tuple(draw(st.integers(1, 3)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    padding = tuple(draw(st.integers(0, ((k - 1) * d + 1) // 2)) for k, d in zip(window, dilation))
    sizes = tuple(draw(st.integers(1, 6 if n < 3 else 4)) for _ in range(n))
    for s, k, d, p in zip(sizes, window, dilation, padding):
        assume(s + 2 * p >= (k - 1) * d + 1)
    return dict(
        window=window,
        stride=stride,
        dilation=dilation,
        padding=padding,
        sizes=sizes,
        ceil_mode=draw(st.booleans()),
        include=draw(st.booleans()),
        kind=draw(st.sampled_from(sorted(POOLS))),
        layout=draw(st.sampled_from(["channels_last", "channels_first"])),
        seed=draw(st.integers(0, 999)),
    )


@given(pool_cases())
def test_pools_match_reference(c):
    rng = np.random.default_rng(c["seed"])
    x = rng.normal(size=(2, *c["sizes"], 3)).astype(np.float32)
    kind = c["kind"]
    if kind == "lp":
        x = np.abs(x) + 0.1
    kwargs = dict(
        stride=c["stride"], padding=c["padding"], dilation=c["dilation"], ceil_mode=c["ceil_mode"]
    )
    if kind == "avg":
        kwargs["count_include_pad"] = c["include"]
    if kind == "lp" and c["ceil_mode"]:
        kwargs["ceil_mode"] = False  # PyTorch rescales overhanging lp windows; see docstring
    expected = R.pool(
        x,
        kind,
        c["window"],
        c["stride"],
        c["padding"],
        c["dilation"],
        kwargs["ceil_mode"],
        c["include"],
    )
    xin = np.moveaxis(x, -1, 1) if c["layout"] == "channels_first" else x
    for backend in BACKENDS + ("auto",):
        out = POOLS[kind](xin, c["window"], layout=c["layout"], backend=backend, **kwargs)
        if c["layout"] == "channels_first":
            out = np.moveaxis(np.asarray(out), 1, -1)
        close(out, expected, tol=5e-5)


def test_pools_by_hand():
    x = jnp.array([1.0, 5, 2, 4, 3]).reshape(1, 5, 1)
    assert jaxconv.max_pool(x, 2, ceil_mode=True)[0, :, 0].tolist() == [5, 4, 3]
    assert jaxconv.max_pool(x, 3, stride=1, padding=1)[0, :, 0].tolist() == [5, 5, 5, 4, 4]
    assert jaxconv.min_pool(x, 2, stride=1)[0, :, 0].tolist() == [1, 2, 2, 3]
    assert jaxconv.avg_pool(x, 2, stride=2, padding=1)[0, :, 0].tolist() == [0.5, 3.5, 3.5]
    # ceil overhang is never counted, padding is with count_include_pad
    assert jaxconv.avg_pool(x, 2, ceil_mode=True)[0, :, 0].tolist() == [3.0, 3.0, 3.0]
    assert jaxconv.max_pool(x, 2, dilation=2, stride=1)[0, :, 0].tolist() == [2, 5, 3]
    # padding never wins a max, even for all-negative input
    assert jaxconv.max_pool(-x, 3, stride=1, padding=1)[0, 0, 0].item() == -1.0


@pytest.mark.parametrize("out", [1, 2, 3, (2, 5), (4, None), 7])
def test_adaptive_pools(out, rng):
    x = rng.normal(size=(2, 7, 5, 3)).astype(np.float32)
    size = (out, out) if not isinstance(out, tuple) else (out[0], out[1] or 5)
    close(jaxconv.adaptive_avg_pool(x, out), R.adaptive(x, size, "avg"))
    close(jaxconv.adaptive_max_pool(x, out), R.adaptive(x, size, "max"))
    first = jaxconv.adaptive_avg_pool(np.moveaxis(x, -1, 1), out, layout="channels_first")
    close(np.moveaxis(np.asarray(first), 1, -1), R.adaptive(x, size, "avg"))


def test_global_pools(rng):
    x = rng.normal(size=(2, 4, 6, 3)).astype(np.float32)
    close(jaxconv.global_avg_pool(x), x.mean(axis=(1, 2)))
    close(jaxconv.global_max_pool(x), x.max(axis=(1, 2)))
    close(
        jaxconv.global_max_pool(np.moveaxis(x, -1, 1), layout="channels_first"), x.max(axis=(1, 2))
    )
    close(jaxconv.global_avg_pool(x), jaxconv.adaptive_avg_pool(x, 1)[:, 0, 0])


def test_lp_pool_norms(rng):
    x = np.abs(rng.normal(size=(1, 6, 2))).astype(np.float32)
    close(jaxconv.lp_pool(x, 3, norm_type=1), x.reshape(1, 2, 3, 2).sum(2))
    close(jaxconv.lp_pool(x, 3, norm_type=60), x.reshape(1, 2, 3, 2).max(2), tol=2e-2)


def test_auto_pool_policy():
    from jaxconv.ops.policy import PoolProblem, plan_pool
    from jaxconv.ops.pooling import _Geometry

    def _auto(kind, g, platform):  # what pooling asks the plan under auto
        return plan_pool(PoolProblem(kind, g.window, g.strides, g.dilation, platform)).backend

    x = jnp.ones((1, 8, 8, 1))
    disjoint, overlapping = _Geometry(x, 2, None, 0, 1, False), _Geometry(x, 3, 1, 1, 1, False)
    assert _auto("max", disjoint, "cpu") == "window"
    assert _auto("max", disjoint, "gpu") == "lax"
    assert _auto("max", overlapping, "cpu") == "lax"
    assert _auto("sum", disjoint, "cpu") == "lax"


@pytest.mark.parametrize("rows", [2, 3])
@pytest.mark.parametrize("backend", BACKENDS + ("auto",))
def test_lp_pool_window_of_padding_only_is_zero(backend, rows):
    # Found by hypothesis: a dilated window that sees only zero padding; the FFT's sum
    # came out at -1e-9 (square root NaN) or 3e-8 (square root 1.6e-4).
    x = np.abs(np.random.default_rng(0).normal(size=(2, rows, 1, 3))).astype(np.float32) + 0.1
    out = jaxconv.lp_pool(x, (1, 2), stride=1, padding=(0, 1), dilation=(1, 2), backend=backend)
    expected = R.pool(x, "lp", (1, 2), (1, 1), (0, 1), (1, 2), False, True)
    assert np.isfinite(np.asarray(out)).all()
    close(out, expected, tol=5e-5)
