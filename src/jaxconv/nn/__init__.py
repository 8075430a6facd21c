"""Flax linen layers over :mod:`jaxconv.ops`.

``Conv`` and ``ConvTranspose`` have the attribute names and parameter trees
(``kernel``, ``bias``) of ``flax.linen.Conv`` / ``ConvTranspose`` plus ``padding_mode``
and ``backend``, so a Flax checkpoint loads unchanged.
"""

from jaxconv.nn.conv import Conv as Conv
from jaxconv.nn.conv import ConvTranspose as ConvTranspose
from jaxconv.nn.pooling import AdaptiveAvgPool as AdaptiveAvgPool
from jaxconv.nn.pooling import AdaptiveMaxPool as AdaptiveMaxPool
from jaxconv.nn.pooling import AvgPool as AvgPool
from jaxconv.nn.pooling import GlobalAvgPool as GlobalAvgPool
from jaxconv.nn.pooling import GlobalMaxPool as GlobalMaxPool
from jaxconv.nn.pooling import LPPool as LPPool
from jaxconv.nn.pooling import MaxPool as MaxPool
from jaxconv.nn.pooling import MinPool as MinPool
