"""Deterministic shuffling, batching and augmentation: pure functions of (seed, epoch)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``range(n)`` for ``epoch``: the same on every rerun.

    >>> (epoch_order(5, 0, 1) == epoch_order(5, 0, 1)).all()
    np.True_
    """
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped in training)."""
    return max(n // batch_size, 1)


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, step_in_epoch: int) -> np.ndarray:
    """Indices of training batch ``step_in_epoch`` of ``epoch``."""
    order = epoch_order(n, seed, epoch)
    if n < batch_size:
        return order
    return order[step_in_epoch * batch_size : (step_in_epoch + 1) * batch_size]


def eval_batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def random_shift(
    x: np.ndarray, max_shift: int, rng: np.random.Generator, rows: tuple[int, int] | None = None
) -> np.ndarray:
    """Translate every example by up to ``max_shift`` samples per spatial axis (zero fill):
    random crop of the zero-padded example, for 1-D signals and images alike.

    ``rows=(start, total)``: ``x`` is rows ``start:start + len(x)`` of a batch of
    ``total``; the random draws are the whole batch's, so each example moves as it would
    in the whole batch (a process holding part of a batch augments it the same way)."""
    if max_shift <= 0:
        return x
    n, spatial = x.shape[0], x.shape[1:-1]
    start, total = rows or (0, n)
    padded = np.pad(x, [(0, 0)] + [(max_shift, max_shift)] * len(spatial) + [(0, 0)])
    out = padded
    for axis, size in enumerate(spatial, start=1):
        offsets = rng.integers(0, 2 * max_shift + 1, total)[start : start + n]
        index = offsets[:, None] + np.arange(size)[None, :]
        shape = [n] + [1] * (out.ndim - 1)
        shape[axis] = size
        out = np.take_along_axis(out, index.reshape(shape), axis=axis)
    return out


def random_flip(
    x: np.ndarray, rng: np.random.Generator, axis: int = 2, rows: tuple[int, int] | None = None
) -> np.ndarray:
    """Mirror half of the examples along ``axis`` (width, for channels-last images);
    ``rows`` as for :func:`random_shift`."""
    start, total = rows or (0, x.shape[0])
    flip = (rng.random(total) < 0.5)[start : start + x.shape[0]]
    out = x.copy()
    out[flip] = np.flip(x[flip], axis=axis - 1)
    return out


def augment(
    x: np.ndarray,
    *,
    shift: int,
    flip: bool,
    seed: int,
    step: int,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """The augmentation of the batch at global ``step``: a pure function of its inputs.
    ``rows=(start, total)`` when ``x`` is part of the batch (see :func:`random_shift`)."""
    if shift <= 0 and not flip:
        return x
    rng = np.random.default_rng([seed, step, 0xA06])
    x = random_shift(x, shift, rng, rows)
    if flip and x.ndim == 4:
        x = random_flip(x, rng, rows=rows)
    return x
