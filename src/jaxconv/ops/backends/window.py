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
and all the arithmetic is elementwise or matrix products.

Gradients. Generally they come from JAX's autodiff of the slices and products. For the
common training case (no groups, stride 1, no input dilation) a ``custom_jvp``
rule picks faster forms for the two passes of the backward:

- the kernel gradient ``dK = P^T @ dY`` is one long matrix product per batch chunk,
  with the patch tensor ``P`` rebuilt chunk by chunk (``jax.checkpoint``) so it stays
  in cache instead of being stored for the whole batch;
- the input gradient is itself a stride-1 convolution: ``dY`` padded by
  ``(k - 1) * d`` on each side, correlated with the spatially flipped kernel whose in
  and out channels are swapped, then cropped by the forward padding. Computed by the
  same chunked im2col, its matrix product is ``(N * in, taps * O) @ (taps * O, C)``
  instead of autodiff's ``dP = dY @ K^T`` (a short contraction over ``O``) followed by
  scattering the patches back.

The rule is a JVP, not a VJP, so forward mode (``jax.jvp``, Hessians) still works: its
input term is written as the *linear transpose* of the input-gradient convolution above,
so reverse mode, which transposes the JVP, gets that convolution back. Its batch is
processed in chunks of about :data:`CHUNK_BYTES` of patches (``lax.map``), which keeps
the patch tensor cache-sized; see ``benchmarks/conv_backends.py`` for the measurements.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

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

    Ungrouped, stride-1 convolutions without input dilation (most layers of a CNN) go
    to the batch-chunked im2col with its own JVP (module docstring) when one image's
    patches fit in :data:`CHUNK_BYTES`, the batch holds :data:`CHUNKED_MIN_ROWS` input
    positions and it is not a one-channel signal. Otherwise: one
    input channel per group (depthwise convs): shift and add, ``sum_m slice_m * K[m]``,
    elementwise and fused by XLA; else im2col over chunks of taps, contracting taps
    and channels at once in a matrix product and accumulating over the chunks.
    """
    n = x.ndim - 2
    kernel_size = kernel.shape[:n]
    cin_g, cout = kernel.shape[-2], kernel.shape[-1]
    cout_g = cout // groups
    if (
        groups == 1
        and all(s == 1 for s in strides)
        and all(d == 1 for d in input_dilation)
        and cin_g * cout > 1  # a one-channel signal: shift and add is faster
        and _patch_bytes_per_image(x, kernel, pads) <= CHUNK_BYTES
        and x.shape[0] * math.prod(x.shape[1:-1]) >= CHUNKED_MIN_ROWS
    ):
        return _chunked_conv(x, kernel, tuple(map(tuple, pads)), tuple(dilation), precision)
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


# ---- batch-chunked im2col with a custom JVP ---------------------------------------------
#: Each ``lax.map`` step of the chunked im2col handles as many images as keep its patch
#: tensor under about this many bytes (cache-sized; whole MNIST-net training steps on
#: the 2-core development CPU: 148, 135 and 145 ms with 2, 4 and 8 MiB, 162 and 185 ms
#: with 1 and 16 MiB).
CHUNK_BYTES = 4 << 20

#: Below this many input positions in the whole batch (rows of the im2col matrix) the
#: chunked path's fixed costs dominate and the tap-chunked im2col with autodiff is
#: faster (forward+backward, ratio to lax: 100x40x32 -> 32 k5 1.07 against 1.31;
#: 32x8x8x64 -> 64: 1.42 against 2.03; but 128x8x8x64 -> 64: 1.57 against 0.96).
CHUNKED_MIN_ROWS = 8192

#: The input gradient is computed as a flipped-kernel convolution (its matrix product
#: has ``C`` columns) for at least this many input channels; below it, autodiff's
#: ``dY @ K^T`` plus scattering is faster (128x32x32x3 -> 32: 4 ms against 19 ms).
FLIPPED_GRAD_MIN_CHANNELS = 8


def _patch_bytes_per_image(x, kernel, pads) -> int:
    """Bytes of one image's stride-1 patch tensor: padded positions x taps x channels."""
    padded = [s + lo + hi for s, (lo, hi) in zip(x.shape[1:-1], pads)]
    return math.prod(padded) * math.prod(kernel.shape[:-1]) * x.dtype.itemsize


