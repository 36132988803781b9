"""``plot_layer_statistics``: amplitudes against depth and against iterations."""

from __future__ import annotations

import os
from typing import Any

import matplotlib
import matplotlib.cm
import matplotlib.colors
import numpy as np
from matplotlib.figure import Figure

from .statistics import LayerStatistics

__all__ = ["plot_layer_statistics"]

_TITLES = {
    "activation_mean": "mean of the output",
    "activation_std": "std of the output",
    "activation_zero_fraction": "fraction of exact zeros in the output",
    "input_gradient_norm": "||dL/dX|| reaching the layer's input",
    "learnable_norm": "||W||",
    "gradient_norm": "||dL/dW||",
    "update_ratio": "||update|| / ||W||",
}
_LOG = {"activation_std", "input_gradient_norm", "learnable_norm", "gradient_norm",
        "update_ratio"}


def _statistics_of(source: Any) -> LayerStatistics:
    if isinstance(source, LayerStatistics):
        return source
    stats = getattr(source, "layer_statistics", None)
    if isinstance(stats, LayerStatistics):
        return stats
    raise TypeError("plot_layer_statistics: expected a TrainingInfo recorded with "
                    "training_options(monitor=...) or a LayerStatistics (from "
                    f"layer_statistics), got {type(source).__name__}"
                    + (" without recorded statistics" if stats is None and
                       hasattr(source, "layer_statistics") else ""))


def plot_layer_statistics(source: Any, statistic: str = "input_gradient_norm",
                          path: str | os.PathLike | None = None, labels: bool = True) -> Figure:
    """Draw one statistic against depth (one curve per recorded iteration)
    and against iterations (one curve per layer or learnable); log scale
    for norms and standard deviations.

    Args:
        source: ``info`` of a monitored training run, or :class:`LayerStatistics`.
        statistic: e.g. ``"input_gradient_norm"``, ``"activation_std"``.
        path: save the figure there as PNG when given.
        labels: name the layers on the depth axis.

    Returns:
        the :class:`matplotlib.figure.Figure` (shown inline in notebooks).

    Examples:
        >>> fig = ll.plot_layer_statistics(info, "activation_std", "std.png")  # doctest: +SKIP
    """
    stats = _statistics_of(source)
    values = stats[statistic]
    columns = stats.columns(statistic)
    finite = np.isfinite(values).any(axis=0)
    keep = [c for c in range(len(columns)) if finite[c]]
    log = statistic in _LOG and bool(np.all(values[:, keep][np.isfinite(values[:, keep])] > 0))
    two = len(stats.iterations) > 1
    fig = Figure(figsize=(11 if two else 6.5, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 2 if two else 1, 1)
    depth = np.arange(len(keep))
    for r, it in enumerate(stats.iterations):
        ax.plot(depth, values[r, keep], marker="o", ms=3, label=f"iteration {int(it)}")
    ax.set_xlabel("layer (depth)")
    ax.set_ylabel(statistic)
    ax.set_title(_TITLES.get(statistic, statistic) + " against depth", fontsize=10)
    if labels and len(keep) <= 40:
        ax.set_xticks(depth, [columns[c] for c in keep], rotation=70, fontsize=7)
    if log:
        ax.set_yscale("log")
    if len(stats.iterations) <= 12:
        ax.legend(fontsize=7)
    if two:
        ax2 = fig.add_subplot(1, 2, 2)
        cmap = matplotlib.colormaps["viridis"]
        for k, c in enumerate(keep):       # coloured by depth: shallow dark, deep light
            ax2.plot(stats.iterations, values[:, c], label=columns[c],
                     color=cmap(k / max(1, len(keep) - 1)))
        if len(keep) > 12:
            mappable = matplotlib.cm.ScalarMappable(
                norm=matplotlib.colors.Normalize(0, len(keep) - 1), cmap=cmap)
            fig.colorbar(mappable, ax=ax2, label="layer (depth)")
        ax2.set_xlabel("iteration")
        ax2.set_title(_TITLES.get(statistic, statistic) + " during training", fontsize=10)
        if log:
            ax2.set_yscale("log")
        if len(keep) <= 12:
            ax2.legend(fontsize=7)
    if path is not None:
        fig.savefig(os.fspath(path), dpi=110)
    return fig
