"""Signal-processing ``convolve`` and ``correlate`` on N-D arrays.

The definitions of ``scipy.signal.convolve`` / ``correlate``: ``convolve`` flips the
kernel, ``O[i] = sum_m a[i - m] v[m]``; ``correlate(a, v) = convolve(a, reverse(conj(v)))``.
Modes ``full`` (every overlap), ``same`` (the size of ``a``, centred on ``full``) and
``valid`` (complete overlaps only; the larger operand plays ``a``, as in scipy).
Both run on the convolution core of :mod:`jaxconv.ops.conv`, as a one-channel conv.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jaxconv.ops import _validate as V
from jaxconv.ops.backends import BACKENDS, check_backend
from jaxconv.ops.policy import ConvProblem, plan, platform_of

MODES = ("full", "same", "valid")


def _operands(a: Any, v: Any, mode: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
    a = V.check_array(a, "a")
    v = V.check_array(v, "v")
    if mode not in MODES:
        raise ValueError(f"`mode` (={mode!r}) must be one of {MODES}")
    if a.ndim != v.ndim:
        raise ValueError(
            f"`a` (shape {tuple(a.shape)}) and `v` (shape {tuple(v.shape)}) must have the "
            "same number of dimensions"
        )
    if a.ndim == 0:
        raise ValueError("`a` and `v` must have at least one dimension, got scalars")
    for name, arr in (("a", a), ("v", v)):
        if 0 in arr.shape:
            raise ValueError(f"`{name}` must not be empty, got shape {tuple(arr.shape)}")
    dtype = jnp.result_type(a, v)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jnp.result_type(float)
    return a.astype(dtype), v.astype(dtype)


def _convolve(
    a: jnp.ndarray, v: jnp.ndarray, mode: str, backend: str, precision: Any
) -> jnp.ndarray:
    if mode == "valid":
        if all(s >= t for s, t in zip(a.shape, v.shape)):
            pass
        elif all(t >= s for s, t in zip(a.shape, v.shape)):
            a, v = v, a
        else:
            raise ValueError(
                f"mode='valid' needs one of `a` (shape {tuple(a.shape)}) and `v` (shape "
                f"{tuple(v.shape)}) to be at least as large as the other in every dimension"
            )
    n = a.ndim
    if mode == "full":
        pads = tuple((k - 1, k - 1) for k in v.shape)
    elif mode == "same":
        pads = tuple((k - 1 - (k - 1) // 2, (k - 1) // 2) for k in v.shape)
    else:
        pads = ((0, 0),) * n
    ones = (1,) * n
    problem = ConvProblem(v.shape, 1, 1, spatial=a.shape, dtype=a.dtype,
                          platform=platform_of(a, v), pads=pads)  # fmt: skip
    kernel = jnp.flip(v)[..., None, None]
    y = BACKENDS[plan(problem, backend).backend](
        a[None, ..., None],
        kernel,
        strides=ones,
        dilation=ones,
        input_dilation=ones,
        groups=1,
        pads=pads,
        precision=precision,
    )
    return y[0, ..., 0]


def convolve(
    a: Any, v: Any, mode: str = "full", *, backend: str = "auto", precision: Any = None
) -> jnp.ndarray:
    """N-D convolution of ``a`` with ``v``, as ``scipy.signal.convolve``.

    Args:
      a, v: arrays of the same rank (any rank >= 1). Integer inputs give floats.
      mode: ``"full"``, ``"same"`` or ``"valid"``.
      backend: a name from :func:`jaxconv.backends` (``"lax"``, ``"window"``, ``"fft"``,
        ``"winograd"``, ``"auto"``).
      precision: passed to XLA (``jax.lax.Precision``).

    Returns:
      ``full``: ``a.shape + v.shape - 1``; ``same``: ``a.shape``; ``valid``:
      ``|a.shape - v.shape| + 1``.

    >>> convolve([1.0, 2, 3, 4, 5], [1.0, 1, 1]).tolist()
    [1.0, 3.0, 6.0, 9.0, 12.0, 9.0, 5.0]
    >>> convolve([1.0, 2, 3, 4, 5], [1.0, 0, -1], mode="same").tolist()
    [2.0, 2.0, 2.0, 2.0, -4.0]
    """
    a, v = _operands(a, v, mode)
    return _convolve(a, v, mode, check_backend(backend), precision)


def correlate(
    a: Any, v: Any, mode: str = "full", *, backend: str = "auto", precision: Any = None
) -> jnp.ndarray:
    """N-D cross-correlation of ``a`` with ``v``, as ``scipy.signal.correlate``.

    ``correlate(a, v) == convolve(a, reverse(conj(v)))``; arguments and shapes as
    :func:`convolve`.

    >>> correlate([1.0, 2, 3, 4, 5], [1.0, 0, -1], mode="valid").tolist()
    [-2.0, -2.0, -2.0]
    """
    a, v = _operands(a, v, mode)
    return _convolve(a, jnp.flip(jnp.conj(v)), mode, check_backend(backend), precision)
