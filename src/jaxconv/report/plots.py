"""Plots drawn from a run directory's files."""

from __future__ import annotations

from pathlib import Path

from jaxconv._figure import subplots
from jaxconv.run_layout import RunDir, read_metrics


def plot_learning_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """``learning_curves.png``: loss and accuracy per split against step, from metrics.csv."""
    run_dir = Path(run_dir)
    rows = read_metrics(RunDir(run_dir).metrics)
    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(10, 3.8))
    for split, style in (("train", "-"), ("val", "--"), ("test", "o")):
        part = [r for r in rows if r["split"] == split]
        if not part:
            continue
        steps = [r["step"] for r in part]
        ax_loss.plot(steps, [r["loss"] for r in part], style, label=split)
        ax_acc.plot(steps, [r["accuracy"] for r in part], style, label=split)
    ax_loss.set(xlabel="step", ylabel="cross-entropy", yscale="log", title="loss")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out = Path(out) if out else RunDir(run_dir).plot("learning_curves")
    fig.savefig(out, dpi=110)
    return out
