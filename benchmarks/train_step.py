"""One Adam training step of the same networks: jaxconv (each backend) vs stock
``flax.linen.Conv`` vs PyTorch eager (when installed: ``pip install torch==2.13.0``).

Contenders alternate within one process (each round starting one contender further on,
after an untimed sample of each) and the median of the repeats is quoted, so machine
noise hits all of them alike; images/s is the batch over the median step time;
ratios are medians of the per-round ratios (each
round runs every contender once; a millisecond step is timed over enough consecutive
steps to last ~0.1 s), which holds up better under drift than a ratio of
medians. Where ``auto`` compiles to the very program ``lax`` does (the optimized HLO
equal, op metadata aside), its ratio to ``lax`` says "(same program)": any difference
there is noise. Also prints the scratch memory XLA reserves for the
compiled jaxconv step against the stock Flax step.

The process first applies ``jaxconv.train.reuse_host_memory()``, as ``jaxconv-train``
does (``--host-memory default`` leaves glibc's allocator as it is); it is process-wide, so
PyTorch runs under the same setting.

    python benchmarks/train_step.py                # all networks
    python benchmarks/train_step.py --repeats 3 --nets mnist1d,mnist
    python benchmarks/train_step.py --host-memory default
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from functools import partial

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxconv
from jaxconv import nn as jnn
from jaxconv.train import reuse_host_memory

BACKENDS = jaxconv.backends()


# ---- the networks, written once over a conv layer and a max-pool function ------------
class _Net(fnn.Module):
    conv: callable
    pool: callable
    deconv: callable = None  # a ConvTranspose factory with PyTorch's padding: (features, k, s, p)


class MNIST1DNet(_Net):
    @fnn.compact
    def __call__(self, x):
        for k in (5, 3, 3):
            x = fnn.relu(self.conv(25, (k,), strides=(2,), padding=((1, 1),))(x))
        return fnn.Dense(10)(x.reshape(x.shape[0], -1))


class MNISTNet(_Net):
    @fnn.compact
    def __call__(self, x):
        x = fnn.relu(self.conv(32, (3, 3), padding="VALID")(x))
        x = fnn.relu(self.conv(64, (3, 3), padding="VALID")(x))
        x = self.pool(x)
        x = fnn.relu(fnn.Dense(128)(x.reshape(x.shape[0], -1)))
        return fnn.Dense(10)(x)


class VGG6(_Net):
    @fnn.compact
    def __call__(self, x):
        for width in (32, 64, 128):
            for _ in range(2):
                x = fnn.relu(self.conv(width, (3, 3), padding="SAME")(x))
            x = self.pool(x)
        return fnn.Dense(10)(x.reshape(x.shape[0], -1))


class ResNet20(_Net):
    @fnn.compact
    def __call__(self, x):
        bn = partial(fnn.BatchNorm, use_running_average=False, momentum=0.9)
        x = fnn.relu(bn()(self.conv(16, (3, 3), padding="SAME", use_bias=False)(x)))
        for stage, width in enumerate((16, 32, 64)):
            for block in range(3):
                stride = 2 if stage > 0 and block == 0 else 1
                y = fnn.relu(
                    bn()(
                        self.conv(
                            width, (3, 3), strides=(stride, stride), padding="SAME", use_bias=False
                        )(x)
                    )
                )
                y = bn()(self.conv(width, (3, 3), padding="SAME", use_bias=False)(y))
                if stride != 1 or x.shape[-1] != width:
                    x = bn()(self.conv(width, (1, 1), strides=(stride, stride), use_bias=False)(x))
                x = fnn.relu(x + y)
        return fnn.Dense(10)(x.mean(axis=(1, 2)))


class ConvAutoencoder(_Net):
    @fnn.compact
    def __call__(self, x):
        for width in (32, 64):
            x = fnn.relu(self.conv(width, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))(x))
        x = fnn.relu(self.deconv(32, 4, 2, 1)(x))
        return self.deconv(1, 4, 2, 1)(x)


class MobileNet(_Net):
    @fnn.compact
    def __call__(self, x):
        bn = partial(fnn.BatchNorm, use_running_average=False, momentum=0.9)
        x = fnn.relu(bn()(self.conv(32, (3, 3), padding="SAME", use_bias=False)(x)))
        for stride, width in zip((1, 2, 1, 2), (64, 128, 128, 256)):
            depthwise = self.conv(
                x.shape[-1],
                (3, 3),
                strides=(stride, stride),
                padding=((1, 1), (1, 1)),
                feature_group_count=x.shape[-1],
                use_bias=False,
            )
            x = fnn.relu(bn()(depthwise(x)))
            x = fnn.relu(bn()(self.conv(width, (1, 1), use_bias=False)(x)))
        return fnn.Dense(10)(x.mean(axis=(1, 2)))


def flax_deconv(features, k, s, p):
    """Stock ``flax.linen.ConvTranspose`` with PyTorch's ``padding=p``: the transposed
    kernel and ``k - 1 - p`` explicit padding per side."""
    pad = ((k - 1 - p, k - 1 - p),) * 2
    return fnn.ConvTranspose(features, (k, k), strides=(s, s), padding=pad, transpose_kernel=True)


def jaxconv_deconv(backend):
    def make(features, k, s, p):
        return jnn.ConvTranspose(features, (k, k), strides=s, padding=p, backend=backend)

    return make


NETS = {  # name: (module class, batch, input shape)
    "mnist1d": (MNIST1DNet, 100, (40, 1)),
    "mnist": (MNISTNet, 128, (28, 28, 1)),
    "vgg6": (VGG6, 128, (32, 32, 3)),
    "resnet20": (ResNet20, 128, (32, 32, 3)),
    "autoencoder": (ConvAutoencoder, 128, (28, 28, 1)),
    "mobilenet": (MobileNet, 128, (32, 32, 3)),
}


def jax_step(net_cls, conv, pool, deconv, x, y):
    model = net_cls(conv=conv, pool=pool, deconv=deconv)
    variables = model.init(jax.random.key(0), x)
    params, stats = variables["params"], variables.get("batch_stats", {})
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    def loss_fn(params, stats, x, y):
        if stats:
            logits, new = model.apply(
                {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
            )
            stats = new["batch_stats"]
        else:
            logits = model.apply({"params": params}, x)
        if logits.shape == x.shape:  # the autoencoder: reconstruction error
            return jnp.mean((logits - x) ** 2), stats
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), stats

    @partial(jax.jit, donate_argnums=(0, 1, 2))  # updated in place, as jaxconv.train's step
    def step(params, stats, opt_state, x, y):
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    state = [params, stats, opt_state]

    def run():
        state[0], state[1], state[2], loss = step(state[0], state[1], state[2], x, y)
        return loss

    compiled = step.lower(params, stats, opt_state, x, y).compile()
    memory = compiled.memory_analysis()
    return run, getattr(memory, "temp_size_in_bytes", None), program_text(compiled)


def program_text(compiled) -> str:
    """The optimized HLO of a compiled step without its source locations (the tables of
    file names, functions, lines and stack frames, and each op's metadata), so two steps
    that run the same program compare equal."""
    tables = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")
    blocks = [b for b in compiled.as_text().split("\n\n") if not b.strip().startswith(tables)]
    return re.sub(r",? metadata=\{[^}]*\}", "", "\n\n".join(blocks))


def torch_step(name, batch, shape):
    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(0)
    if name == "mnist1d":
        net = nn.Sequential(
            nn.Conv1d(1, 25, 5, 2, 1),
            nn.ReLU(),
            nn.Conv1d(25, 25, 3, 2, 1),
            nn.ReLU(),
            nn.Conv1d(25, 25, 3, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(125, 10),
        )
    elif name == "mnist":
        net = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(9216, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
    elif name == "vgg6":
        layers, cin = [], 3
        for width in (32, 64, 128):
            layers += [
                nn.Conv2d(cin, width, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            cin = width
        net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(2048, 10))
    elif name == "autoencoder":
        net = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1),
        )
    elif name == "mobilenet":
        layers, cin = [nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()], 32
        for stride, width in zip((1, 2, 1, 2), (64, 128, 128, 256)):
            layers += [
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
                nn.BatchNorm2d(cin),
                nn.ReLU(),
                nn.Conv2d(cin, width, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            cin = width
        net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))
    else:

        class Block(nn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.b1 = nn.BatchNorm2d(cout)
                self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.b2 = nn.BatchNorm2d(cout)
                self.short = (
                    nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                    if stride != 1 or cin != cout
                    else nn.Identity()
                )

            def forward(self, x):
                y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
                return torch.relu(self.short(x) + y)

        blocks, cin = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for b in range(3):
                blocks.append(Block(cin, width, 2 if stage > 0 and b == 0 else 1))
                cin = width
        net = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            *blocks,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 10),
        )
    layout = (batch, shape[-1], *shape[:-1])
    x = torch.randn(layout)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    if name == "autoencoder":
        target, y, mse = x, x, nn.MSELoss()

        def loss_fn(out, _):
            return mse(out, target)
    else:
        loss_fn = nn.CrossEntropyLoss()

    def run():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss

    return run


def timed(run, sync, steps: int = 1) -> float:
    """Seconds per step over ``steps`` consecutive steps (synchronised once at the end)."""
    start = time.perf_counter()
    for _ in range(steps - 1):
        run()
    sync(run())
    return (time.perf_counter() - start) / steps


#: A sample times enough consecutive steps to last about this long, so millisecond steps
#: are not measured one by one (there, one sample's noise is tens of percent).
SAMPLE_SECONDS = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument(
        "--host-memory",
        choices=("reuse", "default"),
        default="reuse",
        help="reuse: jaxconv.train.reuse_host_memory() before the backend starts "
        "(as jaxconv-train)",
    )
    args = parser.parse_args()
    reused = args.host_memory == "reuse" and reuse_host_memory()
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    backends = args.backends.split(",")
    print(
        f"# jax {jax.__version__} on {jax.devices()[0].device_kind}; "
        f"{f'torch {torch.__version__} (2 threads)' if have_torch else 'PyTorch not installed'}; "
        f"median of {args.repeats} samples after warm-up; host memory: "
        f"{'reused (jaxconv.train.reuse_host_memory)' if reused else 'glibc default'}"
    )
    print()
    head = ["network (batch)", "stock Flax ms"] + [f"jaxconv {b} ms" for b in backends]
    head += [
        "PyTorch ms",
        "auto images/s",
        "PyTorch images/s",
        "auto / Flax",
        "auto / PyTorch",
        "auto / lax",
        "scratch MiB auto / Flax",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for name in args.nets.split(","):
        net_cls, batch, shape = NETS[name]
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(batch, *shape)), jnp.float32)
        y = jnp.asarray(rng.integers(0, 10, batch))
        n = len(shape) - 1
        flax_pool = partial(fnn.max_pool, window_shape=(2,) * n, strides=(2,) * n)
        contenders, memory, programs = {}, {}, {}
        contenders["flax"], memory["flax"], programs["flax"] = jax_step(
            net_cls, fnn.Conv, flax_pool, flax_deconv, x, y
        )
        for b in backends:
            conv = partial(jnn.Conv, backend=b)
            pool = partial(jaxconv.max_pool, window=2, backend=b)
            contenders[b], memory[b], programs[b] = jax_step(
                net_cls, conv, pool, jaxconv_deconv(b), x, y
            )
        sync = {k: jax.block_until_ready for k in contenders}
        if have_torch:
            contenders["torch"] = torch_step(name, batch, shape)
            sync["torch"] = lambda loss: loss.item()
        for key, run in contenders.items():  # warm-up (compilation)
            sync[key](run())
            sync[key](run())
        fastest = min(timed(run, sync[key]) for key, run in contenders.items())
        steps = max(1, round(SAMPLE_SECONDS / fastest))  # the same for every contender
        for key, run in contenders.items():  # one untimed sample each: caches, pages, threads
            timed(run, sync[key], steps)
        times = {k: [] for k in contenders}
        keys = list(contenders)
        for r in range(args.repeats):
            # each round starts one contender further on, so none always follows the same one
            for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
                times[key].append(timed(contenders[key], sync[key], steps))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}

        def ratio(a: str, b: str) -> str:  # median over rounds of the same-round ratio
            if a not in times or b not in times:
                return "-"
            return f"{statistics.median(x / y for x, y in zip(times[a], times[b])):.2f}"

        cells = [f"{name} ({batch})", f"{med['flax']:.1f}"] + [f"{med[b]:.1f}" for b in backends]
        cells += [f"{med['torch']:.1f}" if have_torch else "-"]
        cells += [f"{batch / med[k] * 1e3:.0f}" if k in med else "-" for k in ("auto", "torch")]
        same = "auto" in programs and programs["auto"] == programs.get("lax")
        cells += [
            ratio("auto", "flax"),
            ratio("auto", "torch"),
            ratio("auto", "lax") + (" (same program)" if same else ""),
        ]
        mem_auto, mem_flax = memory.get("auto"), memory.get("flax")
        cells += [
            f"{mem_auto / 2**20:.0f} / {mem_flax / 2**20:.0f}" if mem_auto and mem_flax else "-"
        ]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
