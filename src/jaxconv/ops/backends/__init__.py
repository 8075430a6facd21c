"""The registry of convolution backends and the ``auto`` policy over it.

A backend is a function ``conv(x, kernel, *, strides, dilation, input_dilation, groups,
pads, precision)`` on channels-last arrays with zero padding only: the front end in
:mod:`jaxconv.ops.conv` has already validated and canonicalised every argument, applied
non-zero padding modes and moved the layout. ``conv_transpose``, ``convolve`` and
``correlate`` are built on the same function, so a new backend gets them for free.

``auto`` is a plan, not an implementation: :mod:`jaxconv.ops.policy` (a
:class:`~jaxconv.ops.policy.ConvProblem` in, a :class:`~jaxconv.ops.policy.Plan` out).

Non-finite inputs. On finite inputs the backends agree to float rounding. A NaN or an
infinity in the input is where they differ, because each mixes samples differently
before it multiplies: ``lax`` and ``window`` (direct sums) make non-finite exactly the
outputs whose receptive field holds it, except that ``window``'s block-Toeplitz path for
long 1-D kernels on several channels spoils the whole output blocks that read it;
``winograd`` makes the whole output tiles
(4x4 for a 3x3 kernel) of every input tile that holds it non-finite, a few samples beyond
the receptive field; ``fft`` makes every output of that sample non-finite (each
frequency sums the whole signal). No backend lets it reach another sample of the batch.
``auto`` inherits the pattern of the backend it picks, so which outputs of a sample
with a NaN are NaN depends on the shapes; where that matters (masking bad pixels, say),
replace non-finite values before the convolution or pick ``lax`` or ``window``.
"""

from __future__ import annotations

from jaxconv.ops._types import ConvCore
from jaxconv.ops.backends import (  # winograd after window: it falls back on it
    fft,
    lax,
    window,
    winograd,
)

#: Every backend by name, in the order :func:`names` lists them; the one list that
#: the ops, the layers, the tests and the benchmarks read.
BACKENDS: dict[str, ConvCore] = {
    "lax": lax.conv,
    "window": window.conv,
    "fft": fft.conv,
    "winograd": winograd.conv,
}
#: Backends whose sum pooling (avg, and the sum under lp) runs as their own convolution
#: with a ones kernel per channel. ``lax`` has ``reduce_window``; the others pool with
#: ``window``'s sliced core (``winograd`` has no depthwise form; max pooling has no
#: convolution form on any backend).
POOLS_BY_CONVOLUTION: set[str] = {"fft"}


def names() -> tuple[str, ...]:
    """The backend names ``conv`` and friends accept (``"auto"`` included); the public
    ``jaxconv.backends()``.

    >>> names()
    ('lax', 'window', 'fft', 'winograd', 'auto')
    """
    return (*BACKENDS, "auto")


def register_backend(name: str, core: ConvCore, *, pools_by_convolution: bool = True) -> None:
    """Add a convolution core under ``name``: ``conv``, ``conv_transpose``, ``convolve``,
    ``correlate``, the layers and the pools then accept it. Its average pooling runs as
    its own depthwise convolution with a ones kernel unless ``pools_by_convolution`` is
    False; max pooling uses ``window``'s sliced core."""
    if not isinstance(name, str) or name == "auto":
        raise ValueError(f"`name` (={name!r}) must be a string other than 'auto'")
    BACKENDS[name] = core
    (POOLS_BY_CONVOLUTION.add if pools_by_convolution else POOLS_BY_CONVOLUTION.discard)(name)


def check_backend(backend: object) -> str:
    if backend not in BACKENDS and backend != "auto":
        raise ValueError(f"`backend` (={backend!r}) must be one of {names()}")
    return backend  # type: ignore[return-value]
