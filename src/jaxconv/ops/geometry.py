"""Geometry shared by the backends and the pools: padding and input dilation in one
``lax.pad``, output sizes, and the strided slice of each kernel tap."""

from __future__ import annotations

import functools
import itertools

import jax.numpy as jnp
from jax import lax

from jaxconv.ops._types import Pads


def pad_and_dilate(x: jnp.ndarray, pads: Pads, input_dilation: tuple[int, ...]) -> jnp.ndarray:
    """Zero-pad the spatial axes of channels-last ``x`` and insert input-dilation zeros."""
    zero = jnp.zeros((), x.dtype)
    config = [(0, 0, 0), *((lo, hi, d - 1) for (lo, hi), d in zip(pads, input_dilation)), (0, 0, 0)]
    return lax.pad(x, zero, config)


def output_sizes(
    padded: tuple[int, ...], kernel_size: tuple[int, ...], strides, dilation
) -> tuple[int, ...]:
    return tuple(
        max((p - (k - 1) * d - 1) // s + 1, 0)
        for p, k, s, d in zip(padded, kernel_size, strides, dilation)
    )


def tap_slices(x: jnp.ndarray, kernel_size, strides, dilation, first_axis: int = 1):
    """For each kernel tap ``m`` (row-major), the strided slice ``x[:, m*d : ... : s, :]``.

    Slice ``m`` holds ``I[n, i*s + m*d, c]`` for every output position ``i`` at once.
    The spatial axes are ``x``'s axes ``first_axis, ..., first_axis + len(kernel_size) - 1``
    (channels-last by default).
    """
    n = len(kernel_size)
    out = output_sizes(x.shape[first_axis : first_axis + n], kernel_size, strides, dilation)
    slices = []
    for tap in itertools.product(*(range(k) for k in kernel_size)):
        index = [slice(None)] * x.ndim
        for axis, (m, o, s, d) in enumerate(zip(tap, out, strides, dilation), start=first_axis):
            index[axis] = slice(m * d, m * d + (o - 1) * s + 1, s)
        slices.append(x[tuple(index)])
    return slices, out


def shift_add(xp, kernel, dilation):
    """Stride-1 correlation of padded channels-last ``xp`` as a sum of ``taps * C``
    broadcast products (few input channels): the formula ``sum_m sum_c I[i + m*d, c]
    K[m, c, :]`` as written, which XLA fuses into one elementwise loop."""
    kernel_size = kernel.shape[:-2]
    slices, _ = tap_slices(xp, kernel_size, (1,) * len(kernel_size), dilation)
    w = kernel.reshape(len(slices), *kernel.shape[-2:])
    terms = (part[..., c : c + 1] * wm[c] for part, wm in zip(slices, w) for c in range(w.shape[1]))
    return functools.reduce(lambda a, b: a + b, terms)
