"""VGG: stages of 3x3 convolutions with max pooling, configurable depth and width."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxconv import nn as jnn
from jaxconv.models._blocks import activation, normalize

HEADS = ("global_avg", "flatten")


class VGG(nn.Module):
    """``stages[i]`` conv layers of ``widths[i]`` channels, then a 2x max pool, per stage.

    A stage whose map is already smaller than 2 on some axis skips its pool, so deep
    configurations still fit small inputs. ``head``: ``"global_avg"`` or ``"flatten"``.

    ``VGG(widths=(32, 64, 128), stages=(2, 2, 2))`` is the VGG-6 of the speed benchmarks;
    ``VGG(widths=(64, 128, 256, 512, 512), stages=(2, 2, 3, 3, 3))`` is VGG-16's body.
    """

    num_classes: int = 10
    widths: Sequence[int] = (32, 64, 128)
    stages: Sequence[int] = (2, 2, 2)
    norm: str = "batch"
    activation: str = "relu"
    head: str = "global_avg"
    hidden: Sequence[int] = ()
    dropout: float = 0.0
    conv_backend: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if self.head not in HEADS:
            raise ValueError(f"`head` (={self.head!r}) must be one of {HEADS}")
        if len(self.widths) != len(self.stages):
            raise ValueError(
                f"`widths` ({len(self.widths)}) and `stages` "
                f"({len(self.stages)}) must have the same length"
            )
        act = activation(self.activation)
        n = x.ndim - 2
        for width, depth in zip(self.widths, self.stages):
            for _ in range(depth):
                x = jnn.Conv(
                    width, (3,) * n, use_bias=self.norm == "none", backend=self.conv_backend
                )(x)
                x = act(normalize(x, self.norm, train))
            if all(s >= 2 for s in x.shape[1:-1]):
                x = jnn.MaxPool(window=(2,) * n, backend=self.conv_backend)(x)
        x = jnn.GlobalAvgPool()(x) if self.head == "global_avg" else x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = act(nn.Dense(width)(x))
            if self.dropout:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)
