"""Pooling with PyTorch's semantics, on any number of spatial axes.

``max_pool``/``min_pool``/``avg_pool``/``lp_pool`` share one front end (window, stride
defaulting to the window, symmetric ``padding`` of at most half the effective window,
``dilation``, ``ceil_mode``) and one small core that reduces over windows:

- ``lax``: ``jax.lax.reduce_window``;
- ``window``: hand-rolled, one strided slice per window tap, reduced elementwise;
- ``fft`` (and any backend registered with ``pools_by_convolution``): average pools via
  that backend's convolution with a ones kernel; max/min have no convolution form and lp
  pools would magnify the FFT's rounding in their root, so these use the ``window``
  core;
- ``winograd``: a convolution algorithm only; pools with the ``window`` core, so a
  model built with ``backend="winograd"`` pools as it would with ``window``;
- ``auto``: the plan's :data:`~jaxconv.ops.policy.POOL_RULES`: ``window`` for max/min
  pooling with non-overlapping windows on CPU (XLA's CPU gradient of ``reduce_window``
  max, ``select_and_scatter``, is much slower than the sliced version's there:
  benchmarks/train_step.py), ``lax`` otherwise.

Output size per axis (``eff = (window - 1) * dilation + 1``):
``floor_or_ceil((L + 2p - eff) / s) + 1``, and in ``ceil_mode`` the last window must
start inside the input or the left padding (else one fewer output), as PyTorch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv.ops import _validate as V
from jaxconv.ops._types import IntOrInts
from jaxconv.ops.backends import BACKENDS, POOLS_BY_CONVOLUTION, check_backend
from jaxconv.ops.geometry import tap_slices
from jaxconv.ops.policy import PoolProblem, plan_pool, platform_of


class _Geometry:
    """Canonical pooling arguments for channels-last ``x``."""

    def __init__(self, x, window, stride, padding, dilation, ceil_mode):
        n = x.ndim - 2
        self.window = V.ntuple(window, n, "window")
        self.strides = self.window if stride is None else V.ntuple(stride, n, "stride")
        self.dilation = V.ntuple(dilation, n, "dilation")
        self.pads = V.explicit_pads(padding, n)
        if not isinstance(ceil_mode, bool):
            raise TypeError(f"`ceil_mode` (={ceil_mode!r}) must be a bool")
        eff = V.effective_kernel(self.window, self.dilation)
        self.out, self.extra = [], []
        for axis, (size, (lo, hi), e, s) in enumerate(
            zip(x.shape[1:-1], self.pads, eff, self.strides)
        ):
            if max(lo, hi) > e // 2:
                raise ValueError(
                    f"`padding` (={max(lo, hi)}) on spatial axis {axis} must be at most half "
                    f"the effective window (={e})"
                )
            span = size + lo + hi - e
            if span < 0:
                raise ValueError(
                    f"`window` (effective size {e}) is larger than the padded input "
                    f"(size {size + lo + hi}) on spatial axis {axis}"
                )
            out = (-(-span // s) if ceil_mode else span // s) + 1
            if ceil_mode and (out - 1) * s >= size + lo:
                out -= 1
            self.out.append(out)
            self.extra.append(max((out - 1) * s + e - (size + lo + hi), 0))
        # Padding the core applies: the user's plus the ceil-mode overhang on the high side.
        self.full_pads = tuple((lo, hi + ex) for (lo, hi), ex in zip(self.pads, self.extra))


def _reduce_lax(x, init, op, g: _Geometry):
    n = x.ndim - 2
    return lax.reduce_window(
        x,
        np.array(
            init, x.dtype
        ),  # a concrete constant: lax picks its differentiable monoid reducers
        op,
        (1, *g.window, 1),
        (1, *g.strides, 1),
        ((0, 0), *g.full_pads, (0, 0)),
        window_dilation=(1, *g.dilation, 1),
    )[(slice(None), *(slice(0, o) for o in g.out[:n]))]


def _reduce_window(x, init, op, g: _Geometry):
    # The conv window backend's slices: one strided view per tap of the padded input
    # (its output size equals g.out, since full_pads already holds the ceil overhang).
    x = jnp.pad(x, ((0, 0), *g.full_pads, (0, 0)), constant_values=init)
    parts, _ = tap_slices(x, g.window, g.strides, g.dilation)
    return functools.reduce(op, parts)


def _sum_by_convolution(x, g: _Geometry, backend: str):
    n = x.ndim - 2
    c = x.shape[-1]
    kernel = jnp.ones((*g.window, 1, c), x.dtype)
    return BACKENDS[backend](
        x,
        kernel,
        strides=g.strides,
        dilation=g.dilation,
        input_dilation=(1,) * n,
        groups=c,
        pads=g.full_pads,
    )


def _reduce(x, kind: str, g: _Geometry, backend: str):
    """Reduce windows of channels-last ``x``: kind is 'sum' or 'max'."""
    if kind == "sum":
        init, op = 0, lax.add
    else:
        dtype = x.dtype
        init = -jnp.inf if jnp.issubdtype(dtype, jnp.floating) else jnp.iinfo(dtype).min
        op = lax.max
    if backend == "auto":
        problem = PoolProblem(kind, g.window, g.strides, g.dilation, platform_of(x))
        backend = plan_pool(problem).backend  # jaxconv.ops.policy.POOL_RULES
    if backend == "lax":
        return _reduce_lax(x, init, op, g)
    if kind == "sum" and backend in POOLS_BY_CONVOLUTION:
        return _sum_by_convolution(x, g, backend)
    return _reduce_window(x, init, op, g)


def _front(x, layout, backend, window, stride, padding, dilation, ceil_mode):
    V.check_layout(layout)
    check_backend(backend)
    x = V.check_array(x, "x")
    V.check_rank(x, "x", minimum=3, what="(N, *spatial, C) or (N, C, *spatial)")
    if layout == "channels_first":
        x = jnp.moveaxis(x, 1, -1)
    return x, _Geometry(x, window, stride, padding, dilation, ceil_mode)


def _back(y, layout):
    return jnp.moveaxis(y, -1, 1) if layout == "channels_first" else y


_DOC_ARGS = """
    Args:
      x: ``(N, *spatial, C)`` (channels_last) or ``(N, C, *spatial)`` (channels_first).
      window: window size, int or one per spatial axis.
      stride: defaults to ``window``.
      padding: int or one per axis (symmetric, at most half the effective window), or
        (lo, hi) pairs.
      dilation: spacing between window taps.
      ceil_mode: round the output size up (PyTorch's ``ceil_mode``).
      layout: ``"channels_last"`` or ``"channels_first"``.
      backend: ``"lax"``, ``"window"``, ``"fft"``, ``"winograd"`` (pools as ``"window"``)
        or ``"auto"``.
"""


def max_pool(
    x: Any,
    window: IntOrInts,
    *,
    stride: IntOrInts | None = None,
    padding: Any = 0,
    dilation: IntOrInts = 1,
    ceil_mode: bool = False,
    layout: str = "channels_last",
    backend: str = "auto",
) -> jnp.ndarray:
    """Maximum over each window; padding never wins (it is ``-inf``).

    >>> import jax.numpy as jnp
    >>> x = jnp.array([1.0, 5, 2, 4, 3]).reshape(1, 5, 1)
    >>> max_pool(x, 2)[0, :, 0].tolist(), max_pool(x, 2, ceil_mode=True)[0, :, 0].tolist()
    ([5.0, 4.0], [5.0, 4.0, 3.0])
    """
    x = V.check_array(x, "x")
    if jnp.iscomplexobj(x):  # complex numbers have no order
        raise TypeError(f"`x` (dtype {x.dtype}) must be real: max and min pooling compare values")
    x, g = _front(x, layout, backend, window, stride, padding, dilation, ceil_mode)
    return _back(_reduce(x, "max", g, backend), layout)


def min_pool(
    x: Any,
    window: IntOrInts,
    *,
    stride: IntOrInts | None = None,
    padding: Any = 0,
    dilation: IntOrInts = 1,
    ceil_mode: bool = False,
    layout: str = "channels_last",
    backend: str = "auto",
) -> jnp.ndarray:
    """Minimum over each window (``-max_pool(-x)``); padding never wins.

    >>> import jax.numpy as jnp
    >>> min_pool(jnp.array([1.0, 5, 2, 4]).reshape(1, 4, 1), 2)[0, :, 0].tolist()
    [1.0, 2.0]
    """
    x = V.check_array(x, "x")
    return -max_pool(
        -x,
        window,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        layout=layout,
        backend=backend,
    )


def _window_counts(shape, g: _Geometry, include_pad: bool) -> np.ndarray:
    """How many taps of each window the average divides by (numpy, static)."""
    n = len(shape)
    counts = np.ones((1,), np.float64)
    for axis in range(n):
        size, (lo, hi), ex = shape[axis], g.pads[axis], g.extra[axis]
        valid = np.zeros(size + lo + hi + ex)
        valid[(0 if include_pad else lo) : (size + lo + hi if include_pad else size + lo)] = 1
        taps = np.arange(g.window[axis]) * g.dilation[axis]
        starts = np.arange(g.out[axis]) * g.strides[axis]
        per_axis = valid[starts[:, None] + taps[None, :]].sum(axis=1)
        counts = np.multiply.outer(counts, per_axis)
    return counts.reshape(1, *g.out, 1)


def avg_pool(
    x: Any,
    window: IntOrInts,
    *,
    stride: IntOrInts | None = None,
    padding: Any = 0,
    dilation: IntOrInts = 1,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    layout: str = "channels_last",
    backend: str = "auto",
) -> jnp.ndarray:
    """Mean over each window.

    With ``count_include_pad`` the divisor counts the zero padding (not the ceil-mode
    overhang), as PyTorch; without it, only input samples (a dilated window that sees
    no input sample then gives NaN, as 0 / 0).

    >>> import jax.numpy as jnp
    >>> x = jnp.array([1.0, 2, 3, 4]).reshape(1, 4, 1)
    >>> avg_pool(x, 2, padding=1)[0, :, 0].tolist()
    [0.5, 2.5, 2.0]
    >>> avg_pool(x, 2, padding=1, count_include_pad=False)[0, :, 0].tolist()
    [1.0, 2.5, 4.0]
    """
    if not isinstance(count_include_pad, bool):
        raise TypeError(f"`count_include_pad` (={count_include_pad!r}) must be a bool")
    x, g = _front(x, layout, backend, window, stride, padding, dilation, ceil_mode)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    total = _reduce(x, "sum", g, backend)
    counts = _window_counts(x.shape[1:-1], g, count_include_pad)
    # A dilated window can fall wholly in the padding: with nothing to count, NaN.
    mean = total / jnp.asarray(np.maximum(counts, 1), total.dtype)
    if (counts == 0).any():
        mean = jnp.where(jnp.asarray(counts > 0), mean, jnp.nan)
    return _back(mean, layout)


def lp_pool(
    x: Any,
    window: IntOrInts,
    *,
    norm_type: float = 2.0,
    stride: IntOrInts | None = None,
    padding: Any = 0,
    dilation: IntOrInts = 1,
    ceil_mode: bool = False,
    layout: str = "channels_last",
    backend: str = "auto",
) -> jnp.ndarray:
    """Power-average pooling ``(sum_window x ** p) ** (1 / p)`` with ``p = norm_type``.

    ``p = 1`` is sum pooling, ``p -> inf`` tends to max pooling. Matches PyTorch's
    ``LPPool`` (which has no padding; here zero padding is allowed) except for
    windows that overhang the input in ``ceil_mode``, which PyTorch rescales. With the
    ``fft`` backend the window sums are taken directly, as for max pooling (the root
    would magnify the FFT's rounding on windows of zeros into NaN or ~1e-4).

    >>> import jax.numpy as jnp
    >>> lp_pool(jnp.array([3.0, 4.0]).reshape(1, 2, 1), 2)[0, 0, 0].item()
    5.0
    """
    if (
        isinstance(norm_type, bool)
        or not isinstance(norm_type, (int, float))
        or not math.isfinite(norm_type)
        or norm_type <= 0
    ):
        raise ValueError(f"`norm_type` (={norm_type!r}) must be a positive finite number")
    x, g = _front(x, layout, backend, window, stride, padding, dilation, ceil_mode)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    # The root turns the FFT's absolute rounding (~1e-8 of the largest power) into
    # ~1e-4 on windows of zeros, so the fft backend sums these windows directly.
    total = _reduce(
        x**norm_type, "sum", g, "window" if backend in POOLS_BY_CONVOLUTION else backend
    )
    return _back(total ** (1.0 / norm_type), layout)


def _adaptive_sizes(x, output_size) -> tuple[int, ...]:
    n = x.ndim - 2
    sizes = (output_size,) * n if V._is_int(output_size) or output_size is None else output_size
    if not isinstance(sizes, Sequence) or len(sizes) != n:
        raise ValueError(
            f"`output_size` (={output_size!r}) must be an int or one int (or None) per "
            f"spatial axis ({n})"
        )
    out = []
    for size, o in zip(x.shape[1:-1], sizes):
        if o is None:
            o = size
        if not V._is_int(o) or o < 1:
            raise ValueError(f"`output_size` (={output_size!r}) entries must be ints >= 1")
        out.append(int(o))
    return tuple(out)


def adaptive_bins(length: int, bins: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive bins: ``floor(i * L / n) .. ceil((i + 1) * L / n)``.

    >>> adaptive_bins(5, 3)
    [(0, 2), (1, 4), (3, 5)]
    """
    return [((i * length) // bins, -(-((i + 1) * length) // bins)) for i in range(bins)]


def _adaptive(x, output_size, layout, reduce: Callable) -> jnp.ndarray:
    V.check_layout(layout)
    x = V.check_array(x, "x")
    V.check_rank(x, "x", minimum=3, what="(N, *spatial, C) or (N, C, *spatial)")
    if layout == "channels_first":
        x = jnp.moveaxis(x, 1, -1)
    for axis, bins in enumerate(_adaptive_sizes(x, output_size)):
        length = x.shape[axis + 1]
        if length == 0:
            raise ValueError(f"`x` spatial axis {axis} is empty")
        parts = [
            reduce(lax.slice_in_dim(x, lo, hi, axis=axis + 1), axis + 1)
            for lo, hi in adaptive_bins(length, bins)
        ]
        x = jnp.stack(parts, axis=axis + 1)
    return _back(x, layout)


def adaptive_avg_pool(
    x: Any, output_size: int | Sequence[int | None], *, layout: str = "channels_last"
) -> jnp.ndarray:
    """Average over ``output_size`` bins per axis (PyTorch's ``AdaptiveAvgPool``).

    >>> import jax.numpy as jnp
    >>> adaptive_avg_pool(jnp.arange(5.0).reshape(1, 5, 1), 3)[0, :, 0].tolist()
    [0.5, 2.0, 3.5]
    """

    def mean(part, axis):
        if not jnp.issubdtype(part.dtype, jnp.inexact):
            part = part.astype(jnp.result_type(float))
        return part.mean(axis=axis)

    return _adaptive(x, output_size, layout, mean)


def adaptive_max_pool(
    x: Any, output_size: int | Sequence[int | None], *, layout: str = "channels_last"
) -> jnp.ndarray:
    """Maximum over ``output_size`` bins per axis (PyTorch's ``AdaptiveMaxPool``).

    >>> import jax.numpy as jnp
    >>> adaptive_max_pool(jnp.array([1.0, 5, 2, 4, 3]).reshape(1, 5, 1), 2)[0, :, 0].tolist()
    [5.0, 4.0]
    """
    return _adaptive(x, output_size, layout, lambda part, axis: part.max(axis=axis))


def _global(x, layout, reduce):
    V.check_layout(layout)
    x = V.check_array(x, "x")
    V.check_rank(x, "x", minimum=3, what="(N, *spatial, C) or (N, C, *spatial)")
    axes = tuple(range(2, x.ndim)) if layout == "channels_first" else tuple(range(1, x.ndim - 1))
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(
            f"`x` has shape {tuple(x.shape)}: global pooling needs every spatial "
            "axis to be non-empty"
        )
    return reduce(x, axes)


def global_avg_pool(x: Any, *, layout: str = "channels_last") -> jnp.ndarray:
    """Mean over all spatial axes: ``(N, *spatial, C)`` -> ``(N, C)``.

    >>> import jax.numpy as jnp
    >>> global_avg_pool(jnp.ones((2, 3, 3, 4))).shape
    (2, 4)
    """
    return _global(x, layout, lambda a, axes: jnp.mean(a, axis=axes))


def global_max_pool(x: Any, *, layout: str = "channels_last") -> jnp.ndarray:
    """Maximum over all spatial axes: ``(N, *spatial, C)`` -> ``(N, C)``.

    >>> import jax.numpy as jnp
    >>> global_max_pool(jnp.arange(6.0).reshape(1, 6, 1)).tolist()
    [[5.0]]
    """
    return _global(x, layout, lambda a, axes: jnp.max(a, axis=axes))


for _f in (max_pool, min_pool, avg_pool, lp_pool):
    _f.__doc__ = _f.__doc__.replace("\n\n    >>>", _DOC_ARGS + "\n    >>>", 1)
