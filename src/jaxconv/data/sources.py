"""Datasets of one's own: a folder of images per class, array files, ArrayRecord shards,
or any object with ``__len__`` and ``__getitem__``.

Each becomes a :class:`~jaxconv.data.Dataset` whose ``x_*`` are :class:`LazyImages`:
array-likes that decode (or read from a memory map or a shard) only the rows a batch
asks for, so a dataset larger than memory trains like the built-in ones. Labels are read
whole (they are small). Every file is checked before training starts: a file that cannot
be decoded, a non-image, an empty class folder, an image of another channel count or
size is one :class:`~jaxconv.data.DataError` naming the file, or, with
``on_bad_file="skip"``, left out and listed in :attr:`Dataset.skipped`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from jaxconv.data.files import DataError

#: What an image folder's files may be (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: The splits a folder, an .npz or an ArrayRecord directory may hold.
SPLITS = ("train", "val", "test")
ON_BAD_FILE = ("error", "skip")
#: The header of one packed example: label, height, width, channels (little-endian int32).
INDEX = "index.npz"
_HEADER = np.dtype("<i4")


def _bar(progress: bool, **options: Any) -> tqdm:
    """A progress bar on a terminal (``progress`` and stderr a tty), else a silent one."""
    return tqdm(disable=not (progress and sys.stderr.isatty()), leave=False, **options)


def decode_image(path: Path, size: Sequence[int] | None, channels: int | None) -> np.ndarray:
    """One image file as ``uint8 (H, W, C)``: converted to ``channels`` (1: grayscale, 3:
    RGB) when given, and when ``size`` is given scaled to cover ``(H, W)`` (aspect kept)
    and centre-cropped to it. Raises ValueError saying what is wrong with the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # the whole decode: a truncated file fails here
            if channels is not None:
                image = image.convert("L" if channels == 1 else "RGB")
            elif image.mode not in ("L", "RGB"):
                image = image.convert("RGB" if "A" in image.mode or image.mode == "P" else "L")
            if size is not None:
                image = _cover_and_crop(image, tuple(size))
            pixels = np.asarray(image, dtype=np.uint8)
    except UnidentifiedImageError:
        raise ValueError("is not an image Pillow can read") from None
    except (OSError, SyntaxError) as err:  # Pillow's truncated and corrupt files
        raise ValueError(f"cannot be decoded ({err})") from None
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _cover_and_crop(image, size: tuple[int, int]):
    from PIL import Image

    height, width = size
    scale = max(height / image.height, width / image.width)
    scaled = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(scaled, Image.Resampling.BILINEAR)
    left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


class LazyImages:
    """Rows of a dataset read on demand: ``x[i]``, ``x[a:b]``, ``x[index_array]`` give
    float32 arrays, scaled to [0, 1] from ``uint8`` and normalised when ``mean``/``std``
    are set; ``len``, ``shape``, ``dtype`` and ``ndim`` as for the whole array.

    ``read(i)`` returns example ``i``'s pixels (any dtype; ``uint8`` is divided by 255).
    ``moments`` (see :func:`example_moments`) spare :func:`channel_statistics` a pass.
    """

    def __init__(self, read: Callable[[int], np.ndarray], count: int, shape: Sequence[int],
                 moments: np.ndarray | None = None):  # fmt: skip
        self._read, self._count, self.example_shape = read, int(count), tuple(shape)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        #: Each example's per-channel sum and sum of squares, ``(count, 2, C)`` float64, when
        #: the source computed them while reading everything once (a scan, a pack).
        self.moments = moments

    def __len__(self) -> int:
        return self._count

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._count, *self.example_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.example_shape)

    dtype = np.dtype(np.float32)

    def example(self, i: int) -> np.ndarray:
        """Example ``i`` as float32, scaled and normalised."""
        x = scaled(self._read(int(i)))
        if self.mean is not None:
            x = ((x - self.mean) / self.std).astype(np.float32)
        return x

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple):  # rows first, then within each example
            rows, rest = index[0], index[1:]
            picked = self[rows]
            return picked[rest] if isinstance(rows, (int, np.integer)) else picked[:, *rest]
        if isinstance(index, (int, np.integer)):
            return self.example(range(self._count)[index])
        rows = np.arange(self._count)[index]
        out = np.empty((len(rows), *self.example_shape), np.float32)
        for k, i in enumerate(rows):
            out[k] = self.example(i)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:].astype(dtype or np.float32)

    def subset(self, rows: np.ndarray) -> LazyImages:
        """The rows ``rows`` of this one, as a new view (a split taken by index)."""
        rows = np.asarray(rows)
        moments = None if self.moments is None else self.moments[rows]
        view = LazyImages(
            lambda i: self._read(int(rows[i])), len(rows), self.example_shape, moments
        )
        view.mean, view.std = self.mean, self.std
        return view


