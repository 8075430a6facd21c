"""The ``auto`` plan: how a convolution or a pool is computed, and why.

A call site describes its work once, as a :class:`ConvProblem` (shapes, options, padding,
dtype and platform), and :func:`plan` returns a :class:`Plan`: the *form* (``direct``; a
grouped layer ``by groups``; a strided layer by ``space to depth``; a strided transposed
one by ``sub-pixel`` phases), the backend of the convolution it runs, within ``window``
the *method*, and the reason for each choice. Every choice is an ordered list of small
named rules with a one-line reason, tried in order: :data:`FORMS`, :data:`RULES` (the
backend; ``lax``, XLA's convolution and cuDNN on GPU, takes the rest),
:data:`WINDOW_METHODS` and, for pooling, :data:`POOL_RULES`. ``conv``,
``conv_transpose``, ``convolve``/``correlate``, the pools and the ``window`` backend all
consume it; :func:`jaxconv.ops.explain_backend` prints it for a call's arguments.

The CPU thresholds are the fields of :class:`CpuThresholds`, each set by the benchmark
row its comment names; the measurements behind them are in ``docs/performance-notes.md``.
The shape limits of the backends' own paths (Winograd's tile, the Toeplitz blocks, the
chunked im2col's chunk) are here too, so a backend asks the plan instead of deciding.

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
from jaxconv.ops.geometry import output_sizes

#: Winograd's largest kernel per axis: ``F(m, r)`` tiles of 6 inputs (``m + r - 1``).
WINOGRAD_MAX_TAPS = 5
#: 1-D kernels of at least this many taps on at most :data:`TOEPLITZ_MAX_CHANNEL_PRODUCT`
#: (input x output) channels take window's block-Toeplitz path (conv_backends: the 1-D
#: signal rows).
TOEPLITZ_MIN_TAPS = 8
TOEPLITZ_MAX_CHANNEL_PRODUCT = 64
#: window's chunked im2col: images per ``lax.map`` step as many as keep their patch
#: tensors under about this many bytes (cache-sized; train_step: MNIST net and VGG-6 with
#: 2, 4, 8, 16 MiB); an image whose patches exceed it takes the tap-chunked im2col.
CHUNK_BYTES = 4 << 20


def toeplitz_applies(kernel_shape, strides, dilation, input_dilation, groups) -> bool:
    """Whether ``window`` computes this convolution as block-Toeplitz products: 1-D,
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


def winograd_applies(kernel_size, strides, dilation, input_dilation, groups) -> bool:
    """Whether ``winograd`` transforms the convolution (else it hands it to ``window``)."""
    return (
        groups == 1
        and all(s == 1 for s in strides)
        and all(d == 1 for d in dilation)
        and all(d == 1 for d in input_dilation)
        and all(k <= WINOGRAD_MAX_TAPS for k in kernel_size)
        and any(k > 1 for k in kernel_size)
    )


