"""N-D convolution and transposed convolution: the front end over the backends.

Every call runs the same five steps: validate, canonicalise, pad (non-zero padding
modes), run the chosen backend's channels-last core, restore the caller's layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp

from jaxconv.ops import _validate as V
from jaxconv.ops import phases
from jaxconv.ops._types import IntOrInts, Padding
from jaxconv.ops.backends import BACKENDS, check_backend
from jaxconv.ops.geometry import pad_and_dilate
from jaxconv.ops.padding import apply_modes, check_mode_widths
from jaxconv.ops.policy import (
    BY_GROUPS,
    SPACE_TO_DEPTH,
    SUBPIXEL,
    ConvProblem,
    Plan,
    plan,
    platform_of,
)


def operands(
    x: Any, kernel: Any, layout: str, *, x_name: str, transpose: bool = False
) -> tuple[jnp.ndarray, jnp.ndarray, int]:
    """Check ranks and layout; return channels-last input and kernel of one dtype."""
    V.check_layout(layout)
    x = V.check_array(x, x_name)
    kernel = V.check_array(kernel, "kernel")
    V.check_rank(kernel, "kernel", minimum=3, what="(*kernel_size, C_in, C_out)")
    if x.ndim != kernel.ndim:
        raise ValueError(
            f"`{x_name}` has shape {tuple(x.shape)} (rank {x.ndim}) but `kernel` has shape "
            f"{tuple(kernel.shape)} (rank {kernel.ndim}): a {kernel.ndim - 2}-D convolution "
            f"takes `{x_name}` of rank {kernel.ndim}, (N, *spatial, C) or (N, C, *spatial)"
        )
    n = x.ndim - 2
    if layout == "channels_first":
        x = jnp.moveaxis(x, 1, -1)
        last = (0, 1) if transpose else (1, 0)
        kernel = jnp.transpose(kernel, (*range(2, n + 2), *last))
    if any(k < 1 for k in kernel.shape[:n]):
        raise ValueError(
            f"`kernel` spatial size {tuple(kernel.shape[:n])} must be >= 1 on every axis"
        )
    dtype = jnp.result_type(x, kernel)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jnp.result_type(float)
    return x.astype(dtype), kernel.astype(dtype), n


def check_int_groups(groups: Any) -> int:
    if not V._is_int(groups):
        raise TypeError(f"`groups` (={groups!r}) must be an int")
    if groups < 1:
        raise ValueError(f"`groups` (={groups}) must be >= 1")
    return int(groups)


def check_groups(groups: Any, channels: int, kernel_in: int, out_channels: int, x_name: str) -> int:
    groups = check_int_groups(groups)
    if channels % groups:
        raise ValueError(f"`groups` (={groups}) must divide in_channels (={channels})")
    if out_channels % groups:
        raise ValueError(f"`groups` (={groups}) must divide out_channels (={out_channels})")
    if kernel_in * groups != channels:
        raise ValueError(
            f"`kernel` has {kernel_in} input channels per group; with `groups` (={groups}) "
            f"`{x_name}` must have {kernel_in * groups} channels, got {channels}"
        )
    return int(groups)


def check_fits(padded: Sequence[int], eff_kernel: Sequence[int]) -> None:
    for axis, (p, k) in enumerate(zip(padded, eff_kernel)):
        if p < k:
            raise ValueError(
                f"`kernel` (effective size {k} with dilation) is larger than the padded "
                f"input (size {p}) on spatial axis {axis}; pad more or use a smaller kernel"
            )


def _transpose_pads(padding, output_padding, in_sizes, ksize, strides, dil) -> V.Pads:
    """The forward core's zero padding of a transposed convolution: the effective kernel
    minus PyTorch's ``padding`` on each side, plus ``output_padding`` high; checked."""
    n = len(ksize)
    pads = V.explicit_pads(padding, n)
    opad = V.ntuple(output_padding, n, "output_padding", minimum=0)
    for axis, (o, s, d) in enumerate(zip(opad, strides, dil)):
        if o >= max(s, d):
            raise ValueError(
                f"`output_padding` (={o}) on spatial axis {axis} must be smaller than "
                f"either `stride` (={s}) or `dilation` (={d})"
            )
    eff = V.effective_kernel(ksize, dil)
    core_pads = tuple((e - 1 - lo, e - 1 - hi + o) for e, (lo, hi), o in zip(eff, pads, opad))
    out = [
        (size - 1) * s + e + lo + hi - 2 * (e - 1)
        for size, s, e, (lo, hi) in zip(in_sizes, strides, eff, core_pads)
    ]
    if any(o < 1 for o in out) or 0 in in_sizes:
        raise ValueError(
            f"`padding` (={padding!r}) leaves an empty output {tuple(out)} for input "
            f"spatial size {tuple(in_sizes)}"
        )
    return core_pads