@dataclasses.dataclass
class Split:
    """One split's examples before they become arrays: the pixels on demand and the labels."""

    x: LazyImages
    y: np.ndarray


def scaled(pixels: np.ndarray) -> np.ndarray:
    """Pixels as float32, ``uint8`` divided by 255."""
    pixels = np.asarray(pixels)
    x = pixels.astype(np.float32)
    if pixels.dtype == np.uint8:
        x /= 255.0
    return x


def example_moments(pixels: np.ndarray) -> np.ndarray:
    """One example's per-channel sum and sum of squares of its scaled pixels, ``(2, C)``
    float64: what :func:`channel_statistics` adds up."""
    values = scaled(pixels)
    values = values.reshape(-1, values.shape[-1]).astype(np.float64)
    return np.stack([values.sum(0), (values**2).sum(0)])


def channel_statistics(x: LazyImages, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``x`` (scaled, not yet normalised),
    accumulated in float64 over every example in order: from ``x.moments`` when the source
    recorded them, else by reading every example (the same sums either way)."""
    moments = x.moments
    if moments is None:
        moments = (
            example_moments(x._read(i))
            for i in _bar(progress, iterable=range(len(x)), desc="statistics", unit="image")
        )
    total = np.zeros((2, x.example_shape[-1]))
    for m in moments:
        total += m
    count = max(len(x), 1) * int(np.prod(x.example_shape[:-1]))
    mu = total[0] / count
    sigma = np.sqrt(np.maximum(total[1] / count - mu**2, 0.0)) + 1e-6
    return mu.astype(np.float32), sigma.astype(np.float32)


# ---- image folders ---------------------------------------------------------------------


@dataclasses.dataclass
class FolderScan:
    """What a scan of an image folder found: per split, the files and their labels."""

    classes: tuple[str, ...]
    files: dict[str, list[Path]]
    labels: dict[str, np.ndarray]
    shape: tuple[int, ...]
    skipped: list[str]
    moments: dict[str, np.ndarray]  # per file, see example_moments


def scan_image_folder(root: str | Path, *, image_size: Sequence[int] | None = None,
                      channels: int | None = None, on_bad_file: str = "error",
                      progress: bool = True, name: str = "data.root") -> FolderScan:  # fmt: skip
    """Find the classes and files of ``root`` and decode each file once: one subfolder per
    class, under ``train/``, ``val/``, ``test/`` when present (the classes are the
    training split's, sorted). Raises :class:`DataError` naming the first bad file, or
    skips such files with ``on_bad_file="skip"``; ``name`` is what errors call ``root``."""
    root = Path(root).expanduser()
    if on_bad_file not in ON_BAD_FILE:
        raise ValueError(f"`on_bad_file` (={on_bad_file!r}) must be one of {ON_BAD_FILE}")
    if not root.is_dir():
        raise DataError(f"{name}: {root} is not a directory")
    split_roots = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if split_roots and "train" not in split_roots:
        raise DataError(f"{name}: {root} has {', '.join(split_roots)}/ but no train/")
    split_roots = split_roots or {"train": root}
    classes = tuple(sorted(p.name for p in split_roots["train"].iterdir() if p.is_dir()))
    if not classes:
        raise DataError(f"{name}: {split_roots['train']} has no class folders")
    found = {s: _class_files(r, classes, name) for s, r in split_roots.items()}
    checker = _ImageChecker(image_size, channels, on_bad_file)
    files, labels, moments = {}, {}, {}
    total = sum(len(v) for v in found.values())
    with _bar(progress, total=total, desc="scanning", unit="image") as bar:
        for split, entries in found.items():
            checked = [(path, label, checker.check(path, bar)) for path, label in entries]
            kept = [entry for entry in checked if entry[2] is not None]
            files[split] = [path for path, _, _ in kept]
            labels[split] = np.array([label for _, label, _ in kept], np.int32)
            moments[split] = np.array([m for _, _, m in kept], np.float64)
    for split in files:
        for label, cls in enumerate(classes):
            if split == "train" and not np.any(labels[split] == label):
                raise DataError(f"{name}: class folder {split_roots[split] / cls} has no "
                                "usable image")  # fmt: skip
    return FolderScan(classes, files, labels, checker.shape, checker.skipped, moments)


def _class_files(split_root: Path, classes: tuple[str, ...], name: str) -> list[tuple[Path, int]]:
    names = sorted(p.name for p in split_root.iterdir() if p.is_dir())
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise DataError(
            f"{name}: {split_root} has class folders {', '.join(unknown)} that train/ does not have"
        )
    entries = []
    for label, cls in enumerate(classes):
        folder = split_root / cls
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"{name}: class folder {folder} is empty")
        entries += [(path, label) for path in files]
    return entries


class _ImageChecker:
    """Decodes each file once; the first good one fixes the shape every other must have.
    :meth:`check` returns a good file's :func:`example_moments`, None for a skipped one."""

    def __init__(self, image_size, channels, on_bad_file: str):
        self.size = None if image_size is None else tuple(int(s) for s in image_size)
        self.channels, self.on_bad_file = channels, on_bad_file
        self.shape: tuple[int, ...] | None = None
        self.first: Path | None = None
        self.skipped: list[str] = []

    def check(self, path: Path, bar) -> np.ndarray | None:
        bar.update(1)
        problem = moments = None
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            problem = f"is not a {'/'.join(s[1:].upper() for s in IMAGE_SUFFIXES)} file"
        else:
            try:
                pixels = decode_image(path, self.size, self.channels)
            except ValueError as err:
                problem = str(err)
            else:
                problem = self._compare(pixels.shape)
                moments = example_moments(pixels)
        if problem is None:
            self.first = self.first or path
            return moments
        if self.on_bad_file == "skip":
            self.skipped.append(str(path))
            return None
        raise DataError(f"{path} {problem} (data.on_bad_file=skip leaves such files out)")

    def _compare(self, shape: tuple[int, ...]) -> str | None:
        if self.shape is None:
            self.shape = shape
            return None
        if shape[-1] != self.shape[-1]:
            return (f"has {shape[-1]} channel(s), {self.first} has {self.shape[-1]}: set "
                    "data.channels to convert them all")  # fmt: skip
        if shape != self.shape:
            return (f"is {shape[1]}x{shape[0]}, {self.first} is {self.shape[1]}x{self.shape[0]}: "
                    "set data.image_size to resize them all")  # fmt: skip
        return None


def image_folder_splits(scan: FolderScan, image_size, channels) -> dict[str, Split]:
    """The scanned files of each split as :class:`Split`s decoding on demand."""
    size = None if image_size is None else tuple(int(s) for s in image_size)
    channels = channels or scan.shape[-1]

    def reader(paths: list[Path]):
        return lambda i: decode_image(paths[i], size, channels)

    return {
        split: Split(
            LazyImages(reader(paths), len(paths), scan.shape, scan.moments[split]),
            scan.labels[split],
        )
        for split, paths in scan.files.items()
    }


# ---- arrays ------------------------------------------------------------------------------


def array_splits(path: str | Path, num_classes: int | None = None) -> dict[str, Split]:
    """``x_train``, ``y_train``, ``x_test``, ``y_test`` (``x_val``, ``y_val`` optional)
    from an ``.npz`` file (read whole) or a folder of ``.npy`` files (memory-mapped: only
    the rows a batch asks for are read). Images are ``(N, *spatial, C)``, ``uint8`` (scaled
    to [0, 1]) or floating; labels integer class indices."""
    path = Path(path).expanduser()
    if path.is_dir():
        arrays = {p.stem: p for p in path.glob("*.npy")}
        opened = lambda file: np.load(file, mmap_mode="r")  # noqa: E731
    elif path.is_file():
        try:
            archive = np.load(path)
            arrays = {k: k for k in archive.files}
        except (OSError, ValueError) as err:
            raise DataError(
                f"data.path: {path} is not an .npz file numpy can read ({err})"
            ) from None
        opened = archive.__getitem__
    else:
        raise DataError(f"data.path: {path} does not exist (an .npz file or a folder of .npy)")
    required = ("x_train", "y_train", "x_test", "y_test")
    missing = [k for k in required if k not in arrays]
    if missing:
        raise DataError(
            f"{path} has no {', '.join(missing)} (it has {', '.join(sorted(arrays)) or 'nothing'})"
        )
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise DataError(f"{path} has only one of x_val and y_val")
    splits = {}
    for split in SPLITS:
        if f"x_{split}" not in arrays:
            continue
        x, y = opened(arrays[f"x_{split}"]), np.asarray(opened(arrays[f"y_{split}"]))
        _check_arrays(path, split, x, y, num_classes)
        splits[split] = Split(LazyImages(x.__getitem__, len(x), x.shape[1:]), y.astype(np.int32))
    return splits


def _check_arrays(path: Path, split: str, x, y, num_classes: int | None) -> None:
    if x.ndim < 3:
        raise DataError(f"{path}: x_{split} has shape {x.shape}; expected (N, *spatial, C)")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{path}: y_{split} has shape {y.shape}; expected ({len(x)},) labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y_{split} has dtype {y.dtype}; expected integer labels")
    if len(y) and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        allowed = f"0..{num_classes - 1}" if num_classes else "0 or more"
        raise DataError(f"{path}: y_{split} holds labels {y.min()}..{y.max()}; expected {allowed}")


# ---- ArrayRecord ---------------------------------------------------------------------------


def pack_image_folder(root: str | Path, out: str | Path, *, image_size=None, channels=None,
                      on_bad_file: str = "error", shard_size: int = 4096,
                      progress: bool = True, name: str = "IMAGE_FOLDER") -> dict:  # fmt: skip
    """Write an image folder as ArrayRecord shards, one set per split it has, in the order
    the ``image_folder`` source reads it, each record the decoded pixels (so training from
    the shards sees the very pixels the folder gives). Beside them, ``index.npz`` holds
    each split's labels and :func:`example_moments`, so that training reads neither from
    the records before it starts. Returns what ``meta.json`` records."""
    from array_record.python.array_record_module import ArrayRecordWriter

    scan = scan_image_folder(root, image_size=image_size, channels=channels,
                             on_bad_file=on_bad_file, progress=progress, name=name)  # fmt: skip
    splits = image_folder_splits(scan, image_size, channels)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total = sum(len(s.y) for s in splits.values())
    shards: dict[str, list[str]] = {}
    with _bar(progress, total=total, desc="packing", unit="image") as bar:
        for split, part in splits.items():
            shards[split] = []
            for first in range(0, len(part.y), shard_size):
                shard = f"{split}-{len(shards[split]):05d}.array_record"
                writer = ArrayRecordWriter(str(out / shard), "group_size:1")
                for i in range(first, min(first + shard_size, len(part.y))):
                    writer.write(_encode(part.x._read(i), int(part.y[i])))
                    bar.update(1)
                writer.close()
                shards[split].append(shard)
    counts = {s: int(len(p.y)) for s, p in splits.items()}
    index = {f"{s}_labels": p.y for s, p in splits.items()}
    index.update({f"{s}_moments": p.x.moments for s, p in splits.items()})
    np.savez(out / INDEX, **index)
    meta = {"classes": list(scan.classes), "shape": list(scan.shape), "shards": shards,
            "counts": counts, "skipped": scan.skipped, "index": INDEX}  # fmt: skip
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def _encode(pixels: np.ndarray, label: int) -> bytes:
    header = np.array([label, *pixels.shape], _HEADER)
    return header.tobytes() + np.ascontiguousarray(pixels, np.uint8).tobytes()


def _decode(record: bytes) -> tuple[np.ndarray, int]:
    header = np.frombuffer(record[:16], _HEADER)
    pixels = np.frombuffer(record[16:], np.uint8).reshape(header[1:])
    return pixels, int(header[0])


def array_record_splits(root: str | Path) -> tuple[dict[str, Split], tuple[str, ...]]:
    """The splits of a directory written by :func:`pack_image_folder`, read through
    Grain's ``ArrayRecordDataSource``; each shard is opened and its records counted
    before training (an unreadable file is one :class:`DataError` naming it)."""
    import grain

    root = Path(root).expanduser()
    meta_path = root / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        classes, shape, shard_names = tuple(meta["classes"]), tuple(meta["shape"]), meta["shards"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"data.root: {meta_path} is not a jaxconv-data pack meta.json ({err})"
        ) from None
    splits = {}
    for split, names in shard_names.items():
        paths = [root / name for name in names]
        for path in paths:
            _check_shard(path)
        source = grain.sources.ArrayRecordDataSource([str(p) for p in paths])
        labels, moments = _index(root, meta, split, len(source))
        if labels is None:  # a pack without index.npz: read the labels from the records
            labels = np.array([_decode(source[i])[1] for i in range(len(source))], np.int32)
        read = lambda i, s=source: _decode(s[i])[0]  # noqa: E731
        splits[split] = Split(LazyImages(read, len(source), shape, moments), labels)
    return splits, classes


def _index(root: Path, meta: dict, split: str, count: int):
    """A pack's labels and moments of ``split`` from its index file (None, None without)."""
    if "index" not in meta:
        return None, None
    path = root / meta["index"]
    try:
        with np.load(path) as index:
            labels, moments = index[f"{split}_labels"], index[f"{split}_moments"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"data.root: {path} is not a readable pack index ({err})") from None
    if len(labels) != count or len(moments) != count:
        raise DataError(f"data.root: {path} indexes {len(labels)} {split} records, the "
                        f"shards hold {count}: pack the folder again")  # fmt: skip
    return labels.astype(np.int32), moments


def _check_shard(path: Path) -> None:
    from array_record.python.array_record_module import ArrayRecordReader

    try:
        reader = ArrayRecordReader(str(path))
        count = reader.num_records()
        if count:
            _decode(reader.read([0, count - 1])[-1])
        reader.close()
    except Exception as err:  # the reader raises plain RuntimeErrors for damaged files
        raise DataError(f"{path} is not a readable ArrayRecord shard ({err})") from None


# ---- a source of one's own -------------------------------------------------------------------


def object_splits(target: str, arguments: dict) -> dict[str, Split]:
    """``target(split=..., **arguments)`` for each split, an object with ``__len__`` and
    ``__getitem__(i) -> (image, label)`` (image ``(*spatial, C)``, uint8 or float); the
    splits it refuses with ValueError are left out (val is then taken from train). An
    object with a ``labels`` attribute (every example's label, in order) gives them
    without each example being read before training."""
    module, _, name = target.rpartition(".")
    try:
        make = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise DataError(f"data.target (={target!r}) cannot be imported: {err}") from None
    splits = {}
    for split in SPLITS:
        try:
            source = make(split=split, **arguments)
        except ValueError:
            continue
        if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")):
            raise DataError(f"data.target (={target!r}) made {type(source).__name__}, which "
                            "has no __len__ and __getitem__")  # fmt: skip
        first, _ = source[0]
        labels = _object_labels(source, target, split)
        read = lambda i, s=source: np.asarray(s[i][0])  # noqa: E731
        splits[split] = Split(LazyImages(read, len(source), np.shape(first)), labels)
    if "train" not in splits:
        raise DataError(f"data.target (={target!r}) gave no train split")
    return splits


def _object_labels(source, target: str, split: str) -> np.ndarray:
    labels = getattr(source, "labels", None)
    if labels is None:
        return np.array([int(source[i][1]) for i in range(len(source))], np.int32)
    labels = np.asarray(labels)
    if labels.shape != (len(source),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"data.target (={target!r}): the {split} source's `labels` must be "
                        f"{len(source)} integers, one per example, not {labels.dtype} "
                        f"{labels.shape}")  # fmt: skip
    return labels.astype(np.int32)
