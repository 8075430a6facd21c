"""``window``'s path for most CNN layers: batch-chunked im2col with its own JVP.

For the common training case (no groups, stride 1, no input dilation) a ``custom_jvp``
rule gives the two gradients their own forms, computed together in one pass over batch
chunks of ``dY`` (``lax.map`` over chunks of about
:data:`jaxconv.ops.policy.CHUNK_BYTES` of patches, but
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
The figures behind the constants: ``docs/performance-notes.md``.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jaxconv.ops import policy
from jaxconv.ops.geometry import pad_and_dilate, shift_add, tap_slices


def _patch_bytes_per_image(x, kernel, pads) -> int:
    """Bytes of one image's stride-1 patch tensor: padded positions x taps x channels."""
    n = x.ndim - 2
    return policy.patch_bytes_per_image(
        x.shape[1:-1], pads, kernel.shape[:n], kernel.shape[-2], x.dtype.itemsize
    )


def _patch_product(xp, w2, kernel_size, dilation, precision):
    """``im2col(xp) @ w2`` for already padded channels-last ``xp``; stride 1."""
    slices, _ = tap_slices(xp, kernel_size, (1,) * len(kernel_size), dilation)
    patches = jnp.concatenate(slices, axis=-1) if len(slices) > 1 else slices[0]
    return lax.dot_general(
        patches, w2, (((patches.ndim - 1,), (0,)), ((), ())), precision=precision
    )


