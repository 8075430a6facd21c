"""Baselines without convolutions: logistic regression and a multilayer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxconv.models._blocks import activation


class LogisticRegression(nn.Module):
    """A linear classifier on the flattened input.

    >>> import jax, jax.numpy as jnp
    >>> m = LogisticRegression(num_classes=10)
    >>> m.init_with_output(jax.random.key(0), jnp.ones((2, 40, 1)))[0].shape
    (2, 10)
    """

    num_classes: int = 10
    conv_backend: str = "auto"  # accepted for a uniform interface; no convolutions here

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


class MLP(nn.Module):
    """Dense layers with an activation and dropout, on the flattened input."""

    num_classes: int = 10
    hidden: Sequence[int] = (100, 100)
    activation: str = "relu"
    dropout: float = 0.0
    conv_backend: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        act = activation(self.activation)
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = act(nn.Dense(width)(x))
            if self.dropout:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)
