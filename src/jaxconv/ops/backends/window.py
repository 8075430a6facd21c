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

Long 1-D kernels on few channels (:data:`TOEPLITZ_MIN_TAPS` taps or more, signal
filters) are sums over many taps of tiny products; there the same sum is regrouped as
a matrix product: cut the output into blocks of ``b`` samples; block ``q`` reads the
``b + taps - 1`` inputs from ``q * b`` on, and multiplying that window by the kernel's
banded Toeplitz matrix ``T[j, r] = K[j - r]`` gives the whole block. All blocks at once
are one ``(blocks, (b + taps - 1) * C) @ ((b + taps - 1) * C, b * O)`` product
(:func:`_toeplitz_conv`), ``(b + taps - 1) / taps`` times the direct multiply-adds but at
matmul speed instead of ``taps`` passes over the signal; its gradients are products with
the same shapes.

Gradients. Generally they come from JAX's autodiff of the slices and products. For the
common training case (no groups, stride 1, no input dilation) a ``custom_jvp``
rule gives the two gradients their own forms, computed together in one pass over batch
chunks of ``dY`` (``lax.map`` over chunks of about :data:`CHUNK_BYTES` of patches, but
at least :data:`GRADIENT_MIN_ROWS` output positions, so the patch matrices stay small
and are never stored for the whole batch):

- the kernel gradient ``dK = P^T @ dY``: the patches are built transposed,
  ``(taps * C, positions)``, from a channels-first copy of the chunk and rebuilt in the
  backward pass (``jax.checkpoint``), so each chunk is one plain matrix product
  ``(taps * C, rows) @ (rows, O)``; the chunks' products are summed;
- the input gradient "col2im": ``dP = dY @ K^T`` per chunk (the patch cotangent), whose
  tap-``m`` slab is added onto the input at offset ``m * d`` (nine padded slabs summed
  in one fused loop for a 3x3 kernel), then cropped by the forward padding.

The rule is a JVP, not a VJP, so forward mode (``jax.jvp``, Hessians) still works: its
tangent term is written as the *linear transpose* of the gradient map above (``dY`` to
the wanted gradients), so reverse mode, which transposes the JVP, runs that map itself.
Measurements:
``benchmarks/conv_backends.py`` and ``benchmarks/train_step.py``.

Non-finite inputs. The slice, shift-and-add and im2col paths are direct sums: a NaN or
infinity in the input is non-finite in exactly the outputs whose receptive field holds
it, as with ``lax``. The block-Toeplitz path is not: the band matrix's zeros times a NaN
are NaN, so every output of each block whose window reads it becomes non-finite (up to
two blocks of :func:`toeplitz_block` samples).
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

    Long 1-D kernels on few channels (signal filters) are block-Toeplitz matrix
    products (:func:`_toeplitz_conv`). Ungrouped, stride-1 convolutions without input
    dilation (most layers of a CNN) go to the batch-chunked im2col with its own JVP
    (module docstring) when one image's patches fit in :data:`CHUNK_BYTES` and it is
    not a one-channel signal. Otherwise: one
    input channel per group (depthwise convs): shift and add, ``sum_m slice_m * K[m]``,
    elementwise and fused by XLA; else im2col over chunks of taps, contracting taps
    and channels at once in a matrix product and accumulating over the chunks.
    """
    n = x.ndim - 2
    kernel_size = kernel.shape[:n]
    cin_g, cout = kernel.shape[-2], kernel.shape[-1]
    cout_g = cout // groups
    if toeplitz_applies(kernel.shape, strides, dilation, input_dilation, groups):
        return _signal_conv(x, kernel, tuple(pads[0]), precision)
    if (
        groups == 1
        and all(s == 1 for s in strides)
        and all(d == 1 for d in input_dilation)
        and cin_g * cout > 1  # a one-channel signal: shift and add is faster
        and _patch_bytes_per_image(x, kernel, pads) <= CHUNK_BYTES
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
#: Each ``lax.map`` step of the chunked im2col (forward and both gradient maps) handles
#: as many images as keep one image's patch tensor times the chunk under about this many
#: bytes (cache-sized; whole training steps on the 2-core development CPU, paired ratios
#: to 4 MiB: MNIST net 1.12, 1.02, 1.15 with 2, 8, 16 MiB; VGG-6 1.02, 1.00, 1.03).
CHUNK_BYTES = 4 << 20


def _patch_bytes_per_image(x, kernel, pads) -> int:
    """Bytes of one image's stride-1 patch tensor: padded positions x taps x channels."""
    padded = [s + lo + hi for s, (lo, hi) in zip(x.shape[1:-1], pads)]
    return math.prod(padded) * math.prod(kernel.shape[:-1]) * x.dtype.itemsize


