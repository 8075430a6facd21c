"""The convolution tutorial's code: every figure and number of ``docs/tutorial.md``.

    python -m jaxconv.tutorial OUT_DIR      # figures (PNG) and numbers.json, seconds on a CPU

Each step is a function that returns the numbers the tutorial states and draws its
figure; :func:`run` calls them in the tutorial's order. ``tests/test_tutorial.py`` runs
them and compares every stated number with an independent computation and with the text
of ``docs/tutorial.md``, so the tutorial cannot go stale.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxconv
from jaxconv._atomic import unwritable
from jaxconv._figure import subplots

SIGNAL = [1.0, 2.0, 3.0, 4.0, 5.0]
BOX3 = [1.0, 1.0, 1.0]
RAMP3 = [1.0, 2.0, 3.0]

#: Hand-designed 3x3 kernels, applied by correlation (the CNN convention).
KERNELS = {
    "box blur": np.full((3, 3), 1.0 / 9.0),
    "Sobel x": np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
    "Sobel y": np.array([[-1.0, -2, -1], [0, 0, 0], [1, 2, 1]]),
    "Laplacian": np.array([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    "corner": np.array([[1.0, -1, 0], [-1, 1, 0], [0, 0, 0]]),
}


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=60, bbox_inches="tight")
    return path.name


def _signed(ax, values, gray: bool = False) -> None:
    """Show signed values with zero white (red positive, blue negative)."""
    if gray:
        ax.imshow(values, cmap="gray")
        return
    limit = float(np.abs(values).max()) or 1.0
    ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)


def photo(scale: int = 2) -> np.ndarray:
    """scikit-learn's ``china.jpg`` (427x640 RGB, shipped offline) as gray values in [0, 1],
    average-pooled by ``scale`` (213x320 for 2)."""
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image("china.jpg").astype(np.float32) / 255.0
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    pooled = jaxconv.avg_pool(gray[None, :, :, None], scale)
    return np.asarray(pooled[0, :, :, 0])


def step1_signal(out: Path) -> dict[str, Any]:
    """1-D convolution: flip the kernel, slide it, multiply and sum."""
    full = np.asarray(jaxconv.convolve(SIGNAL, BOX3, "full")).tolist()
    numbers = {
        "full": full,
        "same": np.asarray(jaxconv.convolve(SIGNAL, BOX3, "same")).tolist(),
        "valid": np.asarray(jaxconv.convolve(SIGNAL, BOX3, "valid")).tolist(),
        "convolve_ramp": np.asarray(jaxconv.convolve(SIGNAL, RAMP3, "full")).tolist(),
        "correlate_ramp": np.asarray(jaxconv.correlate(SIGNAL, RAMP3, "full")).tolist(),
    }
    # The strip: one row per output sample of convolve(SIGNAL, RAMP3), the flipped
    # kernel under the zero-padded signal, and the sum of products.
    k = len(RAMP3)
    padded = [0.0] * (k - 1) + SIGNAL + [0.0] * (k - 1)
    flipped = RAMP3[::-1]
    rows = len(padded) - k + 1
    fig, axes = subplots(rows, 1, figsize=(6, 0.6 * rows), sharex=True)
    for i, ax in enumerate(axes):
        ax.bar(range(len(padded)), padded, color="#bbbbbb", width=0.8)
        ax.bar(range(i, i + k), flipped, color="#d62728", width=0.4, alpha=0.8)
        terms = " + ".join(f"{padded[i + j]:g}*{flipped[j]:g}" for j in range(k))
        ax.set_ylabel(f"y[{i}]", rotation=0, ha="right", va="center")
        ax.set_yticks([])
        ax.text(len(padded) + 0.2, 1.5, f"{terms} = {numbers['convolve_ramp'][i]:g}", ha="left")
    axes[0].set_title(f"convolve({SIGNAL}, {RAMP3}): flipped kernel (red) slides along")
    axes[-1].set_xticks(range(len(padded)))
    axes[-1].set_xticklabels([f"{v:g}" for v in padded])
    numbers["figure"] = _save(fig, out / "tutorial_1d_strip.png")
    return numbers


def step2_photo(out: Path, image: np.ndarray) -> dict[str, Any]:
    """2-D: ``O[i, j] = sum_m sum_n I[i+m, j+n] K[m, n]`` on a photograph."""
    sobel = KERNELS["Sobel x"]
    i, j = 100, 150
    by_hand = float(sum(image[i + m, j + n] * sobel[m, n] for m in range(3) for n in range(3)))
    maps = {name: np.asarray(jaxconv.correlate(image, k, "valid")) for name, k in KERNELS.items()}
    numbers = {
        "photo_shape": list(image.shape),
        "pixel": [i, j],
        "by_hand": round(by_hand, 4),
        "by_correlate": round(float(maps["Sobel x"][i, j]), 4),
        "valid_shape": list(maps["Sobel x"].shape),
    }
    fig, axes = subplots(2, 3, figsize=(12, 6))
    axes[0, 0].imshow(image, cmap="gray")
    axes[0, 0].set_title(f"input {image.shape[0]}x{image.shape[1]}")
    for ax, (name, fmap) in zip(axes.flat[1:], maps.items()):
        _signed(ax, fmap, gray=name == "box blur")
        ax.set_title(name)
    for ax in axes.flat:
        ax.axis("off")
    numbers["figure"] = _save(fig, out / "tutorial_2d_kernels.png")

    # stride, padding and dilation as output sizes (and pictures)
    x = jnp.asarray(image)[None, :, :, None]
    k = jnp.asarray(sobel)[:, :, None, None]
    variants = {
        "VALID": {"padding": "VALID"},
        "SAME": {"padding": "SAME"},
        "stride 2": {"padding": "SAME", "stride": 2},
        "dilation 4": {"padding": "VALID", "dilation": 4},
    }
    outs = {name: np.asarray(jaxconv.conv(x, k, **kw))[0, :, :, 0] for name, kw in variants.items()}
    numbers["sizes"] = {name: list(o.shape) for name, o in outs.items()}
    fig, axes = subplots(1, 4, figsize=(14, 3.5))
    for ax, (name, o) in zip(axes, outs.items()):
        ax.imshow(np.abs(o), cmap="gray")
        ax.set_title(f"{name}: {o.shape[0]}x{o.shape[1]}")
        ax.axis("off")
    numbers["sizes_figure"] = _save(fig, out / "tutorial_2d_sizes.png")
    return numbers


def step3_bank(out: Path, image: np.ndarray) -> dict[str, Any]:
    """Many kernels, many feature maps: one ``jaxconv.conv`` call with a bank."""
    bank = np.stack(list(KERNELS.values()), axis=-1)[:, :, None, :]  # (3, 3, 1, 5)
    maps = jaxconv.conv(image[None, :, :, None], bank, padding="SAME")
    return {"bank_shape": list(bank.shape), "maps_shape": list(maps.shape)}


def _train(net, x, y, steps: int, lr: float = 1e-2, batch: int = 64):
    """``steps`` Adam steps of softmax cross-entropy on random batches; the parameters."""
    import optax

    params = net.init(jax.random.key(0), jnp.zeros((1, *x.shape[1:])))
    tx = optax.adam(lr)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, xb, yb):
        loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(
            net.apply(p, xb), yb
        ).mean()
        grads = jax.grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    rng = np.random.default_rng(0)
    for _ in range(steps):
        idx = rng.integers(0, len(x), batch)
        params, opt = step(params, opt, jnp.asarray(x[idx], jnp.float32), jnp.asarray(y[idx]))
    return params


def step4_learned(out: Path, steps: int = 300) -> dict[str, Any]:
    """Kernels are learned: a small CNN on scikit-learn's digits, its first-layer filters
    and their feature maps on one digit."""
    import flax.linen as fnn

    from jaxconv.data.datasets import digits
    from jaxconv.nn import Conv

    class Net(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            x = fnn.relu(Conv(8, (3, 3), padding="SAME", name="first")(x))
            x = jaxconv.max_pool(x, 2)
            x = fnn.relu(Conv(16, (3, 3), padding="SAME")(x))
            return fnn.Dense(10)(x.reshape(x.shape[0], -1))

    x_tr, y_tr, x_te, y_te = digits()
    net = Net()
    params = _train(net, x_tr, y_tr, steps)
    accuracy = float((net.apply(params, x_te).argmax(-1) == y_te).mean())
    filters = np.asarray(params["params"]["first"]["kernel"])[:, :, 0, :]  # (3, 3, 8)
    digit = x_te[:1]
    fmaps = np.asarray(
        jaxconv.conv(digit, params["params"]["first"]["kernel"], padding="SAME")
        + params["params"]["first"]["bias"]
    )[0]
    fig, axes = subplots(3, 8, figsize=(12, 4.5))
    for c in range(8):
        _signed(axes[0, c], filters[:, :, c])
        axes[0, c].set_title(f"filter {c}")
        axes[1, c].imshow(np.maximum(fmaps[:, :, c], 0), cmap="gray")
    axes[2, 0].imshow(digit[0, :, :, 0], cmap="gray")
    axes[2, 0].set_title(f"digit {y_te[0]}")
    for name, ax in zip(KERNELS, axes[2, 1:6]):
        _signed(ax, KERNELS[name])
        ax.set_title(name)
    for ax in axes.flat:
        ax.axis("off")
    return {
        "steps": steps,
        "test_accuracy": round(accuracy, 3),
        "filters_shape": list(filters.shape),
        "figure": _save(fig, out / "tutorial_learned_filters.png"),
        **_learned_1d(out, steps),
    }


def _learned_1d(out: Path, steps: int) -> dict[str, Any]:
    """Step 4 in 1-D: the MNIST-1D paper's CNN (kernels of 5 taps, stride 2)."""
    from jaxconv.data.datasets import mnist1d
    from jaxconv.models.cnn import MNIST1DCNN

    s_tr, t_tr, s_te, t_te = mnist1d()
    net1 = MNIST1DCNN()
    params1 = _train(net1, s_tr, t_tr, 3 * steps, lr=1e-2, batch=100)
    accuracy1 = float((net1.apply(params1, s_te).argmax(-1) == t_te).mean())
    first = params1["params"]["Conv_0"]
    taps = np.asarray(first["kernel"])[:, 0, :]  # (5, 25)
    signal = s_te[:1]
    maps1 = np.asarray(jaxconv.conv(signal, first["kernel"], stride=2, padding=1) + first["bias"])[
        0
    ]
    fig, axes = subplots(2, 6, figsize=(13, 3.5))
    for c in range(6):
        axes[0, c].bar(range(taps.shape[0]), taps[:, c], color="#1f77b4")
        axes[0, c].set_title(f"filter {c}")
        axes[1, c].plot(np.maximum(maps1[:, c], 0), color="#d62728")
    axes[1, 0].plot(signal[0, :, 0] / np.abs(signal).max(), color="#7f7f7f")
    axes[1, 0].set_title(f"signal (class {t_te[0]}), grey")
    return dict(
        mnist1d_steps=3 * steps,
        mnist1d_test_accuracy=round(accuracy1, 3),
        mnist1d_filters_shape=list(taps.shape),
        mnist1d_figure=_save(fig, out / "tutorial_learned_filters_1d.png"),
    )