def _by_batch_chunks(fn, x, bytes_per_image, min_images=1):
    """``fn`` applied to chunks of the leading (batch) axis of ``x`` (an array or a tuple
    of arrays of one batch); results (arrays or tuples) concatenated along their leading
    axis. A chunk holds as many images as fit in :data:`jaxconv.ops.policy.CHUNK_BYTES`, at least
    ``min_images``."""
    total = jax.tree_util.tree_leaves(x)[0].shape[0]
    size = max(1, min(total, max(min_images, policy.CHUNK_BYTES // max(1, bytes_per_image))))
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
    return jax.tree_util.tree_map(
        lambda *ys: ys[0] if len(ys) == 1 else jnp.concatenate(ys), *parts
    )


#: The gradient map's chunks hold at least this many output positions (rows of the
#: kernel gradient's contraction ``(taps * C, rows) @ (rows, O)``), even past
#: :data:`jaxconv.ops.policy.CHUNK_BYTES`: a short contraction leaves the matmul far from peak
#: (conv_backends: the 8x8 and 16x16 rows' gradients).
GRADIENT_MIN_ROWS = 2048

#: Up to this many input channels, the forward is shift and add over the whole batch: one
#: fused loop instead of a patch matrix whose contraction is too short for a good matmul
#: (conv_backends: the RGB 3 -> 32 row; train_step: the MNIST net's grayscale layer).
SHIFT_ADD_MAX_CHANNELS = 4


def _im2col_conv(x, kernel, pads, dilation, precision):
    n = x.ndim - 2
    kernel_size = kernel.shape[:n]
    if kernel.shape[-2] <= SHIFT_ADD_MAX_CHANNELS:
        return shift_add(pad_and_dilate(x, pads, (1,) * n), kernel, dilation)
    w2 = kernel.reshape(-1, kernel.shape[-1])

    def body(chunk):
        return _patch_product(
            pad_and_dilate(chunk, pads, (1,) * n), w2, kernel_size, dilation, precision
        )

    return _by_batch_chunks(body, x, _patch_bytes_per_image(x, kernel, pads))


def _gradients(x, ct, kernel, pads, dilation, precision, wanted):
    """The gradients of a stride-1 convolution named in ``wanted`` ("x", "kernel"), as a
    tuple in that order, from the output cotangent ``ct``, in one pass over batch chunks
    (:func:`_input_gradient` and :func:`_kernel_gradient` of each chunk)."""
    n = x.ndim - 2
    ones = (1,) * n
    taps, cin, cout = math.prod(kernel.shape[:n]), kernel.shape[-2], kernel.shape[-1]
    dx = functools.partial(_input_gradient, k2t=kernel.reshape(taps * cin, cout).T,
                           kernel_size=kernel.shape[:n], pads=pads, dilation=dilation,
                           zero=jnp.zeros((), ct.dtype), precision=precision)  # fmt: skip
    dk = functools.partial(_kernel_gradient, kernel_size=kernel.shape[:n], dilation=dilation,
                           precision=precision)  # fmt: skip

    def body(chunk):  # (ct chunk,) or (ct chunk, x chunk)
        return tuple(dx(chunk[0]) if w == "x" else dk(chunk[1], chunk[0]) for w in wanted)

    operands = (ct,)
    if "kernel" in wanted:
        operands += (jnp.moveaxis(pad_and_dilate(x, pads, ones), -1, 1),)  # (N, C, *padded)
    # Rebuild the patches in the backward pass: without the checkpoint, linearizing
    # hoists them out as residuals and stores every chunk's patches at once.
    positions = math.prod(ct.shape[1:-1])
    grads = _by_batch_chunks(
        jax.checkpoint(body),
        operands,
        _patch_bytes_per_image(x, kernel, pads),
        min_images=-(-GRADIENT_MIN_ROWS // max(1, positions)),
    )
    return tuple(
        g if w == "x" else sum_leading(g).reshape(kernel.shape) for w, g in zip(wanted, grads)
    )


def _input_gradient(cc, *, k2t, kernel_size, pads, dilation, zero, precision):
    """``dX`` of one chunk ("col2im"): the patch cotangent ``dP = dY @ K^T`` (positions,
    taps, C); tap ``m``'s slab of it lands on the input at offset ``m * d``, so ``dX`` of
    the padded input is the sum of the slabs, each zero-padded into place (one fused
    loop), then cropped by the forward padding. ``k2t`` is the kernel as ``(O, taps * C)``."""
    taps, cout = math.prod(kernel_size), k2t.shape[0]
    dp = jnp.dot(cc.reshape(-1, cout), k2t, precision=precision).reshape(
        *cc.shape[:-1], taps, k2t.shape[1] // taps
    )
    acc = None
    for m, tap in enumerate(itertools.product(*(range(k) for k in kernel_size))):
        config = [
            (0, 0, 0),
            *((t * d, (k - 1 - t) * d, 0) for t, k, d in zip(tap, kernel_size, dilation)),
            (0, 0, 0),
        ]
        slab = lax.pad(dp[..., m, :], zero, config)
        acc = slab if acc is None else acc + slab
    crop = [(0, 0, 0), *((-lo, -hi, 0) for lo, hi in pads), (0, 0, 0)]
    return lax.pad(acc, zero, crop)


def _kernel_gradient(xc, cc, *, kernel_size, dilation, precision):
    """``dK = P^T @ dY`` of one chunk: the patches are built transposed, ``(taps * C,
    positions)``, so the product is a plain ``(taps * C, rows) @ (rows, O)`` (the chunks'
    products are summed by the caller). ``xc`` is channels-second ``(N, C, *padded)``, so
    its tap slices move contiguous rows (faster than slicing channels-last ``x``:
    docs/performance-notes.md)."""
    ones = (1,) * len(kernel_size)
    slices, _ = tap_slices(xc.swapaxes(0, 1), kernel_size, ones, dilation, first_axis=2)
    pt = jnp.concatenate(slices, axis=0) if len(slices) > 1 else slices[0]  # (C.., batch, *out)
    cout = cc.shape[-1]
    return jnp.dot(pt.reshape(pt.shape[0], -1), cc.reshape(-1, cout), precision=precision)[None]


def sum_leading(a):
    """``a.sum(axis=0)``, written as a product with a vector of ones.

    XLA:CPU reduces a short leading axis of a long array slowly (and more slowly the more
    rows); a product with ones is a matmul, which it runs at speed.
    Low-precision floats are summed in float32 (as ``jnp.sum`` does), and the product asks
    for full precision, so accelerators do not round the summands.
    """
    if a.shape[0] == 1:
        return a[0]
    acc = jnp.promote_types(a.dtype, jnp.float32)
    flat = a.reshape(a.shape[0], -1).astype(acc)
    total = lax.dot_general(
        jnp.ones(a.shape[:1], acc), flat, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST
    )
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
    wanted = tuple(
        name
        for name, t in (("x", x_dot), ("kernel", kernel_dot))
        if not isinstance(t, SymbolicZero)
    )
    if not wanted:
        return y, jnp.zeros_like(y)
    grads = jax.linear_transpose(
        lambda ct: _gradients(x, ct, kernel, pads, dilation, precision, wanted),
        jax.ShapeDtypeStruct(y.shape, y.dtype),
    )
    return y, grads(tuple(x_dot if w == "x" else kernel_dot for w in wanted))[0]