def _patch_product(xp, w2, kernel_size, dilation, precision):
    """``im2col(xp) @ w2`` for already padded channels-last ``xp``; stride 1."""
    slices, _ = tap_slices(xp, kernel_size, (1,) * len(kernel_size), dilation)
    patches = jnp.concatenate(slices, axis=-1) if len(slices) > 1 else slices[0]
    return lax.dot_general(patches, w2, (((patches.ndim - 1,), (0,)), ((), ())), precision=precision)


def _by_batch_chunks(fn, x, bytes_per_image, min_images=1):
    """``fn`` applied to chunks of the leading (batch) axis of ``x`` (an array or a tuple
    of arrays of one batch); results (arrays or tuples) concatenated along their leading
    axis. A chunk holds as many images as fit in :data:`CHUNK_BYTES`, at least
    ``min_images``."""
    total = jax.tree_util.tree_leaves(x)[0].shape[0]
    size = max(1, min(total, max(min_images, CHUNK_BYTES // max(1, bytes_per_image))))
    full = total // size
    take = lambda f: jax.tree_util.tree_map(f, x)
    parts = []
    if full > 1:
        ys = lax.map(fn, take(lambda a: a[: full * size].reshape(full, size, *a.shape[1:])))
        parts.append(jax.tree_util.tree_map(lambda y: y.reshape(-1, *y.shape[2:]), ys))
    elif full == 1:
        parts.append(fn(take(lambda a: a[:size])))
    if total > full * size:
        parts.append(fn(take(lambda a: a[full * size :])))
    return jax.tree_util.tree_map(lambda *ys: ys[0] if len(ys) == 1 else jnp.concatenate(ys), *parts)


#: The gradient map's chunks hold at least this many output positions (rows of the
#: kernel gradient's contraction ``(taps * C, rows) @ (rows, O)``), even past
#: :data:`CHUNK_BYTES`: a short contraction leaves the matmul far from peak. Both
#: gradients of a batch of 64, paired against chunks of CHUNK_BYTES alone: 0.82 (3x3
#: 128->128, 8x8), 0.88 (64->128, 8x8), 0.71 (5x5 64->64, 16x16), 0.88 (3x3 64->64, 32x32),
#: 0.89 (the MNIST-1D layer), 0.98-1.02 on the layers whose chunks already had as many.
#: Rechecked once the chunks' sum became cheap (:func:`sum_leading`), paired against 2048
#: on five 2-D layers: cache-sized chunks 0.93-1.13x, at least 4096 rows 0.98-1.13x.
GRADIENT_MIN_ROWS = 2048


#: Up to this many input channels, the chunked path's forward is shift and add over the
#: whole batch, ``sum over taps m and channels c of slice_m[..., c] * K[m, c, :]``: one
#: fused elementwise loop instead of a patch matrix with a contraction too short for a
#: good matmul (forward of 128x32x32x3 -> 32, 3x3: 2.3-2.5 ms against 5.9-10.1 ms for the
#: chunked im2col in two paired runs; 128x28x28x1 -> 32: 0.5 against 2.0 ms).
SHIFT_ADD_MAX_CHANNELS = 4


def _shift_add(xp, kernel, dilation):
    """Stride-1 correlation of padded channels-last ``xp`` as a sum of ``taps * C``
    broadcast products (few input channels)."""
    kernel_size = kernel.shape[:-2]
    slices, _ = tap_slices(xp, kernel_size, (1,) * len(kernel_size), dilation)
    w = kernel.reshape(len(slices), *kernel.shape[-2:])
    terms = (part[..., c : c + 1] * wm[c] for part, wm in zip(slices, w) for c in range(w.shape[1]))
    return functools.reduce(lambda a, b: a + b, terms)


def _im2col_conv(x, kernel, pads, dilation, precision):
    n = x.ndim - 2
    kernel_size = kernel.shape[:n]
    if kernel.shape[-2] <= SHIFT_ADD_MAX_CHANNELS:
        return _shift_add(pad_and_dilate(x, pads, (1,) * n), kernel, dilation)
    w2 = kernel.reshape(-1, kernel.shape[-1])

    def body(chunk):
        return _patch_product(pad_and_dilate(chunk, pads, (1,) * n), w2, kernel_size, dilation, precision)

    return _by_batch_chunks(body, x, _patch_bytes_per_image(x, kernel, pads))


def _gradients(x, ct, kernel, pads, dilation, precision, wanted):
    """The gradients of a stride-1 convolution named in ``wanted`` ("x", "kernel"), as a
    tuple in that order, from the output cotangent ``ct``, in one pass over batch chunks.

    - ``dK = P^T @ dY``: the patches are built transposed, ``(taps * C, positions)``, so
      each chunk's product is a plain ``(taps * C, rows) @ (rows, O)``; the chunks'
      products are summed. The padded input is made channels-second ``(N, C, *spatial)``
      once, so a chunk's channels-first copy and its tap slices move contiguous rows
      (slicing channels-last ``x`` directly was ~10-20% slower per layer).
    - ``dX`` ("col2im"): the patch cotangent ``dP = dY @ K^T`` (positions, taps, C); tap
      ``m``'s slab of it lands on the input at offset ``m * d``, so ``dX`` of the padded
      input is the sum of the slabs, each zero-padded into place (one fused loop), then
      cropped by the forward padding.
    """
    n = x.ndim - 2
    ones = (1,) * n
    kernel_size = kernel.shape[:n]
    taps, cin, cout = math.prod(kernel_size), kernel.shape[-2], kernel.shape[-1]
    k2t = kernel.reshape(taps * cin, cout).T
    crop = [(0, 0, 0), *((-lo, -hi, 0) for lo, hi in pads), (0, 0, 0)]
    zero = jnp.zeros((), ct.dtype)

    def input_gradient(cc):
        dp = jnp.dot(cc.reshape(-1, cout), k2t, precision=precision).reshape(*cc.shape[:-1], taps, cin)
        acc = None
        for m, tap in enumerate(itertools.product(*(range(k) for k in kernel_size))):
            config = [(0, 0, 0), *((t * d, (k - 1 - t) * d, 0) for t, k, d in zip(tap, kernel_size, dilation)),
                      (0, 0, 0)]
            slab = lax.pad(dp[..., m, :], zero, config)
            acc = slab if acc is None else acc + slab
        return lax.pad(acc, zero, crop)

    def kernel_gradient(xc, cc):
        slices, _ = tap_slices(xc.swapaxes(0, 1), kernel_size, ones, dilation, first_axis=2)  # (C, batch, *out)
        pt = jnp.concatenate(slices, axis=0) if len(slices) > 1 else slices[0]
        return jnp.dot(pt.reshape(pt.shape[0], -1), cc.reshape(-1, cout), precision=precision)[None]

    def body(chunk):  # (ct chunk,) or (ct chunk, x chunk)
        cc = chunk[0]
        return tuple(input_gradient(cc) if w == "x" else kernel_gradient(chunk[1], cc) for w in wanted)

    operands = (ct,)
    if "kernel" in wanted:
        operands += (jnp.moveaxis(pad_and_dilate(x, pads, ones), -1, 1),)  # (N, C, *padded)
    # Rebuild the patches in the backward pass: without the checkpoint, linearizing
    # hoists them out as residuals and stores every chunk's patches at once.
    positions = math.prod(ct.shape[1:-1])
    grads = _by_batch_chunks(jax.checkpoint(body), operands, _patch_bytes_per_image(x, kernel, pads),
                             min_images=-(-GRADIENT_MIN_ROWS // max(1, positions)))
    return tuple(g if w == "x" else sum_leading(g).reshape(kernel.shape) for w, g in zip(wanted, grads))


def sum_leading(a):
    """``a.sum(axis=0)``, written as a product with a vector of ones.

    XLA:CPU's reduce over a short leading axis of a long array is slow, and slower the
    more rows: the kernel gradient's per-chunk sum ``(32, 36864) -> (36864,)`` took 7.8
    ms as a reduce against 0.32 ms as this product (16 rows: 3.5 against 0.17 ms; a 3x3
    64->64 layer's whole backward is ~80 ms).
    Low-precision floats are summed in float32 (as ``jnp.sum`` does), and the product asks
    for full precision, so accelerators do not round the summands.
    """
    if a.shape[0] == 1:
        return a[0]
    acc = jnp.promote_types(a.dtype, jnp.float32)
    flat = a.reshape(a.shape[0], -1).astype(acc)
    total = lax.dot_general(jnp.ones(a.shape[:1], acc), flat, (((0,), (0,)), ((), ())),
                            precision=lax.Precision.HIGHEST)
    return total.astype(a.dtype).reshape(a.shape[1:])


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _chunked_conv(x, kernel, pads, dilation, precision):
    return _im2col_conv(x, kernel, pads, dilation, precision)


@functools.partial(_chunked_conv.defjvp, symbolic_zeros=True)
def _chunked_conv_jvp(pads, dilation, precision, primals, tangents):
    x, kernel = primals
    x_dot, kernel_dot = tangents
    y = _chunked_conv(x, kernel, pads, dilation, precision)
    # The tangent term is linear in the tangents and written as the *transpose* of the
    # gradient map, so reverse mode (which transposes the JVP) runs _gradients itself,
    # for both operands in one pass, and forward mode still gets conv(x_dot, K) +
    # conv(x, K_dot). Symbolic zeros drop an operand (a first layer's input).
    wanted = tuple(name for name, t in (("x", x_dot), ("kernel", kernel_dot)) if not isinstance(t, SymbolicZero))
    if not wanted:
        return y, jnp.zeros_like(y)
    grads = jax.linear_transpose(
        lambda ct: _gradients(x, ct, kernel, pads, dilation, precision, wanted), jax.ShapeDtypeStruct(y.shape, y.dtype))
    return y, grads(tuple(x_dot if w == "x" else kernel_dot for w in wanted))[0]


# ---- long 1-D kernels: block-Toeplitz matrix products -----------------------------------
#: 1-D kernels of at least this many taps on at most :data:`TOEPLITZ_MAX_CHANNEL_PRODUCT`
#: (input x output) channels take :func:`_toeplitz_conv`. Forward+backward (output and
#: both gradients), paired against this backend's earlier paths (shift and add, or the
#: tap-chunked im2col): 16 signals of 8192 samples, one channel, 0.35 (8 taps), 0.24
#: (16), 0.11 (64), 0.04 (256); 1 -> 8 channels, 32 taps, 0.47-0.63; 16 x 4096 samples,
#: 8 -> 8 channels, 0.64 (16 taps), 0.21 (32), 0.18 (128); 4 -> 4, 64 taps, 0.10.
TOEPLITZ_MIN_TAPS = 8
TOEPLITZ_MAX_CHANNEL_PRODUCT = 64


def toeplitz_applies(kernel_shape, strides, dilation, input_dilation, groups) -> bool:
    """Whether :func:`conv` computes this convolution as block-Toeplitz products: 1-D,
    stride 1, no dilation of either kind, no groups, at least :data:`TOEPLITZ_MIN_TAPS`
    taps and at most :data:`TOEPLITZ_MAX_CHANNEL_PRODUCT` (in x out) channels."""
    return (
        len(kernel_shape) == 3
        and groups == 1
        and tuple(strides) == (1,)
        and tuple(dilation) == (1,)
        and tuple(input_dilation) == (1,)
        and kernel_shape[0] >= TOEPLITZ_MIN_TAPS
        and kernel_shape[1] * kernel_shape[2] <= TOEPLITZ_MAX_CHANNEL_PRODUCT
    )


def toeplitz_block(taps: int) -> int:
    """Output samples per block of :func:`_toeplitz_conv`: half the taps as a power of
    two, within 16..64 (each block multiplies ``block + taps - 1`` inputs, so the
    multiply-adds are ``(block + taps - 1) / taps`` times the direct sum's; a longer
    block makes a wider, faster matrix product)."""
    return min(64, max(16, 1 << max(0, (taps // 2).bit_length() - 1)))


def _toeplitz_matrix(kernel, block):
    """``T[j, c, r, o] = K[j - r, c, o]`` (zero outside the kernel) as a
    ``((block + taps - 1) * C, block * O)`` matrix: output ``r`` of a block is input
    window ``j`` times this band. Built without a gather: ``block`` periods of (the
    kernel, then ``block`` zeros) laid end to end and cut into rows one sample shorter
    than the period, so each row's kernel starts one place further right."""
    taps, cin, cout = kernel.shape
    width = block + taps - 1
    period = jnp.concatenate([kernel, jnp.zeros((block, cin, cout), kernel.dtype)])  # (taps + block, C, O)
    rows = jnp.tile(period, (block, 1, 1))[: block * width].reshape(block, width, cin, cout)  # [r, j, c, o]
    return rows.transpose(1, 2, 0, 3).reshape(width * cin, block * cout)


def _toeplitz_conv(x, kernel, pads, precision):
    """Stride-1 1-D correlation as one matrix product per block of outputs.

    The output is cut into blocks of ``b`` samples (:func:`toeplitz_block`); block
    ``q`` needs the ``b + taps - 1`` input samples from ``q * b`` on, i.e. the rows of
    ``A = [X_q, X_{q+1}, ...]`` (``X`` the padded input cut into blocks of ``b``, the
    next blocks' heads appended). All of them times the banded Toeplitz matrix of the
    kernel (:func:`_toeplitz_matrix`) is one matrix product
    ``(N * blocks, (b + taps - 1) * C) @ ((b + taps - 1) * C, b * O)``: a direct
    convolution that does ``(b + taps - 1) / taps`` times its multiply-adds, in a matmul
    instead of ``taps`` passes over the signal. Gradients are JAX's: the product's
    transposes, the blocks' concatenation transposed (an overlap-add) and the band's
    construction transposed (a sum over the band's diagonals). The windows hold
    ``(b + taps - 1) / b`` times the input (3x for 64 taps, 65x for 4096): kernels that
    long are ``fft``'s ground, where ``auto`` sends them.
    """
    batch, length, cin = x.shape
    taps, _, cout = kernel.shape
    block = toeplitz_block(taps)
    out = length + pads[0] + pads[1] - taps + 1
    blocks = -(-out // block)
    spans = -(-(block + taps - 1) // block)  # input blocks one output block reads
    total = (blocks + spans - 1) * block
    xp = pad_and_dilate(x, ((pads[0], total - length - pads[0]),), (1,))  # whole blocks
    xb = xp.reshape(batch, blocks + spans - 1, block, cin)
    windows = jnp.concatenate([xb[:, i : i + blocks] for i in range(spans)], axis=2)[:, :, : block + taps - 1]
    y = jnp.dot(windows.reshape(batch * blocks, -1), _toeplitz_matrix(kernel, block), precision=precision)
    return y.reshape(batch, blocks * block, cout)[:, :out]


#: A one-channel signal with a kernel of up to this many taps runs its forward pass as
#: shift and add (``taps`` fused passes beat the block product's extra multiply-adds
#: there: forward 0.25 against 0.39 ms for 8 taps, 0.72 against 0.84 for 64, 14.7 against
#: 1.6 for 256, batch 16 x 8192); its derivatives stay block-Toeplitz products.
SIGNAL_SHIFT_ADD_MAX_TAPS = 64


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _signal_conv(x, kernel, pads, precision):
    """A long 1-D kernel on few channels: shift and add forward for one channel and up
    to :data:`SIGNAL_SHIFT_ADD_MAX_TAPS` taps, else the block product; derivatives are
    always block products (the JVP below)."""
    taps, cin, cout = kernel.shape
    if cin * cout == 1 and taps <= SIGNAL_SHIFT_ADD_MAX_TAPS:
        return _shift_add(pad_and_dilate(x, (pads,), (1,)), kernel, (1,))
    return _toeplitz_conv(x, kernel, pads, precision)


@functools.partial(_signal_conv.defjvp, symbolic_zeros=True)
def _signal_conv_jvp(pads, precision, primals, tangents):
    # The tangent (and so, transposed, both gradients) is always the block product.
    x, kernel = primals
    x_dot, kernel_dot = tangents
    y = _signal_conv(x, kernel, pads, precision)
    terms = []
    if not isinstance(x_dot, SymbolicZero):
        terms.append(_toeplitz_conv(x_dot, kernel, pads, precision))
    if not isinstance(kernel_dot, SymbolicZero):
        terms.append(_toeplitz_conv(x, kernel_dot, pads, precision))
    return y, functools.reduce(lambda a, b: a + b, terms) if terms else jnp.zeros_like(y)
