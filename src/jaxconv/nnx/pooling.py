"""Pooling layers as NNX modules: no state, the arguments of :mod:`jaxconv.ops.pooling`
(the Linen layers of :mod:`jaxconv.nn.pooling` take the same ones as attributes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from flax import nnx

from jaxconv import ops
from jaxconv.ops._types import IntOrInts


class _WindowPool(nnx.Module):
    """A sliding-window pool: ``strides`` defaults to ``window`` (PyTorch semantics)."""

    _op: Any = None  # the function of jaxconv.ops.pooling it calls

    def __init__(self, window: IntOrInts, strides: IntOrInts | None = None, *, padding: Any = 0,
                 dilation: IntOrInts = 1, ceil_mode: bool = False, backend: str = "auto",
                 **options: Any):  # fmt: skip
        self.window, self.options = window, dict(
            stride=strides, padding=padding, dilation=dilation, ceil_mode=ceil_mode,
            backend=backend, **options,
        )  # fmt: skip

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return type(self)._op(x, self.window, **self.options)


class MaxPool(_WindowPool):
    """Max pooling.

    >>> import jax.numpy as jnp
    >>> MaxPool((2, 2))(jnp.ones((1, 4, 4, 3))).shape
    (1, 2, 2, 3)
    """

    _op = staticmethod(ops.max_pool)


class MinPool(_WindowPool):
    """Min pooling."""

    _op = staticmethod(ops.min_pool)


class AvgPool(_WindowPool):
    """Average pooling; ``count_include_pad=`` as PyTorch (default True)."""

    _op = staticmethod(ops.avg_pool)


class LPPool(_WindowPool):
    """Power-average pooling ``(sum x**p)**(1/p)``; ``norm_type=`` is ``p`` (default 2)."""

    _op = staticmethod(ops.lp_pool)


class AdaptiveAvgPool(nnx.Module):
    """Average into ``output_size`` bins per spatial axis."""

    def __init__(self, output_size: int | Sequence[int | None]):
        self.output_size = output_size

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.adaptive_avg_pool(x, self.output_size)


class AdaptiveMaxPool(AdaptiveAvgPool):
    """Maximum over ``output_size`` bins per spatial axis."""

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.adaptive_max_pool(x, self.output_size)


class GlobalAvgPool(nnx.Module):
    """Mean over all spatial axes: ``(N, *spatial, C) -> (N, C)``."""

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.global_avg_pool(x)


class GlobalMaxPool(nnx.Module):
    """Maximum over all spatial axes: ``(N, *spatial, C) -> (N, C)``."""

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return ops.global_max_pool(x)
