"""Convolutional presets: a configurable CNN, the MNIST-1D paper's CNN, LeNet-5 and a
depthwise-separable CNN. 1-D or 2-D follows from the kernel size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxconv import nn as jnn
from jaxconv.models._blocks import activation, expect_rank, normalize

HEADS = ("global_avg", "global_max", "flatten")
POOLS = ("max", "avg", "none")


def _kernels(kernel_size: Any, n_layers: int) -> list[tuple[int, ...]]:
    """``5`` / ``(3, 3)``: one kernel for all layers; ``[[5], [3], [3]]``: one per layer."""
    if isinstance(kernel_size, int):
        return [(kernel_size,)] * n_layers
    if all(isinstance(k, int) for k in kernel_size):
        return [tuple(kernel_size)] * n_layers
    if len(kernel_size) != n_layers:
        raise ValueError(f"`kernel_size` has {len(kernel_size)} entries for {n_layers} layers")
    return [(k,) if isinstance(k, int) else tuple(k) for k in kernel_size]


def _per_layer(value: Any, n_layers: int, name: str) -> list:
    """An int for every layer, or one entry per layer."""
    if isinstance(value, int):
        return [value] * n_layers
    if len(value) != n_layers:
        raise ValueError(
            f"`{name}` (={value!r}) must be an int or one entry per layer ({n_layers})"
        )
    return list(value)


def _pool(x, kind: str, window: int, backend: str):
    n = x.ndim - 2
    if kind == "none" or any(s < window for s in x.shape[1:-1]):
        return x
    if kind == "max":
        return jnn.MaxPool(window=(window,) * n, backend=backend)(x)
    if kind == "avg":
        return jnn.AvgPool(window=(window,) * n, backend=backend)(x)
    raise ValueError(f"`pool` (={kind!r}) must be one of {POOLS}")


def _head(x, head: str):
    if head == "global_avg":
        return jnn.GlobalAvgPool()(x)
    if head == "global_max":
        return jnn.GlobalMaxPool()(x)
    if head == "flatten":
        return x.reshape(x.shape[0], -1)
    raise ValueError(f"`head` (={head!r}) must be one of {HEADS}")


class CNN(nn.Module):
    """A generic conv stack: [conv -> norm -> activation (-> pool)] x len(channels) -> head.

    Attributes:
      num_classes: output logits.
      channels: output channels of each conv layer.
      kernel_size: one kernel for all layers (``5`` or ``(5,)`` is 1-D, ``(3, 3)`` is
        2-D) or a list with one kernel per layer.
      strides: an int for all layers or one int per layer (same on every axis).
      padding: ``"SAME"``, ``"VALID"``, an int... for all layers.
      pool: ``"max"``, ``"avg"`` or ``"none"`` after every ``pool_every`` layers; a pool
        is skipped where the map is already smaller than its window on some axis, so
        deep stacks still fit small inputs.
      norm: ``"batch"``, ``"layer"``, ``"group"`` or ``"none"``.
      head: ``"global_avg"``, ``"global_max"`` or ``"flatten"``, then ``hidden`` dense
        layers and the classifier.
      dropout: before each dense layer.
      conv_backend: passed to every conv and pooling layer.

    >>> import jax, jax.numpy as jnp
    >>> m = CNN(channels=(8, 16), kernel_size=5, pool="none", strides=2)
    >>> v = m.init(jax.random.key(0), jnp.ones((2, 40, 1)))
    >>> m.apply(v, jnp.ones((2, 40, 1))).shape
    (2, 10)
    """

    num_classes: int = 10
    channels: Sequence[int] = (32, 64)
    kernel_size: Any = (3, 3)
    strides: Any = 1
    padding: Any = "SAME"
    padding_mode: str = "zeros"
    pool: str = "max"
    pool_window: int = 2
    pool_every: int = 1
    norm: str = "batch"
    activation: str = "relu"
    dropout: float = 0.0
    head: str = "global_avg"
    hidden: Sequence[int] = ()
    conv_backend: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        act = activation(self.activation)
        n_layers = len(self.channels)
        if n_layers == 0 or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in self.channels
        ):
            raise ValueError(
                f"`channels` (={list(self.channels)}) must name at least one layer, each "
                "an int >= 1"
            )
        kernels = _kernels(self.kernel_size, n_layers)
        expect_rank(x, len(kernels[0]), "CNN")
        strides = _per_layer(self.strides, n_layers, "strides")
        for i, (features, ks, st) in enumerate(zip(self.channels, kernels, strides)):
            x = jnn.Conv(
                features,
                ks,
                strides=st,
                padding=self.padding,
                padding_mode=self.padding_mode,
                use_bias=self.norm == "none",
                backend=self.conv_backend,
            )(x)
            x = act(normalize(x, self.norm, train))
            if (i + 1) % self.pool_every == 0:
                x = _pool(x, self.pool, self.pool_window, self.conv_backend)
        x = _head(x, self.head)
        for width in self.hidden:
            if self.dropout:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
            x = act(nn.Dense(width)(x))
        if self.dropout:
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


class MNIST1DCNN(nn.Module):
    """The MNIST-1D paper's CNN: three conv layers of 25 channels (kernel 5 stride 2,
    kernel 3 stride 2, kernel 3 stride 2; padding 1; ReLU), then a linear classifier.

    >>> import jax, jax.numpy as jnp
    >>> m = MNIST1DCNN()
    >>> v = m.init(jax.random.key(0), jnp.ones((1, 40, 1)))
    >>> v["params"]["Dense_0"]["kernel"].shape  # 25 channels x 5 positions
    (125, 10)
    """

    num_classes: int = 10
    channels: int = 25
    conv_backend: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        expect_rank(x, 1, "MNIST1DCNN")
        for ks in (5, 3, 3):
            x = nn.relu(
                jnn.Conv(self.channels, (ks,), strides=2, padding=1, backend=self.conv_backend)(x)
            )
        return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


class LeNet5(nn.Module):
    """LeNet-5: conv 6 (5x5) -> pool -> conv 16 (5x5) -> pool -> 120 -> 84 -> classes.

    ``padding="SAME"`` keeps small inputs (8x8 digits) usable; the 1998 network used
    VALID convolutions on 32x32 inputs (``padding="VALID"``), average pooling and tanh.
    """

    num_classes: int = 10
    padding: Any = "SAME"
    pool: str = "avg"
    activation: str = "tanh"
    conv_backend: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        expect_rank(x, 2, "LeNet5")
        act = activation(self.activation)
        for features in (6, 16):
            x = act(jnn.Conv(features, (5, 5), padding=self.padding, backend=self.conv_backend)(x))
            x = _pool(x, self.pool, 2, self.conv_backend)
        x = x.reshape(x.shape[0], -1)
        for width in (120, 84):
            x = act(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


class DepthwiseSeparableCNN(nn.Module):
    """MobileNet-style blocks: depthwise conv (``groups == channels``) -> norm -> act ->
    pointwise 1x1 conv -> norm -> act; a stem conv first, global pooling last."""

    num_classes: int = 10
    stem: int = 32
    channels: Sequence[int] = (64, 128)
    kernel_size: Any = (3, 3)
    strides: Any = 1
    norm: str = "batch"
    activation: str = "relu"
    conv_backend: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        act = activation(self.activation)
        ks = _kernels(self.kernel_size, 1)[0]
        expect_rank(x, len(ks), "DepthwiseSeparableCNN")
        ones = (1,) * len(ks)
        x = act(
            normalize(
                jnn.Conv(self.stem, ks, use_bias=False, backend=self.conv_backend)(x),
                self.norm,
                train,
            )
        )
        strides = _per_layer(self.strides, len(self.channels), "strides")
        for features, st in zip(self.channels, strides):
            c = x.shape[-1]
            x = jnn.Conv(
                c, ks, strides=st, feature_group_count=c, use_bias=False, backend=self.conv_backend
            )(x)
            x = act(normalize(x, self.norm, train))
            x = jnn.Conv(features, ones, use_bias=False, backend=self.conv_backend)(x)
            x = act(normalize(x, self.norm, train))
        return nn.Dense(self.num_classes)(jnn.GlobalAvgPool()(x))
