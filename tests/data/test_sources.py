"""Datasets of one's own: image folders (real PNG and JPEG files written with Pillow),
.npz and memory-mapped .npy arrays, ArrayRecord shards from `jaxconv-data pack`, a source
object; bad files found before training, in one line or skipped."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optax
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from jaxconv import models
from jaxconv.data import DataError, load_dataset
from jaxconv.data.sources import array_splits, pack_image_folder
from jaxconv.train import evaluate, fit, params_sha256


def _digits_uint8():
    """scikit-learn's digits as uint8 images (0..16 scaled to 0..240), (N, 8, 8, 1)."""
    digits = load_digits()
    return (digits.images * 15).astype(np.uint8)[..., None], digits.target.astype(np.int32)


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """The digits as a train/ and test/ folder of PNGs, and as the same arrays in the order
    the folder is read (class by class, files by name)."""
    root = tmp_path_factory.mktemp("digits")
    x, y = _digits_uint8()
    order = {"train": [], "test": []}
    for i in range(len(x)):
        split = "test" if i % 5 == 0 else "train"
        folder = root / "images" / split / f"digit{y[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i, :, :, 0]).save(folder / f"{i:05d}.png")
        order[split].append((y[i], f"{i:05d}", i))
    rows = {s: [i for _, _, i in sorted(v)] for s, v in order.items()}
    np.savez(root / "digits.npz", x_train=x[rows["train"]], y_train=y[rows["train"]],
             x_test=x[rows["test"]], y_test=y[rows["test"]])  # fmt: skip
    return root, rows


@pytest.fixture(scope="module")
def packed_digits(digit_files, tmp_path_factory):
    """The digit folder packed by the `jaxconv-data pack` command, with its output."""
    packed = tmp_path_factory.mktemp("packed") / "ar"
    cli = [sys.executable, "-m", "jaxconv.app.data_cli", "pack", digit_files[0] / "images", packed]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return packed, done.stdout


def _train(data):
    model = models.CNN(channels=(16, 32), kernel_size=(3, 3), pool="max", conv_backend="lax")
    state, _ = fit(model, data, optax.adam(3e-3), max_steps=120, batch_size=32, progress=False,
                   seed=1)  # fmt: skip
    return state


def test_a_folder_its_arrays_and_its_shards_train_bit_identically(digit_files, packed_digits):
    digit_files, rows = digit_files
    folder = load_dataset("image_folder", root=digit_files / "images", val_fraction=0.1)
    arrays = load_dataset("arrays", path=digit_files / "digits.npz", val_fraction=0.1)
    packed, stdout = packed_digits
    assert stdout.startswith("packed train 1437, test 360 images of 10 classes")
    shards = load_dataset("array_record", root=packed, val_fraction=0.1)
    assert folder.class_names == tuple(f"digit{k}" for k in range(10))
    assert (len(folder.x_train), len(folder.x_val), len(folder.x_test)) == (1293, 144, 360)
    x, y = _digits_uint8()
    # The pixels are the files' (PNG is lossless) in [0, 1], then normalised by the
    # training split's per-channel mean and standard deviation.
    plain = load_dataset("image_folder", root=digit_files / "images", normalize=False)
    np.testing.assert_array_equal(plain.x_test[:], x[rows["test"]] / np.float32(255.0))
    np.testing.assert_array_equal(plain.y_test, y[rows["test"]])
    train = plain.x_train[:]
    np.testing.assert_allclose(folder.x_train[:], (train - train.mean()) / train.std(), atol=1e-4)
    for other in (arrays, shards):
        for split in ("x_train", "x_val", "x_test"):
            np.testing.assert_array_equal(getattr(other, split)[:], getattr(folder, split)[:])
        np.testing.assert_array_equal(other.y_train, folder.y_train)
    # The folder's scan and the pack's index.npz gave the statistics without another pass
    # (the arrays read every example for them): the same mean and std to the bit.
    assert folder.x_train.moments is not None and shards.x_train.moments is not None
    assert arrays.x_train.moments is None
    np.testing.assert_array_equal(shards.x_train.mean, arrays.x_train.mean)
    np.testing.assert_array_equal(folder.x_train.std, arrays.x_train.std)
    states = [_train(d) for d in (folder, arrays, shards)]
    assert len({params_sha256(s.params) for s in states}) == 1
    state = states[0]
    assert evaluate(state, folder.x_test, folder.y_test)["accuracy"] > 0.9


def _folder(root: Path, images: dict[str, list]) -> Path:
    """``images``: class -> list of (name, array or bytes) written under ``root``."""
    for cls, files in images.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for name, content in files:
            if isinstance(content, bytes):
                (root / cls / name).write_bytes(content)
            else:
                Image.fromarray(content).save(root / cls / name)
    return root


