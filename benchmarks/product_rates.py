"""How fast does XLA:CPU run the matrix products of a network's convolutions? Each
layer's products timed alone as whole XLA dots, against the same products in numpy
(OpenBLAS) and ``torch.mm``, and against PyTorch's own layer (oneDNN), with the rates
(GFLOP/s) they reach.

An im2col form of a convolution (or of a transposed one: the same three products, forward
and input gradient swapped) needs three products a training step: the forward ``(P, k C)
@ (k C, O)``, the input gradient ``(P, O) @ (O, k C)`` and the kernel gradient ``(k C,
P) @ (P, O)``, with ``P`` the output positions over the batch and ``k`` the taps (a first
layer has no input gradient). Nothing else is counted: no patches, no col2im, no
normalisation. Whole products are not the fastest schedule (``window`` runs them in
cache-sized chunks, XLA's own convolution and Winograd do other work), so the XLA column
is not a bound; the rates say how far XLA's products are from what PyTorch's layers
reach on the same shapes. Depthwise layers are not products and are left out. Operands
are jit arguments; contenders alternate within one process; medians of ``--repeats``.

    python benchmarks/product_rates.py            # torch==2.13.0 for the PyTorch columns
    python benchmarks/product_rates.py --nets resnet20 --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# run as a script (python benchmarks/product_rates.py): its folder is on the path
from layers_torch import alternate, torch_step

from jaxconv.train import reuse_host_memory


class Layer(NamedTuple):
    """One convolution of a network, as the products see it and as PyTorch's layer runs it.

    ``positions`` are output positions per image, ``taps`` the kernel's, ``cin``/``cout``
    the channels of one group's product (``groups`` of them); ``first``: no input
    gradient. ``stride``, ``padding``, ``side`` (input height and width) are PyTorch's.
    A transposed layer is given as the stride-1 convolution of its sub-pixel phases, the
    form jaxconv computes (``jaxconv.ops.phases``); its PyTorch layer is the
    ``ConvTranspose2d`` that ``torch_transposed`` describes.
    """

    name: str
    count: int
    positions: int
    taps: int
    cin: int
    cout: int
    first: bool = False
    stride: int = 1
    padding: int = 1
    side: int = 32
    groups: int = 1
    #: (cin, cout, k, stride, padding, side) of a ConvTranspose2d, for a transposed layer
    torch_transposed: tuple | None = None


BATCH = 128
NETS = {
    "resnet20": [
        Layer("3x3 3->16, 32x32 (first)", 1, 32 * 32, 9, 3, 16, first=True),
        Layer("3x3 16->16, 32x32", 6, 32 * 32, 9, 16, 16),
        Layer("3x3 s2 16->32, 32x32", 1, 16 * 16, 9, 16, 32, stride=2),
        Layer("1x1 s2 16->32, 32x32", 1, 16 * 16, 1, 16, 32, stride=2, padding=0),
        Layer("3x3 32->32, 16x16", 5, 16 * 16, 9, 32, 32, side=16),
        Layer("3x3 s2 32->64, 16x16", 1, 8 * 8, 9, 32, 64, stride=2, side=16),
        Layer("1x1 s2 32->64, 16x16", 1, 8 * 8, 1, 32, 64, stride=2, padding=0, side=16),
        Layer("3x3 64->64, 8x8", 5, 8 * 8, 9, 64, 64, side=8),
    ],
    "autoencoder": [
        Layer("4x4 s2 1->32, 28x28 (first)", 1, 14 * 14, 16, 1, 32, True, 2, 1, 28),
        Layer("4x4 s2 32->64, 14x14", 1, 7 * 7, 16, 32, 64, stride=2, side=14),
        Layer(
            "transposed 4x4 s2 64->32, 7x7 (as 2x2 64->128 on 8x8)",
            1,
            8 * 8,
            4,
            64,
            128,
            torch_transposed=(64, 32, 4, 2, 1, 7),
        ),
        Layer(
            "transposed 4x4 s2 32->1, 14x14 (as its 4x4 32->1 adjoint)",
            1,
            14 * 14,
            16,
            1,
            32,
            torch_transposed=(32, 1, 4, 2, 1, 14),
        ),
    ],
    "mobilenet": [  # its depthwise layers are not products
        Layer("3x3 3->32, 32x32 (first)", 1, 32 * 32, 9, 3, 32, first=True),
        Layer("1x1 32->64, 32x32", 1, 32 * 32, 1, 32, 64, padding=0),
        Layer("1x1 64->128, 16x16", 1, 16 * 16, 1, 64, 128, padding=0, side=16),
        Layer("1x1 128->128, 16x16", 1, 16 * 16, 1, 128, 128, padding=0, side=16),
        Layer("1x1 128->256, 8x8", 1, 8 * 8, 1, 128, 256, padding=0, side=8),
    ],
    "grouped": [  # one product per group, as policy.split_groups runs them
        Layer("3x3 groups 2, 32->32, 32x32", 1, 32 * 32, 9, 16, 16, groups=2),
        Layer("3x3 groups 4, 64->64, 16x16", 1, 16 * 16, 9, 16, 16, side=16, groups=4),
        Layer("3x3 groups 8, 128->128, 8x8", 1, 8 * 8, 9, 16, 16, side=8, groups=8),
    ],
}


def products(layer: Layer):
    """The (m, k, n) of each product a training step needs for one group of this layer."""
    p, kc = BATCH * layer.positions, layer.taps * layer.cin
    shapes = [(p, kc, layer.cout), (kc, p, layer.cout)]  # forward, kernel gradient
    if not layer.first:
        shapes.append((p, layer.cout, kc))  # input gradient
    return shapes


def xla_product(m, k, n, rng):
    a = jnp.asarray(rng.standard_normal((m, k), np.float32))
    b = jnp.asarray(rng.standard_normal((k, n), np.float32))
    dot = jax.jit(jnp.dot)
    return lambda: jax.block_until_ready(dot(a, b))


def numpy_product(m, k, n, rng):
    a = rng.standard_normal((m, k), np.float32)
    b = rng.standard_normal((k, n), np.float32)
    return lambda: a @ b


def torch_product(m, k, n, rng):
    import torch

    a = torch.tensor(rng.standard_normal((m, k), np.float32))
    b = torch.tensor(rng.standard_normal((k, n), np.float32))
    return lambda: torch.mm(a, b)


def torch_layer(layer: Layer, rng):
    import torch

    if layer.torch_transposed is not None:
        cin, cout, size, stride, padding, side = layer.torch_transposed
        module = torch.nn.ConvTranspose2d(cin, cout, size, stride, padding, bias=False)
    else:
        cin, cout = layer.cin * layer.groups, layer.cout * layer.groups
        size, side = int(round(layer.taps**0.5)), layer.side
        module = torch.nn.Conv2d(
            cin, cout, size, layer.stride, layer.padding, groups=layer.groups, bias=False
        )
    x = torch.tensor(rng.standard_normal((BATCH, cin, side, side), np.float32))
    x.requires_grad_(not layer.first)
    return torch_step(module, x)


def measure(runs, repeats):
    """Median milliseconds per call of each run, the runs alternating."""
    return {key: statistics.median(v) * 1e3 for key, v in alternate(runs, repeats).items()}


def rates(row) -> list[str]:
    """GFLOP/s of the XLA products and of PyTorch's layer, from (GFLOP, ms, ..., ms)."""
    return [f"{row[0] / row[1] * 1e3:.0f}", f"{row[0] / row[4] * 1e3:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--nets", default=",".join(NETS), help="comma-separated, of " + ", ".join(NETS)
    )
    args = parser.parse_args()
    reused = reuse_host_memory()
    try:
        import torch

        torch.set_num_threads(2)
        have_torch = True
    except ImportError:
        have_torch = False
    print(
        f"# jax {jax.__version__}; per layer and per step, ms (medians of {args.repeats});"
        f" host memory {'reused' if reused else 'glibc default'}"
    )
    print()
    head = [
        "net",
        "layer (x count)",
        "GFLOP",
        "XLA dot",
        "OpenBLAS",
        "torch.mm",
        "PyTorch layer",
        "XLA dot GFLOP/s",
        "PyTorch layer GFLOP/s",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    rng = np.random.default_rng(0)
    for net in args.nets.split(","):
        totals = np.zeros(5)
        for layer in NETS[net]:
            row = np.zeros(5)
            for m, k, n in products(layer):
                runs = {"xla": xla_product(m, k, n, rng), "numpy": numpy_product(m, k, n, rng)}
                if have_torch:
                    runs["torch"] = torch_product(m, k, n, rng)
                med = measure(runs, args.repeats)
                flops = 2 * m * k * n / 1e9
                row[:4] += layer.groups * np.array(
                    [flops, med["xla"], med["numpy"], med.get("torch", np.nan)]
                )
            row[4] = (
                measure({"layer": torch_layer(layer, rng)}, args.repeats)["layer"]
                if have_torch
                else np.nan
            )
            totals += row * layer.count
            cells = [net, f"{layer.name} (x{layer.count})", f"{row[0]:.2f}"]
            cells += [f"{v:.2f}" for v in row[1:]] + rates(row)
            print("| " + " | ".join(cells) + " |", flush=True)
        if net != "grouped":  # its rows are three layers, not one network
            cells = [net, "**all, per step**", f"{totals[0]:.2f}"]
            cells += [f"**{v:.1f}**" for v in totals[1:]] + rates(totals)
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
