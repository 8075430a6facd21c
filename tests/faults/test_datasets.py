"""Data files: a malformed dataset never trains; each problem is one
line naming the file, from Python (DataError) and from the command line (exit 2)."""

import gzip
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest

from jaxconv.data import DataError, files, load_dataset

from .conftest import cli, error_lines

IMAGES, LABELS, TEST_IMAGES, TEST_LABELS = files.IDX_FILES


def write_mnist(
    directory, *, train_shape=(12, 28, 28), test_shape=(5, 28, 28), train_labels=None, seed=0
):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    labels = (
        rng.integers(0, 10, train_shape[0]) if train_labels is None else np.asarray(train_labels)
    )
    files.write_idx(directory / IMAGES, rng.integers(0, 256, train_shape))
    files.write_idx(directory / LABELS, labels)
    files.write_idx(directory / TEST_IMAGES, rng.integers(0, 256, test_shape))
    files.write_idx(directory / TEST_LABELS, rng.integers(0, 10, test_shape[0]))
    return directory


def load(root):
    return load_dataset("mnist", root=root, val_fraction=0.0, download=False)


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_image_shapes_must_agree_across_splits(tmp_path):
    d = write_mnist(tmp_path / "mnist", train_shape=(12, 20, 20))
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert one_line(err) == (
        f"image shapes differ between the splits: {d / IMAGES} (20, 20), {d / TEST_IMAGES} (28, 28)"
    )


def test_labels_must_be_in_the_format_class_range(tmp_path):
    labels = [0] * 11 + [255]
    d = write_mnist(tmp_path / "mnist", train_labels=labels)
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert one_line(err) == f"{d / LABELS}: label 255 is outside [0, 10) of this format"


def test_label_and_image_counts_must_match(tmp_path):
    d = write_mnist(tmp_path / "mnist", train_labels=[1] * 11)
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert one_line(err) == f"{d / LABELS} holds 11 labels for the 12 images of {d / IMAGES}"


def test_empty_split_is_refused(tmp_path):
    d = write_mnist(tmp_path / "mnist", test_shape=(0, 28, 28))
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert one_line(err) == f"{d / TEST_IMAGES} holds no images"


def test_num_classes_is_the_format_count_not_the_largest_label(tmp_path):
    write_mnist(tmp_path / "mnist", train_labels=[0, 1] * 6)
    assert load(tmp_path).num_classes == 10


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as handle:
        handle.write(data)
    return buffer.getvalue()


IDX_HEADER = bytes([0, 0, 8, 3]) + struct.pack(">3I", 12, 28, 28)
PIXELS = np.random.default_rng(1).integers(0, 256, 12 * 28 * 28, dtype=np.uint8).tobytes()


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\x89PNG garbage " * 20, "not a readable gzip file"),
        (_gzip(IDX_HEADER + PIXELS)[:2000], "a truncated gzip file"),
        (IDX_HEADER + PIXELS, "not a readable gzip file"),  # raw IDX named .gz
        (_gzip(bytes([0, 0, 8, 3, 0, 0])), "IDX header truncated (6 bytes, a 3-D header takes 16)"),
        (_gzip(IDX_HEADER + bytes(100)), "header says shape (12, 28, 28) but holds 100 values"),
        (b"", "is empty"),
        (_gzip(b""), "is not an IDX file (bad magic number)"),
    ],
    ids=[
        "garbage",
        "truncated-gzip",
        "not-gzipped",
        "6-byte-header",
        "count-mismatch",
        "empty",
        "empty-gzip",
    ],
)
def test_broken_idx_files_are_one_line_naming_the_file(tmp_path, content, message):
    d = write_mnist(tmp_path / "mnist")
    (d / IMAGES).write_bytes(content)
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert message in one_line(err) and str(d / IMAGES) in one_line(err)


def write_cifar(root, labels_per_batch=3):
    directory = root / "cifar10" / files.CIFAR_DIR
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in (*files.CIFAR_TRAIN, files.CIFAR_TEST):
        files.write_cifar_batch(
            directory / name, rng.integers(0, 256, (3, 32, 32, 3)), rng.integers(0, 10, 3)
        )
    return directory


@pytest.mark.parametrize(
    "broken,message",
    [
        (
            lambda b: b.write_bytes(b"garbage that is no pickle"),
            "is not a readable CIFAR-10 batch (UnpicklingError",
        ),
        (lambda b: b.write_bytes(b.read_bytes()[:100]), "is not a readable CIFAR-10 batch"),
        (
            lambda b: b.write_bytes(
                pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2]})
            ),
            "holds 2 labels for the 3 images of",
        ),
        (
            lambda b: b.write_bytes(
                pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2, 10]})
            ),
            "label 10 is outside [0, 10) of this format",
        ),
    ],
)
def test_broken_cifar_batches_are_one_line_naming_the_file(tmp_path, broken, message):
    directory = write_cifar(tmp_path)
    broken(directory / "data_batch_2")
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", root=tmp_path, download=False)
    assert message in one_line(err) and str(directory / "data_batch_2") in one_line(err)


def test_cifar_archive_with_a_parent_path_member_is_refused(tmp_path):
    base = tmp_path / "cifar10"
    base.mkdir()
    archive = base / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = b"escaped"
        info = tarfile.TarInfo("../escape.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", root=tmp_path, download=False)
    assert f"{archive}: cannot extract" in one_line(err) and "escape.txt" in one_line(err)
    assert not (tmp_path / "escape.txt").exists()


def test_command_line_reports_a_broken_file_in_one_line(tmp_path):
    d = write_mnist(tmp_path / "data" / "mnist", train_shape=(40, 28, 28))
    (d / TEST_LABELS).write_bytes(b"garbage")
    proc = cli(
        [
            "data=mnist",
            "model=lenet5",
            f"data.root={tmp_path / 'data'}",
            "data.download=false",
            "trainer.max_steps=2",
            "trainer.batch_size=8",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert (
        line.startswith("jaxconv-train: error: ")
        and f"{d / TEST_LABELS}: not a readable gzip file" in line
    )
    assert not (tmp_path / "run").exists()