def step5_pool_activate(out: Path, image: np.ndarray) -> dict[str, Any]:
    """Pooling and activations on a feature map."""
    fmap = np.asarray(jaxconv.correlate(image, KERNELS["Sobel x"], "valid"))[None, :, :, None]
    pooled = {
        "max 2x2": np.asarray(jaxconv.max_pool(fmap, 2))[0, :, :, 0],
        "average 2x2": np.asarray(jaxconv.avg_pool(fmap, 2))[0, :, :, 0],
        "max 4x4 stride 4": np.asarray(jaxconv.max_pool(fmap, 4))[0, :, :, 0],
    }
    small = np.array([[1.0, 2, 5, 6], [3, 4, 7, 8], [0, -1, 2, 2], [-2, -3, 2, 2]])[
        None, :, :, None
    ]
    numbers = {
        "example_input": small[0, :, :, 0].tolist(),
        "example_max": np.asarray(jaxconv.max_pool(small, 2))[0, :, :, 0].tolist(),
        "example_avg": np.asarray(jaxconv.avg_pool(small, 2))[0, :, :, 0].tolist(),
        "pooled_shapes": {k: list(v.shape) for k, v in pooled.items()},
    }
    fig, axes = subplots(2, 4, figsize=(14, 6))
    _signed(axes[0, 0], fmap[0, :, :, 0])
    axes[0, 0].set_title(f"Sobel x map {fmap.shape[1]}x{fmap.shape[2]}")
    for ax, (name, p) in zip(axes[0, 1:], pooled.items()):
        _signed(ax, p)
        ax.set_title(f"{name}: {p.shape[0]}x{p.shape[1]}")
    z = np.linspace(-4, 4, 200)
    curves = {"ReLU": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}
    for name, f in curves.items():
        axes[1, 0].plot(z, f(z), label=name)
    axes[1, 0].legend()
    axes[1, 0].set_title("activations")
    for ax, (name, f) in zip(axes[1, 1:], curves.items()):
        ax.imshow(np.asarray(f(fmap[0, :, :, 0] * 4)), cmap="gray")
        ax.set_title(f"{name}(map)")
    for ax in list(axes[0]) + list(axes[1, 1:]):
        ax.axis("off")
    numbers["figure"] = _save(fig, out / "tutorial_pool_activate.png")
    return numbers


