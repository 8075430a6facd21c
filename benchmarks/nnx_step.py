"""The NNX training step against the Linen one: the presets' twins (the same weights,
loaded with ``jaxconv.models.nnx.from_linen``) through ``jaxconv.train``'s own jitted
step (``make_train_step``), alternating within one process; the median of the per-round
ratios NNX / Linen. An NNX module is split once and merged inside the compiled step, so
the two should run the same program: the last column says whether their optimized HLO
has the same instructions (names, numbering, order and op metadata aside).

    python benchmarks/nnx_step.py                   # every network
    python benchmarks/nnx_step.py --repeats 5 --nets mnist1d,resnet20
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

import jax
import numpy as np
import optax
from flax import nnx
from train_step import program_text

from jaxconv import models
from jaxconv.models import nnx as nnx_models
from jaxconv.train import reuse_host_memory
from jaxconv.train.state import create_state, make_train_step

NETS = {  # name: (preset, its arguments, batch, input shape)
    "mnist1d": ("MNIST1DCNN", {}, 100, (40, 1)),
    "cnn1d": (
        "CNN",
        {
            "channels": (64,) * 4,
            "kernel_size": 5,
            "strides": (1, 2, 1, 2),
            "pool": "none",
            "dropout": 0.1,
        },
        128,
        (40, 1),
    ),  # fmt: skip
    "lenet5": ("LeNet5", {}, 128, (28, 28, 1)),
    "vgg6": ("VGG", {}, 128, (32, 32, 3)),
    "resnet20": ("ResNet", {}, 128, (32, 32, 3)),
}


def steps(name: str):
    """The Linen and NNX steps of one network from the same weights, compiled."""
    preset, options, batch, shape = NETS[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *shape)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    linen = getattr(models, preset)(**options)
    state = create_state(linen, x, optax.adam(1e-3), seed=0)
    twin = getattr(nnx_models, preset)(**options, input_shape=shape, rngs=nnx.Rngs(0))
    nnx_models.from_linen(twin, {"params": state.params, "batch_stats": state.batch_stats})
    out, programs = {}, {}
    for api, model in (("linen", linen), ("nnx", twin)):
        holder = [create_state(model, x, optax.adam(1e-3), seed=0)]
        step = make_train_step()
        programs[api] = _ops(program_text(step.lower(holder[0], x, y).compile()))

        def run(step=step, holder=holder):
            holder[0], metrics = step(holder[0], x, y)
            return metrics["loss"]

        out[api] = run
    return out, programs["linen"] == programs["nnx"]


def _ops(program: str) -> list[str]:
    """The program's instructions with every name numbered away, sorted: two programs
    that differ only in how XLA numbered and ordered their computations compare equal."""
    return sorted(re.sub(r"[\w.-]+\.\d+", "_", line).strip() for line in program.splitlines())


def timed(run, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count - 1):
        run()
    jax.block_until_ready(run())
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--nets", default=",".join(NETS))
    args = parser.parse_args()
    reuse_host_memory()
    print(f"# jax {jax.__version__} on {jax.devices()[0].device_kind}; median of {args.repeats}")
    print("| network (batch) | Linen ms | NNX ms | NNX / Linen | same program |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.nets.split(","):
        runs, same = steps(name)
        for run in runs.values():  # compile and warm up
            timed(run, 2)
        count = max(1, round(0.1 / min(timed(r, 1) for r in runs.values())))
        times = {k: [] for k in runs}
        for r in range(args.repeats):
            for key in ["linen", "nnx"] if r % 2 == 0 else ["nnx", "linen"]:
                times[key].append(timed(runs[key], count))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        ratio = statistics.median(a / b for a, b in zip(times["nnx"], times["linen"]))
        batch = NETS[name][2]
        print(f"| {name} ({batch}) | {med['linen']:.1f} | {med['nnx']:.1f} | {ratio:.2f} | "
              f"{'yes' if same else 'no'} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
