"""Plots drawn from a run directory's files."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from jaxconv._figure import subplots
from jaxconv.run_layout import RunDir, metrics_fields, read_json, read_metrics

#: How each split is drawn: train and val as lines with a marker on every evaluation (a
#: run shorter than ``eval_every`` has one point, which a bare line would not show).
STYLES = {"train": "-o", "val": "--s", "test": "D"}


def learning_curves_figure(run_dir: str | Path) -> Figure:
    """Loss and each metric (accuracy, or the run's own) per split against step, from the
    run's metrics.csv; the title names the model and the dataset (result.json's), or the
    directory without them."""
    run_dir = Path(run_dir)
    rows = read_metrics(RunDir(run_dir).metrics)
    values = [
        k for k in metrics_fields(rows) if k not in ("step", "epoch", "split", "images_per_s")
    ]
    values = [k for k in values if any(math.isfinite(r.get(k, math.nan)) for r in rows)] or ["loss"]
    fig, axes = subplots(1, len(values), figsize=(5 * len(values), 3.8), squeeze=False)
    axes = dict(zip(values, axes[0]))
    for split, style in STYLES.items():
        part = [r for r in rows if r["split"] == split]
        if not part:
            continue
        steps = [r["step"] for r in part]
        for key, ax in axes.items():
            ax.plot(steps, [r.get(key, math.nan) for r in part], style, markersize=4, label=split)
    positive = all(r["loss"] > 0 for r in rows if math.isfinite(r["loss"]))
    default = "accuracy" in axes  # the default objective's cross-entropy
    for key, ax in axes.items():
        ax.set(xlabel="step", ylabel=key, title=key)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    axes["loss"].set(ylabel="cross-entropy" if default else "loss",
                     yscale="log" if positive else "linear")  # fmt: skip
    result = read_json(RunDir(run_dir).result) or {}
    model, data = result.get("model"), result.get("data")
    fig.suptitle(f"{model} on {data}" if model and data else run_dir.name)
    fig.tight_layout()
    return fig


def plot_learning_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """``learning_curves.png`` (:func:`learning_curves_figure`) in the run directory."""
    out = Path(out) if out else RunDir(run_dir).plot("learning_curves")
    learning_curves_figure(run_dir).savefig(out, dpi=110)
    return out


def confusion_matrix(labels, predictions, num_classes: int) -> list[list[int]]:
    """``matrix[true][predicted]``: how many examples of each class went to each class.

    >>> confusion_matrix([0, 0, 1], [0, 1, 1], 2)
    [[1, 1], [0, 1]]
    """
    matrix = [[0] * num_classes for _ in range(num_classes)]
    for true, predicted in zip(labels, predictions):
        matrix[int(true)][int(predicted)] += 1
    return matrix


def confusion_figure(matrix: list[list[int]], title: str) -> Figure:
    """The confusion matrix as an image: each row (a true class) as fractions of its
    examples, the counts written in the cells when there are at most 20 classes."""
    n = len(matrix)
    rates = [[c / max(sum(row), 1) for c in row] for row in matrix]
    size = min(3 + 0.45 * n, 14)
    fig, ax = subplots(1, 1, figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= 20:
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                color = "white" if rates[i][j] > 0.5 else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    ticks = list(range(n)) if n <= 20 else list(range(0, n, max(1, n // 10)))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    fig.tight_layout()
    return fig
