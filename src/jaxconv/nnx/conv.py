"""``Conv`` and ``ConvTranspose``: ``flax.nnx``'s layers computed by a jaxconv backend.

Subclasses of ``flax.nnx.Conv`` and ``flax.nnx.ConvTranspose``: the same constructors,
``nnx.Param`` names, shapes and initialisation (a stock layer's state loads unchanged),
flax's padding forms and unbatched input. ``Conv`` hands flax
:func:`jaxconv.conv_general_dilated` on ``backend``, with ``padding_mode`` (zeros,
reflect, replicate, circular) applied to the padding flax computes. ``ConvTranspose``
computes lax's transposed convolution itself, as :func:`jaxconv.conv_transpose` (the
sub-pixel form where the backend uses it) wherever the padding allows.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from flax import nnx

from jaxconv import ops
from jaxconv.ops import _validate as V
from jaxconv.ops.backends import check_backend
from jaxconv.ops.lax_compat import conv_general_dilated


class Conv(nnx.Conv):
    """``flax.nnx.Conv(in_features, out_features, kernel_size, strides, *, padding, ...,
    rngs)`` plus ``padding_mode`` and ``backend``.

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> layer = Conv(2, 4, (3, 3), backend="window", rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((1, 8, 8, 2))).shape, layer.kernel[...].shape
    ((1, 8, 8, 4), (3, 3, 2, 4))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None = 1,
        *,
        padding_mode: str | Sequence[str] = "zeros",
        backend: str = "auto",
        **options: Any,
    ):
        check_backend(backend)
        if "conv_general_dilated" in options:
            raise TypeError("`conv_general_dilated` is jaxconv's here: choose `backend`")
        self.backend, self.padding_mode = backend, padding_mode
        compute = functools.partial(conv_general_dilated, backend=backend,
                                    padding_mode=padding_mode)  # fmt: skip
        super().__init__(in_features, out_features, kernel_size, strides,
                         conv_general_dilated=compute, **options)  # fmt: skip