def step6_backends(image: np.ndarray, repeats: int = 5) -> dict[str, Any]:
    """The same layer on every backend: equal to float precision; their times."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.repeat(image[None, :, :, None], 8, axis=-1))
    k = jnp.asarray(rng.normal(size=(3, 3, 8, 8)), jnp.float32)
    results = {}
    reference = None
    for backend in jaxconv.backends():
        f = jax.jit(lambda x, k, b=backend: jaxconv.conv(x, k, padding="SAME", backend=b))
        y = np.asarray(f(x, k))
        reference = y if reference is None else reference
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(f(x, k))
            times.append(time.perf_counter() - start)
        results[backend] = {
            "max_abs_diff_vs_lax": float(np.abs(y - reference).max()),
            "ms": round(float(np.median(times)) * 1e3, 2),
        }
    return {"layer": "1x213x320x8 -> 8, 3x3, SAME", "backends": results}


def run(out_dir: str | Path, *, steps: int = 300) -> dict[str, Any]:
    """Every step in the tutorial's order; figures and ``numbers.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image = photo()
    numbers = {
        "1_signal": step1_signal(out),
        "2_photo": step2_photo(out, image),
        "3_bank": step3_bank(out, image),
        "4_learned": step4_learned(out, steps),
        "5_pool_activate": step5_pool_activate(out, image),
        "6_backends": step6_backends(image),
    }
    (out / "numbers.json").write_text(json.dumps(numbers, indent=1) + "\n")
    return numbers


def _say(message: str) -> None:
    print(f"python -m jaxconv.tutorial: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxconv.tutorial", description="Make the tutorial's figures."
    )
    parser.add_argument("out_dir", help="where the PNG figures and numbers.json go")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    problem = unwritable(out)
    if problem is not None:
        _say(f"OUT_DIR ({out}) cannot take the figures: {problem}")
        return 2
    try:
        numbers = run(out)
    except OSError as err:  # the disk filled up, the folder went away
        _say(f"writing into OUT_DIR ({out}) failed: {err}")
        return 1
    for name in sorted(p.name for p in out.glob("tutorial_*.png")):
        print(out / name)
    print(f"1-D: convolve({SIGNAL}, {BOX3}) = {numbers['1_signal']['full']}")
    print(f"digits CNN test accuracy: {numbers['4_learned']['test_accuracy']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
