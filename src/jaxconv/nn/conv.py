"""``Conv`` and ``ConvTranspose`` layers: flax.linen's interface, jaxconv's ops."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxconv import ops
from jaxconv.ops._types import IntOrInts

Initializer = Callable[..., Any]


def _kernel_size(kernel_size: IntOrInts) -> tuple[int, ...]:
    # As flax: an int is a 1-D kernel. Checked here, before the initializer divides by
    # the fan-in of an empty kernel.
    ks = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
    if not ks or any(not isinstance(k, numbers.Integral) or k < 1 for k in ks):
        raise ValueError(f"`kernel_size` (={kernel_size!r}) must be one int >= 1 per spatial axis")
    return ks


def _batched(x: jnp.ndarray, n: int, name: str) -> tuple[jnp.ndarray, bool]:
    """Accept ``(*spatial, C)`` as a batch of one, as flax does."""
    if x.ndim == n + 1:
        return x[None], True
    if x.ndim != n + 2:
        raise ValueError(
            f"`{name}` input must be (N, *spatial, C) with {n} spatial axes for kernel_size "
            f"of length {n}; got shape {tuple(x.shape)}"
        )
    return x, False


def _padding(padding: Any, mode: str) -> tuple[Any, str]:
    # flax's "CIRCULAR" is SAME padding that wraps around.
    if isinstance(padding, str) and padding.upper() == "CIRCULAR":
        return "SAME", "circular"
    return padding, mode


class Conv(nn.Module):
    """N-D convolution layer (channels-last), a drop-in for ``flax.linen.Conv``.

    Attributes:
      features: output channels.
      kernel_size: one int per spatial axis (an int alone is a 1-D kernel).
      strides, padding, input_dilation, kernel_dilation, feature_group_count: as
        :func:`jaxconv.conv` (``padding`` also takes flax's ``"CIRCULAR"``).
      use_bias, dtype, param_dtype, precision, kernel_init, bias_init: as flax.
      padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
      backend: a name from :func:`jaxconv.backends` (``"auto"`` by default).

    The parameters are ``kernel`` ``(*kernel_size, C_in // groups, features)`` and
    ``bias`` ``(features,)``, as ``flax.linen.Conv``.

    >>> import jax, jax.numpy as jnp
    >>> layer = Conv(features=4, kernel_size=(3, 3), backend="window")
    >>> params = layer.init(jax.random.key(0), jnp.ones((1, 8, 8, 2)))
    >>> jax.tree.map(jnp.shape, params)["params"]
    {'bias': (4,), 'kernel': (3, 3, 2, 4)}
    """

    features: int
    kernel_size: IntOrInts
    strides: IntOrInts = 1
    padding: Any = "SAME"
    input_dilation: IntOrInts = 1
    kernel_dilation: IntOrInts = 1
    feature_group_count: int = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()
    padding_mode: str | Sequence[str] = "zeros"
    backend: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        ks = _kernel_size(self.kernel_size)
        x, unbatched = _batched(jnp.asarray(x), len(ks), "Conv")
        _check_features(self.features)
        cin = x.shape[-1]
        if cin % self.feature_group_count:
            raise ValueError(
                f"`feature_group_count` (={self.feature_group_count}) must divide the input "
                f"channels (={cin})"
            )
        shape = (*ks, cin // self.feature_group_count, self.features)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        padding, mode = _padding(self.padding, self.padding_mode)
        y = ops.conv(
            x,
            kernel,
            stride=self.strides,
            padding=padding,
            dilation=self.kernel_dilation,
            input_dilation=self.input_dilation,
            groups=self.feature_group_count,
            padding_mode=mode,
            backend=self.backend,
            precision=self.precision,
        )
        if bias is not None:
            y = y + bias
        return y[0] if unbatched else y


class ConvTranspose(nn.Module):
    """Transposed convolution layer with PyTorch's ``ConvTranspose`` semantics.

    The parameter tree (``kernel`` ``(*kernel_size, C_in, features // groups)``,
    ``bias``) is ``flax.linen.ConvTranspose``'s; the arithmetic is
    :func:`jaxconv.conv_transpose` (the adjoint of :class:`Conv`), which equals flax's
    with ``transpose_kernel=True`` and the matching explicit padding.

    >>> import jax, jax.numpy as jnp
    >>> up = ConvTranspose(features=3, kernel_size=(4, 4), strides=2, padding=1)
    >>> y, _ = up.init_with_output(jax.random.key(0), jnp.ones((1, 8, 8, 5)))
    >>> y.shape
    (1, 16, 16, 3)
    """

    features: int
    kernel_size: IntOrInts
    strides: IntOrInts = 1
    padding: Any = 0
    output_padding: IntOrInts = 0
    kernel_dilation: IntOrInts = 1
    feature_group_count: int = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()
    backend: str = "auto"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        ks = _kernel_size(self.kernel_size)
        x, unbatched = _batched(jnp.asarray(x), len(ks), "ConvTranspose")
        _check_features(self.features)
        g = self.feature_group_count
        if self.features % g:
            raise ValueError(
                f"`feature_group_count` (={g}) must divide `features` (={self.features})"
            )
        shape = (*ks, x.shape[-1], self.features // g)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = ops.conv_transpose(
            x,
            kernel,
            stride=self.strides,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation=self.kernel_dilation,
            groups=g,
            backend=self.backend,
            precision=self.precision,
        )
        if bias is not None:
            y = y + bias
        return y[0] if unbatched else y


def _check_features(features: Any) -> None:
    """A layer's output channels: a positive int (0 would make an empty kernel whose
    initialiser divides by its fan)."""
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise ValueError(f"`features` (={features!r}) must be an int >= 1")
