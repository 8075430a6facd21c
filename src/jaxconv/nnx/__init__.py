"""Flax NNX layers on jaxconv's backends (``flax.nnx``'s constructors and state)."""

from jaxconv.nnx.conv import Conv as Conv
from jaxconv.nnx.conv import ConvTranspose as ConvTranspose
from jaxconv.nnx.pooling import AdaptiveAvgPool as AdaptiveAvgPool
from jaxconv.nnx.pooling import AdaptiveMaxPool as AdaptiveMaxPool
from jaxconv.nnx.pooling import AvgPool as AvgPool
from jaxconv.nnx.pooling import GlobalAvgPool as GlobalAvgPool
from jaxconv.nnx.pooling import GlobalMaxPool as GlobalMaxPool
from jaxconv.nnx.pooling import LPPool as LPPool
from jaxconv.nnx.pooling import MaxPool as MaxPool
from jaxconv.nnx.pooling import MinPool as MinPool
