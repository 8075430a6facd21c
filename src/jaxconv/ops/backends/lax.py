"""The ``lax`` backend: XLA's convolution (``jax.lax.conv_general_dilated``).

A direct sum: a NaN or infinity in the input makes non-finite exactly the outputs whose
receptive field holds it.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxconv.ops._validate import Pads


def dimension_numbers(n: int) -> lax.ConvDimensionNumbers:
    """Channels-last numbers for ``n`` spatial axes: (N, *S, C), (*K, I, O), (N, *S, O)."""
    spatial = tuple(range(1, n + 1))
    return lax.ConvDimensionNumbers(
        lhs_spec=(0, n + 1, *spatial),
        rhs_spec=(n + 1, n, *range(n)),
        out_spec=(0, n + 1, *spatial),
    )


def conv(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    *,
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    input_dilation: tuple[int, ...],
    groups: int,
    pads: Pads,
    precision=None,
) -> jnp.ndarray:
    """Channels-last N-D cross-correlation through XLA."""
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=pads,
        lhs_dilation=input_dilation,
        rhs_dilation=dilation,
        dimension_numbers=dimension_numbers(x.ndim - 2),
        feature_group_count=groups,
        precision=precision,
    )
