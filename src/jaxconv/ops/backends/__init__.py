"""The registry of convolution backends and the ``auto`` policy over it.

A backend is a function ``conv(x, kernel, *, strides, dilation, input_dilation, groups,
pads, precision)`` on channels-last arrays with zero padding only: the front end in
:mod:`jaxconv.ops.conv` has already validated and canonicalised every argument, applied
non-zero padding modes and moved the layout. ``conv_transpose``, ``convolve`` and
``correlate`` are built on the same function, so a new backend gets them for free.

``auto`` is a policy, not an implementation: see :func:`select`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from jaxconv.ops.backends import fft, lax, window

ConvCore = Callable[..., object]

BACKENDS: dict[str, ConvCore] = {
    "lax": lax.conv,
    "window": window.conv,
    "fft": fft.conv,
}

#: Kernels with at least this many taps (at stride 1) go to the FFT backend under
#: ``auto``. Measured with ``benchmarks/conv_backends.py`` on a 2-core CPU: FFT beats
#: XLA's direct convolution from about 32-64 taps on 1-D signals.
FFT_MIN_TAPS = 64


def backends() -> tuple[str, ...]:
    """The backend names ``conv`` and friends accept (``"auto"`` included).

    >>> backends()
    ('lax', 'window', 'fft', 'auto')
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
) -> str:
    """The ``auto`` rule: which backend computes a convolution of these shapes.

    1. ``fft`` when every stride is 1, there is no input dilation, the convolution is
       not grouped, and the kernel has at least :data:`FFT_MIN_TAPS` taps: direct
       methods cost one multiply-add per tap, FFT a few per ``log`` of the length.
    2. ``window`` when each group sees one input channel (single-channel signals,
       depthwise convolutions): its fused shift-and-add beats XLA's CPU convolution,
       which handles these shapes poorly (measured 4-30x, benchmarks/conv_backends.py).
    3. ``lax`` otherwise (XLA's convolution, cuDNN on GPU).

    >>> select((3, 3), (1, 1), (1, 1), 1, 64), select((3, 3), (1, 1), (1, 1), 64, 1)
    ('lax', 'window')
    """
    if (
        math.prod(kernel_size) >= FFT_MIN_TAPS
        and all(s == 1 for s in strides)
        and all(d == 1 for d in input_dilation)
        and groups == 1
    ):
        return "fft"
    if in_channels_per_group == 1:
        return "window"
    return "lax"
