"""Per-example augmentations named in the config (``data.transforms``), each drawing from
a generator that is a pure function of (seed, epoch, example index): an example is
augmented alike whatever the batch, the process or the worker that loads it.

    >>> import numpy as np
    >>> pipeline = from_config([{"name": "random_crop", "padding": 1}, {"name": "hflip"}])
    >>> image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    >>> out = apply(pipeline, image, seed=0, epoch=0, index=3)
    >>> out.shape, np.array_equal(out, apply(pipeline, image, seed=0, epoch=0, index=3))
    ((4, 4, 1), True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class RandomCrop:
    """Pad each spatial axis by ``padding`` zeros on both sides, then crop the original
    size at a random offset: a shift by up to ``padding`` samples (``data.augment_shift``
    is this with the offsets drawn per batch instead)."""

    padding: int = 4

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.padding
        spatial = x.shape[:-1]
        padded = np.pad(x, [(p, p)] * len(spatial) + [(0, 0)])
        starts = rng.integers(0, 2 * p + 1, len(spatial))
        return padded[tuple(slice(s, s + n) for s, n in zip(starts, spatial))]


@dataclasses.dataclass(frozen=True)
class Flip:
    """Mirror along spatial ``axis`` with probability ``p`` (axis 1: width, ``hflip``;
    axis 0: height, ``vflip``)."""

    axis: int = 1
    p: float = 0.5

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.flip(x, self.axis) if rng.random() < self.p else x


@dataclasses.dataclass(frozen=True)
class Jitter:
    """Brightness and contrast: ``x * b``, then ``(x - mean) * c + mean``, with ``b`` and
    ``c`` drawn from ``[1 - brightness, 1 + brightness]`` and ``[1 - contrast, 1 +
    contrast]``."""

    brightness: float = 0.2
    contrast: float = 0.2

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        b = rng.uniform(1 - self.brightness, 1 + self.brightness)
        c = rng.uniform(1 - self.contrast, 1 + self.contrast)
        x = x * b
        mean = x.mean()
        return ((x - mean) * c + mean).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Cutout:
    """Zero a ``size`` square (cube, ...) centred at a random position (it may cross the
    border)."""

    size: int = 8

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = x.copy()
        region = []
        for n in x.shape[:-1]:
            centre = rng.integers(0, n)
            region.append(slice(max(centre - self.size // 2, 0), centre + (self.size + 1) // 2))
        x[tuple(region)] = 0.0
        return x


@dataclasses.dataclass(frozen=True)
class Normalize:
    """``(x - mean) / std`` per channel, with given statistics (``data.normalize`` uses
    the training split's)."""

    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return ((x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(
            np.float32
        )


#: ``name`` in a ``data.transforms`` entry -> (the transform, its fixed arguments).
TRANSFORMS: dict[str, tuple[type, dict]] = {
    "random_crop": (RandomCrop, {}),
    "hflip": (Flip, {"axis": 1}),
    "vflip": (Flip, {"axis": 0}),
    "jitter": (Jitter, {}),
    "cutout": (Cutout, {}),
    "normalize": (Normalize, {}),
}


def from_config(entries: Sequence[Mapping[str, Any]] | None) -> tuple:
    """``data.transforms``: a list of ``{name: ..., <arguments>}``; one line naming the
    entry when a name or an argument is unknown."""
    pipeline = []
    for i, entry in enumerate(entries or ()):
        entry = dict(entry)
        name = entry.pop("name", None)
        if name not in TRANSFORMS:
            raise ValueError(
                f"`transforms[{i}].name` (={name!r}) must be one of {', '.join(TRANSFORMS)}"
            )
        kind, fixed = TRANSFORMS[name]
        takes = {f.name for f in dataclasses.fields(kind)} - set(fixed)
        unknown = sorted(set(entry) - takes)
        if unknown:
            raise ValueError(
                f"`transforms[{i}]` ({name}) has {', '.join(unknown)}; it takes: "
                f"{', '.join(sorted(takes)) or 'nothing'}"
            )
        pipeline.append(kind(**fixed, **entry))
    return tuple(pipeline)


def apply(pipeline: Sequence, x: np.ndarray, *, seed: int, epoch: int, index: int) -> np.ndarray:
    """Example ``index`` of ``epoch`` through every transform of ``pipeline``, in order."""
    if not pipeline:
        return x
    rng = np.random.default_rng([seed, epoch, index, 0xA06])
    for transform in pipeline:
        x = transform(x, rng)
    return np.ascontiguousarray(x, np.float32)


#: ``data.mix``'s names: batch-level mixing of two examples and their labels.
MIXES = ("mixup", "cutmix")


@dataclasses.dataclass(frozen=True)
class Mix:
    """Mixup (``lam * x + (1 - lam) * x'``) or CutMix (a box of ``x'`` pasted into ``x``,
    ``lam`` the share of ``x`` left) with ``lam ~ Beta(alpha, alpha)`` drawn once per
    step, each example paired with the one a permutation of the global batch gives; the
    labels become ``lam * onehot(y) + (1 - lam) * onehot(y')``."""

    name: str = "mixup"
    alpha: float = 0.2

    def draw(
        self, seed: int, step: int, rows: int
    ) -> tuple[float, np.ndarray, np.random.Generator]:
        """``lam``, the partner of each row of the global batch and the generator the box
        is drawn from: functions of (seed, step)."""
        rng = np.random.default_rng([seed, step, 0x313])
        return float(rng.beta(self.alpha, self.alpha)), rng.permutation(rows), rng

    def __call__(self, x, partner, lam, rng) -> tuple[np.ndarray, float]:
        """The mixed batch and the share of ``x`` in it (CutMix's box is clipped)."""
        if self.name == "mixup":
            return (lam * x + (1 - lam) * partner).astype(np.float32), lam
        spatial = x.shape[1:-1]
        side = np.sqrt(1 - lam)
        region, area = [slice(None)], 1.0
        for n in spatial:
            cut, centre = int(round(n * side)), int(rng.integers(0, n))
            lo, hi = max(centre - cut // 2, 0), min(centre + (cut + 1) // 2, n)
            region.append(slice(lo, hi))
            area *= (hi - lo) / n
        mixed = x.copy()
        mixed[tuple(region)] = partner[tuple(region)]
        return mixed, 1.0 - area


def mix_from_config(name: str | None, alpha: float = 0.2) -> Mix | None:
    """``data.mix`` (mixup, cutmix or null) and ``data.mix_alpha``; one line when wrong."""
    if name is None:
        return None
    if name not in MIXES:
        raise ValueError(f"`mix` (={name!r}) must be one of {', '.join(MIXES)} or null")
    if not alpha > 0:
        raise ValueError(f"`mix_alpha` (={alpha}) must be > 0")
    return Mix(name, float(alpha))
