"""Readers for the standard dataset files: IDX (MNIST, Fashion-MNIST) and the CIFAR-10
python batches; downloads with checksum verification when online.

Nothing is unpickled but the CIFAR batch format, through an unpickler that only admits
the numpy types those files contain, and only from under ``data.root``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import shutil
import struct
import tarfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np


class DataError(RuntimeError):
    """A dataset is missing or malformed; the message names the path and files expected."""


IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
SOURCES = {
    "mnist": (
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        dict(
            zip(
                IDX_FILES,
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
            )
        ),
    ),
    "fashion_mnist": (
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        dict(
            zip(
                IDX_FILES,
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            )
        ),
    ),
    "cifar10": (
        ("https://www.cs.toronto.edu/~kriz/",),
        {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
    ),
}
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(name: str, directory: Path, timeout: float = 30.0) -> None:
    """Fetch the files of ``name`` into ``directory``, verifying each MD5; atomic per file."""
    mirrors, files = SOURCES[name]
    directory.mkdir(parents=True, exist_ok=True)
    for filename, checksum in files.items():
        target = directory / filename
        if target.exists():
            continue
        errors = []
        for mirror in mirrors:
            partial = target.with_suffix(target.suffix + ".part")
            try:
                with (
                    urllib.request.urlopen(mirror + filename, timeout=timeout) as response,
                    open(partial, "wb") as out,
                ):
                    shutil.copyfileobj(response, out)
                got = md5(partial)
                if got != checksum:
                    raise DataError(
                        f"checksum mismatch for {mirror + filename}: md5 {got}, expected {checksum}"
                    )
                partial.replace(target)
                break
            except (OSError, DataError) as err:  # URLError is an OSError
                partial.unlink(missing_ok=True)
                errors.append(f"{mirror + filename}: {err}")
        else:
            raise DataError("; ".join(errors))


def _missing_message(name: str, directory: Path, expected, reason: str) -> str:
    return (
        f"{name} not found: expected {', '.join(expected)} in {directory} "
        f"(download failed: {reason}). Put the standard files there or run once online."
    )


def ensure_files(
    name: str, directory: Path, expected: tuple[str, ...], *, allow_download: bool = True
) -> None:
    if all((directory / f).exists() for f in expected):
        return
    reason = "downloads disabled"
    if allow_download:
        try:
            download(name, directory)
            if all((directory / f).exists() for f in expected):
                return
        except DataError as err:
            reason = str(err)
    raise DataError(_missing_message(name, directory, expected, reason))


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in .gz; DataError if that fails."""
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty")
        if path.suffix != ".gz":
            return path.read_bytes()
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        what = "a truncated gzip file" if isinstance(err, EOFError) else "not a readable gzip file"
        raise DataError(f"{path}: {what} ({err})") from err


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip or raw): magic ``0x0000 <type> <ndim>``, big-endian sizes."""
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise DataError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataError(
            f"{path}: IDX header truncated ({len(data)} "
            f"bytes, a {ndim}-D header takes {4 + 4 * ndim})"
        )
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    payload = len(data) - 4 - 4 * ndim
    itemsize = np.dtype(dtypes[data[2]]).itemsize
    if payload != int(np.prod(shape)) * itemsize:
        raise DataError(f"{path}: header says shape {shape} but holds {payload // itemsize} values")
    array = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    return array.reshape(shape).astype(array.dtype.newbyteorder("="))


def check_splits(
    images: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    num_classes: int,
    *,
    sample_ndim: int,
) -> None:
    """Validate a file dataset after reading: ``images``/``labels`` map each file's path to
    its array, train first, in matching order. Each violation is one line naming the file."""
    shapes = {}
    for (image_file, x), (label_file, y) in zip(images.items(), labels.items()):
        if x.ndim != sample_ndim + 1:
            raise DataError(
                f"{image_file}: images have shape {x.shape}, "
                f"expected {sample_ndim + 1} axes (N, ...)"
            )
        if len(x) == 0:
            raise DataError(f"{image_file} holds no images")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"{label_file} holds {y.shape[0] if y.ndim else 0} labels for the "
                f"{len(x)} images of {image_file}"
            )
        if y.min() < 0 or y.max() >= num_classes:
            bad = int(y[(y < 0) | (y >= num_classes)][0])
            raise DataError(
                f"{label_file}: label {bad} is outside [0, {num_classes}) of this format"
            )
        shapes[image_file] = x.shape[1:]
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{f} {s}" for f, s in shapes.items())
        raise DataError(f"image shapes differ between the splits: {listed}")


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzipped IDX file; the format's own writer, for tests."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


#: Classes of each file format (MNIST and Fashion-MNIST: 10 digits or garments; CIFAR-10).
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10}


def load_idx_dataset(name: str, root: Path, allow_download: bool = True):
    directory = Path(root) / name
    ensure_files(name, directory, IDX_FILES, allow_download=allow_download)
    paths = [directory / f for f in IDX_FILES]
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
    check_splits(
        {paths[0]: x_train, paths[2]: x_test},
        {paths[1]: y_train, paths[3]: y_test},
        NUM_CLASSES[name],
        sample_ndim=2,
    )
    return x_train[..., None], y_train, x_test[..., None], y_test


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR-10 python batch holds: dicts, lists, bytes, numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refusing to unpickle {module}.{name}: not part of the CIFAR-10 format")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: ``(N, 32, 32, 3)`` uint8 images and ``N`` labels in [0, 10)."""
    raw = _read_bytes(path)
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except DataError:
        raise
    except Exception as err:  # garbage or truncated: unpickling fails in many ways
        raise DataError(
            f"{path} is not a readable CIFAR-10 batch ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch (no b'data' / b'labels')")
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        raise DataError(f"{path}: data or labels are not numbers ({err})") from err
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: data has shape {data.shape}, expected (N, 3072)")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    check_splits({path: images}, {path: labels}, NUM_CLASSES["cifar10"], sample_ndim=3)
    return images, labels


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write a batch in the CIFAR-10 python format (for tests)."""
    data = np.ascontiguousarray(np.asarray(images, np.uint8).transpose(0, 3, 1, 2)).reshape(
        len(images), -1
    )
    with open(path, "wb") as handle:
        pickle.dump({b"data": data, b"labels": [int(v) for v in labels]}, handle, protocol=2)


def load_cifar10(root: Path, allow_download: bool = True):
    base = Path(root) / "cifar10"
    directory = base / CIFAR_DIR
    expected = (*CIFAR_TRAIN, CIFAR_TEST)
    if not all((directory / f).exists() for f in expected):
        archive = base / "cifar-10-python.tar.gz"
        if not archive.exists():
            ensure_files(
                "cifar10", base, ("cifar-10-python.tar.gz",), allow_download=allow_download
            )
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(base, filter="data")  # refuses absolute paths, "..", links out
        except (
            tarfile.TarError,
            OSError,
            EOFError,
            zlib.error,
        ) as err:  # FilterError is a TarError
            raise DataError(f"{archive}: cannot extract ({type(err).__name__}: {err})") from err
    if not all((directory / f).exists() for f in expected):
        raise DataError(_missing_message("cifar10", directory, expected, "archive incomplete"))
    parts = [read_cifar_batch(directory / f) for f in CIFAR_TRAIN]
    x_test, y_test = read_cifar_batch(directory / CIFAR_TEST)
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        x_test,
        y_test,
    )
