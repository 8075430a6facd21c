"""Small shared pieces of the model presets: activations and normalisation."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
    "leaky_relu": nn.leaky_relu,
}
NORMS = ("batch", "layer", "group", "none")


def activation(name: str) -> Callable[[jnp.ndarray], jnp.ndarray]:
    if name not in ACTIVATIONS:
        raise ValueError(f"`activation` (={name!r}) must be one of {tuple(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def normalize(
    x: jnp.ndarray, kind: str, train: bool, name: str | None = None, momentum: float = 0.9
) -> jnp.ndarray:
    """Apply ``kind`` normalisation; BatchNorm uses batch statistics only in training."""
    if kind == "batch":
        return nn.BatchNorm(use_running_average=not train, momentum=momentum, name=name)(x)
    if kind == "layer":
        return nn.LayerNorm(name=name)(x)
    if kind == "group":
        channels = x.shape[-1]
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(num_groups=groups, name=name)(x)
    if kind == "none":
        return x
    raise ValueError(f"`norm` (={kind!r}) must be one of {NORMS}")


def expect_rank(x: jnp.ndarray, spatial: int, model: str) -> None:
    """Models take batched channels-last input: ``(N, *spatial, C)``, never unbatched."""
    if x.ndim != spatial + 2:
        raise ValueError(
            f"{model} with {spatial}-D kernels expects input of rank {spatial + 2} "
            f"(N, *spatial, C); got shape {tuple(x.shape)}"
        )
