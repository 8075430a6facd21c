"""Single layers against PyTorch: forward+backward of transposed, grouped, depthwise,
pointwise and strided convolutions, jaxconv (``lax``, ``window``, ``auto``) against the
same layer in PyTorch eager (``pip install torch==2.13.0``; never a dependency).

"f+b" is the output and the gradients a training step needs (the input's and the
kernel's; the kernel's alone for a first layer) for a fixed cotangent. Contenders
alternate within one process; a sample times three consecutive calls; the table quotes
medians and the median of the same-round ratios ``auto / PyTorch``. The process first
applies ``jaxconv.train.reuse_host_memory()`` as ``jaxconv-train`` does; PyTorch runs on
2 threads under the same setting.

    python benchmarks/layers_torch.py
    python benchmarks/layers_torch.py --repeats 5 --only transposed
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxconv
from jaxconv.train import reuse_host_memory

#: (kind, name, x shape (channels-last), kernel shape (jaxconv's), options, input gradient)
LAYERS = [
    ("transposed", "4x4 s2 p1 64->32, 7x7 (decoder)", (128, 7, 7, 64), (4, 4, 64, 32), {}, True),
    ("transposed", "4x4 s2 p1 32->1, 14x14 (decoder)", (128, 14, 14, 32), (4, 4, 32, 1), {}, True),
    (
        "transposed",
        "3-D 4x4x4 s2 p1 32->16, 8^3",
        (16, 8, 8, 8, 32),
        (4, 4, 4, 32, 16),
        {},
        True,
    ),
    ("strided", "4x4 s2 p1 1->32, 28x28 (encoder)", (128, 28, 28, 1), (4, 4, 1, 32), {}, False),
    ("strided", "4x4 s2 p1 32->64, 14x14 (encoder)", (128, 14, 14, 32), (4, 4, 32, 64), {}, True),
    (
        "grouped",
        "3x3 groups 2, 32->32, 32x32",
        (128, 32, 32, 32),
        (3, 3, 16, 32),
        {"groups": 2},
        True,
    ),
    (
        "grouped",
        "3x3 groups 4, 64->64, 16x16",
        (128, 16, 16, 64),
        (3, 3, 16, 64),
        {"groups": 4},
        True,
    ),
    (
        "grouped",
        "3x3 groups 8, 128->128, 8x8",
        (128, 8, 8, 128),
        (3, 3, 16, 128),
        {"groups": 8},
        True,
    ),
    ("depthwise", "3x3 32 ch, 32x32", (128, 32, 32, 32), (3, 3, 1, 32), {"groups": 32}, True),
    (
        "depthwise",
        "3x3 s2 64 ch, 32x32",
        (128, 32, 32, 64),
        (3, 3, 1, 64),
        {"groups": 64, "stride": 2},
        True,
    ),
    ("depthwise", "3x3 128 ch, 16x16", (128, 16, 16, 128), (3, 3, 1, 128), {"groups": 128}, True),
    ("resnet", "3x3 3->16, 32x32 (first)", (128, 32, 32, 3), (3, 3, 3, 16), {}, False),
    ("resnet", "3x3 16->16, 32x32 (x6)", (128, 32, 32, 16), (3, 3, 16, 16), {}, True),
    ("resnet", "3x3 s2 16->32, 32x32", (128, 32, 32, 16), (3, 3, 16, 32), {"stride": 2}, True),
    ("resnet", "1x1 s2 16->32, 32x32", (128, 32, 32, 16), (1, 1, 16, 32), {"stride": 2}, True),
    ("resnet", "3x3 32->32, 16x16 (x5)", (128, 16, 16, 32), (3, 3, 32, 32), {}, True),
    ("resnet", "3x3 s2 32->64, 16x16", (128, 16, 16, 32), (3, 3, 32, 64), {"stride": 2}, True),
    ("resnet", "1x1 s2 32->64, 16x16", (128, 16, 16, 32), (1, 1, 32, 64), {"stride": 2}, True),
    ("resnet", "3x3 64->64, 8x8 (x5)", (128, 8, 8, 64), (3, 3, 64, 64), {}, True),
    ("pointwise", "1x1 32->64, 32x32", (128, 32, 32, 32), (1, 1, 32, 64), {}, True),
    ("pointwise", "1x1 64->128, 16x16", (128, 16, 16, 64), (1, 1, 64, 128), {}, True),
    ("pointwise", "1x1 128->256, 8x8", (128, 8, 8, 128), (1, 1, 128, 256), {}, True),
]
BACKENDS = ("lax", "window", "auto")


def jax_layer(kind, x, k, kw, backend, input_grad):
    if kind == "transposed":
        op = lambda x, k: jaxconv.conv_transpose(x, k, stride=2, padding=1, backend=backend)
    else:
        kw = {"padding": 1 if k.shape[0] > 1 else 0, "stride": 2 if kind == "strided" else 1, **kw}
        op = lambda x, k: jaxconv.conv(x, k, backend=backend, **kw)
    ct = jnp.ones(jax.eval_shape(op, x, k).shape, x.dtype)

    @jax.jit
    def step(x, k):
        if input_grad:
            y, pullback = jax.vjp(op, x, k)
        else:
            y, pullback = jax.vjp(lambda k: op(x, k), k)
        return y, pullback(ct)

    return lambda: jax.block_until_ready(step(x, k))


def torch_layer(kind, x, k, kw, input_grad):
    import torch

    n = x.ndim - 2
    tx = torch.tensor(np.moveaxis(np.asarray(x), -1, 1), requires_grad=input_grad)
    if kind == "transposed":
        cls = (torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)[n - 2]
        layer = cls(k.shape[-2], k.shape[-1], k.shape[0], 2, 1, bias=False)
    else:
        groups = kw.get("groups", 1)
        stride = 2 if kind == "strided" else kw.get("stride", 1)
        layer = torch.nn.Conv2d(
            x.shape[-1],
            k.shape[-1],
            k.shape[0],
            stride,
            1 if k.shape[0] > 1 else 0,
            groups=groups,
            bias=False,
        )
    return torch_step(layer, tx)


def torch_step(layer, tx):
    """A call of ``layer`` on ``tx`` and its backward pass for a cotangent of ones
    (gradients cleared first): PyTorch's forward+backward of one layer."""
    import torch

    with torch.no_grad():
        ct = torch.ones_like(layer(tx))

    def run():
        layer.zero_grad(set_to_none=True)
        tx.grad = None
        layer(tx).backward(ct)

    return run


