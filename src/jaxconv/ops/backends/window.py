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
   There are ``prod(kernel_size)`` such slices.
3. The double sum over ``m`` and ``c``:

   - with one input channel per group (a single-channel signal, a depthwise conv) it
     is "shift and add": ``O = sum_m slice_m * K[m]``, elementwise, which XLA fuses
     into one pass over the input;
   - otherwise "im2col": stacking the slices of several taps gives a patch tensor
     ``P[n, i, m, c]``, and the sum over those taps and channels is one matrix product
     ``(N * out, taps * C) @ (taps * C, O)``. Taps are taken in chunks of about
     :data:`CHUNK_CONTRACTION` rows of the contraction, and the chunks' products are
     added. Groups add a group axis to both sides (a batched matmul).

No loop runs over pixels: the Python loop is over kernel taps (9 for a 3x3 kernel),
and all the arithmetic is elementwise or matrix products. Gradients come from JAX's autodiff of slices
and einsum, so first and second derivatives, ``jit`` and ``vmap`` work unchanged.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
from jax import lax

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


def tap_slices(x: jnp.ndarray, kernel_size, strides, dilation):
    """For each kernel tap ``m`` (row-major), the strided slice ``x[:, m*d : ... : s, :]``.

    Slice ``m`` holds ``I[n, i*s + m*d, c]`` for every output position ``i`` at once.
    """
    out = output_sizes(x.shape[1:-1], kernel_size, strides, dilation)
    slices = []
    for tap in itertools.product(*(range(k) for k in kernel_size)):
        index = [slice(None)]
        for m, o, s, d in zip(tap, out, strides, dilation):
            index.append(slice(m * d, m * d + (o - 1) * s + 1, s))
        index.append(slice(None))
        slices.append(x[tuple(index)])
    return slices, out


#: Taps are gathered into im2col chunks whose contraction (taps * channels) is about
#: this long: long enough for an efficient matmul, short enough that the patch tensor
#: stays a few times the input (measured with benchmarks/conv_backends.py).
CHUNK_CONTRACTION = 256


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
    """Channels-last N-D cross-correlation as a sum over kernel taps.

    One input channel per group (single-channel signals, depthwise convs): shift and
    add, ``sum_m slice_m * K[m]``, elementwise and fused by XLA. Otherwise chunked
    im2col: stack the slices of a few taps and contract taps and channels at once in
    a matrix product, accumulating over chunks.
    """
    n = x.ndim - 2
    kernel_size = kernel.shape[:n]
    cin_g, cout = kernel.shape[-2], kernel.shape[-1]
    cout_g = cout // groups
    x = pad_and_dilate(x, pads, input_dilation)
    slices, out = tap_slices(x, kernel_size, strides, dilation)
    batch = x.shape[0]
    w = kernel.reshape(len(slices), cin_g, groups, cout_g)
    acc = None
    if cin_g == 1:
        for part, wm in zip(slices, w):
            term = part[..., :, None] * wm[0]  # (N, *out, G, 1) * (G, cout_g)
            acc = term if acc is None else acc + term
        return acc.reshape(batch, *out, cout)
    step = max(1, CHUNK_CONTRACTION // cin_g)
    for first in range(0, len(slices), step):
        cols = jnp.stack(slices[first : first + step], axis=-2)  # (N, *out, t, C)
        t = cols.shape[-2]
        wc = w[first : first + t]  # (t, cin_g, G, cout_g)
        if groups == 1:
            term = jnp.dot(cols.reshape(-1, t * cin_g), wc.reshape(t * cin_g, cout), precision=precision)
        else:
            cols = cols.reshape(*cols.shape[:-1], groups, cin_g)
            term = jnp.einsum("...tgc,tcgo->...go", cols, wc, precision=precision)
        term = term.reshape(batch, *out, cout)
        acc = term if acc is None else acc + term
    return acc
