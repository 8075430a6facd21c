r"""Strided (transposed) convolutions as one stride-1 convolution: sub-pixel phases.

A transposed convolution of stride ``s`` writes input sample ``i`` through tap ``m`` to
output ``o = i*s + m``. Split the output by phase, ``o = q*s + r`` with ``0 <= r < s``:
phase ``r`` receives exactly the taps ``m = r, r + s, r + 2s, ...``, and

.. math::  F[q s + r] = \sum_{j} y[q - j] \, K[j s + r]

is an ordinary stride-1 convolution of the *undilated* input with the sub-kernel
``K[r::s]``. All ``s`` phases read the same input, so their sub-kernels go side by side
as output channels of one convolution with ``ceil(k / s)`` taps; the result's channel
axis holds ``(phase, channel)`` and a transpose interleaves the phases back into space
("depth to space"). In ``d`` dimensions there are ``s^d`` phases.

The direct form multiplies every tap with the zeros inserted between input samples
(``s^d - 1`` of every ``s^d`` products are zero); this one does not. Its gradients are
a stride-1 convolution's, which every backend computes well. The crop of PyTorch's
``padding`` and the ``output_padding`` are folded into the padding of the stride-1
convolution, so no phase row is computed only to be cut off.

Kernel dilation ``d > 1`` on an axis with stride ``s > 1`` would leave most of the
sub-kernel taps zero; :func:`applies` keeps those on the direct form.

The same split read forwards is space to depth (:func:`strided_conv`): a stride-``s``
convolution reads padded sample ``o*s + m``, which with ``m = q*s + r`` is sample ``r`` of
block ``o + q``; blocks of ``s`` samples become channels, and the layer becomes one
stride-1 convolution with ``ceil(k / s)`` taps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax.numpy as jnp
from jax import lax

from jaxconv.ops._types import Pads
from jaxconv.ops.geometry import output_sizes

#: ``core(x, kernel, pads, dilation)``: a channels-last stride-1 convolution with zero
#: padding and kernel dilation.
StrideOneCore = Callable[[jnp.ndarray, jnp.ndarray, Pads, tuple[int, ...]], jnp.ndarray]


def applies(strides: tuple[int, ...], dilation: tuple[int, ...]) -> bool:
    """Some axis has a stride and no strided axis has a kernel dilation."""
    return any(s > 1 for s in strides) and all(s == 1 or d == 1 for s, d in zip(strides, dilation))


def _split_taps(kernel: jnp.ndarray, strides: tuple[int, ...]) -> tuple[jnp.ndarray, list[int]]:
    """``kernel`` ``(*k, ...)`` with each spatial axis's taps zero-padded to a multiple of
    its stride and split into (tap, phase): ``(q1, s1, ..., qn, sn, ...)``, and the ``q``s
    (``ceil(k / s)``)."""
    n = len(strides)
    ksize = kernel.shape[:n]
    taps = [-(-k // s) for k, s in zip(ksize, strides)]
    extra = [(0, 0)] * (kernel.ndim - n)
    w = jnp.pad(kernel, [(0, q * s - k) for q, s, k in zip(taps, strides, ksize)] + extra)
    split = [d for q, s in zip(taps, strides) for d in (q, s)]
    return w.reshape(*split, *kernel.shape[n:]), taps


def phase_kernel(kernel: jnp.ndarray, strides: tuple[int, ...], groups: int) -> jnp.ndarray:
    """The stride-1 forward kernel ``(*ceil(k / s), C_in // groups, groups * prod(s) *
    C_out_g)`` of a transposed kernel ``(*k, C_in, C_out_g)``: each axis's taps padded to
    a multiple of its stride, split into (tap, phase), the taps flipped (a correlation
    reads the input forwards), and the phases moved into the output channels, which stay
    group-major."""
    n = len(strides)
    cin, cout_g = kernel.shape[-2:]
    w, taps = _split_taps(kernel, strides)
    w = w.reshape(*w.shape[: 2 * n], groups, cin // groups, cout_g)
    w = jnp.flip(w, axis=tuple(range(0, 2 * n, 2)))
    # (q1, s1, ..., qn, sn, g, c, o) -> (q1, ..., qn, c, g, s1, ..., sn, o)
    order = (
        *range(0, 2 * n, 2),
        2 * n + 1,
        2 * n,
        *range(1, 2 * n, 2),
        2 * n + 2,
    )
    w = jnp.transpose(w, order)
    return w.reshape(*taps, cin // groups, groups * math.prod(strides) * cout_g)


def _axis(size: int, k: int, s: int, d: int, q: int, lo: int, hi_less_output_padding: int):
    """One axis of the sub-pixel form: the slice of the input it reads, the stride-1
    core's padding, where the output starts in the phase rows, the output size and the
    phase rows. ``lo`` and ``hi - output_padding`` are PyTorch's crops."""
    reach = d * (q - 1)  # the sub-kernel's extent minus one (d > 1 only when s == 1)
    out = (size - 1) * s + d * (k - 1) + 1 - lo - hi_less_output_padding
    first, last = lo // s, (lo + out - 1) // s  # the phase rows the output reads
    count = last - first + 1
    pad_lo = reach - first
    pad_hi = count - size - pad_lo + reach
    # Negative padding crops the input: those samples reach only cropped outputs.
    piece = (max(-pad_lo, 0), size - max(-pad_hi, 0))
    return piece, (max(pad_lo, 0), max(pad_hi, 0)), lo - first * s, out, count


