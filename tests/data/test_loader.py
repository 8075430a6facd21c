"""The Grain loader: the same batches whatever the number of workers, equal to the order
and augmentation computed directly, and continued from a saved state or a step."""

import numpy as np
import pytest

from jaxconv.data import augment, batch_indices, load_dataset
from jaxconv.data.loader import StepBatch, TrainBatches

STEPS = 14  # more than one epoch of 150 examples in batches of 16 (9 steps an epoch)


@pytest.fixture(scope="module")
def batches():
    d = load_dataset("digits", val_fraction=0.0, limit_train=150)
    return StepBatch(d.x_train, d.y_train, batch_size=16, seed=5, rows=(0, 16), shift=1,
                     flip=True)  # fmt: skip


def _take(loader, start, count, state=None):
    loader.start(start, state)
    try:
        out = [loader.next() for _ in range(count)]
        return out, loader.state()
    finally:
        loader.close()


def test_batches_are_the_same_whatever_the_workers(batches):
    # Computed here without Grain: the epoch's order and the step's augmentation.
    want = []
    for step in range(STEPS):
        index = batch_indices(150, 16, 5, *divmod(step, 9))
        x = augment(batches.x[index], shift=1, flip=True, seed=5, step=step, rows=(0, 16))
        want.append((x, batches.y[index]))
    for workers in (0, 1, 2):
        got, _ = _take(TrainBatches(batches, STEPS, workers=workers), 0, STEPS)
        for (x, y), (wx, wy) in zip(got, want):
            np.testing.assert_array_equal(x, wx)
            np.testing.assert_array_equal(y, wy)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_saved_state_continues_mid_epoch(batches, workers):
    every, _ = _take(TrainBatches(batches, STEPS, workers=0), 0, STEPS)
    _, state = _take(TrainBatches(batches, STEPS, workers=workers), 0, 5)  # mid-epoch
    for saved in (state, None):  # None: a checkpoint without a data state starts at step 5
        rest, _ = _take(TrainBatches(batches, STEPS, workers=workers), 5, STEPS - 5, saved)
        for (x, y), (wx, wy) in zip(rest, every[5:]):
            np.testing.assert_array_equal(x, wx)
            np.testing.assert_array_equal(y, wy)
    # Saved with 2 workers, continued with none (or the other way round): the same batches.
    other, _ = _take(TrainBatches(batches, STEPS, workers=2 - workers), 5, 3, state)
    np.testing.assert_array_equal(other[0][0], every[5][0])


def test_bad_workers_are_refused(batches):
    with pytest.raises(ValueError, match=r"`workers` \(=-1\) must be an int >= 0"):
        TrainBatches(batches, STEPS, workers=-1)
