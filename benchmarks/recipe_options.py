"""What each training-recipe option costs per step: ``jaxconv.train``'s jitted step with
the option on against the same step without it, alternating within one process (every
variant compiled before the first round), the median of the per-round time ratios.

Variants: a moving average of the weights (``trainer.ema_decay``), gradient accumulation
over 2 and 4 micro-batches (the same global batch), other Optax optimizers than the
default adamw (lion, lamb, contrib.schedule_free_adamw), weight decay masked to kernels,
and early stopping with a callback called after every step (timed through ``fit``, whose
evaluations cost the same either way).

    python benchmarks/recipe_options.py                    # the MNIST-1D CNN and ResNet-20
    python benchmarks/recipe_options.py --rounds 7 --nets resnet20
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from jaxconv import models
from jaxconv.train import reuse_host_memory
from jaxconv.train.optim import make_optimizer
from jaxconv.train.state import create_state, make_train_step, with_ema

NETS = {  # name: (preset, arguments, batch, input shape, steps per timing)
    "mnist1d_cnn": ("CNN", {"channels": (64,) * 4, "kernel_size": 5, "strides": (1, 2, 1, 2),
                            "pool": "none"}, 128, (40, 1), 60),
    "resnet20": ("ResNet", {}, 128, (32, 32, 3), 6),
}  # fmt: skip

#: variant: (optimizer name, its keywords, ema_decay, accumulate_steps)
VARIANTS = {
    "baseline (adamw)": ("adamw", {"weight_decay": 1e-4}, 0.0, 1),
    "ema_decay=0.999": ("adamw", {"weight_decay": 1e-4}, 0.999, 1),
    "accumulate_steps=2": ("adamw", {"weight_decay": 1e-4}, 0.0, 2),
    "accumulate_steps=4": ("adamw", {"weight_decay": 1e-4}, 0.0, 4),
    "decay_mask=kernels": ("adamw", {"weight_decay": 1e-4, "decay_mask": "kernels"}, 0.0, 1),
    "optimizer=lion": ("lion", {"weight_decay": 1e-4}, 0.0, 1),
    "optimizer=lamb": ("lamb", {"weight_decay": 1e-4}, 0.0, 1),
    "optimizer=schedule_free_adamw": ("contrib.schedule_free_adamw", {"weight_decay": 1e-4},
                                      0.0, 1),
}  # fmt: skip


def compiled(net: str):
    """Every variant's step and state for ``net``, compiled and run once."""
    preset, options, batch, shape, _ = NETS[net]
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.normal(size=(batch, *shape)).astype(np.float32))
    y = jax.device_put(rng.integers(0, 10, batch).astype(np.int32))
    model = getattr(models, preset)(**options)
    out = {}
    for name, (optimizer, keywords, ema, accumulate) in VARIANTS.items():
        state = create_state(model, x, make_optimizer(optimizer, 1e-3, **keywords), seed=0)
        state = with_ema(state, ema)
        step = make_train_step(accumulate=accumulate)
        state, metrics = step(state, x, y)
        jax.block_until_ready(metrics)
        out[name] = [step, state]
    return out, x, y


def timed(entry, x, y, steps: int) -> float:
    step, state = entry
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, x, y)
    jax.block_until_ready(metrics)
    entry[1] = state
    return (time.perf_counter() - start) / steps


def early_stopping_ratio(rounds: int) -> tuple[float, float, float]:
    """fit with early stopping (never triggered: patience beyond the run) / without, on
    digits, and without / without (the same fit twice: fit's own noise, compilation
    included, as each fit compiles its step); and the seconds of a fit without."""
    import optax

    from jaxconv.data import load_dataset
    from jaxconv.train import fit

    data = load_dataset("digits", val_fraction=0.1)
    model = models.CNN(channels=(16, 32), kernel_size=(3, 3), pool="max")
    early = {"monitor": "val/accuracy", "patience": 1000}
    common = dict(max_steps=200, batch_size=64, eval_every=50, progress=False)
    ratios, noise, seconds = [], [], []
    for _ in range(rounds):
        times = []
        for extra in ({}, {"early_stopping": early}, {}):
            start = time.perf_counter()
            fit(model, data, optax.adam(1e-3), **common, **extra)
            times.append(time.perf_counter() - start)
        ratios.append(times[1] / times[0])
        noise.append(times[2] / times[0])
        seconds.append(times[0])
    return statistics.median(ratios), statistics.median(noise), statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nets", default=",".join(NETS))
    args = parser.parse_args()
    reuse_host_memory()
    print(f"device: {jax.devices()[0].device_kind}; {args.rounds} alternating rounds; "
          "ratio = variant / baseline step time, median of rounds")  # fmt: skip
    for net in args.nets.split(","):
        steps = NETS[net][4]
        entries, x, y = compiled(net)
        times = {name: [] for name in VARIANTS}
        for _ in range(args.rounds):
            for name, entry in entries.items():
                times[name].append(timed(entry, x, y, steps))
        base = times["baseline (adamw)"]
        print(f"\n{net} (batch {NETS[net][2]}), baseline {1e3 * statistics.median(base):.2f} "
              "ms/step")  # fmt: skip
        print("| option | ms/step | ratio |\n| --- | --- | --- |")
        for name, values in times.items():
            ratio = statistics.median(v / b for v, b in zip(values, base))
            print(f"| {name} | {1e3 * statistics.median(values):.2f} | {ratio:.3f} |")
    ratio, noise, seconds = early_stopping_ratio(args.rounds)
    print(
        f"\nfit with early stopping / without (digits CNN, 200 steps, {seconds:.2f} s "
        f"without): {ratio:.3f}; the same fit twice: {noise:.3f}"
    )


if __name__ == "__main__":
    main()
