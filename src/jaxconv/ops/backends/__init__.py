"""The registry of convolution backends and the ``auto`` policy over it.

A backend is a function ``conv(x, kernel, *, strides, dilation, input_dilation, groups,
pads, precision)`` on channels-last arrays with zero padding only: the front end in
:mod:`jaxconv.ops.conv` has already validated and canonicalised every argument, applied
non-zero padding modes and moved the layout. ``conv_transpose``, ``convolve`` and
``correlate`` are built on the same function, so a new backend gets them for free.

``auto`` is a policy, not an implementation: see :func:`select`.

Non-finite inputs. On finite inputs the backends agree to float rounding. A NaN or an
infinity in the input is where they differ, because each mixes samples differently
before it multiplies: ``lax`` and ``window`` (direct sums) make non-finite exactly the
outputs whose receptive field holds it, except that ``window``'s block-Toeplitz path for
long 1-D kernels on several channels spoils the whole output blocks that read it;
``winograd`` makes the whole output tiles
(4x4 for a 3x3 kernel) of every input tile that holds it non-finite, a few samples beyond
the receptive field; ``fft`` makes every output of that sample non-finite (each
frequency sums the whole signal). No backend lets it reach another sample of the batch.
``auto`` inherits the pattern of the backend it picks, so which outputs of a sample
with a NaN are NaN depends on the shapes; where that matters (masking bad pixels, say),
replace non-finite values before the convolution or pick ``lax`` or ``window``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax.numpy as jnp

from jaxconv.ops.backends import (  # winograd after window: it falls back on it
    fft,
    lax,
    window,
    winograd,
)

ConvCore = Callable[..., object]

BACKENDS: dict[str, ConvCore] = {
    "lax": lax.conv,
    "window": window.conv,
    "fft": fft.conv,
    "winograd": winograd.conv,
}

#: Kernels with at least this many taps (at stride 1) go to the FFT backend under
#: ``auto``: 64 taps for multi-channel convolutions, 16 for one input channel.
#: Measured with ``benchmarks/conv_backends.py`` on a 2-core CPU (see README).
FFT_MIN_TAPS = 64
FFT_MIN_TAPS_ONE_CHANNEL = 16

#: On CPU, ``auto`` sends 1-D kernels that ``window`` computes as block-Toeplitz
#: products (``window.TOEPLITZ_MIN_TAPS`` taps or more, few channels, stride 1) to it,
#: up to this many taps for one input channel and below :data:`FFT_MIN_TAPS` otherwise.
WINDOW_SIGNAL_MAX_TAPS = 64

#: Up to this many input channels per group (but more than one), ``auto`` uses the
#: ``window`` backend on CPU.
WINDOW_MAX_CHANNELS = 4

#: On CPU, ``auto`` sends ungrouped layers in batches of at least ``WINDOW_MIN_BATCH``
#: images of at least ``WINDOW_MIN_POSITIONS`` input positions to the ``window``
#: backend when they are strided, or stride-1 with at least
#: ``WINDOW_GEMM_MIN_CHANNELS`` (in, out) channels (its batch-chunked im2col with a
#: custom JVP); see select.
WINDOW_MIN_BATCH = 64
WINDOW_GEMM_MIN_CHANNELS = (32, 64)
WINDOW_MIN_POSITIONS = 100

#: On CPU, ``auto`` sends float32/float64 stride-1 ungrouped layers with 3 to 5 taps on
#: each of 2+ spatial axes and at least ``WINOGRAD_MIN_CHANNELS`` (in, out) channels, in
#: batches of at least ``WINOGRAD_MIN_POSITIONS`` input positions (batch x spatial), to
#: the ``winograd`` backend; see select.
WINOGRAD_MIN_CHANNELS = (32, 32)
WINOGRAD_MIN_POSITIONS = 2048


def backends() -> tuple[str, ...]:
    """The backend names ``conv`` and friends accept (``"auto"`` included).

    >>> backends()
    ('lax', 'window', 'fft', 'winograd', 'auto')
    """
    return (*BACKENDS, "auto")


def register_backend(name: str, core: ConvCore) -> None:
    """Add a convolution core under ``name`` (it then works for every op)."""
    if not isinstance(name, str) or name == "auto":
        raise ValueError(f"`name` (={name!r}) must be a string other than 'auto'")
    BACKENDS[name] = core


def check_backend(backend: object) -> str:
    if backend not in BACKENDS and backend != "auto":
        raise ValueError(f"`backend` (={backend!r}) must be one of {backends()}")
    return backend  # type: ignore[return-value]


def select(
    kernel_size: Sequence[int],
    strides: Sequence[int],
    input_dilation: Sequence[int],
    groups: int,
    in_channels_per_group: int,
    out_channels: int = 0,
    batch: int = 0,
    positions: int = 0,
    dilation: Sequence[int] | None = None,
    dtype: object = None,
) -> str:
    """The ``auto`` rule: which backend computes a convolution of these shapes.

    0. ``window`` on CPU for 1-D kernels it computes as block-Toeplitz matrix products
       (stride 1, no dilation or groups, at least ``window.TOEPLITZ_MIN_TAPS`` taps, at
       most ``window.TOEPLITZ_MAX_CHANNEL_PRODUCT`` channel pairs) of up to
       :data:`WINDOW_SIGNAL_MAX_TAPS` taps with one input channel, fewer than
       :data:`FFT_MIN_TAPS` with several: forward+backward (output and both gradients)
       of 16 signals of 8192 samples with 16 and 64 taps and of 16 x 4096 samples, 8 ->
       8 channels, 32 taps, ran 0.23-0.55x of ``lax`` and 0.66-1.1x of ``fft`` in
       benchmarks/conv_backends.py (64 one-channel taps is about the tie, hence the
       bound); 8 taps on one channel, 0.25x of ``lax`` and 0.5x of ``fft`` in a paired
       run. Needs ``dilation`` and ``out_channels``.
    1. ``fft`` when every stride is 1, there is no input dilation, the convolution is
       not grouped, and the kernel has at least :data:`FFT_MIN_TAPS` taps
       (:data:`FFT_MIN_TAPS_ONE_CHANNEL` for one input channel): direct methods cost
       one multiply-add per tap, FFT a few per ``log`` of the length.
    2. ``window`` for depthwise convolutions (groups > 1, one input channel per
       group): its fused shift-and-add beats XLA's CPU convolution on these shapes
       (about 25x forward, 5x forward+backward in benchmarks/conv_backends.py).
    3. ``winograd`` on CPU for float32/float64 stride-1 layers without dilation or
       groups, with 3 to 5 taps on each of two or more spatial axes, at least
       :data:`WINOGRAD_MIN_CHANNELS` in and out channels and at least
       :data:`WINOGRAD_MIN_POSITIONS` input positions over the batch: a quarter of the
       multiply-adds (3x3) makes forward+backward (output and both gradients)
       0.38-0.62x of ``lax`` (``window``: 0.61-1.16x) on the 32- to 128-channel rows of
       benchmarks/conv_backends.py (batch 64), and 0.59x on a 5x5 64 -> 64 layer
       (0.42-0.64x and 0.67x before the barrier in its input gradient's transform; the
       gradients alone: 0.49-0.65x and 0.66x); paired single-layer timings:
       4x32x32x64 -> 64 3.6 against lax's 6.3 ms, 1x64x64x64 -> 64 3.5 against 6.5 ms.
       It loses on 16-channel layers (1.19x of lax at 32x32; 1.52x before that barrier,
       1.25-1.67x before its gradient transforms became concatenations; whole ResNet-20
       steps all on ``winograd`` read 1.05x of ``auto``'s, paired), on tiny
       ones (16x8x8x32 -> 32: 1.3x of lax; 8x8x8x64 -> 64: 1.3x) and in 1-D (1.26x on
       the MNIST-1D layer, 1.15-1.6x before), hence the thresholds. Needs ``dilation`` and ``dtype``;
       callers that omit them skip this rule (half precision is left to the other
       rules: Winograd's transforms magnify rounding).
    4. ``window`` for 2 to :data:`WINDOW_MAX_CHANNELS` input channels per group on CPU
       (an RGB first layer): its shift-and-add forward and im2col kernel gradient beat
       XLA's CPU convolution there (forward+backward of a 64x32x32x3 -> 32 layer: 0.31x
       of lax's 20.0 ms in benchmarks/conv_backends.py).
    5. ``window`` on CPU for ungrouped layers in batches of at least
       :data:`WINDOW_MIN_BATCH` images of at least :data:`WINDOW_MIN_POSITIONS` input
       positions that are strided, or stride-1 with at least
       :data:`WINDOW_GEMM_MIN_CHANNELS` in and out channels, or stride-1 with one
       input channel and several outputs (a grayscale first layer: 128x28x28x1 -> 32
       forward + kernel gradient 4.2 ms against lax's 8.5 ms; at 8 images lax is 3x
       faster, hence the batch threshold). These thresholds
       come from whole training steps (``benchmarks/train_step.py``), which disagree
       with single-layer timings: paired step-time ratios to all-``lax`` were 0.90
       (ResNet-20, whose gain is the strided layers) and 0.94 (VGG-6) with
       (32, 64) channels, 0.93 and 0.95 with (32, 32); the unpadded 32 -> 64 layer of
       the MNIST net alone is 0.6x of XLA's forward+backward. Rechecked with the
       current gradient maps and host memory reused: (32, 32) channels or 64
       positions change whole ResNet-20 and VGG-6 steps by 0-5%, within noise.
    6. ``lax`` otherwise (XLA's convolution, cuDNN on GPU).

    Omitted sizes (``out_channels``, ``batch``, ``positions`` of 0) skip rules 0, 3 and 5.

    >>> select((3, 3), (1, 1), (1, 1), 1, 64), select((3, 3), (1, 1), (1, 1), 64, 1)
    ('lax', 'window')
    """
    if (
        dilation is not None
        and out_channels > 0
        and window.toeplitz_applies(  # 1-D kernels only
            (*kernel_size, in_channels_per_group, out_channels), strides, dilation, input_dilation, groups)
        and kernel_size[0] <= (WINDOW_SIGNAL_MAX_TAPS if in_channels_per_group == 1 else FFT_MIN_TAPS - 1)
        and _on_cpu()
    ):
        return "window"
    min_taps = FFT_MIN_TAPS_ONE_CHANNEL if in_channels_per_group == 1 else FFT_MIN_TAPS
    if (
        math.prod(kernel_size) >= min_taps
        and all(s == 1 for s in strides)
        and all(d == 1 for d in input_dilation)
        and groups == 1
    ):
        return "fft"
    if groups > 1 and in_channels_per_group == 1:
        return "window"
    if (
        len(kernel_size) >= 2
        and min(kernel_size) >= 3  # at most winograd.MAX_TAPS (5): applies() checks it
        and dilation is not None
        and winograd.applies(kernel_size, strides, dilation, input_dilation, groups)
        and in_channels_per_group >= WINOGRAD_MIN_CHANNELS[0]
        and out_channels >= WINOGRAD_MIN_CHANNELS[1]
        and batch * positions >= WINOGRAD_MIN_POSITIONS
        and dtype is not None
        and jnp.dtype(dtype) in (jnp.float32, jnp.float64)
        and _on_cpu()
    ):
        return "winograd"
    if 2 <= in_channels_per_group <= WINDOW_MAX_CHANNELS and _on_cpu():
        return "window"
    if groups == 1 and batch >= WINDOW_MIN_BATCH and positions >= WINDOW_MIN_POSITIONS and _on_cpu():
        if any(s > 1 for s in strides):
            return "window"
        big = (
            in_channels_per_group >= WINDOW_GEMM_MIN_CHANNELS[0]
            and out_channels >= WINDOW_GEMM_MIN_CHANNELS[1]
        ) or (in_channels_per_group == 1 and out_channels > 1)
        if big and all(d == 1 for d in input_dilation):
            return "window"
    return "lax"


def _on_cpu() -> bool:
    import jax

    return jax.default_backend() == "cpu"
