"""The training batches on Grain: element ``k`` of a ``grain.MapDataset`` is step ``k``'s
batch, so the order, the augmentation and a resume are pure functions of the step.

- **Order**: :func:`~jaxconv.data.batch_indices` of ``(seed, epoch)``, the same for every
  source; each process reads only its rows of each global batch (``rows``).
- **Augmentation**: ``data.transforms`` per example, from ``(seed, epoch, example index)``
  (:mod:`jaxconv.data.transforms`); then :func:`~jaxconv.data.augment` of ``(seed,
  step)``, drawn for the whole global batch, so a process's rows move as they would in
  one process.
- **Workers**: ``workers`` processes compute batches ahead (Grain's ``mp_prefetch``);
  every batch is computed from its step alone, so the batches are the same whatever
  ``workers`` is. ``0`` computes them in the calling process.
- **Device prefetch**: a thread places the next batch on the devices with the batch
  sharding while the current step runs.
- **State**: :meth:`TrainBatches.state` is the Grain iterator's state after the last
  batch handed out (what a checkpoint stores); :meth:`TrainBatches.start` continues from
  it, or from a step when a checkpoint has none.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxconv._process import die_with_parent
from jaxconv.data import transforms as T
from jaxconv.data.batching import augment, batch_indices


def _grain():
    """Grain, with absl's flags marked parsed (Grain reads its flags; a program that is not
    an absl app never parses them, and Grain's workers would fail on the first read)."""
    import grain
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    return grain


