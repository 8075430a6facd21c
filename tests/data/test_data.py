"""Datasets, file readers (on files the tests write), batching and augmentation."""

import gzip
import pickle

import numpy as np
import pytest

from jaxconv.data import DataError, augment, batch_indices, epoch_order, files, load_dataset
from jaxconv.data.batching import random_shift


def test_mnist1d_is_generated_with_the_paper_defaults():
    d = load_dataset("mnist1d", val_fraction=0.0, normalize=False)
    assert d.x_train.shape == (4000, 40, 1) and d.x_test.shape == (1000, 40, 1)
    assert sorted(np.unique(d.y_train)) == list(range(10))
    again = load_dataset("mnist1d", val_fraction=0.0, normalize=False)
    np.testing.assert_array_equal(d.x_train, again.x_train)  # generated deterministically
    small = load_dataset("mnist1d", num_samples=500, final_seq_length=30, val_fraction=0.2)
    assert small.x_train.shape == (320, 30, 1) and len(small.x_val) == 80
    with pytest.raises(ValueError, match="has 'colour', which dataset 'mnist1d' does not take"):
        load_dataset("mnist1d", colour=3)
    with pytest.raises(ValueError, match="has 'bogus', which dataset 'shapes' does not take; "):
        load_dataset("shapes", bogus=1)  # refused before generating


def test_digits_split_is_fixed_and_stratified():
    d = load_dataset("digits", val_fraction=0.0, normalize=False)
    assert d.x_train.shape == (1437, 8, 8, 1) and d.x_test.shape == (360, 8, 8, 1)
    counts = np.bincount(d.y_test)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    np.testing.assert_array_equal(
        load_dataset("digits", val_fraction=0.0, normalize=False).y_test, d.y_test
    )


def test_shapes_dataset():
    d = load_dataset(
        "shapes", num_train=80, num_test=40, size=12, val_fraction=0.25, normalize=False
    )
    assert d.x_train.shape == (60, 12, 12, 1) and d.num_classes == 4
    assert d.class_names == ("square", "circle", "triangle", "cross")
    clean = load_dataset(
        "shapes", num_train=40, num_test=4, noise=0.0, val_fraction=0.0, normalize=False
    )
    ink = clean.x_train.reshape(40, -1).sum(1)
    assert ink.min() > 3  # every image has a shape drawn in it


def test_normalization_uses_train_statistics():
    d = load_dataset("digits", val_fraction=0.1)
    np.testing.assert_allclose(d.x_train.mean(), 0.0, atol=1e-4)
    np.testing.assert_allclose(d.x_train.std(), 1.0, atol=1e-2)
    assert abs(d.x_test.mean()) < 0.1


def _write_idx_dataset(directory, n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test),
    }
    for name, array in arrays.items():
        files.write_idx(directory / name, array)
    return arrays


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_loader_reads_the_standard_files(tmp_path, name):
    arrays = _write_idx_dataset(tmp_path / name)
    d = load_dataset(name, root=tmp_path, val_fraction=0.0, normalize=False, download=False)
    assert d.x_train.shape == (12, 28, 28, 1)
    np.testing.assert_allclose(
        d.x_train[..., 0], arrays["train-images-idx3-ubyte.gz"] / 255.0, atol=1e-7
    )
    np.testing.assert_array_equal(d.y_test, arrays["t10k-labels-idx1-ubyte.gz"])


def test_idx_header_is_parsed_not_assumed(tmp_path):
    # a hand-written header: magic 0x00000803, dims 2 x 3 x 4, big-endian
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]) + bytes(range(24))
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(raw)
    np.testing.assert_array_equal(files.read_idx(path), np.arange(24).reshape(2, 3, 4))
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as handle:
        handle.write(bytes([0, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 3, 0, 0, 0, 4]) + bytes(10))
    with pytest.raises(DataError, match="header says shape \\(9, 3, 4\\) but holds 10 values"):
        files.read_idx(bad)


def test_missing_files_name_the_path_and_files(tmp_path):
    with pytest.raises(
        DataError,
        match=f"mnist not found: expected train-images-idx3-ubyte.gz, .* in {tmp_path}/mnist",
    ):
        load_dataset("mnist", root=tmp_path, download=False)


def test_cifar10_reader(tmp_path):
    directory = tmp_path / "cifar10" / files.CIFAR_DIR
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in (*files.CIFAR_TRAIN, files.CIFAR_TEST):
        images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, 3)
        files.write_cifar_batch(directory / name, images, labels)
        batches[name] = (images, labels)
    d = load_dataset("cifar10", root=tmp_path, val_fraction=0.0, normalize=False, download=False)
    assert d.x_train.shape == (15, 32, 32, 3) and d.x_test.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(d.x_test, batches[files.CIFAR_TEST][0] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(d.y_train[:3], batches["data_batch_1"][1])
    # the red channel of the first pixel comes from the first 1024 bytes (CHW order)
    raw = pickle.load(open(directory / "data_batch_1", "rb"), encoding="bytes")[b"data"]
    assert raw[0, 0] == batches["data_batch_1"][0][0, 0, 0, 0]


def test_cifar_unpickler_refuses_other_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to unpickle (posix|os).system"):
        files.read_cifar_batch(path)


def test_batching_is_a_pure_function_of_seed_and_epoch():
    a = [batch_indices(100, 32, seed=3, epoch=2, step_in_epoch=i) for i in range(3)]
    b = [batch_indices(100, 32, seed=3, epoch=2, step_in_epoch=i) for i in range(3)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert len(np.unique(np.concatenate(a))) == 96  # no repeats within an epoch
    assert not np.array_equal(epoch_order(100, 3, 2), epoch_order(100, 3, 3))
    assert not np.array_equal(epoch_order(100, 3, 2), epoch_order(100, 4, 2))


def test_random_shift_moves_content_by_at_most_max_shift():
    x = np.zeros((50, 20, 1), np.float32)
    x[:, 10] = 1.0
    shifted = random_shift(x, 3, np.random.default_rng(0))
    where = shifted[..., 0].argmax(axis=1)
    assert set(where) <= set(range(7, 14)) and len(set(where)) > 3
    np.testing.assert_array_equal(shifted.sum(axis=(1, 2)), 1.0)
    img = np.zeros((8, 6, 6, 2), np.float32)
    img[:, 2, 3] = 1
    out = augment(img, shift=1, flip=True, seed=0, step=5)
    np.testing.assert_array_equal(out, augment(img, shift=1, flip=True, seed=0, step=5))
    assert out.shape == img.shape and (out.sum(axis=(1, 2, 3)) == 2).all()


def test_file_datasets_take_no_generator_options(tmp_path):
    with pytest.raises(
        ValueError, match="has 'size', which dataset 'cifar10' does not take; it takes: nothing"
    ):
        load_dataset(
            "cifar10", root=tmp_path, size=8, download=False
        )  # refused before any file access
