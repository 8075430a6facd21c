"""Argument normalisation and validation shared by every op.

Every public op calls these helpers first, so inner code sees only tuples of ints and
bad input fails at trace time with a message naming the argument, its value and what
was expected.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

LAYOUTS = ("channels_last", "channels_first")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("VALID", "SAME", "SAME_LOWER", "FULL", "CAUSAL")

from jaxconv.ops._types import Pads as Pads  # noqa: E402  (re-exported for the backends)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def ntuple(value: Any, n: int, name: str, *, minimum: int | None = 1) -> tuple[int, ...]:
    """Broadcast an int to ``n`` ints, or check a sequence of ``n`` ints.

    >>> ntuple(2, 3, "stride")
    (2, 2, 2)
    >>> ntuple((1, 2), 2, "stride")
    (1, 2)
    """
    if _is_int(value):
        values = (int(value),) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if not all(_is_int(v) for v in value):
            raise TypeError(f"`{name}` (={value!r}) must be an int or a sequence of {n} ints")
        if len(value) != n:
            raise ValueError(
                f"`{name}` (={value!r}) must have one entry per spatial axis ({n}), "
                f"got {len(value)}"
            )
        values = tuple(int(v) for v in value)
    else:
        raise TypeError(f"`{name}` (={value!r}) must be an int or a sequence of {n} ints")
    if minimum is not None and any(v < minimum for v in values):
        raise ValueError(f"`{name}` (={value!r}) must be >= {minimum} on every axis")
    return values


def check_layout(layout: Any) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` (={layout!r}) must be one of {LAYOUTS}")
    return layout


def check_array(x: Any, name: str) -> jnp.ndarray:
    try:
        return jnp.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be an array, got {type(x).__name__}: {err}") from err


def check_rank(x: Any, name: str, *, minimum: int, what: str) -> None:
    if x.ndim < minimum:
        raise ValueError(
            f"`{name}` must have rank >= {minimum} ({what}), got shape {tuple(x.shape)}"
        )


def padding_modes(mode: Any, n: int, name: str = "padding_mode") -> tuple[str, ...]:
    """One padding mode per spatial axis."""
    modes = (mode,) * n if isinstance(mode, str) else mode
    if not isinstance(modes, Sequence) or not all(isinstance(m, str) for m in modes):
        raise TypeError(f"`{name}` (={mode!r}) must be a string or a sequence of {n} strings")
    if len(modes) != n:
        raise ValueError(f"`{name}` (={mode!r}) must have one entry per spatial axis ({n})")
    for m in modes:
        if m not in PADDING_MODES:
            raise ValueError(f"`{name}` (={m!r}) must be one of {PADDING_MODES}")
    return tuple(modes)


def explicit_pads(padding: Any, n: int, name: str = "padding", *,
                  allow_negative: bool = False) -> Pads:  # fmt: skip
    """Ints, per-axis ints or per-axis (lo, hi) pairs -> per-axis (lo, hi) pairs (>= 0
    unless ``allow_negative``)."""
    if _is_int(padding):
        pads = ((int(padding), int(padding)),) * n
    elif isinstance(padding, Sequence) and not isinstance(padding, str):
        if len(padding) != n:
            raise ValueError(
                f"`{name}` (={padding!r}) must have one entry per spatial axis ({n}), "
                f"got {len(padding)}"
            )
        pads = []
        for p in padding:
            if _is_int(p):
                pads.append((int(p), int(p)))
            elif (
                isinstance(p, Sequence)
                and not isinstance(p, str)
                and len(p) == 2
                and all(_is_int(v) for v in p)
            ):
                pads.append((int(p[0]), int(p[1])))
            else:
                raise TypeError(
                    f"`{name}` (={padding!r}) entries must be ints or (lo, hi) pairs of ints"
                )
        pads = tuple(pads)
    else:
        raise TypeError(
            f"`{name}` (={padding!r}) must be a string, an int, a sequence of ints "
            "or a sequence of (lo, hi) pairs"
        )
    if not allow_negative and any(v < 0 for pair in pads for v in pair):
        raise ValueError(f"`{name}` (={padding!r}) must be >= 0 on every side")
    return pads


def resolve_padding(
    padding: Any,
    in_sizes: Sequence[int],
    eff_kernel: Sequence[int],
    strides: Sequence[int],
) -> Pads:
    """Padding spec -> per-axis (lo, hi) pairs for inputs of size ``in_sizes``.

    ``SAME`` gives ``ceil(size / stride)`` outputs with the extra pad on the high side,
    ``SAME_LOWER`` puts it on the low side, ``FULL`` pads ``k_eff - 1`` on both sides and
    ``CAUSAL`` pads ``k_eff - 1`` on the low side only.

    >>> resolve_padding("SAME", (5,), (4,), (1,))
    ((1, 2),)
    >>> resolve_padding("causal", (5,), (3,), (1,))
    ((2, 0),)
    """
    n = len(in_sizes)
    if not isinstance(padding, str):
        return explicit_pads(padding, n)
    key = padding.upper()
    if key not in PADDING_STRINGS:
        raise ValueError(
            f"`padding` (={padding!r}) must be one of {PADDING_STRINGS}, an int, "
            "per-axis ints or (lo, hi) pairs"
        )
    pads = []
    for size, k, s in zip(in_sizes, eff_kernel, strides):
        if key == "VALID":
            pads.append((0, 0))
        elif key == "FULL":
            pads.append((k - 1, k - 1))
        elif key == "CAUSAL":
            pads.append((k - 1, 0))
        else:
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if key == "SAME" else (large, small))
    return tuple(pads)


def effective_kernel(kernel_size: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    return tuple((k - 1) * d + 1 for k, d in zip(kernel_size, dilation))


def dilated_sizes(sizes: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    return tuple((s - 1) * d + 1 if s > 0 else 0 for s, d in zip(sizes, dilation))