def _stride_one_core(
    backend: str, *, groups: int, platform: str, phase_count: int, transposed: bool, precision
) -> phases.StrideOneCore:
    """The stride-1 convolution that a sub-pixel form (:mod:`jaxconv.ops.phases`) runs:
    on ``backend``, or under ``auto`` as the plan says for that problem, which it sees
    with ``phase_count`` phases in its channels (planned here, from the real arrays)."""

    def core(x, k, pads, dilation):
        n = x.ndim - 2
        problem = ConvProblem(k.shape[:n], k.shape[-2], k.shape[-1], groups,
                              dilation=dilation, batch=x.shape[0], spatial=x.shape[1:-1],
                              dtype=x.dtype, platform=platform, transposed=transposed,
                              phases=phase_count, pads=pads)  # fmt: skip
        name = plan(problem, backend).backend
        ones = (1,) * n
        return BACKENDS[name](
            x,
            k,
            strides=ones,
            dilation=dilation,
            input_dilation=ones,
            groups=groups,
            pads=pads,
            precision=precision,
        )

    return core


def restore(y: jnp.ndarray, layout: str) -> jnp.ndarray:
    return jnp.moveaxis(y, -1, 1) if layout == "channels_first" else y


def conv(
    x: Any,
    kernel: Any,
    *,
    stride: IntOrInts = 1,
    padding: Padding = "VALID",
    dilation: IntOrInts = 1,
    input_dilation: IntOrInts = 1,
    groups: int = 1,
    padding_mode: str | Sequence[str] = "zeros",
    layout: str = "channels_last",
    backend: str = "auto",
    precision: Any = None,
) -> jnp.ndarray:
    """N-D cross-correlation, the CNN convention ``O[i] = sum_m I[i*s + m*d] K[m]``.

    Args:
      x: ``(N, *spatial, C_in)`` for ``channels_last``, ``(N, C_in, *spatial)`` for
        ``channels_first``. 1, 2, 3 or more spatial axes.
      kernel: ``(*kernel_size, C_in // groups, C_out)`` for ``channels_last``,
        ``(C_out, C_in // groups, *kernel_size)`` for ``channels_first`` (PyTorch's).
      stride: int or one per spatial axis.
      padding: ``"VALID"``, ``"SAME"`` (``ceil(size / stride)`` outputs, extra pad
        high), ``"SAME_LOWER"`` (extra pad low), ``"FULL"``, ``"CAUSAL"``, an int, one
        int per axis, or (lo, hi) per axis.
      dilation: kernel dilation (atrous), int or per axis.
      input_dilation: zeros inserted between input samples (fractional stride).
      groups: grouped convolution; ``groups == C_in`` is depthwise.
      padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``, or one
        per spatial axis. Modes are applied after input dilation.
      layout: ``"channels_last"`` (default, as Flax) or ``"channels_first"`` (as PyTorch).
      backend: a name from :func:`jaxconv.backends` (``"lax"``, ``"window"``, ``"fft"``,
        ``"winograd"``, ``"auto"``). Empty arrays always take ``"lax"``: nothing to compute.
      precision: passed to XLA's matmul/conv (``jax.lax.Precision``).

    Returns:
      ``(N, *out, C_out)`` (or ``(N, C_out, *out)``), with
      ``out = floor((in_dilated + lo + hi - (k - 1) * d - 1) / s) + 1``.

    >>> import jax.numpy as jnp
    >>> x = jnp.array([1.0, 2, 3, 4, 5]).reshape(1, 5, 1)
    >>> k = jnp.ones((3, 1, 1))
    >>> conv(x, k)[0, :, 0].tolist()
    [6.0, 9.0, 12.0]
    >>> conv(x, k, padding="SAME", padding_mode="circular")[0, :, 0].tolist()
    [8.0, 6.0, 9.0, 12.0, 10.0]

    """
    c = _canonical_conv(x, kernel, stride, padding, dilation, input_dilation, groups,
                        padding_mode, layout)  # fmt: skip
    return restore(_run_conv(c, check_backend(backend), precision), layout)