class ConvTranspose(nnx.ConvTranspose):
    """``flax.nnx.ConvTranspose(in_features, out_features, kernel_size, strides, *,
    padding, kernel_dilation, ..., transpose_kernel, rngs)`` plus ``padding_mode``
    (``"zeros"`` only) and ``backend``.

    The arithmetic is flax's (``jax.lax.conv_transpose``): the input dilated by
    ``strides`` and convolved at stride 1 with the kernel as stored, or with its taps
    flipped and channels swapped when ``transpose_kernel`` (then it is the adjoint of
    :class:`Conv` with the same kernel). ``padding`` is ``"SAME"`` (output ``in *
    stride``), ``"VALID"``, ``"CIRCULAR"`` (the output wrapped to period ``in * stride``)
    or lax's explicit padding of the dilated input: an int, one per axis or ``(lo, hi)``
    pairs, negative ones cropping. The padding is zeros: PyTorch's transposed
    convolutions have no other ``padding_mode`` either, and another one is refused.

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> up = ConvTranspose(3, 4, (3, 3), strides=2, backend="window", rngs=nnx.Rngs(0))
    >>> up(jnp.ones((1, 8, 8, 3))).shape, up.kernel[...].shape
    ((1, 16, 16, 4), (3, 3, 3, 4))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None = None,
        *,
        padding_mode: str = "zeros",
        backend: str = "auto",
        **options: Any,
    ):
        check_backend(backend)
        if padding_mode != "zeros":
            raise ValueError(
                f"`padding_mode` (={padding_mode!r}) must be 'zeros': a transposed "
                "convolution pads with zeros (PyTorch's ConvTranspose layers too)"
            )
        self.backend, self.padding_mode = backend, padding_mode
        super().__init__(in_features, out_features, kernel_size, strides, **options)

    def __call__(self, inputs: Any) -> jnp.ndarray:
        ks = self.kernel_size
        n = len(ks)
        x = jnp.asarray(inputs)
        if x.ndim < n + 1:
            raise ValueError(
                f"`inputs` must be (*batch, *spatial, C) with {n} spatial axes for "
                f"kernel_size {ks}; got shape {tuple(x.shape)}"
            )
        batch_shape = x.shape[: x.ndim - n - 1]  # () for one unbatched example
        x = x.reshape(-1, *x.shape[x.ndim - n - 1 :])
        strides = V.ntuple(1 if self.strides is None else self.strides, n, "strides")
        dilation = V.ntuple(1 if self.kernel_dilation is None else self.kernel_dilation, n,
                            "kernel_dilation")  # fmt: skip
        kernel = self.kernel[...]
        if self.mask is not None:
            if self.mask.shape != kernel.shape:
                raise ValueError(f"`mask` has shape {self.mask.shape}; the kernel has "
                                 f"{kernel.shape}")  # fmt: skip
            kernel = kernel * self.mask
        bias = self.bias[...] if self.bias is not None else None
        x, kernel, bias = self.promote_dtype((x, kernel, bias), dtype=self.dtype)
        # The kernel as jaxconv.conv_transpose (PyTorch's adjoint) takes it: lax convolves
        # the dilated input with the kernel as stored, the adjoint with its taps flipped.
        if self.transpose_kernel:
            kernel = jnp.swapaxes(kernel, -1, -2)
        else:
            kernel = jnp.flip(kernel, axis=tuple(range(n)))
        eff = V.effective_kernel(ks, dilation)
        circular = isinstance(self.padding, str) and self.padding.upper() == "CIRCULAR"
        pads = _lax_transpose_pads(
            "VALID" if circular else self.padding, eff, strides, x.shape[1:-1]
        )
        out = [(size - 1) * s + lo + hi - e + 2
               for size, s, e, (lo, hi) in zip(x.shape[1:-1], strides, eff, pads)]  # fmt: skip
        if min(out) < 1:
            raise ValueError(
                f"`padding` (={self.padding!r}) leaves an empty output {tuple(out)} for input "
                f"spatial size {tuple(x.shape[1:-1])} and kernel_size {ks}"
            )
        y = self._transposed(x, kernel, pads, eff, strides, dilation)
        if circular:
            y = _wrap(y, [s * size for s, size in zip(strides, x.shape[1:-1])],
                      centre_high=self.transpose_kernel)  # fmt: skip
        if self.preferred_element_type is not None:
            y = y.astype(self.preferred_element_type)
        if bias is not None:
            y = y + bias
        return y.reshape(*batch_shape, *y.shape[1:])

    def _transposed(self, x, kernel, pads, eff, strides, dilation) -> jnp.ndarray:
        """The dilated input padded by ``pads`` (negative ones crop the output) and
        convolved at stride 1; through :func:`jaxconv.conv_transpose` when PyTorch's
        ``padding``/``output_padding`` can say it, else as an input-dilated
        :func:`jaxconv.conv`. ``kernel`` is in :func:`jaxconv.conv_transpose`'s form."""
        n = len(eff)
        grown = [(max(lo, 0), max(hi, 0)) for lo, hi in pads]
        crop = [(max(-lo, 0), max(-hi, 0)) for lo, hi in pads]
        torch_pads = [(e - 1 - lo, max(e - 1 - hi, 0)) for e, (lo, hi) in zip(eff, grown)]
        extra = [max(hi - (e - 1), 0) for e, (_, hi) in zip(eff, grown)]
        if all(lo >= 0 for lo, _ in torch_pads) and all(
            o < max(s, d) for o, s, d in zip(extra, strides, dilation)
        ):
            y = ops.conv_transpose(x, kernel, stride=strides, padding=torch_pads,
                                   output_padding=extra, dilation=dilation,
                                   backend=self.backend, precision=self.precision)  # fmt: skip
        else:
            forward = jnp.flip(kernel, axis=tuple(range(n)))  # the adjoint's adjoint
            y = ops.conv(x, forward, padding=grown, dilation=dilation, input_dilation=strides,
                         backend=self.backend, precision=self.precision)  # fmt: skip
        index = tuple(slice(lo, y.shape[1 + a] - hi) for a, (lo, hi) in enumerate(crop))
        return y[(slice(None), *index)]


def _lax_transpose_pads(padding: Any, eff, strides, spatial) -> list[tuple[int, int]]:
    """The (lo, hi) zero padding of the stride-dilated input that ``jax.lax.conv_transpose``
    applies for flax's ``padding``: SAME makes the output ``in * stride`` long; VALID
    every position any tap reaches; explicit padding is taken as it is."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode not in ("SAME", "VALID"):
            raise ValueError(
                f"`padding` (={padding!r}) must be 'SAME', 'VALID', 'CIRCULAR', an int, one "
                "per spatial axis or (lo, hi) pairs"
            )
        pads = []
        for e, s in zip(eff, strides):
            if mode == "SAME":
                total = e + s - 2
                lo = e - 1 if s > e - 1 else -(-total // 2)
            else:
                total, lo = e + s - 2 + max(e - s, 0), e - 1
            pads.append((lo, total - lo))
        return pads
    return list(V.explicit_pads(padding, len(eff), allow_negative=True))


def _wrap(y: jnp.ndarray, periods: Sequence[int], *, centre_high: bool) -> jnp.ndarray:
    """Fold each spatial axis of ``y`` onto ``period`` samples, summing what lands on the
    same position: the output of a transposed convolution with periodic boundaries. The
    full output is centred on the period; an odd surplus goes to the low side, or to the
    high side when ``centre_high`` (flax's conventions, so states load unchanged)."""
    for axis, period in enumerate(periods, start=1):
        size = y.shape[axis]
        surplus = -(size - period) % (2 * period)
        lo = surplus // 2 if centre_high else (surplus + 1) // 2
        width = [(0, 0)] * y.ndim
        width[axis] = (lo, surplus - lo)
        y = jnp.pad(y, width)
        y = y.reshape(*y.shape[:axis], -1, period, *y.shape[axis + 1 :]).sum(axis=axis)
    return y
