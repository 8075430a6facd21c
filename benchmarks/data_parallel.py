"""Training throughput of the default ``jaxconv-train`` run on one device with every
thread against the same run split over simulated CPU devices of one thread each.

On a CPU the simulated devices share the same cores, so this does not show scaling: it
shows what data parallelism costs (the all-reduces, the smaller per-device matmuls, one
thread per device) on the machine at hand. The two set-ups alternate (A, B, A, B, ...)
as separate ``jaxconv-train`` processes; images/s is read from metrics.csv's training
rows after the first evaluation (which holds the compilation), and the ratio is the
median of the per-round ratios.

    python benchmarks/data_parallel.py                 # 3 rounds, 2 devices
    python benchmarks/data_parallel.py --rounds 5 --devices 2 --steps 1000
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def images_per_second(env_flags: str, steps: int, run_dir: Path, extra: list[str]) -> float:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": env_flags}
    eval_every = steps // 4
    subprocess.run(
        [sys.executable, "-m", "jaxconv", f"trainer.max_steps={steps}",
         f"trainer.eval_every={eval_every}", "trainer.plots=false", "trainer.progress=false",
         f"hydra.run.dir={run_dir}", *extra],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    return statistics.median(float(r["images_per_s"]) for r in rows[1:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("overrides", nargs="*", help="extra jaxconv-train overrides")
    args = parser.parse_args()
    setups = {
        "1 device x all threads": "",
        f"{args.devices} devices x 1 thread": (
            f"--xla_force_host_platform_device_count={args.devices} {ONE_THREAD}"
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in setups}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for i, (name, flags) in enumerate(setups.items()):
                run_dir = Path(tmp) / f"{round_}_{i}"
                rates[name].append(images_per_second(flags, args.steps, run_dir, args.overrides))
                print(f"round {round_}: {name}: {rates[name][-1]:.0f} images/s", flush=True)
    a, b = rates.values()
    ratios = [y / x for x, y in zip(a, b)]
    print(f"\n# default run, {args.steps} steps, {os.cpu_count()} cores, {args.rounds} rounds")
    print("| set-up | images/s (median) | per round |")
    print("| --- | --- | --- |")
    for name, values in rates.items():
        each = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):.0f} | {each} |")
    each = ", ".join(f"{r:.2f}" for r in ratios)
    print(
        f"\nthroughput ratio, {list(setups)[1]} / {list(setups)[0]}: "
        f"{statistics.median(ratios):.2f} (per round: {each})"
    )


if __name__ == "__main__":
    main()
