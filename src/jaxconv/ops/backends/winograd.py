r"""The ``winograd`` backend: Winograd's minimal filtering, written in jax.numpy.

A stride-1 correlation of ``m`` outputs with an ``r``-tap kernel needs ``m * r``
multiplications done directly, but only ``a = m + r - 1`` done Winograd's way,
``F(m, r)``: transform the ``a`` inputs the outputs depend on (``B^T d``) and the kernel
(``G g``), multiply the two elementwise, and transform the ``a`` products back
(``y = A^T [(G g) * (B^T d)]``). For ``F(2, 3)``, ``d = [d0, d1, d2, d3]``:

.. math::  y_0 = d_0 g_0 + d_1 g_1 + d_2 g_2, \quad y_1 = d_1 g_0 + d_2 g_1 + d_3 g_2

take four products, ``(d0 - d2) g0``, ``(d1 + d2)(g0 + g1 + g2)/2``,
``(d2 - d1)(g0 - g1 + g2)/2`` and ``(d3 - d1) g2``, instead of six.

The matrices come from polynomial arithmetic (Toom-Cook): the correlation is the
transpose of a linear convolution of an ``r``-term and an ``m``-term polynomial, which is
computed by evaluating both at ``a - 1`` points and infinity, multiplying, and
interpolating. :func:`transform_matrices` builds them exactly in rationals from the points
``0, 1, -1, 2, -2`` (the usual choice: the smallest numbers, so the least rounding).

In a convolution layer the elementwise product over a tile becomes a matrix product
over channels, one per transform position: with the input tiles transformed to
``V[k, p, c]`` (``k`` a transform position, ``p`` a tile, ``c`` an input channel) and the
kernel to ``U[k, c, o]``, each of the ``a**n`` positions is one matmul
``V[k] @ U[k]``. On ``n`` spatial axes the 1-D transforms are applied along each axis in
turn, so a 3x3 kernel in 6x6 tiles of 4x4 outputs (``F(4x4, 3x3)``) takes 36 products
for 16 outputs, 2.25 per output against 9: the three matrix products of a training step
(forward, input gradient, kernel gradient; autodiff of this code, which is all matmuls,
slices and sums) do a quarter of a direct method's multiply-adds. The transforms are
sums of a few strided slices each, cheaper than the matmuls they save, written so that
their transposes (which the gradient runs) are concatenations too: the transform
positions are taken apart with one ``lax.split`` and the padded input's tile samples are
columns of whole blocks (:func:`_block_samples`), not one indexed or strided slice each,
whose transposes would be zero-padded full-size arrays summed per sample. The input
transform has two programs for its one linear map (a custom JVP): the forward slices the
unpadded input, so its zero padding and the previous layer's activation fuse into the
transform, while reverse mode transposes the padded form, whose transpose is the faster
input gradient.

Tile size. Every axis uses input tiles of :data:`TILE` = 6 samples, so ``m = 7 - r``
outputs per tile for ``r`` = 2 to 5 taps (an axis of one tap needs no transform). Bigger
tiles save more multiplies but the transforms' coefficients grow and so does the rounding
error (``tests/ops/test_winograd.py`` bounds a float32 3x3 layer's at 2e-5 of its
largest output). 8-sample tiles, ``F(6x6, 3x3)``, doubled that error and were slower
(8x8 images waste most of an 8-sample tile; figures in ``docs/performance-notes.md``).
Half-precision inputs are transformed and multiplied in float32 and rounded back
once.

What it covers. Stride 1, no dilation of either kind, no groups, at most
:data:`MAX_TAPS` taps per axis (and more than one on some axis). Anything else (a strided
or grouped layer, a transposed convolution's dilated input) goes to the ``window``
backend, so every option still works under this name.

Non-finite inputs. A NaN or infinity in an input tile reaches every transform position
of that tile (the transforms mix all its samples, and ``inf - inf`` is NaN), so whole
output tiles around it become non-finite, a few samples more than a direct sum's
receptive field; other samples of the batch are unaffected.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv.ops._validate import Pads
from jaxconv.ops.backends import window
from jaxconv.ops.policy import WINOGRAD_MAX_TAPS
from jaxconv.ops.policy import winograd_applies as applies

#: Longest kernel axis this backend transforms (``m = TILE + 1 - r`` must be at least 2).
MAX_TAPS = WINOGRAD_MAX_TAPS
#: Input tile length per spatial axis (``m + r - 1``).
TILE = MAX_TAPS + 1
#: The finite interpolation points of the Toom-Cook construction (infinity is the last).
POINTS = (0, 1, -1, 2, -2)


def _evaluation(points: tuple[Fraction, ...], n: int) -> list[list[Fraction]]:
    """Rows evaluate a polynomial of ``n`` coefficients at each point, then at infinity."""
    rows = [[p**j for j in range(n)] for p in points]
    rows.append([Fraction(0)] * (n - 1) + [Fraction(1)])  # infinity: the top coefficient
    return rows


def _inverse(matrix: list[list[Fraction]]) -> list[list[Fraction]]:
    """Exact Gauss-Jordan inverse of a small rational matrix."""
    n = len(matrix)
    rows = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
    return [row[n:] for row in rows]


@functools.cache
def transform_matrices(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A^T, G, B^T)`` of ``F(m, r)``: shapes ``(m, a)``, ``(a, r)``, ``(a, a)``, with
    ``a = m + r - 1``.

    ``y = A^T @ ((G @ g) * (B^T @ d))`` is the correlation ``y[i] = sum_j d[i + j] g[j]``
    of ``a`` inputs ``d`` with ``r`` taps ``g``. Exact rationals, returned as float64;
    ``B^T`` has integer entries (the interpolation's denominators are moved into ``G``).

    >>> at, g, bt = transform_matrices(2, 3)
    >>> bt.astype(int).tolist()
    [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]]
    >>> d, taps = np.array([1.0, 2, 3, 4]), np.array([1.0, 1, 1])
    >>> (at @ ((g @ taps) * (bt @ d))).tolist()
    [6.0, 9.0]
    """
    a = m + r - 1
    if m < 1 or r < 1 or a - 1 > len(POINTS):
        raise ValueError(
            f"F({m}, {r}) needs {a - 1} interpolation points; {len(POINTS)} are defined"
        )
    points = tuple(Fraction(p) for p in POINTS[: a - 1])
    # Linear convolution s = g * h of an r- and an m-coefficient polynomial:
    #   s = E_a^-1 [(E_r g) * (E_m h)]; its transpose is the correlation we want.
    bt = [list(col) for col in zip(*_inverse(_evaluation(points, a)))]
    g = _evaluation(points, r)
    at = [list(col) for col in zip(*_evaluation(points, m))]
    for k in range(a):  # integer rows of B^T; G takes the denominators
        scale = math.lcm(*(v.denominator for v in bt[k]))
        bt[k] = [v * scale for v in bt[k]]
        g[k] = [v / scale for v in g[k]]
    out = tuple(np.array(mat, dtype=np.float64) for mat in (at, g, bt))
    for mat in out:
        mat.setflags(write=False)  # cached: shared by every caller
    return out  # type: ignore[return-value]


