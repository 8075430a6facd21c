"""Pooling layers: stateless modules over :mod:`jaxconv.ops.pooling`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxconv import ops
from jaxconv.ops._types import IntOrInts


class _WindowPool(nn.Module):
    window: IntOrInts
    strides: IntOrInts | None = None
    padding: Any = 0
    dilation: IntOrInts = 1
    ceil_mode: bool = False
    backend: str = "auto"

    def _kwargs(self) -> dict:
        return dict(
            stride=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
            backend=self.backend,
        )


class MaxPool(_WindowPool):
    """Max pooling (PyTorch semantics); ``strides`` defaults to ``window``.

    >>> import jax.numpy as jnp
    >>> MaxPool(window=(2, 2)).apply({}, jnp.ones((1, 4, 4, 3))).shape
    (1, 2, 2, 3)
    """

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.max_pool(x, self.window, **self._kwargs())


class MinPool(_WindowPool):
    """Min pooling."""

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.min_pool(x, self.window, **self._kwargs())


class AvgPool(_WindowPool):
    """Average pooling; ``count_include_pad`` as PyTorch."""

    count_include_pad: bool = True

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.avg_pool(
            x, self.window, count_include_pad=self.count_include_pad, **self._kwargs()
        )


class LPPool(_WindowPool):
    """Power-average pooling ``(sum x**p)**(1/p)``."""

    norm_type: float = 2.0

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.lp_pool(x, self.window, norm_type=self.norm_type, **self._kwargs())


class AdaptiveAvgPool(nn.Module):
    """Average into ``output_size`` bins per spatial axis."""

    output_size: int | Sequence[int | None]

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.adaptive_avg_pool(x, self.output_size)


class AdaptiveMaxPool(nn.Module):
    """Maximum over ``output_size`` bins per spatial axis."""

    output_size: int | Sequence[int | None]

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.adaptive_max_pool(x, self.output_size)


class GlobalAvgPool(nn.Module):
    """Mean over all spatial axes: ``(N, *spatial, C) -> (N, C)``."""

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.global_avg_pool(x)


class GlobalMaxPool(nn.Module):
    """Maximum over all spatial axes: ``(N, *spatial, C) -> (N, C)``."""

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.global_max_pool(x)