def patch_bytes_per_image(spatial, pads, kernel_size, in_channels: int, itemsize: int) -> int:
    """Bytes of one image's stride-1 patch tensor: padded positions x taps x channels."""
    padded = [s + lo + hi for s, (lo, hi) in zip(spatial, pads)]
    return math.prod(padded) * math.prod(kernel_size) * in_channels * itemsize


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
      pads: the zero padding (lo, hi) per axis the core receives (none by default).
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
    pads: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        ones = (1,) * len(self.kernel_size)
        for name in ("strides", "dilation", "input_dilation"):
            object.__setattr__(self, name, tuple(getattr(self, name)) or ones)
        pads = tuple(tuple(int(v) for v in pair) for pair in self.pads)
        object.__setattr__(self, "pads", pads or ((0, 0),) * len(self.kernel_size))
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
        and toeplitz_applies(
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
        and min(p.kernel_size) >= 3  # at most WINOGRAD_MAX_TAPS: winograd_applies checks it
        and winograd_applies(p.kernel_size, p.strides, p.dilation, p.input_dilation, p.groups)
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


def select_form(p: ConvProblem, backend: str = "auto") -> tuple[str, str]:
    """The form of the problem under ``backend`` and why: the first of :data:`FORMS`
    that holds under ``auto``; with a named backend, every strided transposed
    convolution but ``lax``'s runs by sub-pixel phases and everything else directly."""
    if backend != "auto":
        if backend != "lax" and p.transposed and phases.applies(p.input_dilation, p.dilation):
            if _nonempty(p):
                return SUBPIXEL, "every backend but lax runs a strided transposed convolution so"
        return DIRECT, "one call of the backend"
    for form, holds, reason in FORMS:
        if holds(p):
            return form, reason
    return DIRECT, "one call of the backend"


def _nonempty(p: ConvProblem) -> bool:
    return p.batch > 0 and 0 not in p.spatial and p.in_channels > 0 and p.out_channels > 0


DIRECT, BY_GROUPS, SPACE_TO_DEPTH, SUBPIXEL = "direct", "by groups", "space to depth", "sub-pixel"
#: The forms ``auto`` may run a convolution in besides one direct call, tried in order.
FORMS: tuple[tuple[str, Callable[[ConvProblem], bool], str], ...] = (
    (
        BY_GROUPS,
        lambda p: split_groups(p) and not p.transposed,
        "grouped (CPU): one ungrouped convolution per group, concatenated; XLA's CPU "
        "grouped convolution is far slower than the groups' dense ones",
    ),
    (
        SPACE_TO_DEPTH,
        lambda p: space_to_depth(p) and _nonempty(p),
        "strided, kernel a multiple of the stride (CPU): blocks of `stride` samples become "
        "channels of one stride-1 convolution, whose gradients are stride-1 ones",
    ),
    (
        SUBPIXEL,
        lambda p: subpixel(p) and _nonempty(p),
        "strided transposed (CPU): one stride-1 convolution of the undilated input, its "
        "sub-pixel phases side by side (XLA would multiply the inserted zeros too)",
    ),
)

#: How ``window`` computes a convolution, tried in order (the last always holds).
WINDOW_METHODS: tuple[tuple[str, Callable[[ConvProblem], bool], str], ...] = (
    (
        "block-Toeplitz products",
        lambda p: toeplitz_applies(
            (*p.kernel_size, p.in_channels, p.out_channels),
            p.strides,
            p.dilation,
            p.input_dilation,
            p.groups,
        ),
        "a long 1-D kernel on few channels: blocks of outputs as matrix products",
    ),
    (
        "one matrix product",
        lambda p: p.groups == 1 and p.taps == 1,
        "a pointwise (1x1) layer: one product over every position; its gradients are the "
        "two transposed products",
    ),
    (
        "batch-chunked im2col",
        lambda p: (
            p.groups == 1
            and p.unit_steps
            and p.in_channels * p.out_channels > 1
            and patch_bytes_per_image(
                p.spatial, p.pads, p.kernel_size, p.in_channels, jnp.dtype(p.dtype).itemsize
            )
            <= CHUNK_BYTES
        ),
        "ungrouped, stride 1, one image's patches within CHUNK_BYTES: im2col over chunks "
        "of the batch, with its own gradients",
    ),
    (
        "shift and add",
        lambda p: p.in_channels == 1 and (p.groups > 1 or p.out_channels == 1),
        "one input channel per group: a fused multiply-add per tap, streaming the input once",
    ),
    (
        "tap-chunked im2col",
        lambda p: True,
        "taps and channels contracted at once in matrix products over chunks of taps",
    ),
)


def window_method(p: ConvProblem) -> tuple[str, str]:
    """How ``window`` computes ``p``, and why: the first of :data:`WINDOW_METHODS`."""
    for method, holds, reason in WINDOW_METHODS:
        if holds(p):
            return method, reason
    raise AssertionError("the last window method always holds")


@dataclasses.dataclass(frozen=True)
class PoolProblem:
    """One pooling as the plan sees it: ``kind`` is ``"max"`` (max and min pooling) or
    ``"sum"`` (average and Lp); the window, strides and dilation per axis."""

    kind: str
    window: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    platform: str = "cpu"

    @property
    def disjoint(self) -> bool:
        """No two windows overlap (stride >= the dilated window on every axis)."""
        return all(
            s >= (k - 1) * d + 1 for s, k, d in zip(self.strides, self.window, self.dilation)
        )


#: The backend ``auto`` pools with, tried in order; ``lax`` (``reduce_window``) otherwise.
POOL_RULES: tuple[tuple[str, Callable[[PoolProblem], bool], str], ...] = (
    (
        "window",
        lambda p: p.kind == "max" and p.disjoint and p.platform == "cpu",
        "max pooling with non-overlapping windows (CPU): XLA's gradient of reduce_window "
        "max (select_and_scatter) is much slower there than the sliced one's",
    ),
)
POOL_FALLBACK = ("lax", "XLA's reduce_window")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one convolution (or pool) is computed: its form, the backend of the
    convolution the form runs and, within ``window``, the method; each with its reason.
    ``inner`` is the plan of the convolution a form other than ``direct`` runs (for
    ``by groups``: each group's; it is planned again, from the real arrays, when the form
    builds it)."""

    form: str
    backend: str
    reason: str
    method: str = ""
    method_reason: str = ""
    inner: Plan | None = None
    problem: ConvProblem | PoolProblem | None = dataclasses.field(default=None, compare=False)

    def lines(self, depth: int = 0) -> list[str]:
        pad = "  " * depth
        if self.form == DIRECT or self.inner is None:
            out = [f"{pad}{self.backend}: {self.reason}"]
            if self.method:
                out.append(f"{pad}  window method {self.method}: {self.method_reason}")
            return out
        return [f"{pad}{self.form}: {self.reason}", *self.inner.lines(depth + 1)]

    def __str__(self) -> str:
        return "\n".join(self.lines())


#: A backend other than ``lax`` materialises the zero-padded input; above this many bytes,
#: and :data:`PADDING_WASTE` times the input and kernel, the padding is mostly what it would
#: allocate (a huge dilation under SAME padding), while ``lax`` pads without allocating.
PADDING_BYTES = 1 << 30
PADDING_WASTE = 64


def padded_input_bytes(p: ConvProblem) -> tuple[int, int]:
    """Bytes of the zero-padded (and input-dilated) input a sliding window, FFT or
    Winograd backend builds, and bytes of the input and kernel themselves."""
    itemsize = jnp.dtype(p.dtype).itemsize
    channels = p.in_channels * p.groups
    extent = [max((s - 1) * d + 1 + lo + hi, 0)
              for s, d, (lo, hi) in zip(p.spatial, p.input_dilation, p.pads)]  # fmt: skip
    padded = p.batch * math.prod(extent) * channels * itemsize
    data = (p.batch * p.positions * channels + p.taps * p.in_channels * p.out_channels) * itemsize
    return padded, data


def _padding_dominates(p: ConvProblem) -> str | None:
    """Why only ``lax`` should compute ``p`` (None when any backend may)."""
    if len(p.spatial) != len(p.kernel_size):
        return None
    padded, data = padded_input_bytes(p)
    if padded <= PADDING_BYTES or padded <= PADDING_WASTE * data:
        return None
    return (
        f"the zero-padded input would take {_size(padded)} against {_size(data)} of input "
        "and kernel (padding or dilation far beyond the input); lax pads without allocating"
    )


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def plan(p: ConvProblem, backend: str = "auto") -> Plan:
    """How ``p`` is computed under ``backend`` (``"auto"`` or a backend's name).

    >>> grouped = plan(ConvProblem((3, 3), 2, 8, groups=4, spatial=(16, 16)))  # 2 in per group
    >>> grouped.form, grouped.inner.backend, grouped.inner.method
    ('by groups', 'window', 'batch-chunked im2col')
    """
    too_big = _padding_dominates(p)
    if too_big is not None and backend == "auto":
        return Plan(DIRECT, "lax", too_big, problem=p)
    if too_big is not None and backend != "lax":
        raise ValueError(f"`backend` (={backend!r}) cannot compute this convolution: {too_big}")
    form, why = select_form(p, backend)
    if form != DIRECT:
        inner = plan(_inner_problem(p, form), backend)
        return Plan(form, inner.backend, why, inner=inner, problem=p)
    if not _nonempty(p):
        name, reason = "lax", "an empty array: nothing to compute (lax gives the right shape)"
    elif backend == "auto":
        name, reason = explain(p)
    else:
        name, reason = backend, "the backend asked for"
    method, method_reason = window_method(p) if name == "window" else ("", "")
    return Plan(DIRECT, name, reason, method, method_reason, problem=p)


def _inner_problem(p: ConvProblem, form: str) -> ConvProblem:
    """The convolution a form runs, as its stride-1 core or each group sees it."""
    n = len(p.kernel_size)
    ones = (1,) * n
    if form == BY_GROUPS:
        return dataclasses.replace(p, groups=1, out_channels=p.out_channels // p.groups)
    if form == SPACE_TO_DEPTH:
        strides = p.strides
        taps = tuple(-(-k // s) for k, s in zip(p.kernel_size, strides))
        padded = [size + lo + hi for size, (lo, hi) in zip(p.spatial, p.pads)]
        outs = output_sizes(padded, p.kernel_size, strides, ones)
        return dataclasses.replace(
            p, kernel_size=taps, in_channels=p.in_channels * math.prod(strides), strides=ones,
            spatial=tuple(o + q - 1 for o, q in zip(outs, taps)), pads=(),
            phases=math.prod(strides),
        )  # fmt: skip
    strides = p.input_dilation  # sub-pixel: the direct form's input dilation is the stride
    taps = tuple(-(-k // s) for k, s in zip(p.kernel_size, strides))
    geometry = [
        phases.subpixel_geometry(size, k, s, d, q, lo, hi)
        for size, k, s, d, q, (lo, hi) in zip(
            p.spatial, p.kernel_size, strides, p.dilation, taps, p.pads
        )
    ]
    return dataclasses.replace(
        p, kernel_size=taps, out_channels=p.out_channels * math.prod(strides),
        input_dilation=ones, spatial=tuple(g[0] for g in geometry),
        pads=tuple(g[1] for g in geometry), phases=math.prod(strides),
    )  # fmt: skip


def plan_pool(p: PoolProblem) -> Plan:
    """The backend ``auto`` pools with: the first of :data:`POOL_RULES` that holds."""
    for name, holds, reason in POOL_RULES:
        if holds(p):
            return Plan("pool", name, reason, problem=p)
    return Plan("pool", *POOL_FALLBACK, problem=p)
