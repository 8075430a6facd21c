"""The ``auto`` policy: which backend computes a convolution.

A call site describes its convolution once, as a :class:`ConvProblem` (shapes, options,
dtype and platform), and :func:`select` tries the :data:`RULES` in order: each is a small
named predicate with a one-line reason; the first that holds names the backend, and
``lax`` (XLA's convolution, cuDNN on GPU) takes the rest. :func:`explain` returns the
reason too. The CPU thresholds are the fields of :class:`CpuThresholds`, each set by the
benchmark row its comment names; the measurements behind them are in
``docs/performance-notes.md``.

>>> problem = ConvProblem(kernel_size=(3, 3), in_channels=1, out_channels=1, groups=64)
>>> select(problem), select(ConvProblem(kernel_size=(3, 3), in_channels=64, out_channels=64))
('window', 'lax')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxconv.ops import phases
from jaxconv.ops.backends import window_toeplitz, winograd


@dataclasses.dataclass(frozen=True)
class ConvProblem:
    """One convolution as the policy sees it (the backend core's view: channels-last,
    zero padding, a transposed convolution as its input-dilated forward).

    Attributes:
      kernel_size: taps per spatial axis.
      in_channels: input channels *per group*; out_channels: all output channels.
      groups, strides, dilation, input_dilation: as the core receives them (ones by
        default).
      batch: examples; spatial: the input's spatial shape as the core receives it.
      dtype: the computation's dtype (a name, e.g. ``"float32"``).
      platform: ``"cpu"``, ``"gpu"`` or ``"tpu"``: where it runs (see :func:`platform_of`).
      transposed: the problem is a ``conv_transpose``; the CPU rules measured on forward
        layers only (long 1-D filters, Winograd, big-batch im2col) leave it alone.
      phases: a strided ``conv_transpose`` or ``conv`` run as one stride-1 convolution
        (:mod:`jaxconv.ops.phases`) has this many sub-pixel phases side by side in its
        ``out_channels`` (transposed) or ``in_channels`` (space to depth); 1 otherwise.
    """

    kernel_size: tuple[int, ...]
    in_channels: int
    out_channels: int
    groups: int = 1
    strides: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    input_dilation: tuple[int, ...] = ()
    batch: int = 1
    spatial: tuple[int, ...] = ()
    dtype: str = "float32"
    platform: str = "cpu"
    transposed: bool = False
    phases: int = 1

    def __post_init__(self) -> None:
        ones = (1,) * len(self.kernel_size)
        for name in ("strides", "dilation", "input_dilation"):
            object.__setattr__(self, name, tuple(getattr(self, name)) or ones)
        object.__setattr__(self, "kernel_size", tuple(self.kernel_size))
        object.__setattr__(self, "spatial", tuple(self.spatial))
        object.__setattr__(self, "dtype", jnp.dtype(self.dtype).name)

    @property
    def taps(self) -> int:
        return math.prod(self.kernel_size)

    @property
    def positions(self) -> int:
        """Input positions of one example (the product of ``spatial``)."""
        return math.prod(self.spatial)

    @property
    def unit_steps(self) -> bool:
        """Stride 1 and no input dilation: a plain sliding window."""
        return all(s == 1 for s in self.strides) and all(d == 1 for d in self.input_dilation)


def platform_of(*arrays: Any) -> str:
    """The platform the arrays live on; for traced or host arrays, the default device's
    (``jax.default_device``, else JAX's default backend), where they will run."""
    for a in arrays:
        try:
            return next(iter(a.devices())).platform
        except (
            AttributeError,
            TypeError,
            StopIteration,
            RuntimeError,
            jax.errors.ConcretizationTypeError,
        ):
            continue
    device = jax.config.jax_default_device
    if device is not None:
        return device if isinstance(device, str) else device.platform
    return jax.default_backend()


@dataclasses.dataclass(frozen=True)
class CpuThresholds:
    """Where ``auto`` switches backends on CPU (``benchmarks/conv_backends.py`` rows and
    ``benchmarks/train_step.py`` networks named beside each; figures in
    ``docs/performance-notes.md``)."""

    #: Kernel taps from which FFT wins at stride 1 (conv_backends: the 64- and 128-tap rows).
    fft_min_taps: int = 64
    #: The same for one input channel (conv_backends: the one-channel signal rows).
    fft_min_taps_one_channel: int = 16
    #: One-channel 1-D filters up to this many taps stay on window's Toeplitz path (the
    #: 64-tap signal row ties).
    window_signal_max_taps: int = 64
    #: 2 to this many input channels per group go to window (conv_backends: the RGB 3 -> 32 row).
    window_max_channels: int = 4
    #: Big-batch im2col rule: batch, input positions, and (in, out) channels of stride-1 layers
    #: (train_step: ResNet-20, VGG-6, MNIST net).
    window_min_batch: int = 64
    window_min_positions: int = 100
    window_gemm_min_channels: tuple[int, int] = (32, 64)
    #: Winograd: (in, out) channels and input positions over the batch (conv_backends: the 3x3
    #: 16- to 128-channel rows; train_step: ResNet-20 all on winograd).
    winograd_min_channels: tuple[int, int] = (32, 32)
    winograd_min_positions: int = 2048
    #: A strided transposed convolution with at least this many output channels per group
    #: runs as one stride-1 convolution (conv_backends: the transposed rows; with 1 output
    #: channel XLA's own transposed convolution is faster).
    subpixel_min_out_channels: int = 8
    #: Strided convolutions whose kernels the stride divides run as stride-1 convolutions of
    #: the space-to-depth input from this many input channels (layers_torch: the strided rows).
    space_to_depth_min_channels: int = 8
    #: Grouped convolutions with up to this many groups run group by group (layers_torch:
    #: the grouped rows, groups 2 to 8).
    max_split_groups: int = 16


CPU = CpuThresholds()


def _long_1d_filter(p: ConvProblem) -> bool:
    limit = CPU.window_signal_max_taps if p.in_channels == 1 else CPU.fft_min_taps - 1
    return (
        p.platform == "cpu"
        and not p.transposed
        and window_toeplitz.toeplitz_applies(
            (*p.kernel_size, p.in_channels, p.out_channels),
            p.strides,
            p.dilation,
            p.input_dilation,
            p.groups,
        )
        and p.kernel_size[0] <= limit
    )


def _long_kernel(p: ConvProblem) -> bool:
    min_taps = CPU.fft_min_taps_one_channel if p.in_channels == 1 else CPU.fft_min_taps
    return p.taps >= min_taps and p.unit_steps and p.groups == 1


def _depthwise(p: ConvProblem) -> bool:
    return p.groups > 1 and p.in_channels == 1


def _winograd_layer(p: ConvProblem) -> bool:
    return (
        p.platform == "cpu"
        and not p.transposed
        and len(p.kernel_size) >= 2
        and min(p.kernel_size) >= 3  # at most winograd.MAX_TAPS: applies() checks it
        and winograd.applies(p.kernel_size, p.strides, p.dilation, p.input_dilation, p.groups)
        and p.in_channels >= CPU.winograd_min_channels[0]
        and p.out_channels >= CPU.winograd_min_channels[1]
        and p.batch * p.positions >= CPU.winograd_min_positions
        and p.dtype in ("float32", "float64")
    )


def subpixel(p: ConvProblem) -> bool:
    """Whether ``auto`` runs the strided transposed convolution ``p`` (its direct form:
    ``input_dilation`` = the stride) as one stride-1 convolution on the undilated input
    (:mod:`jaxconv.ops.phases`): on CPU, where XLA multiplies the inserted zeros too,
    for layers of several output channels per group."""
    return (
        p.platform == "cpu"
        and p.transposed
        and phases.applies(p.input_dilation, p.dilation)
        and p.out_channels // p.groups >= CPU.subpixel_min_out_channels
    )


def split_groups(p: ConvProblem) -> bool:
    """Whether ``auto`` runs the grouped (not depthwise) convolution ``p`` as one
    ungrouped convolution per group: on CPU, where XLA's grouped convolution and its
    gradients are slow, for up to ``max_split_groups`` groups."""
    return (
        p.platform == "cpu"
        and 1 < p.groups <= CPU.max_split_groups
        and p.in_channels > 1
        and p.out_channels // p.groups > 1
    )


def space_to_depth(p: ConvProblem) -> bool:
    """Whether ``auto`` runs the strided convolution ``p`` as one stride-1 convolution of
    its space-to-depth input (:func:`jaxconv.ops.phases.strided_conv`): on CPU, ungrouped,
    undilated, every strided axis's kernel a multiple of its stride (no zero taps), and
    ``space_to_depth_min_channels`` input channels or more."""
    return (
        p.platform == "cpu"
        and not p.transposed
        and p.groups == 1
        and any(s > 1 for s in p.strides)
        and all(d == 1 for d in p.dilation)
        and all(d == 1 for d in p.input_dilation)
        and all(k % s == 0 for k, s in zip(p.kernel_size, p.strides))
        and p.in_channels >= CPU.space_to_depth_min_channels
    )


def _subpixel_phases(p: ConvProblem) -> bool:
    return p.platform == "cpu" and p.phases > 1 and p.groups == 1


def _pointwise(p: ConvProblem) -> bool:
    return (
        p.platform == "cpu"
        and p.taps == 1
        and p.groups == 1
        and min(p.in_channels, p.out_channels) > 1
    )


def _few_channels(p: ConvProblem) -> bool:
    return p.platform == "cpu" and 2 <= p.in_channels <= CPU.window_max_channels


def _big_batch_layer(p: ConvProblem) -> bool:
    if not (
        p.platform == "cpu"
        and not p.transposed
        and p.groups == 1
        and p.batch >= CPU.window_min_batch
        and p.positions >= CPU.window_min_positions
    ):
        return False
    if any(s > 1 for s in p.strides):
        return True
    wide = (
        p.in_channels >= CPU.window_gemm_min_channels[0]
        and p.out_channels >= CPU.window_gemm_min_channels[1]
    )
    grayscale = p.in_channels == 1 and p.out_channels > 1
    return (wide or grayscale) and all(d == 1 for d in p.input_dilation)


@dataclasses.dataclass(frozen=True)
class Rule:
    backend: str
    holds: Callable[[ConvProblem], bool]
    reason: str


#: Tried in order; the first that holds picks the backend.
RULES: tuple[Rule, ...] = (
    Rule(
        "window",
        _long_1d_filter,
        "a 1-D filter of 8-64 taps on few channels (CPU): window's block-Toeplitz matrix products",
    ),
    Rule(
        "fft",
        _long_kernel,
        "many taps at stride 1: FFT costs a few multiply-adds "
        "per log of the length, direct methods one per tap",
    ),
    Rule(
        "window",
        _depthwise,
        "depthwise: window's fused shift-and-add beats XLA's grouped convolution",
    ),
    Rule(
        "winograd",
        _winograd_layer,
        "a stride-1 3x3-5x5 layer of 32+ channels in "
        "float32/64 (CPU): a quarter of the multiply-adds",
    ),
    Rule(
        "window",
        _pointwise,
        "a pointwise (1x1) layer (CPU): one matrix product over all positions, whose "
        "gradients are matrix products too",
    ),
    Rule(
        "window",
        _subpixel_phases,
        "a strided convolution's sub-pixel phases (transposed, or space to depth; CPU): "
        "window's im2col and col2im gradients (XLA's kernel gradient of a small kernel is slow)",
    ),
    Rule(
        "window",
        _few_channels,
        "2-4 input channels (an RGB first layer, CPU): "
        "shift-and-add forward, im2col kernel gradient",
    ),
    Rule(
        "window",
        _big_batch_layer,
        "a strided, wide or grayscale-input layer in a big batch (CPU): window's chunked im2col",
    ),
)
FALLBACK = ("lax", "everything else: XLA's convolution (cuDNN on GPU)")


def explain(problem: ConvProblem) -> tuple[str, str]:
    """The backend ``auto`` picks for ``problem`` and the reason, in one line."""
    for rule in RULES:
        if rule.holds(problem):
            return rule.backend, rule.reason
    return FALLBACK


def select(problem: ConvProblem) -> str:
    """The backend ``auto`` picks for ``problem``.

    >>> select(ConvProblem(kernel_size=(128,), in_channels=8, out_channels=8))
    'fft'
    """
    return explain(problem)[0]