def subpixel_geometry(size: int, k: int, s: int, d: int, q: int, core_lo: int, core_hi: int):
    """The input size and padding the stride-1 core of :func:`conv_transpose` receives on
    one axis, from the padding of the direct (input-dilated) form, ``(e - 1 - lo, e - 1 -
    hi + output_padding)`` with ``e`` the dilated kernel's extent."""
    extent = d * (k - 1) + 1
    (a, b), pads, *_ = _axis(size, k, s, d, q, extent - 1 - core_lo, extent - 1 - core_hi)
    return b - a, pads


def conv_transpose(
    y: jnp.ndarray,
    kernel: jnp.ndarray,
    *,
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    pads: Pads,
    output_padding: tuple[int, ...],
    groups: int,
    core: StrideOneCore,
) -> jnp.ndarray:
    """Channels-last transposed convolution (PyTorch's ``padding`` = ``pads``, cropped
    from the full output) through one stride-1 ``core`` call on the undilated input.

    ``kernel`` is the transposed kernel ``(*k, C_in, C_out // groups)``; ``dilation`` is
    1 on every strided axis (see :func:`applies`) and passed to ``core`` on the others.
    """
    n = len(strides)
    ksize = kernel.shape[:n]
    cout_g = kernel.shape[-1]
    taps = [-(-k // s) for k, s in zip(ksize, strides)]
    in_sizes = y.shape[1:-1]
    axes = [
        _axis(size, k, s, d, q, lo, hi - o)
        for size, k, s, d, q, (lo, hi), o in zip(
            in_sizes, ksize, strides, dilation, taps, pads, output_padding
        )
    ]
    slices, core_pads, starts, out_sizes, rows = (list(t) for t in zip(*axes))
    if any(b <= a for a, b in slices):  # every sample reaches cropped outputs only
        return jnp.zeros((y.shape[0], *out_sizes, groups * cout_g), y.dtype)
    if any(a > 0 or b < size for (a, b), size in zip(slices, in_sizes)):
        y = lax.slice(
            y, (0, *(a for a, _ in slices), 0), (y.shape[0], *(b for _, b in slices), y.shape[-1])
        )
    z = core(y, phase_kernel(kernel, strides, groups), tuple(core_pads), dilation)
    # (N, q1..qn, g, s1..sn, o) -> (N, q1, s1, ..., qn, sn, g, o): phases back into space
    z = z.reshape(z.shape[0], *rows, groups, *strides, cout_g)
    order = (0, *(a for i in range(n) for a in (1 + i, 2 + n + i)), 1 + n, 2 + 2 * n)
    z = jnp.transpose(z, order)
    z = z.reshape(z.shape[0], *(r * s for r, s in zip(rows, strides)), groups * cout_g)
    return lax.slice(
        z, (0, *starts, 0), (z.shape[0], *(a + o for a, o in zip(starts, out_sizes)), z.shape[-1])
    )


def strided_conv(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    *,
    strides: tuple[int, ...],
    pads: Pads,
    core: StrideOneCore,
) -> jnp.ndarray:
    """Channels-last strided convolution (no dilation or groups) as one stride-1 ``core``
    call on the space-to-depth input: the forward twin of :func:`conv_transpose`.

    Output ``o`` reads padded samples ``o*s + m``; with ``m = q*s + r`` that is sample
    ``r`` of block ``o + q``, so blocks of ``s`` samples become channels ``(r, c)`` and the
    kernel ``(k, C, O)``, padded to a multiple of ``s`` taps, becomes ``(ceil(k / s),
    s * C, O)``.
    """
    n = len(strides)
    w, taps = _split_taps(kernel, strides)  # (q1, s1, ..., qn, sn, C, O)
    sizes = x.shape[1:-1]
    padded = [size + lo + hi for size, (lo, hi) in zip(sizes, pads)]
    outs = output_sizes(padded, kernel.shape[:n], strides, (1,) * n)
    # pad (or crop) each axis to exactly (out + taps - 1) blocks of s samples
    config = [(0, 0, 0)]
    for size, (lo, _), o, q, s in zip(sizes, pads, outs, taps, strides):
        config.append((lo, s * (o + q - 1) - size - lo, 0))
    config.append((0, 0, 0))
    xp = lax.pad(x, jnp.zeros((), x.dtype), config)
    blocks = [o + q - 1 for o, q in zip(outs, taps)]
    c = x.shape[-1]
    xs = xp.reshape(x.shape[0], *(d for b, s in zip(blocks, strides) for d in (b, s)), c)
    order = (0, *range(1, 2 * n, 2), *range(2, 2 * n + 1, 2), 2 * n + 1)
    xs = jnp.transpose(xs, order).reshape(x.shape[0], *blocks, math.prod(strides) * c)
    w = jnp.transpose(w, (*range(0, 2 * n, 2), *range(1, 2 * n, 2), 2 * n, 2 * n + 1))
    w = w.reshape(*taps, math.prod(strides) * c, kernel.shape[-1])
    return core(xs, w, ((0, 0),) * n, (1,) * n)
