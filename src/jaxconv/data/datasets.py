"""Datasets as numpy arrays, channels-last: ``x`` is ``(N, *spatial, C)`` float32."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxconv._options import keywords_for, option
from jaxconv.data import files, sources


@dataclasses.dataclass
class Dataset:
    """Train / validation / test splits of one dataset (numpy, channels-last)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # files data.on_bad_file=skip left out

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape, ``(*spatial, C)``."""
        return tuple(self.x_train.shape[1:])

    def summary(self) -> str:
        return (
            f"{self.name}: train {len(self.x_train)}, val {len(self.x_val)}, "
            f"test {len(self.x_test)}, input {self.input_shape}, {self.num_classes} classes"
        )


def check_labels(x: Any, y: Any, num_classes: int | None = None, split: str = "train") -> None:
    """``y`` holds one class index per example of ``x``, each in ``[0, num_classes)``:
    a short label array, one-hot rows or an out-of-range class would otherwise fail
    mid-training or train on garbage. Errors name the split's arrays (``y_train``)."""
    y = np.asarray(y)
    name = f"y_{split}"
    if y.ndim == 2 and y.shape[0] == len(x) and y.shape[1] > 1:
        raise ValueError(
            f"`{name}` (shape {y.shape}) looks one-hot: pass class indices, shape "
            f"({len(x)},) (y.argmax(-1))"
        )
    other = "other targets need a loss of their own: fit(..., loss=...)"
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(
            f"`{name}` (shape {y.shape}) must hold one class index per example of "
            f"`x_{split}` ({len(x)} examples); {other}"
        )
    if len(y) and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"`{name}` (dtype {y.dtype}) must hold integer class indices; {other}")
    if len(y) and num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"`{name}` holds classes {int(y.min())}..{int(y.max())}; `num_classes` "
            f"(={num_classes}) allows 0..{num_classes - 1}"
        )


def check_targets(x: Any, y: Any, split: str = "train") -> None:
    """``y`` holds one numeric row per example of ``x`` (a loss of one's own: regression
    values, multi-label 0/1 columns). Errors name the split's arrays (``y_train``)."""
    y = np.asarray(y)
    if y.ndim < 1 or len(y) != len(x):
        raise ValueError(
            f"`y_{split}` (shape {y.shape}) must hold one row per example of `x_{split}` "
            f"({len(x)} examples)"
        )
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValueError(f"`y_{split}` (dtype {y.dtype}) must be numeric")


def check_dataset(data: Dataset, class_labels: bool = True) -> None:
    """Every split's labels (:func:`check_labels`; :func:`check_targets` when not
    ``class_labels``) and the number of classes."""
    if (
        isinstance(data.num_classes, bool)
        or not isinstance(data.num_classes, (int, np.integer))
        or data.num_classes < 1
    ):
        raise ValueError(f"`num_classes` (={data.num_classes!r}) must be an int >= 1")
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if class_labels:
            check_labels(x, y, data.num_classes, split)
        else:
            check_targets(x, y, split)


MNIST1D_DEFAULTS = dict(
    num_samples=5000,
    train_split=0.8,
    template_len=12,
    padding=(36, 60),
    scale_coeff=0.4,
    max_translation=48,
    corr_noise_scale=0.25,
    iid_noise_scale=2e-2,
    shear_scale=0.75,
    shuffle_seq=False,
    final_seq_length=40,
    seed=42,
)


def mnist1d(**overrides: Any):
    """MNIST-1D generated offline with the ``mnist1d`` package (paper defaults:
    4000 train / 1000 test, length 40). ``overrides`` change the generator's arguments."""
    from mnist1d.data import get_dataset_args, make_dataset

    unknown = set(overrides) - set(MNIST1D_DEFAULTS)
    if unknown:
        raise ValueError(
            "unknown mnist1d generator arguments "
            f"{sorted(unknown)}; known: {sorted(MNIST1D_DEFAULTS)}"
        )
    args = get_dataset_args()
    for key, value in {**MNIST1D_DEFAULTS, **overrides}.items():
        setattr(args, key, list(value) if isinstance(value, tuple) else value)
    data = make_dataset(args)
    return (data["x"][..., None], data["y"], data["x_test"][..., None], data["y_test"])