def _patch_product(xp, w2, kernel_size, dilation, precision):
    """``im2col(xp) @ w2`` for already padded channels-last ``xp``; stride 1."""
    slices, _ = tap_slices(xp, kernel_size, (1,) * len(kernel_size), dilation)
    patches = jnp.concatenate(slices, axis=-1) if len(slices) > 1 else slices[0]
    return lax.dot_general(patches, w2, (((patches.ndim - 1,), (0,)), ((), ())), precision=precision)


def _by_batch_chunks(fn, x, bytes_per_image):
    """``fn`` applied to chunks of ``x``'s leading (batch) axis; results concatenated."""
    total = x.shape[0]
    size = max(1, min(total, CHUNK_BYTES // max(1, bytes_per_image)))
    full = total // size
    parts = []
    if full > 1:
        ys = lax.map(fn, x[: full * size].reshape(full, size, *x.shape[1:]))
        parts.append(ys.reshape(full * size, *ys.shape[2:]))
    elif full == 1:
        parts.append(fn(x[:size]))
    if total > full * size:
        parts.append(fn(x[full * size :]))
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts)


def _im2col_conv(x, kernel, pads, dilation, precision, remat=False):
    n = x.ndim - 2
    kernel_size = kernel.shape[:n]
    w2 = kernel.reshape(-1, kernel.shape[-1])

    def body(chunk, w2):
        return _patch_product(pad_and_dilate(chunk, pads, (1,) * n), w2, kernel_size, dilation, precision)

    if remat:  # rebuild the patches in the backward pass instead of storing them
        body = jax.checkpoint(body)
    return _by_batch_chunks(lambda chunk: body(chunk, w2), x, _patch_bytes_per_image(x, kernel, pads))


def _input_gradient(ct, kernel, pads, dilation, precision):
    """The cotangent of the input of a stride-1 convolution, as a convolution of ``ct``."""
    n = ct.ndim - 2
    full = tuple(((k - 1) * d, (k - 1) * d) for k, d in zip(kernel.shape[:n], dilation))
    flipped = jnp.flip(kernel, axis=tuple(range(n))).swapaxes(-1, -2)
    grad_padded = _im2col_conv(ct, flipped, full, dilation, precision)
    crop = [(0, 0, 0), *((-lo, -hi, 0) for lo, hi in pads), (0, 0, 0)]
    return lax.pad(grad_padded, jnp.zeros((), ct.dtype), crop)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _chunked_conv(x, kernel, pads, dilation, precision):
    return _im2col_conv(x, kernel, pads, dilation, precision)


@functools.partial(_chunked_conv.defjvp, symbolic_zeros=True)
def _chunked_conv_jvp(pads, dilation, precision, primals, tangents):
    x, kernel = primals
    x_dot, kernel_dot = tangents
    y = _chunked_conv(x, kernel, pads, dilation, precision)
    terms = []
    if not isinstance(kernel_dot, SymbolicZero):
        # Linear in kernel_dot; its transpose is the chunked P^T @ dY.
        terms.append(_im2col_conv(x, kernel_dot, pads, dilation, precision, remat=True))
    if not isinstance(x_dot, SymbolicZero):
        if kernel.shape[-2] >= FLIPPED_GRAD_MIN_CHANNELS:
            # conv(x_dot, kernel) written as the transpose of the input-gradient map, so
            # that reverse mode (transposing this term) runs that map itself.
            as_transpose = jax.linear_transpose(
                lambda ct: _input_gradient(ct, kernel, pads, dilation, precision),
                jax.ShapeDtypeStruct(y.shape, y.dtype),
            )
            terms.append(as_transpose(x_dot)[0])
        else:
            terms.append(_im2col_conv(x_dot, kernel, pads, dilation, precision))
    if not terms:
        return y, jnp.zeros_like(y)
    return y, functools.reduce(jnp.add, terms)