def _png_bytes(pixels) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_files_are_one_line_naming_the_file_or_skipped(tmp_path):
    rng = np.random.default_rng(0)
    gray = [(f"{i}.png", rng.integers(0, 255, (6, 6), dtype=np.uint8)) for i in range(4)]
    good = _png_bytes(rng.integers(0, 255, (6, 6), dtype=np.uint8))
    cases = {
        "truncated.png": (good[: len(good) // 2], "cannot be decoded"),
        "notes.txt": (b"hello", "is not a PNG/JPG/JPEG file"),
        "garbage.png": (b"\x89PNG not really", "is not an image Pillow can read"),
        "rgb.png": (rng.integers(0, 255, (6, 6, 3), dtype=np.uint8),
                    r"has 3 channel\(s\), .*0.png has 1: set data.channels"),
        "wide.jpg": (rng.integers(0, 255, (6, 9), dtype=np.uint8),
                     r"is 9x6, .*0.png is 6x6: set data.image_size"),
    }  # fmt: skip
    for name, (content, message) in cases.items():
        root = _folder(tmp_path / name, {"a": gray, "b": [*gray, (name, content)]})
        with pytest.raises(DataError, match=rf"^{root / 'b' / name} {message}"):
            load_dataset("image_folder", root=root, progress=False)
        skipped = load_dataset("image_folder", root=root, on_bad_file="skip", val_fraction=0)
        assert skipped.skipped == (str(root / "b" / name),)
        assert len(skipped.x_train) + len(skipped.x_test) == 8
    # Converting every image to one channel count, and resizing to one size, accept them.
    odd = [(name, cases[name][0]) for name in ("rgb.png", "wide.jpg")]
    root = _folder(tmp_path / "mixed", {"a": gray, "b": [*gray, *odd]})
    mixed = load_dataset("image_folder", root=root, channels=3, image_size=[4, 4])
    assert mixed.input_shape == (4, 4, 3)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    _folder(tmp_path / "empty", {"b": gray})
    with pytest.raises(DataError, match=r"class folder .*empty/a is empty"):
        load_dataset("image_folder", root=tmp_path / "empty")


def test_resize_covers_and_centre_crops(tmp_path):
    """A 6x12 image (H x W) with a ramp across its width, to 6x6: the scale that covers
    6x6 is 1, so the crop is columns 3..8 of the file."""
    ramp = np.tile(np.arange(0, 240, 20, dtype=np.uint8), (6, 1))  # (6, 12)
    root = _folder(tmp_path / "f", {"a": [("0.png", ramp), ("1.png", ramp)]})
    d = load_dataset("image_folder", root=root, image_size=[6, 6], normalize=False,
                     val_fraction=0, test_fraction=0.5)  # fmt: skip
    np.testing.assert_array_equal(d.x_train[0, :, :, 0], ramp[:, 3:9] / np.float32(255))


def test_arrays_npz_and_memory_mapped_npy(tmp_path):
    rng = np.random.default_rng(1)
    arrays = dict(x_train=rng.random((20, 5, 5, 2), np.float32), y_train=np.arange(20) % 4,
                  x_test=rng.random((6, 5, 5, 2), np.float32), y_test=np.arange(6) % 4,
                  x_val=rng.random((4, 5, 5, 2), np.float32), y_val=np.arange(4) % 4)  # fmt: skip
    folder = tmp_path / "npy"
    folder.mkdir()
    for key, value in arrays.items():
        np.save(folder / f"{key}.npy", value)
    np.savez(tmp_path / "a.npz", **arrays)
    for path in (folder, tmp_path / "a.npz"):
        d = load_dataset("arrays", path=path, normalize=False)
        assert (len(d.x_train), len(d.x_val), len(d.x_test), d.num_classes) == (20, 4, 6, 4)
        np.testing.assert_array_equal(d.x_val[:], arrays["x_val"])  # given, not split off
    mapped = array_splits(folder)["train"].x
    assert isinstance(mapped._read.__self__, np.memmap)  # read row by row from the file
    bad = {
        "missing": ({k: v for k, v in arrays.items() if k != "y_test"}, r"has no y_test \(it has"),
        "negative": ({**arrays, "y_train": np.arange(20) - 1}, r"y_train holds labels -1\.\.18"),
        "unseen": ({**arrays, "y_test": np.arange(6)}, r"y_test holds labels 0\.\.5; train"),
        "float": ({**arrays, "y_val": np.zeros(4)}, r"y_val has dtype float64"),
    }
    for name, (content, message) in bad.items():
        np.savez(tmp_path / f"{name}.npz", **content)
        with pytest.raises(DataError, match=message):
            load_dataset("arrays", path=tmp_path / f"{name}.npz")


def test_a_damaged_shard_is_named(digit_files, tmp_path):
    root, _ = digit_files
    packed = tmp_path / "p"
    pack_image_folder(root / "images" / "test", packed, progress=False)
    indexed = load_dataset("array_record", root=packed, normalize=False)
    index = packed / "index.npz"
    with np.load(index) as arrays:
        short = {k: v[:-1] for k, v in arrays.items()}
    index.rename(packed / "kept.npz")  # a pack made before index.npz: labels from records
    meta = json.loads((packed / "meta.json").read_text())
    (packed / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "index"}))
    unindexed = load_dataset("array_record", root=packed, normalize=False)
    assert unindexed.x_train.moments is None
    np.testing.assert_array_equal(unindexed.y_train, indexed.y_train)
    np.testing.assert_array_equal(unindexed.x_test[:], indexed.x_test[:])
    (packed / "meta.json").write_text(json.dumps(meta))
    np.savez(index, **short)
    with pytest.raises(DataError, match=r"indexes 359 train records, the shards hold 360"):
        load_dataset("array_record", root=packed)
    (packed / "kept.npz").rename(index)
    shard = packed / "train-00000.array_record"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(DataError, match=rf"^{shard} is not a readable ArrayRecord shard"):
        load_dataset("array_record", root=packed)
    out = tmp_path / "again"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cli = [sys.executable, "-m", "jaxconv.app.data_cli", "pack", root / "images", out]
    refused = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"jaxconv-data: error: {out} exists and is not an empty folder: nothing written"
    )
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


