"""Figures through matplotlib's object API: a :class:`matplotlib.figure.Figure` draws and
saves without pyplot, so the library never chooses a process-wide backend and never keeps
figures alive in pyplot's registry (nothing to close)."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def subplots(*grid: int, figsize: tuple[float, float], **options: Any) -> tuple[Figure, Any]:
    """``pyplot.subplots`` without pyplot: a new Figure and its axes.

    >>> fig, axes = subplots(1, 2, figsize=(4, 2))
    >>> len(axes), type(fig).__name__
    (2, 'Figure')
    """
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **options)