@dataclasses.dataclass(frozen=True)
class StepBatch:
    """Step ``k`` -> ``{"step", "x", "y"}``: this process's rows of the global batch of
    step ``k``, augmented. Picklable (Grain's workers receive it)."""

    x: Any
    y: Any
    batch_size: int
    seed: int
    rows: tuple[int, int]  # (first, count) of this process in each global batch
    shift: int = 0
    flip: bool = False
    transforms: tuple = ()  # per example (jaxconv.data.transforms), before shift and flip
    mix: T.Mix | None = None  # mixup / cutmix of the whole batch, last
    num_classes: int = 0  # the width of the mixed labels

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        n = len(self.x)
        per_epoch = max(n // self.batch_size, 1)
        epoch, in_epoch = divmod(int(step), per_epoch)
        index = batch_indices(n, self.batch_size, self.seed, epoch, in_epoch)
        first, count = self.rows
        mine = index[first : first + count]
        x, y = self._examples(mine, epoch, int(step), first, len(index))
        if self.mix is not None:
            lam, pairs, rng = self.mix.draw(self.seed, int(step), len(index))
            partners = pairs[first : first + count]  # rows of the global batch
            x_other, y_other = self._examples(index[partners], epoch, int(step), partners,
                                              len(index))  # fmt: skip
            x, lam = self.mix(x, x_other, lam, rng)
            eye = np.eye(self.num_classes, dtype=np.float32)
            y = lam * eye[y] + (1 - lam) * eye[y_other]
        return {"step": np.int64(step), "x": x, "y": y}

    def _examples(self, examples, epoch: int, step: int, rows, total: int):
        """Examples ``examples`` (rows ``rows`` of the global batch: a first row, or each
        row's position), transformed and augmented as their rows of the batch."""
        x = np.asarray(self.x[examples])
        if self.transforms:
            x = np.stack([T.apply(self.transforms, row, seed=self.seed, epoch=epoch, index=int(i))
                          for row, i in zip(x, examples)])  # fmt: skip
        if np.ndim(rows) == 0:
            x = augment(x, shift=self.shift, flip=self.flip, seed=self.seed, step=step,
                        rows=(int(rows), total))  # fmt: skip
        else:  # scattered rows: each augmented as its own row of the batch
            x = np.concatenate([augment(x[k : k + 1], shift=self.shift, flip=self.flip,
                                        seed=self.seed, step=step, rows=(int(r), total))
                                for k, r in enumerate(rows)])  # fmt: skip
        return x, np.asarray(self.y[examples])


def _worker_start(parent: int, index: int, count: int) -> None:
    """A Grain worker's first act: die with the training process that started it, so a
    SIGKILLed run leaves no worker computing batches for nobody."""
    del index, count
    die_with_parent(parent)


class TrainBatches:
    """An iterator over the steps ``start..total-1``'s batches, placed on the devices by
    ``place(x, y)`` in a background thread one batch ahead."""

    def __init__(self, batches: StepBatch, total: int, *, workers: int = 0,
                 place: Callable[[np.ndarray, np.ndarray], Any] | None = None):  # fmt: skip
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"`workers` (={workers!r}) must be an int >= 0")
        self.batches, self.total, self.workers = batches, total, workers
        self.place = place or (lambda x, y: (x, y))
        self._iterator = None
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._offset, self._state = 0, None

    def start(self, step: int, state: str | None = None) -> None:
        """Begin at ``step``: from a checkpoint's ``state`` (:meth:`state`), or, when there
        is none or it was saved with another number of workers, from a dataset that starts
        at ``step`` (the same batches: each is a function of its step)."""
        grain = _grain()
        saved = json.loads(state) if state else None
        if saved and saved.get("workers") != self.workers:
            saved = None  # Grain's state has another form with another number of workers
        self._offset = saved["offset"] if saved else step
        dataset = grain.MapDataset.range(self._offset, self.total).map(self.batches)
        if self.workers:
            options = grain.MultiprocessingOptions(num_workers=self.workers)
            init = functools.partial(_worker_start, os.getpid())  # picklable for spawn
            self._iterator = iter(dataset.to_iter_dataset().mp_prefetch(options, init))
        else:  # random access: Grain's iterator machinery costs more per step than a batch
            self._iterator = _Indexed(dataset)
        if saved and saved["grain"] is not None:
            self._iterator.set_state(saved["grain"])
        self._state = saved["grain"] if saved else None
        self._expected = step
        self._thread = threading.Thread(target=self._fill, daemon=True, name="jaxconv-batches")
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    element = next(self._iterator)
                except StopIteration:
                    self._put(None)
                    return
                state = self._iterator.get_state()
                placed = self.place(element["x"], element["y"])
                self._put((int(element["step"]), placed, state))
        except BaseException as err:  # handed to the training thread, raised there
            self._put(err)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self) -> Any:
        """The next step's placed ``(x, y)``."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        if item is None:
            raise RuntimeError(f"the batches ended before step {self._expected}")
        step, placed, self._state = item
        if step != self._expected:
            raise RuntimeError(f"the data iterator gave step {step}'s batch for step "
                               f"{self._expected}: its saved state does not match")  # fmt: skip
        self._expected += 1
        return placed

    def state(self) -> str:
        """The position after the last batch :meth:`next` returned, as JSON."""
        return json.dumps({"offset": self._offset, "workers": self.workers, "grain": self._state})

    def close(self) -> None:
        """Stop the thread and Grain's workers, and let go of their shared-memory batches
        now: collected at interpreter exit instead, Grain's iterators print tracebacks and
        leak warnings."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
        self._iterator = None
        while not self._queue.empty():
            self._queue.get_nowait()
        if self.workers:  # their shared memory, now (a full collection is not free)
            gc.collect()


class _Indexed:
    """Elements ``next_index, next_index + 1, ...`` of a ``grain.MapDataset`` by random
    access, with the state a ``MapDataset`` iterator has (``{"next_index": k}``)."""

    def __init__(self, dataset) -> None:
        self.dataset, self.next_index = dataset, 0

    def __next__(self):
        if self.next_index >= len(self.dataset):
            raise StopIteration
        element = self.dataset[self.next_index]
        self.next_index += 1
        return element

    def get_state(self) -> dict:
        return {"next_index": self.next_index}

    def set_state(self, state: dict) -> None:
        self.next_index = int(state["next_index"])
