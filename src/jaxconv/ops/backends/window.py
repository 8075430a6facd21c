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

   - with one input channel per group (a depthwise conv) or one channel in and out (a
     signal) it is "shift and add": ``O = sum_m slice_m * K[m]``, elementwise, which XLA
     fuses into one pass over the input;
   - otherwise "im2col": stacking the slices of several taps gives a patch tensor
     ``P[n, i, m, c]``, and the sum over those taps and channels is one matrix product
     ``(N * out, taps * C) @ (taps * C, O)``. Taps are taken in chunks of about
     :data:`CHUNK_CONTRACTION` rows of the contraction, and the chunks' products are
     added. Groups add a group axis to both sides (a batched matmul).

No loop runs over pixels: the Python loop is over kernel taps (9 for a 3x3 kernel),
and all the arithmetic is elementwise or matrix products.

Two paths of their own, for speed, each in its module: long 1-D kernels on few channels
(signal filters) as block-Toeplitz matrix products (:mod:`.window_toeplitz`), and most
CNN layers (ungrouped, stride 1) as batch-chunked im2col whose gradients have their own
forms (:mod:`.window_chunked`). Measurements: ``benchmarks/conv_backends.py`` and
``benchmarks/train_step.py``, figures in ``docs/performance-notes.md``.

Non-finite inputs. The slice, shift-and-add and im2col paths are direct sums: a NaN or
infinity in the input is non-finite in exactly the outputs whose receptive field holds
it, as with ``lax``. The block-Toeplitz path is not: the band matrix's zeros times a NaN
are NaN, so every output of each block whose window reads it becomes non-finite (up to
two blocks of :func:`toeplitz_block` samples).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxconv.ops._types import Pads
from jaxconv.ops.backends import window_chunked, window_toeplitz
from jaxconv.ops.backends.window_toeplitz import toeplitz_block  # noqa: F401  (re-exported)
from jaxconv.ops.geometry import output_sizes, pad_and_dilate, tap_slices  # noqa: F401  (re-exported)
from jaxconv.ops.policy import ConvProblem, toeplitz_applies, window_method  # noqa: F401

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
    """Channels-last N-D cross-correlation as a sum over kernel taps, by the method the
    plan names (:data:`jaxconv.ops.policy.WINDOW_METHODS`: block-Toeplitz products for
    long 1-D kernels, one matrix product for 1x1 layers, the batch-chunked im2col with its
    own gradients for stride-1 layers, shift and add, ``sum_m slice_m * K[m]``, for one
    channel per group, else im2col over chunks of taps)."""
    n = x.ndim - 2
    kernel_size, (cin_g, cout) = kernel.shape[:n], kernel.shape[-2:]
    problem = ConvProblem(kernel_size, cin_g, cout, groups, strides, dilation, input_dilation,
                          x.shape[0], x.shape[1:-1], x.dtype, pads=pads)  # fmt: skip
    method, _ = window_method(problem)
    if method == "block-Toeplitz products":
        return window_toeplitz._signal_conv(x, kernel, tuple(pads[0]), precision)
    if method == "batch-chunked im2col":
        pads = tuple(map(tuple, pads))
        return window_chunked._chunked_conv(x, kernel, pads, tuple(dilation), precision)
    x = pad_and_dilate(x, pads, input_dilation)
    slices, out = tap_slices(x, kernel_size, strides, dilation)
    if method == "one matrix product":  # its gradients are the two transposed products
        y = jnp.dot(slices[0].reshape(-1, cin_g), kernel.reshape(cin_g, cout), precision=precision)
        return y.reshape(x.shape[0], *out, cout)
    w = kernel.reshape(len(slices), cin_g, groups, cout // groups)
    if method == "shift and add":
        # Streams the input once per tap. A single-channel input with several outputs (a
        # grayscale first layer) takes im2col instead: its kernel gradient is then one
        # matrix product, not a multiply-and-reduce per tap, whose broadcast input
        # XLA:CPU materialises.
        acc = None
        for part, wm in zip(slices, w):
            term = part[..., :, None] * wm[0]  # (N, *out, G, 1) * (G, cout_g)
            acc = term if acc is None else acc + term
        return acc.reshape(x.shape[0], *out, cout)
    return _im2col(slices, w, (x.shape[0], *out, cout), precision)


def _im2col(slices: list, w: jnp.ndarray, out_shape: tuple, precision) -> jnp.ndarray:
    """``sum_m slice_m @ K[m]`` over chunks of taps: each chunk's taps and channels are
    contracted at once in one matrix product, and the chunks' products accumulated."""
    cin_g, groups, cout = w.shape[1], w.shape[2], out_shape[-1]
    step, acc = max(1, CHUNK_CONTRACTION // cin_g), None
    for first in range(0, len(slices), step):
        cols = jnp.stack(slices[first : first + step], axis=-2)  # (N, *out, t, C)
        t = cols.shape[-2]
        wc = w[first : first + t]  # (t, cin_g, G, cout_g)
        if groups == 1:
            term = jnp.dot(
                cols.reshape(-1, t * cin_g), wc.reshape(t * cin_g, cout), precision=precision
            )
        else:
            cols = cols.reshape(*cols.shape[:-1], groups, cin_g)
            term = jnp.einsum("...tgc,tcgo->...go", cols, wc, precision=precision)
        term = term.reshape(out_shape)
        acc = term if acc is None else acc + term
    return acc
