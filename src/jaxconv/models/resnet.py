"""ResNets: the CIFAR family (ResNet-20/32/56, He et al. 2016, 3 stages of 16/32/64) and
ResNet-18 (4 stages of 64..512), both with basic blocks."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxconv import nn as jnn
from jaxconv.models._blocks import normalize


class BasicBlock(nn.Module):
    features: int
    strides: int = 1
    norm: str = "batch"
    conv_backend: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        n = x.ndim - 2
        k3, k1 = (3,) * n, (1,) * n
        y = jnn.Conv(
            self.features, k3, strides=self.strides, use_bias=False, backend=self.conv_backend
        )(x)
        y = nn.relu(normalize(y, self.norm, train))
        y = jnn.Conv(self.features, k3, use_bias=False, backend=self.conv_backend)(y)
        y = normalize(y, self.norm, train)
        if self.strides != 1 or x.shape[-1] != self.features:
            # projection shortcut (option B)
            x = jnn.Conv(
                self.features, k1, strides=self.strides, use_bias=False, backend=self.conv_backend
            )(x)
            x = normalize(x, self.norm, train)
        return nn.relu(x + y)


class ResNet(nn.Module):
    """A ResNet of basic blocks: ``blocks[i]`` blocks of ``widths[i]`` channels per stage,
    stride 2 at the start of every stage but the first.

    Use the presets: :func:`resnet20`, :func:`resnet32`, :func:`resnet56`, :func:`resnet18`.
    """

    num_classes: int = 10
    widths: Sequence[int] = (16, 32, 64)
    blocks: Sequence[int] = (3, 3, 3)
    stem_features: int = 16
    norm: str = "batch"
    conv_backend: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        n = x.ndim - 2
        x = jnn.Conv(self.stem_features, (3,) * n, use_bias=False, backend=self.conv_backend)(x)
        x = nn.relu(normalize(x, self.norm, train))
        for stage, (width, count) in enumerate(zip(self.widths, self.blocks)):
            for b in range(count):
                stride = 2 if stage > 0 and b == 0 else 1
                x = BasicBlock(width, stride, self.norm, self.conv_backend)(x, train)
        return nn.Dense(self.num_classes)(jnn.GlobalAvgPool()(x))


def _cifar(depth: int):
    def make(num_classes: int = 10, conv_backend: str = "auto", norm: str = "batch") -> ResNet:
        per_stage = (depth - 2) // 6
        return ResNet(num_classes, (16, 32, 64), (per_stage,) * 3, 16, norm, conv_backend)

    make.__name__ = f"resnet{depth}"
    make.__doc__ = (
        f"CIFAR ResNet-{depth}: 3 stages of {(depth - 2) // 6} basic blocks (16/32/64 channels)."
    )
    return make


resnet20, resnet32, resnet56 = _cifar(20), _cifar(32), _cifar(56)


def resnet18(num_classes: int = 10, conv_backend: str = "auto", norm: str = "batch") -> ResNet:
    """ResNet-18 with a 3x3 stem (the usual CIFAR adaptation): [2, 2, 2, 2] blocks, 64..512."""
    return ResNet(num_classes, (64, 128, 256, 512), (2, 2, 2, 2), 64, norm, conv_backend)
