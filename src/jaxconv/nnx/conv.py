"""``Conv``: ``flax.nnx.Conv`` computed by a jaxconv backend.

A subclass of ``flax.nnx.Conv``: the same constructor, ``nnx.Param`` names, shapes and
initialisation (a stock layer's state loads unchanged), flax's padding forms and
unbatched input; the convolution itself is :func:`jaxconv.conv_general_dilated` on
``backend``, with ``padding_mode`` (zeros, reflect, replicate, circular) applied to the
padding flax computes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from flax import nnx

from jaxconv.ops import backend_names
from jaxconv.ops.lax_compat import conv_general_dilated


class Conv(nnx.Conv):
    """``flax.nnx.Conv(in_features, out_features, kernel_size, strides, *, padding, ...,
    rngs)`` plus ``padding_mode`` and ``backend``.

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> layer = Conv(2, 4, (3, 3), backend="window", rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((1, 8, 8, 2))).shape, layer.kernel[...].shape
    ((1, 8, 8, 4), (3, 3, 2, 4))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None = 1,
        *,
        padding_mode: str | Sequence[str] = "zeros",
        backend: str = "auto",
        **options: Any,
    ):
        if backend not in backend_names():
            raise ValueError(f"`backend` (={backend!r}) must be one of {backend_names()}")
        if "conv_general_dilated" in options:
            raise TypeError("`conv_general_dilated` is jaxconv's here: choose `backend`")
        self.backend, self.padding_mode = backend, padding_mode
        compute = functools.partial(conv_general_dilated, backend=backend,
                                    padding_mode=padding_mode)  # fmt: skip
        super().__init__(in_features, out_features, kernel_size, strides,
                         conv_general_dilated=compute, **options)  # fmt: skip
