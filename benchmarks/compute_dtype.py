"""One training step in ``compute_dtype="bfloat16"`` against float32, alternating.

The layers compute in bfloat16 while parameters, optimizer state and the loss stay
float32 (``jaxconv.train.state.COMPUTE_DTYPES``). On a CPU without bfloat16 arithmetic
units XLA converts to float32 and back around each product, so bfloat16 is expected to
be slower there; on GPUs and TPUs it is faster. The ratio is the median of the
same-round ratios.

    python benchmarks/compute_dtype.py
    python benchmarks/compute_dtype.py --rounds 9 --batch 128
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import numpy as np

from jaxconv.models import CNN
from jaxconv.train import make_optimizer, reuse_host_memory
from jaxconv.train.state import create_state, make_train_step

NETS = {
    "digits CNN 8x8x1, 3 convs (the experiment=digits_cnn model)": (
        lambda: CNN(channels=(32, 64, 128), pool="none", num_classes=10),
        (8, 8, 1),
    ),
    "2-D CNN 32x32x3, 3 convs + pooling": (
        lambda: CNN(channels=(32, 64, 128), num_classes=10),
        (32, 32, 3),
    ),
}


def step_time(state, step, x, y, steps: int) -> float:
    state, metrics = step(state, x, y)  # warm
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, x, y)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per sample")
    args = parser.parse_args()
    reuse_host_memory()
    rng = np.random.default_rng(0)
    print(f"# jax {jax.__version__} on {jax.default_backend()} ({platform.machine()}), "
          f"batch {args.batch}, median of {args.rounds} alternating rounds")  # fmt: skip
    print("| network | float32 ms | bfloat16 ms | bfloat16 / float32 |")
    print("| --- | --- | --- | --- |")
    for name, (make, shape) in NETS.items():
        model = make()
        x = rng.normal(size=(args.batch, *shape)).astype(np.float32)
        y = rng.integers(0, 10, args.batch).astype(np.int32)
        step = make_train_step()  # one function; the state's compute_dtype picks the program
        times = {"float32": [], "bfloat16": []}
        for _ in range(args.rounds):
            for dtype in times:  # a fresh state each sample: the step donates its state
                state = create_state(model, x, make_optimizer("adam", 1e-3), 0, dtype)
                times[dtype].append(step_time(state, step, x, y, args.steps))
        ratio = statistics.median(b / f for f, b in zip(times["float32"], times["bfloat16"]))
        f32, bf16 = (statistics.median(times[d]) for d in ("float32", "bfloat16"))
        print(f"| {name} | {f32:.1f} | {bf16:.1f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