def tile_outputs(taps: int) -> int:
    """Outputs per tile (``m``) along an axis of ``taps`` taps."""
    return 1 if taps == 1 else TILE + 1 - taps


def _combine(parts: list, matrix: np.ndarray) -> list:
    """``[sum_j matrix[i, j] * parts[j] for each row i]``, skipping zeros and unit factors."""
    out = []
    for row in matrix:
        terms = []
        for coef, part in zip(row, parts):
            if coef == 1:
                terms.append(part)
            elif coef == -1:
                terms.append(-part)
            elif coef != 0:
                terms.append(part * coef.astype(part.dtype))
        out.append(functools.reduce(lambda u, v: u + v, terms))
    return out


def _strided(x, axis: int, start: int, count: int, step: int):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, start + (count - 1) * step + 1, step)
    return x[tuple(index)]


def _unstack(x, axis: int = 0) -> list:
    """``[x[j] for j along axis]`` as one ``lax.split``, whose transpose is a
    concatenation: indexing instead transposes to one zero-padded full-size array per
    piece, summed, which XLA evaluates as a chain of selects per element."""
    return [part.squeeze(axis) for part in lax.split(x, [1] * x.shape[axis], axis=axis)]


def _transform_tiles(v, m, taps, samples, staged=False):
    """Input transform, (a_1, ..., a_n, N, t_1, ..., t_n, C): per axis ``i``, the list of
    ``a`` arrays ``samples(v, axis, i, a)`` (item ``j``: sample ``j`` of every tile along
    ``axis``) combined with ``B^T``; the new transform axis goes in front. ``staged``
    puts an optimization barrier between the axes (see :func:`_padded_tiles`)."""
    for i, (mi, r) in enumerate(zip(m, taps)):
        bt = transform_matrices(mi, r)[2]
        v = jnp.stack(_combine(samples(v, 2 * i + 1, i, bt.shape[1]), bt), axis=i)
        if staged and i < len(m) - 1:
            v = lax.optimization_barrier(v)
    return v


