"""data.transforms: each augmentation against what it must compute, drawn from (seed, epoch,
example index) alone, so a process loading part of a batch augments its rows alike."""

import numpy as np
import pytest

from jaxconv.data import load_dataset
from jaxconv.data import transforms as T
from jaxconv.data.loader import StepBatch

IMAGE = np.random.default_rng(0).random((6, 5, 3)).astype(np.float32)


def _run(entries, index=0, epoch=0, x=IMAGE):
    return T.apply(T.from_config(entries), x, seed=1, epoch=epoch, index=index)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    padded = np.pad(IMAGE, ((2, 2), (2, 2), (0, 0)))
    offsets = set()
    for index in range(30):
        out = _run([{"name": "random_crop", "padding": 2}], index)
        hits = [(i, j) for i in range(5) for j in range(5)
                if np.array_equal(out, padded[i : i + 6, j : j + 5])]  # fmt: skip
        assert hits, index
        offsets.add(hits[0])
    assert len(offsets) > 5  # the offsets vary with the example


def test_flips_cutout_jitter_and_normalize():
    np.testing.assert_array_equal(_run([{"name": "hflip", "p": 1.0}]), IMAGE[:, ::-1])
    np.testing.assert_array_equal(_run([{"name": "vflip", "p": 1.0}]), IMAGE[::-1])
    np.testing.assert_array_equal(_run([{"name": "hflip", "p": 0.0}]), IMAGE)
    out = _run([{"name": "cutout", "size": 2}], index=4)
    zeroed = (out == 0).all(-1) & (IMAGE != 0).all(-1)
    assert 1 <= zeroed.sum() <= 4 and np.array_equal(out[~zeroed], IMAGE[~zeroed])
    rows, cols = np.nonzero(zeroed)
    assert rows.max() - rows.min() <= 1 and cols.max() - cols.min() <= 1  # one square
    out = _run([{"name": "jitter", "brightness": 0.3, "contrast": 0.2}], index=2)
    slope, intercept = np.polyfit(IMAGE.ravel(), out.ravel(), 1)  # affine in the pixels
    np.testing.assert_allclose(out, slope * IMAGE + intercept, atol=1e-5)
    assert 0.7 * 0.8 <= slope <= 1.3 * 1.2 and slope != 1.0
    out = _run([{"name": "normalize", "mean": [0.5, 0.4, 0.3], "std": [2.0, 1.0, 0.5]}])
    np.testing.assert_allclose(out, (IMAGE - [0.5, 0.4, 0.3]) / [2.0, 1.0, 0.5], atol=1e-6)


def test_draws_depend_on_seed_epoch_and_example_only():
    entries = [{"name": "random_crop", "padding": 3}, {"name": "hflip"}, {"name": "jitter"}]
    same = _run(entries, index=7, epoch=2)
    np.testing.assert_array_equal(same, _run(entries, index=7, epoch=2))
    assert not np.array_equal(same, _run(entries, index=8, epoch=2))
    assert not np.array_equal(same, _run(entries, index=7, epoch=3))
    # Two processes holding half a batch each augment their rows as one process would.
    d = load_dataset("digits", val_fraction=0.0, limit_train=64)
    pipeline = T.from_config(entries)

    def rows(first, count):
        return StepBatch(d.x_train, d.y_train, 16, 4, (first, count), transforms=pipeline)(5)

    whole = rows(0, 16)
    np.testing.assert_array_equal(np.concatenate([rows(0, 8)["x"], rows(8, 8)["x"]]), whole["x"])


def test_bad_entries_are_one_line():
    with pytest.raises(ValueError, match=r"`transforms\[1\].name` \(='blur'\) must be one of"):
        T.from_config([{"name": "hflip"}, {"name": "blur"}])
    with pytest.raises(ValueError, match=r"`transforms\[0\]` \(cutout\) has width; it takes: size"):
        T.from_config([{"name": "cutout", "width": 3}])