def digits(test_fraction: float = 0.2, test_split_seed: int = 0):
    """scikit-learn's 8x8 digits (1797 images, 0..16), a fixed stratified test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images[..., None] / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(
        x,
        bunch.target,
        test_size=test_fraction,
        stratify=bunch.target,
        random_state=test_split_seed,
    )
    return x_tr, y_tr, x_te, y_te


SHAPES = ("square", "circle", "triangle", "cross")


def shapes(
    num_train: int = 2000, num_test: int = 500, size: int = 16, noise: float = 0.15, seed: int = 0
):
    """Procedural 2-D shapes (square, circle, triangle, cross outlines/fills) at random
    positions and scales, with Gaussian noise: fast 2-D experiments and readable filters."""
    rng = np.random.default_rng(seed)
    n = num_train + num_test
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    labels = rng.integers(0, len(SHAPES), n)
    radius = rng.uniform(0.2, 0.35, n) * size
    cy = rng.uniform(0.35, 0.65, n) * size
    cx = rng.uniform(0.35, 0.65, n) * size
    images = np.empty((n, size, size), np.float32)
    for i in range(n):
        dy, dx, r = yy - cy[i], xx - cx[i], radius[i]
        kind = SHAPES[labels[i]]
        if kind == "square":
            mask = (np.abs(dy) <= r * 0.8) & (np.abs(dx) <= r * 0.8)
        elif kind == "circle":
            mask = dy**2 + dx**2 <= r**2
        elif kind == "triangle":
            mask = (dy <= r * 0.7) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
        else:
            width = max(r * 0.25, 0.8)
            mask = ((np.abs(dy) <= width) & (np.abs(dx) <= r)) | (
                (np.abs(dx) <= width) & (np.abs(dy) <= r)
            )
        images[i] = mask
    images += rng.normal(0.0, noise, images.shape).astype(np.float32)
    x = images[..., None]
    return x[:num_train], labels[:num_train], x[num_train:], labels[num_train:]


@dataclasses.dataclass
class DataOptions:
    """The ``data`` config group: :func:`load_dataset`'s keywords (``options`` holds a
    dataset's own, e.g. ``mnist1d``'s generator settings)."""

    name: str = "mnist1d"
    root: str = option("~/.cache/jaxconv", resume="free", why="where the dataset files live")
    val_fraction: float = 0.1
    normalize: bool = True
    limit_train: int | None = None
    download: bool = option(True, resume="free", why="whether missing files may be downloaded")
    options: dict[str, Any] = option(default_factory=dict)
    path: str | None = None  # data=arrays: an .npz file or a folder of .npy files
    image_size: list[int] | None = None  # data=image_folder: resize and centre-crop to (H, W)
    channels: int | None = None  # data=image_folder: 1 (grayscale) or 3 (RGB); null: as found
    on_bad_file: str = "error"  # or skip: leave bad files out (result.json lists them)
    target: str | None = None  # data=custom: a class or function making each split


def dataset_from(options: DataOptions, split_seed: int) -> Dataset:
    """:func:`load_dataset` (:func:`load_source` for a source of one's own) of the group's
    options."""
    load = load_source if options.name in SOURCES else load_dataset
    kwargs = keywords_for(load, options, skip=("options",))
    return load(split_seed=split_seed, **kwargs, **dict(options.options))


def check_data_options(options: DataOptions) -> None:
    """The checks :func:`dataset_from` makes before reading anything."""
    check_dataset_args(**keywords_for(check_dataset_args, options))


def check_dataset_args(
    name: str,
    val_fraction: float,
    limit_train: int | None,
    options: Mapping | None = None,
    *,
    on_bad_file: str = "error",
    channels: int | None = None,
    image_size: Sequence[int] | None = None,
    path: str | None = None,
    target: str | None = None,
    root: str | Path | None = "~/.cache/jaxconv",
) -> None:
    """The checks :func:`load_dataset` makes before reading anything."""
    if name not in DATASETS + SOURCES:
        raise ValueError(f"`name` (={name!r}) must be one of {DATASETS + SOURCES}")
    test_fraction = dict(options or {}).get("test_fraction", 0.2)
    _check_source_args(name, test_fraction, on_bad_file, channels, image_size, path, target, root)
    if name in SOURCES:
        unknown = sorted(set(options or {}) - {"test_fraction"})
        if name != "custom" and unknown:
            raise ValueError(
                f"`options` has {', '.join(map(repr, unknown))}, which data={name} does not "
                "take; it takes: 'test_fraction'"
            )
        if limit_train is not None and not limit_train >= 1:
            raise ValueError(f"`limit_train` (={limit_train}) must be >= 1 or None")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"`val_fraction` (={val_fraction}) must be in [0, 1)")
        return
    takes = _generator_arguments(name)
    unknown = sorted(set(options or {}) - set(takes))
    if unknown:
        raise ValueError(
            f"`options` has {', '.join(map(repr, unknown))}, which dataset "
            f"{name!r} does not take; it takes: {', '.join(takes) or 'nothing'}"
        )
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"`val_fraction` (={val_fraction}) must be in [0, 1)")
    if limit_train is not None and not limit_train >= 1:
        raise ValueError(f"`limit_train` (={limit_train}) must be >= 1 or None")


def _check_source_args(name, test_fraction, on_bad_file, channels, image_size, path, target,
                       root):  # fmt: skip
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` (={test_fraction}) must be in (0, 1)")
    if on_bad_file not in sources.ON_BAD_FILE:
        raise ValueError(f"`on_bad_file` (={on_bad_file!r}) must be one of {sources.ON_BAD_FILE}")
    if channels not in (None, 1, 3):
        raise ValueError(f"`channels` (={channels!r}) must be 1, 3 or null")
    if image_size is not None and (
        len(image_size) != 2 or any(not isinstance(v, int) or v < 1 for v in image_size)
    ):
        raise ValueError(f"`image_size` (={list(image_size)!r}) must be [height, width], ints >= 1")
    if name in ("image_folder", "array_record") and not str(root or ""):
        what = "the image folder" if name == "image_folder" else "the jaxconv-data pack output"
        raise ValueError(f"`root` must name {what} for data={name}: data.root=DIR")
    if name == "arrays" and not path:
        raise ValueError("`path` must name an .npz file or a folder of .npy files for data=arrays")
    if name == "custom" and not target:
        raise ValueError("`target` must name a class or function (module.name) for data=custom")


def _generator_arguments(name: str) -> tuple[str, ...]:
    """The ``options`` dataset ``name`` takes (its generator's keywords; none for files)."""
    if name == "mnist1d":  # its keywords are the generator package's arguments
        return tuple(MNIST1D_DEFAULTS)
    generator = {"digits": digits, "shapes": shapes}.get(name)
    return tuple(inspect.signature(generator).parameters) if generator else ()


def _split_validation(x, y, fraction: float, seed: int):
    n_val = int(round(len(x) * fraction))
    order = np.random.default_rng([seed, 0xDA7A]).permutation(len(x))
    val, train = order[:n_val], np.sort(order[n_val:])  # train keeps the file order
    return x[train], y[train], x[val], y[val]


def _normalize(dataset: Dataset) -> Dataset:
    axes = tuple(range(dataset.x_train.ndim - 1))
    mean = dataset.x_train.mean(axis=axes, keepdims=True)
    std = dataset.x_train.std(axis=axes, keepdims=True) + 1e-6
    for split in ("x_train", "x_val", "x_test"):
        setattr(dataset, split, ((getattr(dataset, split) - mean[0]) / std[0]).astype(np.float32))
    return dataset


DATASETS = ("mnist1d", "digits", "shapes", "mnist", "fashion_mnist", "cifar10")
#: Datasets of one's own (:mod:`jaxconv.data.sources`).
SOURCES = ("image_folder", "arrays", "array_record", "custom")
NUM_CLASSES = {"mnist1d": 10, "digits": 10, "shapes": len(SHAPES), **files.NUM_CLASSES}
CLASS_NAMES = {
    "shapes": SHAPES,
    "cifar10": (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}


def load_dataset(
    name: str,
    *,
    root: str | Path = "~/.cache/jaxconv",
    val_fraction: float = 0.1,
    normalize: bool = True,
    split_seed: int = 0,
    limit_train: int | None = None,
    download: bool = True,
    **options: Any,
) -> Dataset:
    """Load ``name`` with a validation split taken from train (a function of ``split_seed``).

    Args:
      name: ``mnist1d``, ``digits``, ``shapes``, ``mnist``, ``fashion_mnist``,
        ``cifar10``, or a source of one's own (:func:`load_source`, given ``options``).
      root: where the file-based datasets live (``root/mnist/...``).
      val_fraction: share of the training set held out for validation.
      normalize: standardise with the training set's per-channel mean and std.
      split_seed: which examples the validation split takes.
      limit_train: keep only the first examples of train (quick runs, tests).
      options: the generator's arguments (mnist1d, shapes) or ``test_fraction`` (digits).

    >>> d = load_dataset("digits", val_fraction=0.1)
    >>> d.input_shape, len(d.x_test), d.num_classes
    ((8, 8, 1), 360, 10)
    """
    if name in SOURCES:
        return load_source(name, root=root, val_fraction=val_fraction, normalize=normalize,
                           split_seed=split_seed, limit_train=limit_train, **options)  # fmt: skip
    check_dataset_args(name, val_fraction, limit_train, options)
    root = Path(root).expanduser()
    if name == "mnist1d":
        arrays = mnist1d(**options)
    elif name == "digits":
        arrays = digits(**options)
    elif name == "shapes":
        arrays = shapes(**options)
    elif name == "cifar10":
        arrays = files.load_cifar10(root, allow_download=download)
    else:
        arrays = files.load_idx_dataset(name, root, allow_download=download)
    x_train, y_train, x_test, y_test = (np.asarray(a) for a in arrays)
    if name in ("mnist", "fashion_mnist", "cifar10"):
        x_train, x_test = x_train.astype(np.float32) / 255.0, x_test.astype(np.float32) / 255.0
    if limit_train is not None:
        x_train, y_train = x_train[:limit_train], y_train[:limit_train]
    x_train, y_train, x_val, y_val = _split_validation(x_train, y_train, val_fraction, split_seed)
    dataset = Dataset(
        name,
        x_train.astype(np.float32),
        y_train.astype(np.int32),
        x_val.astype(np.float32),
        y_val.astype(np.int32),
        x_test.astype(np.float32),
        y_test.astype(np.int32),
        num_classes=NUM_CLASSES[name],
        class_names=CLASS_NAMES.get(name, tuple(str(i) for i in range(10))),
    )
    return _normalize(dataset) if normalize else dataset


def load_source(
    name: str,
    *,
    root: str | Path | None = None,
    path: str | Path | None = None,
    image_size: Sequence[int] | None = None,
    channels: int | None = None,
    on_bad_file: str = "error",
    target: str | None = None,
    val_fraction: float = 0.1,
    normalize: bool = True,
    split_seed: int = 0,
    limit_train: int | None = None,
    progress: bool = True,
    **options: Any,
) -> Dataset:
    """A source of one's own (:mod:`jaxconv.data.sources`) as a :class:`Dataset`:
    ``image_folder`` and ``array_record`` read ``root``, ``arrays`` reads ``path``,
    ``custom`` calls ``target(split=..., **options)``. ``options["test_fraction"]`` (0.2)
    is the share tested on when the source has no test split; the other arguments are
    :class:`DataOptions`' and :func:`load_dataset`'s."""
    check_dataset_args(name, val_fraction, limit_train, options, on_bad_file=on_bad_file,
                       channels=channels, image_size=image_size, path=path, target=target,
                       root=root)  # fmt: skip
    options = dict(options)
    test_fraction = options.pop("test_fraction", 0.2)
    splits, classes, skipped = _source_splits(name, Path(root or "").expanduser(), path,
                                              image_size, channels, on_bad_file, target,
                                              options, progress)  # fmt: skip
    return _from_splits(name, splits, classes, skipped, val_fraction, test_fraction,
                        split_seed, normalize, limit_train, progress)  # fmt: skip


def _source_splits(name, root, path, image_size, channels, on_bad_file, target, options,
                   progress):  # fmt: skip
    """A source of one's own as its splits, its class names and the files it skipped."""
    if name == "image_folder":
        scan = sources.scan_image_folder(root, image_size=image_size, channels=channels,
                                         on_bad_file=on_bad_file, progress=progress)  # fmt: skip
        return sources.image_folder_splits(scan, image_size, channels), scan.classes, scan.skipped
    if name == "array_record":
        splits, classes = sources.array_record_splits(root)
        return splits, classes, []
    if name == "arrays":
        splits = sources.array_splits(path)
    else:
        splits = sources.object_splits(target, dict(options))
    count = 1 + int(splits["train"].y.max(initial=0))  # the classes training sees
    for split, part in splits.items():
        if len(part.y) and part.y.max() >= count:
            where = path if name == "arrays" else f"data.target ({target})"
            seen = f"{part.y.min()}..{part.y.max()}"
            raise files.DataError(f"{where}: y_{split} holds labels {seen}; train's are "
                                  f"0..{count - 1}")  # fmt: skip
    return splits, tuple(str(i) for i in range(count)), []


def _from_splits(name, splits, classes, skipped, val_fraction, test_fraction, seed, normalize,
                 limit_train, progress) -> Dataset:  # fmt: skip
    """The splits a source has, the missing ones taken from train by fraction (a function
    of ``seed``), as a :class:`Dataset` normalised by the training split's statistics."""
    train = splits["train"]
    rows = np.arange(len(train.y))
    if "test" not in splits:
        order = np.random.default_rng([seed, 0x7E57]).permutation(len(rows))
        n_test = int(round(len(rows) * test_fraction))
        test_rows, rows = np.sort(order[:n_test]), np.sort(order[n_test:])
        splits["test"] = sources.Split(train.x.subset(test_rows), train.y[test_rows])
    if limit_train is not None:
        rows = rows[:limit_train]
    if "val" not in splits:
        order = np.random.default_rng([seed, 0xDA7A]).permutation(len(rows))
        n_val = int(round(len(rows) * val_fraction))
        val_rows, rows = rows[np.sort(order[:n_val])], rows[np.sort(order[n_val:])]
        splits["val"] = sources.Split(train.x.subset(val_rows), train.y[val_rows])
    splits["train"] = sources.Split(train.x.subset(rows), train.y[rows])
    if normalize:
        mean, std = sources.channel_statistics(splits["train"].x, progress)
        for split in splits.values():
            split.x.mean, split.x.std = mean, std
    return Dataset(name, splits["train"].x, splits["train"].y, splits["val"].x, splits["val"].y,
                   splits["test"].x, splits["test"].y, num_classes=len(classes),
                   class_names=tuple(classes), skipped=tuple(skipped))  # fmt: skip
