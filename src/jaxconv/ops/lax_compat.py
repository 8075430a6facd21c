"""``jax.lax.conv_general_dilated``'s signature on jaxconv's backends.

Stock Flax layers take their convolution as an argument (``flax.linen.Conv`` and
``flax.nnx.Conv``'s ``conv_general_dilated=``); handing them
``functools.partial(jaxconv.conv_general_dilated, backend="window")`` runs that layer on
a jaxconv backend with its own parameters, initialisers and layout unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv.ops.conv import conv


def conv_general_dilated(
    lhs: Any,
    rhs: Any,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    out_sharding: Any = None,
    *,
    backend: str = "auto",
    padding_mode: str | Sequence[str] = "zeros",
) -> jnp.ndarray:
    """:func:`jax.lax.conv_general_dilated` computed by :func:`jaxconv.conv` on ``backend``.

    Every argument means what it means to lax: ``dimension_numbers`` in any of lax's
    forms (None: ``NCHW``/``OIHW``), ``padding`` as ``"SAME"``, ``"SAME_LOWER"``,
    ``"VALID"`` or ``(lo, hi)`` pairs, ``lhs_dilation`` (a transposed convolution's
    input dilation), ``rhs_dilation`` (atrous), ``feature_group_count``. The operands
    are moved to channels-last, convolved, and the result moved to the output spec.
    ``out_sharding`` constrains the result's sharding, as lax's does; ``padding_mode``
    (jaxconv's, keyword-only) fills the padding with zeros, a reflection, the edge
    values or the wrapped input. ``batch_group_count``
    above 1 (lax's form of a grouped weight gradient) is refused.

    >>> import functools, flax.linen as nn, jax, jax.numpy as jnp
    >>> layer = nn.Conv(4, (3, 3), conv_general_dilated=functools.partial(
    ...     conv_general_dilated, backend="window"))
    >>> variables = layer.init(jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 2)))
    >>> layer.apply(variables, jnp.ones((1, 8, 8, 2))).shape
    (1, 8, 8, 4)
    """
    if batch_group_count != 1:
        raise ValueError(
            f"`batch_group_count` (={batch_group_count}) must be 1: jaxconv's backends "
            "compute feature groups only (use jax.lax.conv_general_dilated for it)"
        )
    lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
    n = lhs.ndim - 2
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    x = jnp.transpose(lhs, (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1]))
    kernel = jnp.transpose(rhs, (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0]))
    strides = tuple(window_strides)
    lhs_dil = tuple(lhs_dilation or (1,) * n)
    rhs_dil = tuple(rhs_dilation or (1,) * n)
    pads = _pads(padding, x.shape[1:-1], kernel.shape[:n], strides, lhs_dil, rhs_dil)
    y = conv(x, kernel, stride=strides, padding=pads, dilation=rhs_dil,
             input_dilation=lhs_dil, groups=feature_group_count, padding_mode=padding_mode,
             backend=backend, precision=precision)  # fmt: skip
    if preferred_element_type is not None:
        y = y.astype(preferred_element_type)
    held = (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1])  # the output dim each axis is
    y = jnp.transpose(y, tuple(np.argsort(held)))
    return y if out_sharding is None else jax.lax.with_sharding_constraint(y, out_sharding)


def _pads(padding, spatial, kernel_size, strides, lhs_dil, rhs_dil) -> tuple:
    """lax's padding argument as (lo, hi) per spatial axis, computed as lax computes it."""
    if not isinstance(padding, str):
        return tuple(tuple(pair) for pair in padding)
    if any(d != 1 for d in lhs_dil):
        raise ValueError(
            f"`padding` (={padding!r}) must be (lo, hi) pairs when `lhs_dilation` "
            f"(={lhs_dil}) dilates the input, as jax.lax.conv_general_dilated requires"
        )
    taps = [(k - 1) * d + 1 for k, d in zip(kernel_size, rhs_dil)]
    return tuple(lax.padtype_to_pads(spatial, taps, strides, padding))