def _block_samples(v, axis: int, tiles: int, step: int, count: int) -> list:
    """Sample ``j < count`` of every tile along ``axis`` of ``v``, whose length there is
    ``(tiles + extra) * step``: reshaped to ``(tiles + extra, step)`` blocks, sample ``j``
    is column ``j % step`` from block row ``j // step`` on. A linear map built from a
    reshape, a split and whole-block shifts, so its transpose (the input gradient) is a
    concatenation of a few shifted sums instead of ``count`` interleaved scatters."""
    rows = v.shape[axis] // step
    blocks = v.reshape(*v.shape[:axis], rows, step, *v.shape[axis + 1 :])
    columns = _unstack(blocks, axis + 1)
    return [
        lax.slice_in_dim(columns[j % step], j // step, j // step + tiles, axis=axis)
        for j in range(count)
    ]


def _padded_tiles(x, pads, m, taps, tiles):
    """The input transform of ``x`` padded so the last tile is whole (and the padded
    length is whole blocks of ``m``): the samples come from :func:`_block_samples`.

    Reverse mode runs this map transposed (the input gradient), one axis after the other
    in reverse. Left to itself, XLA fuses the axes' transposes into one loop; an
    optimization barrier between the axes makes each axis's result an array of its own:
    one more pass over memory, and faster in whole training steps (figures, and the
    barriers tried elsewhere and not kept: ``docs/performance-notes.md``)."""
    config = [(0, 0, 0)]
    for size, (lo, _), mi, t, r in zip(x.shape[1:-1], pads, m, tiles, taps):
        blocks = t + -(-(r - 1) // mi)  # the tiles plus the overlap of the last one
        config.append((lo, mi * blocks - size - lo, 0))
    v = lax.pad(x, jnp.zeros((), x.dtype), [*config, (0, 0, 0)])
    return _transform_tiles(
        v, m, taps, lambda v, axis, i, a: _block_samples(v, axis, tiles[i], m[i], a), staged=True
    )


def _tile_samples(x, axis: int, lo: int, tiles: int, step: int, j: int):
    """Sample ``j`` of every tile along ``axis`` of the zero-padded ``x`` (``lo`` in front),
    sliced from ``x`` itself: the tiles that fall in the padding get zeros."""
    size, first = x.shape[axis], j - lo  # x index of tile 0's sample j
    t_lo, t_hi = max(0, -(first // step)), min(tiles - 1, (size - 1 - first) // step)
    if t_hi < t_lo:
        shape = list(x.shape)
        shape[axis] = tiles
        return jnp.zeros(shape, x.dtype)
    part = _strided(x, axis, first + t_lo * step, t_hi - t_lo + 1, step)
    config = [(0, 0, 0)] * x.ndim
    config[axis] = (t_lo, tiles - 1 - t_hi, 0)
    return lax.pad(part, jnp.zeros((), x.dtype), config)


def _sliced_tiles(x, pads, m, taps, tiles):
    """:func:`_padded_tiles` without the padded copy: each slice pads itself, so XLA
    fuses the padding (and whatever elementwise op made ``x``) into the transform."""
    return _transform_tiles(
        x,
        m,
        taps,
        lambda v, axis, i, a: [
            _tile_samples(v, axis, pads[i][0], tiles[i], m[i], j) for j in range(a)
        ],
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4))
def _input_transform(x, pads, m, taps, tiles):
    return _sliced_tiles(x, pads, m, taps, tiles)


@_input_transform.defjvp
def _input_transform_jvp(pads, m, taps, tiles, primals, tangents):
    # One linear map, two programs: the forward is faster from slices of x (its padding
    # and the previous layer's activation fuse in), while the transpose of the padded
    # form, which reverse mode runs, is the faster input gradient (train_step: VGG-6,
    # ResNet-20, MNIST net).
    (x,), (x_dot,) = primals, tangents
    return _input_transform(x, pads, m, taps, tiles), _padded_tiles(x_dot, pads, m, taps, tiles)


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
    """Channels-last N-D cross-correlation by Winograd's ``F(m, r)`` on every spatial axis.

    ``x``: ``(N, *spatial, C)``, ``kernel``: ``(*taps, C, O)``, ``pads``: zero ``(lo, hi)`` per
    axis. Convolutions outside :func:`applies` go to the ``window`` backend.
    """
    n = x.ndim - 2
    taps = kernel.shape[:n]
    if not applies(taps, strides, dilation, input_dilation, groups):
        return window.conv(
            x,
            kernel,
            strides=strides,
            dilation=dilation,
            input_dilation=input_dilation,
            groups=groups,
            pads=pads,
            precision=precision,
        )
    dtype = jnp.result_type(x, kernel)
    work = dtype if jnp.finfo(dtype).bits >= 32 else jnp.float32
    x, kernel = x.astype(work), kernel.astype(work)
    m = [tile_outputs(r) for r in taps]
    mats = [transform_matrices(mi, r) for mi, r in zip(m, taps)]
    outs = [size + lo + hi - r + 1 for size, (lo, hi), r in zip(x.shape[1:-1], pads, taps)]
    tiles = [-(-length // mi) for length, mi in zip(outs, m)]

    v = _input_transform(x, tuple(tuple(p) for p in pads), tuple(m), tuple(taps), tuple(tiles))
    positions = math.prod(v.shape[:n])
    cin, cout = kernel.shape[-2:]

    u = kernel  # G g G^T per axis: (a_1, ..., a_n, C, O)
    for i, (_, g, _) in enumerate(mats):
        u = jnp.moveaxis(jnp.tensordot(jnp.asarray(g, work), u, axes=([1], [i])), 0, i)
    prod = jnp.einsum(
        "kpc,kco->kpo",
        v.reshape(positions, -1, cin),
        u.reshape(positions, cin, cout),
        precision=precision,
    )
    y = prod.reshape(*v.shape[:-1], cout)

    # Back from transform positions to outputs, axis by axis: A^T gives the m outputs of
    # each tile, placed right after the tile axis and merged with it.
    for i, (at, _, _) in enumerate(mats):
        after = (n - i - 1) + 1 + i + 1  # the remaining transform axes, N, the tile axes so far
        y = jnp.stack(_combine(_unstack(y), at), axis=after)
        y = y.reshape(*y.shape[: after - 1], -1, *y.shape[after + 1 :])
    y = y[(slice(None), *(slice(0, length) for length in outs))]
    return y.astype(dtype)
