"""Summaries and plots built from run directories (files on disk only)."""

from jaxconv.run_layout import read_metrics as read_metrics
from jaxconv.run_layout import write_metrics as write_metrics


def __getattr__(name: str):
    # matplotlib is imported on first use of a plot, not by the training loop's import of
    # the metrics file format.
    if name == "plot_learning_curves":
        from jaxconv.report.plots import plot_learning_curves

        return plot_learning_curves
    raise AttributeError(f"module 'jaxconv.report' has no attribute {name!r}")