class _Canonical(NamedTuple):
    """A convolution after validation, in channels-last with zero pads only."""

    x: jnp.ndarray
    kernel: jnp.ndarray
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    input_dilation: tuple[int, ...]
    groups: int
    pads: V.Pads


def _canonical_conv(
    x, kernel, stride, padding, dilation, input_dilation, groups, padding_mode, layout
) -> _Canonical:
    """Steps 1-3 of :func:`conv`: validate, canonicalise, apply the padding modes."""
    x, kernel, n = operands(x, kernel, layout, x_name="x")
    strides = V.ntuple(stride, n, "stride")
    dil = V.ntuple(dilation, n, "dilation")
    idil = V.ntuple(input_dilation, n, "input_dilation")
    groups = check_groups(groups, x.shape[-1], kernel.shape[-2], kernel.shape[-1], "x")
    modes = V.padding_modes(padding_mode, n)
    eff = V.effective_kernel(kernel.shape[:n], dil)
    in_sizes = V.dilated_sizes(x.shape[1:-1], idil)
    pads = V.resolve_padding(padding, in_sizes, eff, strides)
    check_mode_widths(in_sizes, pads, modes)
    check_fits([s + lo + hi for s, (lo, hi) in zip(in_sizes, pads)], eff)
    if any(m != "zeros" for m in modes) and any(d > 1 for d in idil):
        x = pad_and_dilate(x, ((0, 0),) * n, idil)
        idil = (1,) * n
    x, pads = apply_modes(x, pads, modes)
    return _Canonical(x, kernel, strides, dil, idil, groups, pads)


def _problem(c: _Canonical) -> ConvProblem:
    n = len(c.strides)
    x, kernel = c.x, c.kernel
    return ConvProblem(kernel.shape[:n], kernel.shape[-2], kernel.shape[-1], c.groups,
                       c.strides, c.dilation, c.input_dilation, x.shape[0], x.shape[1:-1],
                       x.dtype, platform_of(x, kernel), pads=c.pads)  # fmt: skip


def _run_conv(c: _Canonical, backend: str, precision) -> jnp.ndarray:
    """Step 4 of :func:`conv`: what the plan says (:func:`jaxconv.ops.policy.plan`): group
    by group, space to depth, or one core call on its backend."""
    problem = _problem(c)
    chosen = plan(problem, backend)
    if chosen.form == BY_GROUPS:
        return _by_groups(c, precision)
    if chosen.form == SPACE_TO_DEPTH:
        # Blocks of `stride` samples become channels: one stride-1 convolution, whose
        # gradients are stride-1 ones (jaxconv.ops.phases.strided_conv).
        core = _stride_one_core("auto", groups=1, platform=problem.platform,
                                phase_count=math.prod(c.strides), transposed=False,
                                precision=precision)  # fmt: skip
        return phases.strided_conv(c.x, c.kernel, strides=c.strides, pads=c.pads, core=core)
    return BACKENDS[chosen.backend](
        c.x, c.kernel, strides=c.strides, dilation=c.dilation,
        input_dilation=c.input_dilation, groups=c.groups, pads=c.pads, precision=precision,
    )  # fmt: skip


