"""Type aliases shared by the ops, the layers and the backends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import jax.numpy as jnp

#: One int for every spatial axis, or one per axis.
IntOrInts = int | Sequence[int]
#: A padding string ("VALID", "SAME", ...), an int, one int per axis, or (lo, hi) per axis.
Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]
#: Canonical (lo, hi) zero padding per spatial axis.
Pads = tuple[tuple[int, int], ...]


class ConvCore(Protocol):
    """What a backend implements: a convolution of channels-last, zero-padded arrays with
    canonical per-axis options (the front end in :mod:`jaxconv.ops.conv` has validated
    them). ``x`` is ``(N, *spatial, C_in)``, ``kernel`` ``(*k, C_in // groups, C_out)``."""

    def __call__(
        self,
        x: jnp.ndarray,
        kernel: jnp.ndarray,
        *,
        strides: tuple[int, ...],
        dilation: tuple[int, ...],
        input_dilation: tuple[int, ...],
        groups: int,
        pads: Pads,
        precision: Any = None,
    ) -> jnp.ndarray: ...
