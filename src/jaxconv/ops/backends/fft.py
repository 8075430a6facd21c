r"""The ``fft`` backend: convolution by the convolution theorem (``jnp.fft``).

Cross-correlation of a padded signal ``x`` (length ``P``) with a kernel ``k`` (length
``K <= P``) is, for the ``P - K + 1`` valid positions, the circular correlation of the
two zero-extended to length ``P``; and circular correlation is a product in frequency:
``irfft(rfft(x) * conj(rfft(k)))``. In N-D the same holds per axis (``rfftn``).

Everything else is reduced to that one case:

- zero padding and input dilation: one ``lax.pad`` before the transform;
- kernel dilation: zeros inserted between the kernel taps (the effective kernel);
- stride: the valid output is computed at stride 1 and subsampled;
- channels and groups: the channel contraction is an ``einsum`` per frequency.

The transform runs in float32 (complex64) for float32/bfloat16/float16 inputs and in
float64 for float64 inputs; the result is cast back to the input dtype. ``precision``
is accepted for a uniform interface and does not change the FFT.
It pays off for long kernels (many taps at stride 1), where direct methods cost
``taps`` multiply-adds per output and FFT costs ``O(log P)``.

A NaN or infinity anywhere in a sample makes every output of that sample non-finite:
each frequency is a sum over the whole padded signal (other samples are unaffected).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxconv.ops._validate import Pads
from jaxconv.ops.geometry import output_sizes, pad_and_dilate


def _fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: FFT sizes that pocketfft and cuFFT handle quickly."""
    best = 1
    while best < n:
        best *= 2
    for p3 in (1, 3, 9, 27, 81):
        for p5 in (1, 5, 25, 125):
            m = p3 * p5
            if m > best:
                continue
            size = m
            while size < n:
                size *= 2
            best = min(best, size)
    return best


def _compute_dtype(dtype) -> jnp.dtype:
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return jnp.dtype(dtype)
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


def dilate_kernel(kernel: jnp.ndarray, dilation: tuple[int, ...]) -> jnp.ndarray:
    if all(d == 1 for d in dilation):
        return kernel
    zero = jnp.zeros((), kernel.dtype)
    config = [(0, 0, d - 1) for d in dilation] + [(0, 0, 0), (0, 0, 0)]  # (*k, C_in, C_out)
    return lax.pad(kernel, zero, config)


def conv(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    *,
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
    input_dilation: tuple[int, ...],
    groups: int,
    pads: Pads,
    precision=None,
) -> jnp.ndarray:
    """Channels-last N-D cross-correlation through FFTs over the spatial axes."""
    del precision
    out_dtype = x.dtype
    n = x.ndim - 2
    kernel_size = kernel.shape[:n]
    x = pad_and_dilate(x, pads, input_dilation)
    batch, padded, cin = x.shape[0], x.shape[1:-1], x.shape[-1]
    out = output_sizes(padded, kernel_size, strides, dilation)
    cin_g, cout = kernel.shape[-2], kernel.shape[-1]
    if 0 in out or batch == 0:
        return jnp.zeros((batch, *out, cout), out_dtype)

    cdtype = _compute_dtype(out_dtype)
    x = x.astype(cdtype)
    k = dilate_kernel(kernel.astype(cdtype), dilation)
    axes_x = tuple(range(1, n + 1))
    axes_k = tuple(range(n))
    sizes = tuple(_fast_length(p) for p in padded)
    complex_input = jnp.issubdtype(cdtype, jnp.complexfloating)
    if complex_input:
        fx = jnp.fft.fftn(x, s=sizes, axes=axes_x)
        # conj(fft(conj(k))) is the transform of k reversed, for complex k too.
        fk = jnp.fft.fftn(jnp.conj(k), s=sizes, axes=axes_k)
    else:
        fx = jnp.fft.rfftn(x, s=sizes, axes=axes_x)
        fk = jnp.fft.rfftn(k, s=sizes, axes=axes_k)
    freq = fx.shape[1:-1]
    fx = fx.reshape(batch, *freq, groups, cin // groups)
    fk = jnp.conj(fk).reshape(*freq, cin_g, groups, cout // groups)
    fy = jnp.einsum("n...gc,...cgo->n...go", fx, fk).reshape(batch, *freq, cout)
    if complex_input:
        y = jnp.fft.ifftn(fy, s=sizes, axes=axes_x)
    else:
        y = jnp.fft.irfftn(fy, s=sizes, axes=axes_x)
    index = (slice(None),) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, strides))
    return y[index].astype(out_dtype)
