"""The input pipeline alone, and against the step it feeds.

1. Images/s of the training batches alone (:class:`jaxconv.data.loader.TrainBatches`:
   order, decode or read, augmentation, batching; no device transfer) from an image
   folder of 32x32 PNGs, the same folder packed as ArrayRecord, and the same images in
   memory, at 0, 1 and 2 Grain workers; beside the images/s of ResNet-20's train step.
2. End to end: ResNet-20 trained for a few steps from the image folder and from the same
   images preloaded into memory, alternating, the median of the wall-time ratios.

    python benchmarks/input_pipeline.py                   # 2,560 images, 40 batches
    python benchmarks/input_pipeline.py --images 1280 --rounds 2 --fit-steps 10
    python benchmarks/input_pipeline.py --model small ...   # a small CNN (the smoke test)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optax
from PIL import Image

from jaxconv import models
from jaxconv.data import Dataset, load_dataset
from jaxconv.data.loader import StepBatch, TrainBatches
from jaxconv.data.sources import pack_image_folder
from jaxconv.train import fit, reuse_host_memory
from jaxconv.train.state import create_state, make_train_step

BATCH = 128
#: The network each step is timed with: the issue's ResNet-20, or a small CNN.
MODELS = {
    "resnet20": lambda: models.resnet20(num_classes=10),
    "small": lambda: models.CNN(channels=(8,), kernel_size=(3, 3), conv_backend="lax"),
}


def write_folder(root: Path, count: int) -> None:
    """``count`` 32x32 RGB PNGs in 10 class folders: crops of scikit-learn's two sample
    photographs, so the files compress like photographs do."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(0)
    for i in range(count):
        photo = photos[i % len(photos)]
        top, left = rng.integers(0, photo.shape[0] - 32), rng.integers(0, photo.shape[1] - 32)
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo[top : top + 32, left : left + 32]).save(folder / f"{i:05d}.png")


def pipeline_rate(data: Dataset, workers: int, batches: int) -> float:
    """Images/s of ``batches`` training batches (after the first, which starts workers)."""
    steps = StepBatch(data.x_train, data.y_train, BATCH, 0, (0, BATCH), shift=4, flip=True)
    loader = TrainBatches(steps, batches + 1, workers=workers)
    loader.start(0)
    try:
        loader.next()
        start = time.perf_counter()
        for _ in range(batches):
            loader.next()
        return batches * BATCH / (time.perf_counter() - start)
    finally:
        loader.close()


def step_rate(data: Dataset, model, repeats: int = 5) -> float:
    """Images/s of ``model``'s jitted train step (median of ``repeats``)."""
    state = create_state(model, data.x_train[:BATCH], optax.sgd(0.1, 0.9), 0)
    step = make_train_step()
    x, y = np.asarray(data.x_train[:BATCH]), np.asarray(data.y_train[:BATCH])
    state, metrics = step(state, x, y)
    metrics["loss"].block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = step(state, x, y)
        metrics["loss"].block_until_ready()
        times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times)


def preloaded(data: Dataset) -> Dataset:
    """The same dataset with every split read into memory."""
    return Dataset(data.name, np.asarray(data.x_train), data.y_train, np.asarray(data.x_val),
                   data.y_val, np.asarray(data.x_test), data.y_test, data.num_classes,
                   data.class_names)  # fmt: skip


def fit_seconds(data: Dataset, model, steps: int) -> float:
    start = time.perf_counter()
    options = dict(batch_size=BATCH, eval_every=10**9, progress=False, augment_shift=4,
                   augment_flip=True)  # fmt: skip
    fit(model, data, optax.sgd(0.05, 0.9), max_steps=steps, **options)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2560)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end pairs")
    parser.add_argument("--fit-steps", type=int, default=20)
    parser.add_argument("--model", default="resnet20", choices=tuple(MODELS))
    parser.add_argument("--workers", default="0,1,2", help="the worker counts timed")
    args = parser.parse_args()
    model = MODELS[args.model]()
    reuse_host_memory()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_folder(root / "folder", args.images)
        pack_image_folder(root / "folder", root / "packed", progress=False)
        sources = {
            "image folder (PNG)": load_dataset("image_folder", root=root / "folder",
                                               val_fraction=0.0, test_fraction=0.05),
            "ArrayRecord": load_dataset("array_record", root=root / "packed", val_fraction=0.0,
                                        test_fraction=0.05),
        }  # fmt: skip
        sources["in memory"] = preloaded(sources["image folder (PNG)"])
        step = step_rate(sources["in memory"], model)
        print(f"{args.model} train step (batch {BATCH}): {step:,.0f} images/s\n")
        counts = [int(w) for w in args.workers.split(",")]
        print(f"| source | {' | '.join(f'{w} workers' for w in counts)} | slowest / step |")
        print("| --- " * (len(counts) + 2) + "|")
        for name, data in sources.items():
            rates = [pipeline_rate(data, w, args.batches) for w in counts]
            cells = " | ".join(f"{r:,.0f}" for r in rates)
            print(f"| {name} | {cells} | {min(rates) / step:.0f}x |")
        folder, memory = sources["image folder (PNG)"], sources["in memory"]
        for data in (folder, memory):  # each compiled once, untimed
            fit_seconds(data, model, 2)
        ratios = []
        for _ in range(args.rounds):
            from_folder = fit_seconds(folder, model, args.fit_steps)
            ratios.append(from_folder / fit_seconds(memory, model, args.fit_steps))
        print(
            f"\n{args.model}, {args.fit_steps} steps: image folder / preloaded wall time "
            f"{statistics.median(ratios):.3f} (median of {args.rounds}: "
            f"{', '.join(f'{r:.3f}' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
