r"""The ``window`` backend: a hand-rolled sliding-window convolution in jax.numpy.

A convolution layer computes, for every output position ``i`` (a tuple over the spatial
axes) and output channel ``o``,

.. math::  O[n, i, o] = \sum_{m} \sum_{c} I[n, i \cdot s + m \cdot d, c] \; K[m, c, o]

where ``m`` runs over the kernel taps, ``s`` is the stride and ``d`` the kernel
dilation. In 1-D with ``I = [1, 2, 3, 4, 5]`` and ``K = [1, 1, 1]``, each output is the
sum of three neighbours: ``[6, 9, 12]`` (the ``VALID`` part).

Read the sum inside out and it becomes array code:

1. Pad once: input dilation (zeros between samples) and zero padding are one
   ``lax.pad`` (interior padding + edges); nothing else is needed for them.
2. For a fixed tap ``m``, the values ``I[n, i*s + m*d, :]`` for *all* ``i`` are a single
   strided slice of the padded input, ``x[:, m*d : m*d + (out-1)*s + 1 : s, :]``.
   There are ``prod(kernel_size)`` such slices; stacking them gives the "im2col" patch
   tensor ``P[n, i, m, c]``.
3. The double sum over ``m`` and ``c`` is then one matrix product of the patches,
   ``(N * out, taps * C)``, with the kernel reshaped to ``(taps * C, O)``. Groups add a
   group axis to both sides of that product (a batched matmul).

No loop runs over pixels: the Python loop is over kernel taps (9 for a 3x3 kernel),
and all the arithmetic is one ``einsum``. Gradients come from JAX's autodiff of slices
and einsum, so first and second derivatives, ``jit`` and ``vmap`` work unchanged.
"""

from __future__ import annotations

import itertools
import math

from jax import lax
import jax.numpy as jnp

from jaxconv.ops._validate import Pads


def pad_and_dilate(
    x: jnp.ndarray, pads: Pads, input_dilation: tuple[int, ...]
) -> jnp.ndarray:
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


def patches(
    x: jnp.ndarray, kernel_size, strides, dilation
) -> tuple[jnp.ndarray, tuple[int, ...]]:
    """im2col: ``(N, *S, C)`` -> ``(N, *out, taps, C)`` with taps in row-major kernel order."""
    out = output_sizes(x.shape[1:-1], kernel_size, strides, dilation)
    cols = []
    for tap in itertools.product(*(range(k) for k in kernel_size)):
        index = [slice(None)]
        for m, o, s, d in zip(tap, out, strides, dilation):
            start = m * d
            index.append(slice(start, start + (o - 1) * s + 1, s))
        index.append(slice(None))
        cols.append(x[tuple(index)])
    return jnp.stack(cols, axis=-2), out


def conv(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    *,
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    input_dilation: tuple[int, ...],
    groups: int,
    pads: Pads,
    precision=None,
) -> jnp.ndarray:
    """Channels-last N-D cross-correlation as im2col + one (grouped) matrix product."""
    n = x.ndim - 2
    kernel_size = kernel.shape[:n]
    cin_g, cout = kernel.shape[-2], kernel.shape[-1]
    x = pad_and_dilate(x, pads, input_dilation)
    cols, out = patches(x, kernel_size, strides, dilation)  # (N, *out, T, C)
    taps = math.prod(kernel_size)
    batch = x.shape[0]
    cols = cols.reshape(batch, *out, taps, groups, cin_g)
    w = kernel.reshape(taps, cin_g, groups, cout // groups)
    y = jnp.einsum("...tgc,tcgo->...go", cols, w, precision=precision)
    return y.reshape(batch, *out, cout)
