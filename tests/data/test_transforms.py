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


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_mixup_and_cutmix_mix_pixels_and_labels_by_the_same_share(name):
    d = load_dataset("digits", val_fraction=0.0, limit_train=64)
    mix = T.mix_from_config(name, 1.0)

    def rows(first, count):
        return StepBatch(d.x_train, d.y_train, 16, 4, (first, count), mix=mix, num_classes=10)(3)

    whole = rows(0, 16)
    plain = StepBatch(d.x_train, d.y_train, 16, 4, (0, 16))(3)  # the same batch, unmixed
    lam, pairs, _ = mix.draw(4, 3, 16)
    y = whole["y"]
    np.testing.assert_allclose(y.sum(1), 1.0, rtol=1e-6)
    eye = np.eye(10, dtype=np.float32)
    share = y[np.arange(16), plain["y"]]  # the first label's weight (both, if they agree)
    for k in range(16):
        own, other = plain["y"][k], plain["y"][pairs[k]]
        if own == other:
            np.testing.assert_allclose(y[k], eye[own], rtol=1e-6)
            continue
        s = share[k]
        np.testing.assert_allclose(y[k], s * eye[own] + (1 - s) * eye[other], rtol=1e-5)
        if name == "mixup":
            assert s == pytest.approx(lam)
            np.testing.assert_allclose(whole["x"][k], s * plain["x"][k] + (1 - s) *
                                       plain["x"][pairs[k]], rtol=1e-5, atol=1e-6)  # fmt: skip
        else:  # each pixel is one image's or the other's; the other's lie in a box of 1 - s
            mine, theirs = plain["x"][k], plain["x"][pairs[k]]
            assert (np.isclose(whole["x"][k], mine) | np.isclose(whole["x"][k], theirs)).all()
            taken = np.nonzero(~np.isclose(whole["x"][k], mine).all(-1))
            if len(taken[0]):
                box = np.prod([axis.max() - axis.min() + 1 for axis in taken]) / 64
                assert box <= 1 - s + 1e-6 and s < 1
    # Split over two processes: the same rows (partners are loaded where needed).
    halves = np.concatenate([rows(0, 8)["x"], rows(8, 8)["x"]])
    np.testing.assert_array_equal(halves, whole["x"])
    with pytest.raises(ValueError, match=r"`mix` \(='blend'\) must be one of mixup, cutmix"):
        T.mix_from_config("blend")
    with pytest.raises(ValueError, match=r"`mix_alpha` \(=0\) must be > 0"):
        T.mix_from_config("mixup", 0)