def _by_groups(c: _Canonical, precision) -> jnp.ndarray:
    """One ungrouped convolution per group (each with auto's own choice), concatenated:
    XLA's CPU grouped convolution is far slower than the groups' dense ones."""
    cin_g, cout_g = c.kernel.shape[-2], c.kernel.shape[-1] // c.groups
    parts = [
        conv(
            c.x[..., g * cin_g : (g + 1) * cin_g],
            c.kernel[..., g * cout_g : (g + 1) * cout_g],
            stride=c.strides,
            padding=c.pads,
            dilation=c.dilation,
            input_dilation=c.input_dilation,
            backend="auto",
            precision=precision,
        )  # fmt: skip
        for g in range(c.groups)
    ]
    return jnp.concatenate(parts, axis=-1)


def conv_transpose(
    y: Any,
    kernel: Any,
    *,
    stride: IntOrInts = 1,
    padding: int | Sequence[int] | Sequence[tuple[int, int]] = 0,
    output_padding: IntOrInts = 0,
    dilation: IntOrInts = 1,
    groups: int = 1,
    layout: str = "channels_last",
    backend: str = "auto",
    precision: Any = None,
) -> jnp.ndarray:
    """Transposed convolution with PyTorch's ``ConvTranspose`` semantics.

    It is the adjoint of :func:`conv`: ``conv_transpose(dy, k, stride=s, padding=p,
    dilation=d, groups=g)`` equals the input gradient (VJP) of ``conv(x, k, stride=s,
    padding=p, dilation=d, groups=g)``, with ``output_padding`` choosing among the input
    sizes that map to the same output size.

    Args:
      y: ``(N, *spatial, C_in)`` (channels_last) or ``(N, C_in, *spatial)``.
      kernel: ``(*kernel_size, C_in, C_out // groups)`` for ``channels_last``,
        ``(C_in, C_out // groups, *kernel_size)`` for ``channels_first`` (PyTorch's).
      stride, dilation: int or per axis, >= 1.
      padding: PyTorch's ``padding``: an int, one per axis, or (lo, hi) per axis; that
        many samples are cropped from each side of the full transposed output.
      output_padding: extra size on the high side, smaller than stride or dilation.
      groups, layout, backend, precision: as :func:`conv`.

    Returns:
      ``(N, *out, C_out)`` with ``out = (in - 1) * s - lo - hi + d * (k - 1) +
      output_padding + 1``.

    >>> import jax.numpy as jnp
    >>> y = jnp.array([1.0, 2.0]).reshape(1, 2, 1)
    >>> conv_transpose(y, jnp.ones((3, 1, 1)), stride=2)[0, :, 0].tolist()
    [1.0, 1.0, 3.0, 2.0, 2.0]

    """
    y, kernel, n = operands(y, kernel, layout, x_name="y", transpose=True)
    strides, dil = V.ntuple(stride, n, "stride"), V.ntuple(dilation, n, "dilation")
    groups = _transpose_groups(y, kernel, groups)
    core_pads = _transpose_pads(padding, output_padding, y.shape[1:-1], kernel.shape[:n],
                                strides, dil)  # fmt: skip
    direct = _transpose_problem(y, kernel, groups, strides, dil, core_pads)
    chosen = plan(direct, check_backend(backend))
    if chosen.form == SUBPIXEL:
        x = _transpose_by_phases(y, kernel, direct, backend, padding, output_padding, precision)
        return restore(x, layout)
    k = _adjoint_kernel(kernel, groups)
    x = BACKENDS[chosen.backend](
        y, k, strides=(1,) * n, dilation=dil, input_dilation=strides, groups=groups,
        pads=core_pads, precision=precision,
    )  # fmt: skip
    return restore(x, layout)


def _transpose_by_phases(y, kernel, direct: ConvProblem, backend, padding, output_padding,
                         precision) -> jnp.ndarray:  # fmt: skip
    """Every backend but lax (XLA's own transposed convolution, cuDNN's on GPU) runs a
    strided transposed convolution as one stride-1 convolution of the undilated input
    (:mod:`jaxconv.ops.phases`); ``auto`` does so where the policy says and picks the
    backend for that convolution."""
    n, strides = y.ndim - 2, direct.input_dilation
    core = _stride_one_core(backend, groups=direct.groups, platform=direct.platform,
                            phase_count=math.prod(strides), transposed=True,
                            precision=precision)  # fmt: skip
    return phases.conv_transpose(y, kernel, strides=strides, dilation=direct.dilation,
        pads=V.explicit_pads(padding, n),
        output_padding=V.ntuple(output_padding, n, "output_padding", minimum=0),
        groups=direct.groups, core=core)  # fmt: skip