class Squares:
    """A source of one's own: bright or dark squares, made per split."""

    def __init__(self, split, count=40):
        if split == "val":
            raise ValueError("no val split: take it from train")
        self.rng = np.random.default_rng({"train": 0, "test": 1}[split])
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        label = i % 2
        image = np.full((4, 4, 1), 200 if label else 30, np.uint8)
        return image, label


class LabelledSquares(Squares):
    """Squares that give their labels without an image being read."""

    reads = 0

    @property
    def labels(self):
        return np.arange(self.count) % 2

    def __getitem__(self, i):
        LabelledSquares.reads += 1
        return super().__getitem__(i)


def test_a_source_object_of_ones_own():
    d = load_dataset("custom", target=f"{__name__}.Squares", count=30, val_fraction=0.2)
    assert (len(d.x_train), len(d.x_val), len(d.x_test), d.num_classes) == (24, 6, 30, 2)
    fast = load_dataset("custom", target=f"{__name__}.LabelledSquares", count=30,
                        val_fraction=0.2, normalize=False)  # fmt: skip
    assert LabelledSquares.reads == 2  # the first image of train and of test, for the shape
    np.testing.assert_array_equal(fast.y_train, d.y_train)
    np.testing.assert_array_equal(fast.y_test, d.y_test)
    LabelledSquares.labels = np.zeros(3, np.int64)
    with pytest.raises(DataError, match=r"the train source's `labels` must be 30 integers"):
        load_dataset("custom", target=f"{__name__}.LabelledSquares", count=30)
    with pytest.raises(DataError, match=r"data.target \(='nowhere.Thing'\) cannot be imported"):
        load_dataset("custom", target="nowhere.Thing")


def test_the_command_line_trains_a_folder_and_its_shards_alike(
    digit_files, packed_digits, tmp_path
):
    """`jaxconv-train data=image_folder` and `data=array_record` of the packed folder: the
    same params_sha256; a bad file is refused before anything is written, or skipped and
    recorded in result.json."""
    import json

    from tests.helpers import cli

    root, _ = digit_files
    common = ["model=cnn2d", "model.channels=[16,32]", "trainer.max_steps=60",
              "trainer.plots=false", "trainer.batch_size=32", "schedule=constant",
              "trainer.progress=false"]  # fmt: skip
    runs = {
        "folder": ["data=image_folder", f"data.root={root / 'images'}"],
        "shards": ["data=array_record", f"data.root={packed_digits[0]}"],
    }
    for name, data in runs.items():
        done = cli([*common, *data, f"hydra.run.dir={tmp_path / name}"], cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    folder, shards = (json.loads((tmp_path / n / "result.json").read_text()) for n in runs)
    assert folder["params_sha256"] == shards["params_sha256"]
    assert folder["test_accuracy"] == shards["test_accuracy"] > 0.8
    assert folder["skipped_files"] == {"count": 0, "files": []}

    bad = root / "images" / "train" / "digit3" / "zz_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    try:
        refused = cli([*common, *runs["folder"], f"hydra.run.dir={tmp_path / 'bad'}"],
                      cwd=tmp_path)  # fmt: skip
        assert refused.returncode == 2 and not (tmp_path / "bad").exists()
        assert refused.stderr.strip().splitlines()[-1] == (
            f"jaxconv-train: error: {bad} is not an image Pillow can read "
            "(data.on_bad_file=skip leaves such files out)"
        )
        skipped = cli([*common, *runs["folder"], "data.on_bad_file=skip",
                       f"hydra.run.dir={tmp_path / 'skip'}"], cwd=tmp_path)  # fmt: skip
        assert skipped.returncode == 0, skipped.stderr[-3000:]
        record = json.loads((tmp_path / "skip" / "result.json").read_text())
        assert record["skipped_files"] == {"count": 1, "files": [str(bad)]}
        assert record["params_sha256"] == folder["params_sha256"]  # the same examples
    finally:
        bad.unlink()
