"""Summaries and plots built from run directories (files on disk only)."""

from jaxconv.report.plots import plot_learning_curves as plot_learning_curves
