"""Forward and forward+backward time of each conv backend, as ratios to ``lax``.

Contenders run alternately (lax, window, fft, winograd, auto, lax, ...) within one process;
times are medians of the repeats and ratios are medians of the same-round ratios to lax,
so machine noise and drift hit all of them alike. The process first applies
``jaxconv.train.reuse_host_memory()`` as ``jaxconv-train`` does (``--host-memory default``
to leave glibc's allocator as it is).

"fwd" is the output alone; "f+b" (forward+backward) returns the output and both
gradients for a random cotangent, as a training step needs them. The last two columns
put ``window`` against the fastest backend of each round, and the least time any direct
method could take (the forward's and both gradients' multiply-adds at this machine's
2048^2 matmul rate) against the fastest backend: where that floor is above 1.5, no direct
convolution can come within 1.5x of the fast algorithm (Winograd, FFT) that wins.

    python benchmarks/conv_backends.py            # the README table
    python benchmarks/conv_backends.py --repeats 3 --quick
"""

from __future__ import annotations

import argparse
import importlib
import math
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxconv
from jaxconv.train import reuse_host_memory

BACKENDS = jaxconv.backends()  # the registry's order: lax first, the ratios' base


def layers(quick: bool):
    b = 8 if quick else 64
    return [
        # name, x shape, kernel shape, conv kwargs
        ("2-D 3x3 64->64, 32x32", (b, 32, 32, 64), (3, 3, 64, 64), dict(padding="SAME")),
        (
            "2-D 3x3 32->64, 26x26 valid (MNIST net)",
            (b, 26, 26, 32),
            (3, 3, 32, 64),
            dict(padding="VALID"),
        ),
        ("2-D 3x3 32->32, 32x32 (VGG-6)", (b, 32, 32, 32), (3, 3, 32, 32), dict(padding="SAME")),
        ("2-D 3x3 64->128, 8x8 (VGG-6)", (b, 8, 8, 64), (3, 3, 64, 128), dict(padding="SAME")),
        ("2-D 3x3 128->128, 8x8 (VGG-6)", (b, 8, 8, 128), (3, 3, 128, 128), dict(padding="SAME")),
        (
            "2-D 3x3 16->16, 32x32 (ResNet-20)",
            (b, 32, 32, 16),
            (3, 3, 16, 16),
            dict(padding="SAME"),
        ),
        ("2-D 5x5 64->64, 16x16", (b, 16, 16, 64), (5, 5, 64, 64), dict(padding="SAME")),
        ("2-D 3x3 3->32, 32x32 (RGB input)", (b, 32, 32, 3), (3, 3, 3, 32), dict(padding="SAME")),
        (
            "2-D 3x3 32->64 stride 2",
            (b, 32, 32, 32),
            (3, 3, 32, 64),
            dict(padding="SAME", stride=2),
        ),
        (
            "2-D depthwise 3x3, 64 ch",
            (b, 32, 32, 64),
            (3, 3, 1, 64),
            dict(padding="SAME", groups=64),
        ),
        (
            "2-D transposed 4x4 s2 64->32, 7x7 (decoder)",
            (b, 7, 7, 64),
            (4, 4, 64, 32),
            dict(transpose=True, stride=2, padding=1),
        ),
        (
            "2-D transposed 4x4 s2 32->1, 14x14 (decoder)",
            (b, 14, 14, 32),
            (4, 4, 32, 1),
            dict(transpose=True, stride=2, padding=1),
        ),
        (
            "3-D transposed 4x4x4 s2 32->16, 8^3",
            (max(1, b // 8), 8, 8, 8, 32),
            (4, 4, 4, 32, 16),
            dict(transpose=True, stride=2, padding=1),
        ),
        (
            "2-D 3x3 groups 2, 32->32, 32x32",
            (b, 32, 32, 32),
            (3, 3, 16, 32),
            dict(padding="SAME", groups=2),
        ),
        (
            "2-D 3x3 groups 4, 64->64, 16x16",
            (b, 16, 16, 64),
            (3, 3, 16, 64),
            dict(padding="SAME", groups=4),
        ),
        (
            "2-D 3x3 groups 8, 128->128, 8x8",
            (b, 8, 8, 128),
            (3, 3, 16, 128),
            dict(padding="SAME", groups=8),
        ),
        ("2-D 1x1 32->64, 32x32 (pointwise)", (b, 32, 32, 32), (1, 1, 32, 64), {}),
        ("2-D 1x1 64->128, 16x16 (pointwise)", (b, 16, 16, 64), (1, 1, 64, 128), {}),
        ("2-D 1x1 128->256, 8x8 (pointwise)", (b, 8, 8, 128), (1, 1, 128, 256), {}),
        ("1-D MNIST-1D layer k5 32->32", (100, 40, 32), (5, 32, 32), dict(padding=2)),
        ("1-D signal, 16 taps", (16, 8192, 1), (16, 1, 1), dict(padding="SAME")),
        ("1-D signal, 64 taps", (16, 8192, 1), (64, 1, 1), dict(padding="SAME")),
        ("1-D signal, 256 taps", (16, 8192, 1), (256, 1, 1), dict(padding="SAME")),
        ("1-D 8->8 ch, 32 taps", (16, 4096, 8), (32, 8, 8), dict(padding="SAME")),
        ("1-D 8->8 ch, 128 taps", (16, 4096, 8), (128, 8, 8), dict(padding="SAME")),
    ]


def flops(x_shape, k_shape, out_shape, transpose=False):
    """Multiply-adds x 2 of the forward (``k_shape[-2]`` is the input channels per group;
    a transposed convolution multiplies each input sample by every tap once)."""
    taps = math.prod(k_shape[:-2])
    if transpose:
        return 2.0 * math.prod(x_shape[:-1]) * taps * k_shape[-2] * k_shape[-1]
    return 2.0 * math.prod(out_shape) * taps * k_shape[-2]


def layer_op(kw):
    """``(x, k, backend) -> y`` for a row's options (``transpose=True``: ``conv_transpose``)."""
    kw = dict(kw)
    fn = jaxconv.conv_transpose if kw.pop("transpose", False) else jaxconv.conv
    return lambda x, k, backend: fn(x, k, backend=backend, **kw)


#: The table's names of the forms ``auto`` may run a layer in instead of one convolution.
FORMS = {"sub-pixel": "sub-pixel", "by groups": "per group", "space to depth": "space to depth"}


def auto_plan(op, x, k) -> str:
    """What ``auto`` runs for ``op``, read off one trace: the form (sub-pixel phases,
    space to depth, group by group) and the backend of each convolution it then runs
    (every plan ``conv`` makes while tracing, recorded)."""
    conv_module = importlib.import_module("jaxconv.ops.conv")  # the module, not the function
    original, plans = conv_module.plan, []

    def recorded(problem, backend="auto"):
        plans.append(original(problem, backend))
        return plans[-1]

    conv_module.plan = recorded
    try:
        jax.eval_shape(lambda x, k: op(x, k, "auto"), x, k)
    finally:
        conv_module.plan = original
    forms = [FORMS[p.form] for p in plans if p.form in FORMS]
    picked = [p.backend for p in plans if p.form not in FORMS]
    counts = {b: picked.count(b) for b in dict.fromkeys(picked)}
    backends = ", ".join(b if c == 1 else f"{c} x {b}" for b, c in counts.items())
    return f"{' + '.join(dict.fromkeys(forms))}: {backends}" if forms else backends


def timed(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    best = min(timed(f, a) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="batch 8 instead of 64")
    parser.add_argument("--host-memory", choices=("reuse", "default"), default="reuse")
    args = parser.parse_args()
    reused = args.host_memory == "reuse" and reuse_host_memory()

    peak = matmul_gflops()
    print(
        f"# {platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
        f"jax {jax.__version__}; matmul 2048^2: {peak:.1f} GFLOP/s; median of {args.repeats}; "
        f"host memory {'reused' if reused else 'glibc default'}"
    )
    print()
    others = BACKENDS[1:]
    head = [
        "layer",
        "auto picks",
        "fwd lax ms",
        *(f"fwd {b} / lax" for b in others),
        "fwd+bwd lax ms",
        *(f"f+b {b} / lax" for b in others),
        "best fwd GFLOP/s, direct-equivalent (% of matmul)",
        "f+b window / best",
        "f+b direct floor / best",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    rng = np.random.default_rng(0)
    for name, xs, ks, kw in layers(args.quick):
        x = jnp.asarray(rng.normal(size=xs), jnp.float32)
        k = jnp.asarray(rng.normal(size=ks), jnp.float32)
        fwd, both = {}, {}
        op = layer_op(kw)
        for b in BACKENDS:

            def f(x, k, b=b):
                return op(x, k, b)

            def g(x, k, dy, f=f):  # the output and both gradients for a random cotangent
                y, pullback = jax.vjp(f, x, k)
                return y, pullback(dy)

            fwd[b], both[b] = (jax.jit(f), []), (jax.jit(g), [])
        dy = jnp.asarray(rng.normal(size=fwd["lax"][0](x, k).shape), jnp.float32)
        for b in BACKENDS:
            jax.block_until_ready(fwd[b][0](x, k))
            jax.block_until_ready(both[b][0](x, k, dy))
        for _ in range(args.repeats):
            for b in BACKENDS:
                fwd[b][1].append(timed(fwd[b][0], x, k))
                both[b][1].append(timed(both[b][0], x, k, dy))
        med_f = {b: statistics.median(v[1]) for b, v in fwd.items()}
        med_b = {b: statistics.median(v[1]) for b, v in both.items()}

        def paired(times, b):  # median over rounds of the same-round ratio to lax
            return statistics.median(t / r for t, r in zip(times[b][1], times["lax"][1]))

        out_shape = fwd["lax"][0](x, k).shape
        gf = flops(xs, ks, out_shape, kw.get("transpose", False)) / min(med_f.values()) / 1e9
        picks = auto_plan(op, x, k)
        cells = [name, picks, f"{med_f['lax'] * 1e3:.2f}"]
        cells += [f"{paired(fwd, b):.2f}" for b in BACKENDS[1:]]
        cells += [f"{med_b['lax'] * 1e3:.1f}"]
        cells += [f"{paired(both, b):.2f}" for b in BACKENDS[1:]]
        cells += [f"{gf:.1f} ({100 * gf / peak:.0f}%)"]
        # window against the fastest backend of the same round, and the least time any
        # direct method needs (three convolutions' multiply-adds at the matmul rate)
        # against the fastest backend's median.
        rounds = zip(*(both[b][1] for b in BACKENDS))
        to_best = statistics.median(r[BACKENDS.index("window")] / min(r) for r in rounds)
        floor_s = 3 * flops(xs, ks, out_shape, kw.get("transpose", False)) / (peak * 1e9)
        cells += [f"{to_best:.2f}", f"{floor_s / min(med_b.values()):.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
