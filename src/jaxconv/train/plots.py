"""Pictures of a trained model: first-layer filters and feature maps."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from flax import nnx

from jaxconv import nn as jnn
from jaxconv._figure import subplots
from jaxconv.train.modules import NNXApply, api_of, takes_train


def first_conv_kernel(params) -> np.ndarray | None:
    """The first convolution kernel (creation order): ``(*k, C_in, C_out)``, or None."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if jax.tree_util.keystr(path).endswith("['kernel']") and np.ndim(leaf) >= 3:
            return np.asarray(leaf)
    return None


def filter_image(kernel: np.ndarray, max_filters: int = 32, cell: int = 24) -> np.ndarray:
    """First-layer kernels ``(*k, C_in, C_out)`` as one RGB image ``(H, W, 3)`` uint8, for
    a tracker's image panel: the mean over input channels, one tile per filter in rows
    of 8 (2-D), or one row per filter with a column per tap (1-D), each on its own
    symmetric blue-white-red scale (white is 0), enlarged to about ``cell`` pixels.

    >>> filter_image(np.ones((3, 3, 1, 10))).shape
    (49, 199, 3)
    >>> filter_image(np.ones((5, 2, 4))).shape
    (96, 120, 3)
    """
    k = np.asarray(kernel, np.float64).mean(axis=-2)[..., :max_filters]  # (*k, n)
    n = k.shape[-1]
    scaled = k / np.maximum(np.abs(k).reshape(-1, n).max(axis=0), 1e-12)  # in [-1, 1]
    if k.ndim == 2:  # 1-D kernels: filters as rows, taps as columns
        grid = np.repeat(np.repeat(scaled.T, cell, axis=0), cell, axis=1)
    else:
        tiles = scaled.reshape(k.shape[0], -1, n)  # extra spatial axes side by side
        scale = max(1, cell // max(tiles.shape[:2]))
        tiles = np.repeat(np.repeat(tiles, scale, axis=0), scale, axis=1)
        rows, cols = _grid(n)
        h, w = tiles.shape[:2]
        grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)  # 1 px gaps
        for i in range(n):
            r, c = divmod(i, cols)
            grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = tiles[..., i]
    rgb = matplotlib.colormaps["RdBu_r"]((np.nan_to_num(grid, nan=0.0) + 1) / 2)[..., :3]
    rgb[np.isnan(grid)] = 0.5  # gaps in grey
    return (rgb * 255).round().astype(np.uint8)


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 8)
    return math.ceil(n / cols), cols


def _first_conv_maps(model, variables, example: np.ndarray) -> list:
    """The outputs of the first conv layer on ``example``: Linen's captured as an
    intermediate; for NNX, the first conv layer (graph order) that takes the example's
    channels, applied to it."""
    x = jnp.asarray(example[None])
    if api_of(model) == "nnx":
        graph = NNXApply(model).module(variables)
        convs = [m for _, m in nnx.iter_graph(graph) if isinstance(m, nnx.Conv)]
        first = next((c for c in convs if c.in_features == example.shape[-1]), None)
        return [] if first is None else [first(x)]

    def is_conv(module, method_name):
        return isinstance(module, jnn.Conv) and method_name == "__call__"

    mode = {"train": False} if takes_train(type(model).__call__) else {}
    _, state = model.apply(
        variables, x, **mode, capture_intermediates=is_conv, mutable=["intermediates"]
    )
    return [
        leaf
        for leaf in jax.tree_util.tree_leaves(state.get("intermediates", {}))
        if np.ndim(leaf) >= 3
    ]


def plot_filters(params, out: Path, max_filters: int = 32) -> Path | None:
    """First-layer kernels: images for 2-D kernels (input channel mean), curves for 1-D."""
    kernel = first_conv_kernel(params)
    if kernel is None:
        return None
    k = kernel.mean(axis=-2)  # (*k, C_out)
    count = min(k.shape[-1], max_filters)
    rows, cols = _grid(count)
    fig, axes = subplots(rows, cols, figsize=(1.4 * cols, 1.4 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= count:
            ax.axis("off")
            continue
        f = k[..., i]
        if f.ndim == 1:
            ax.plot(f, lw=1.5)
            ax.axhline(0, color="grey", lw=0.5)
        else:
            lim = np.abs(f).max() or 1.0
            ax.imshow(f.reshape(f.shape[0], -1), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(str(i), fontsize=7)
    fig.suptitle(f"first-layer filters {tuple(kernel.shape)}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


def plot_feature_maps(
    model, variables, example: np.ndarray, out: Path, max_maps: int = 32
) -> Path | None:
    """Activations of the first conv layer for one example (curves in 1-D, images in 2-D)."""
    found = _first_conv_maps(model, variables, example)
    if not found:
        return None
    maps = np.asarray(found[0][0])  # (*spatial, C)
    count = min(maps.shape[-1], max_maps)
    rows, cols = _grid(count + 1)
    fig, axes = subplots(rows, cols, figsize=(1.6 * cols, 1.4 * rows), squeeze=False)
    flat = list(axes.flat)
    src = example[..., 0]
    for ax in flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if src.ndim == 1:
        flat[0].plot(src, color="black")
    else:
        flat[0].imshow(src, cmap="gray")
    flat[0].set_title("input", fontsize=7)
    for i in range(count):
        ax = flat[i + 1]
        m = maps[..., i]
        if m.ndim == 1:
            ax.plot(m, lw=1)
        else:
            ax.imshow(m, cmap="viridis")
        ax.set_title(str(i), fontsize=7)
    for ax in flat[count + 1 :]:
        ax.axis("off")
    fig.suptitle(f"first conv layer activations, shape {tuple(maps.shape)}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out