def sample(run, calls: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls


def alternate(runs: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each run, sampled in ``repeats`` rounds that each start one
    contender further on, after two untimed calls of each (compile, warm caches)."""
    for run in runs.values():
        run()
        run()
    times = {key: [] for key in runs}
    keys = list(runs)
    for r in range(repeats):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            times[key].append(sample(runs[key]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated kinds, e.g. transposed")
    args = parser.parse_args()
    reused = reuse_host_memory()
    import torch

    torch.set_num_threads(2)
    print(
        f"# jax {jax.__version__}, torch {torch.__version__} (2 threads); f+b medians of "
        f"{args.repeats}; host memory {'reused' if reused else 'glibc default'}"
    )
    print()
    head = ["kind", "layer (batch)", *(f"{b} ms" for b in BACKENDS), "PyTorch ms", "auto / PyTorch"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    rng = np.random.default_rng(0)
    kinds = set(args.only.split(",")) if args.only else None
    for kind, name, xs, ks, kw, input_grad in LAYERS:
        if kinds and kind not in kinds:
            continue
        x = jnp.asarray(rng.normal(size=xs), jnp.float32)
        k = jnp.asarray(rng.normal(size=ks), jnp.float32)
        runs = {b: jax_layer(kind, x, k, kw, b, input_grad) for b in BACKENDS}
        runs["torch"] = torch_layer(kind, x, k, kw, input_grad)
        times = alternate(runs, args.repeats)
        med = {key: statistics.median(v) * 1e3 for key, v in times.items()}
        ratio = statistics.median(a / b for a, b in zip(times["auto"], times["torch"]))
        cells = [kind, f"{name} ({xs[0]})", *(f"{med[b]:.2f}" for b in BACKENDS)]
        cells += [f"{med['torch']:.2f}", f"{ratio:.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