def _transpose_problem(y, kernel, groups: int, strides, dil, pads) -> ConvProblem:
    """A transposed convolution as the plan sees it: its input-dilated forward."""
    n, cin, cout_g = y.ndim - 2, kernel.shape[-2], kernel.shape[-1]
    return ConvProblem(kernel.shape[:n], cin // groups, groups * cout_g, groups, (1,) * n,
                       dil, strides, y.shape[0], y.shape[1:-1], y.dtype,
                       platform_of(y, kernel), transposed=True, pads=pads)  # fmt: skip


def _transpose_groups(y: jnp.ndarray, kernel: jnp.ndarray, groups: Any) -> int:
    cin = kernel.shape[-2]
    if cin != y.shape[-1]:
        raise ValueError(
            f"`kernel` has {cin} input channels but `y` has {y.shape[-1]}: a transposed "
            "kernel is (*kernel_size, C_in, C_out // groups) (channels_last)"
        )
    groups = check_int_groups(groups)
    if cin % groups:
        raise ValueError(f"`groups` (={groups}) must divide in_channels (={cin})")
    return groups


def _adjoint_kernel(kernel: jnp.ndarray, groups: int) -> jnp.ndarray:
    """The adjoint as a forward conv's kernel: the taps flipped and in/out channels
    swapped per group (the input is then dilated by the stride, padded by the effective
    kernel minus ``padding``)."""
    n = kernel.ndim - 2
    ksize, cin, cout_g = kernel.shape[:n], kernel.shape[-2], kernel.shape[-1]
    k = jnp.flip(kernel, axis=tuple(range(n)))
    k = k.reshape(*ksize, groups, cin // groups, cout_g)
    return jnp.swapaxes(k, n, n + 1).reshape(*ksize, cin // groups, groups * cout_g)


def explain_backend(x: Any, kernel: Any, *, transpose: bool = False, **options: Any) -> Plan:
    """The plan ``conv(x, kernel, **options)`` (``conv_transpose`` with ``transpose``)
    runs: its form, the backend of each convolution it runs, within ``window`` the method,
    and why (:func:`jaxconv.ops.policy.plan`); ``print`` it to read it.

    >>> import jax.numpy as jnp
    >>> print(explain_backend(jnp.ones((8, 32, 32, 16)), jnp.ones((3, 3, 16, 16))))
    lax: everything else: XLA's convolution (cuDNN on GPU)
    >>> explain_backend(jnp.ones((1, 256, 3)), jnp.ones((128, 3, 3))).backend
    'fft'
    """
    return (_transpose_plan if transpose else _conv_plan)(x, kernel, **options)


def _conv_plan(x, kernel, *, stride=1, padding="VALID", dilation=1, input_dilation=1, groups=1,
               padding_mode="zeros", layout="channels_last", backend="auto",
               precision=None) -> Plan:  # fmt: skip
    c = _canonical_conv(x, kernel, stride, padding, dilation, input_dilation, groups,
                        padding_mode, layout)  # fmt: skip
    return plan(_problem(c), check_backend(backend))


def _transpose_plan(y, kernel, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1,
                    layout="channels_last", backend="auto", precision=None) -> Plan:  # fmt: skip
    y, kernel, n = operands(y, kernel, layout, x_name="y", transpose=True)
    strides, dil = V.ntuple(stride, n, "stride"), V.ntuple(dilation, n, "dilation")
    groups = _transpose_groups(y, kernel, groups)
    core_pads = _transpose_pads(padding, output_padding, y.shape[1:-1], kernel.shape[:n],
                                strides, dil)  # fmt: skip
    return plan(_transpose_problem(y, kernel, groups, strides, dil, core_pads),
                check_backend(backend))  # fmt: skip
