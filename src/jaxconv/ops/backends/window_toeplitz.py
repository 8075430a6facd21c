"""``window``'s path for long 1-D kernels on few channels: block-Toeplitz products.

Signal filters of many taps are sums over many taps of tiny products; the same sum is
regrouped as a matrix product: cut the output into blocks of ``b`` samples; block ``q``
reads the ``b + taps - 1`` inputs from ``q * b`` on, and multiplying that window by the
kernel's banded Toeplitz matrix ``T[j, r] = K[j - r]`` gives the whole block. All blocks
at once are one ``(blocks, (b + taps - 1) * C) @ ((b + taps - 1) * C, b * O)`` product
(:func:`_toeplitz_conv`), ``(b + taps - 1) / taps`` times the direct multiply-adds but at
matmul speed instead of ``taps`` passes over the signal; its gradients are products with
the same shapes. The band's zeros times a NaN are NaN: a non-finite input spoils the
whole output blocks that read it. The figures behind the constants:
``docs/performance-notes.md``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from jaxconv.ops.geometry import pad_and_dilate, shift_add
from jaxconv.ops.policy import (  # noqa: F401  (where the plan decides; re-exported)
    TOEPLITZ_MAX_CHANNEL_PRODUCT,
    TOEPLITZ_MIN_TAPS,
    toeplitz_applies,
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
    period = jnp.concatenate(
        [kernel, jnp.zeros((block, cin, cout), kernel.dtype)]
    )  # (taps + block, C, O)
    rows = jnp.tile(period, (block, 1, 1))[: block * width].reshape(
        block, width, cin, cout
    )  # [r, j, c, o]
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
    windows = jnp.concatenate([xb[:, i : i + blocks] for i in range(spans)], axis=2)[
        :, :, : block + taps - 1
    ]
    y = jnp.dot(
        windows.reshape(batch * blocks, -1), _toeplitz_matrix(kernel, block), precision=precision
    )
    return y.reshape(batch, blocks * block, cout)[:, :out]


#: A one-channel signal with a kernel of up to this many taps runs its forward pass as
#: shift and add (``taps`` fused passes beat the block product's extra multiply-adds
#: there; conv_backends: the one-channel 16- and 64-tap rows); its derivatives stay
#: block-Toeplitz products.
SIGNAL_SHIFT_ADD_MAX_TAPS = 64


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _signal_conv(x, kernel, pads, precision):
    """A long 1-D kernel on few channels: shift and add forward for one channel and up
    to :data:`SIGNAL_SHIFT_ADD_MAX_TAPS` taps, else the block product; derivatives are
    always block products (the JVP below)."""
    taps, cin, cout = kernel.shape
    if cin * cout == 1 and taps <= SIGNAL_SHIFT_ADD_MAX_TAPS:
        return shift_add(pad_and_dilate(x, (pads,), (1,)), kernel, (1,))
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
