"""Padding modes for the spatial axes of channels-last arrays.

``zeros`` is left to the convolution core (every backend pads with zeros itself, which
lets XLA fuse it); ``reflect``, ``replicate`` and ``circular`` are applied here, once,
for every backend, with PyTorch's meaning:

========== ====================== ==========================
mode       ``[1 2 3]`` padded 2   numpy.pad mode
========== ====================== ==========================
zeros      ``0 0 1 2 3 0 0``      ``constant``
reflect    ``3 2 1 2 3 2 1``      ``reflect`` (edge not repeated)
replicate  ``1 1 1 2 3 3 3``      ``edge``
circular   ``2 3 1 2 3 1 2``      ``wrap``
========== ====================== ==========================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

from jaxconv.ops import _validate as V

_NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def check_mode_widths(sizes: Sequence[int], pads: V.Pads, modes: Sequence[str]) -> None:
    """Reflect needs ``pad < size``; circular needs ``pad <= size`` (as PyTorch)."""
    for axis, (size, (lo, hi), mode) in enumerate(zip(sizes, pads, modes)):
        widest = max(lo, hi)
        if mode == "reflect" and widest >= size:
            raise ValueError(
                f"`padding` (={widest}) on spatial axis {axis} must be smaller than the "
                f"input size (={size}) for padding_mode='reflect'"
            )
        if mode == "circular" and widest > size:
            raise ValueError(
                f"`padding` (={widest}) on spatial axis {axis} must be at most the "
                f"input size (={size}) for padding_mode='circular'"
            )
        if mode == "replicate" and widest > 0 and size == 0:
            raise ValueError(f"spatial axis {axis} is empty: cannot use padding_mode='replicate'")


def apply_modes(x: jnp.ndarray, pads: V.Pads, modes: Sequence[str]) -> tuple[jnp.ndarray, V.Pads]:
    """Pad the non-zero-mode axes of channels-last ``x``; return it and the zero pads left.

    The returned pads are what the core still has to add with zeros.
    """
    rest = []
    # One axis at a time, in axis order: with different modes per axis the corners depend
    # on the order, and a fixed order keeps the result reproducible.
    for axis, ((lo, hi), mode) in enumerate(zip(pads, modes)):
        if mode == "zeros" or (lo == 0 and hi == 0):
            rest.append((lo, hi))
            continue
        widths = [(0, 0)] * x.ndim
        widths[axis + 1] = (lo, hi)
        x = jnp.pad(x, widths, mode=_NUMPY_MODE[mode])
        rest.append((0, 0))
    return x, tuple(rest)


def pad(
    x: Any,
    padding: int | Sequence[int] | Sequence[tuple[int, int]],
    *,
    mode: str | Sequence[str] = "zeros",
    layout: str = "channels_last",
) -> jnp.ndarray:
    """Pad the spatial axes of a batch of signals or images.

    Args:
      x: ``(N, *spatial, C)`` (channels_last) or ``(N, C, *spatial)`` (channels_first).
      padding: an int for every side, one int per spatial axis, or (lo, hi) per axis.
      mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``, or one per axis.
      layout: ``"channels_last"`` or ``"channels_first"``.

    Returns:
      The padded array in the layout given.

    >>> import jax.numpy as jnp
    >>> x = jnp.arange(1.0, 4.0).reshape(1, 3, 1)
    >>> pad(x, 2, mode="reflect")[0, :, 0].tolist()
    [3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]
    """
    V.check_layout(layout)
    x = V.check_array(x, "x")
    V.check_rank(x, "x", minimum=3, what="(N, *spatial, C)")
    n = x.ndim - 2
    pads = V.explicit_pads(padding, n)
    modes = V.padding_modes(mode, n, "mode")
    if layout == "channels_first":
        x = jnp.moveaxis(x, 1, -1)
    check_mode_widths(x.shape[1:-1], pads, modes)
    x, rest = apply_modes(x, pads, modes)
    x = jnp.pad(x, [(0, 0), *rest, (0, 0)])
    if layout == "channels_first":
        x = jnp.moveaxis(x, -1, 1)
    return x
