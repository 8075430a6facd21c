"""Flax NNX layers on jaxconv's backends (``flax.nnx``'s constructors and state)."""

from jaxconv.nnx.conv import Conv as Conv
