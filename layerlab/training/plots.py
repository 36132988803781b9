"""The training-progress figure (MATLAB's ``Plots="training-progress"``):
mini-batch loss and accuracy against iteration, with the validation points,
in two panels.

Drawn with ``matplotlib.figure.Figure`` and the Agg canvas, never pyplot,
so it works headless and does not change the user's matplotlib backend.
During training it is redrawn at most every couple of seconds, saved as a
PNG and, inside IPython/Jupyter, shown inline and updated in place.
"""

from __future__ import annotations

import io
import os
import time
from typing import Any

import numpy as np

__all__ = ["plot_training", "TrainingProgressPlot"]


def _figure(iterations, loss, metric, val_iterations, val_loss, val_metric,
            metric_name: str, epoch=None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_m, ax_l = fig.subplots(2, 1, sharex=True)
    ax_m.plot(iterations, metric, color="tab:blue", lw=0.8, label="mini-batch")
    ax_l.plot(iterations, loss, color="tab:orange", lw=0.8, label="mini-batch")
    if len(val_iterations):
        ax_m.plot(val_iterations, val_metric, "k--o", ms=3, lw=1, label="validation")
        ax_l.plot(val_iterations, val_loss, "k--o", ms=3, lw=1, label="validation")
    ax_m.set_ylabel(metric_name)
    ax_l.set_ylabel("Loss")
    ax_l.set_xlabel("Iteration")
    for ax in (ax_m, ax_l):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    if epoch is not None and len(iterations):
        # epoch boundaries, as MATLAB shades them
        starts = np.flatnonzero(np.diff(np.asarray(epoch[:len(iterations)]))) + 1
        for s in starts:
            for ax in (ax_m, ax_l):
                ax.axvline(iterations[s] - 0.5, color="0.85", lw=0.6, zorder=0)
    return fig


def plot_training(info: Any, path: str | os.PathLike | None = None):
    """Draw a finished training's progress from its :class:`TrainingInfo`;
    save it as a PNG when ``path`` is given. Returns the matplotlib Figure."""
    n = int(info.iterations)
    it = np.arange(1, n + 1)
    val_loss = np.asarray(getattr(info, "validation_loss", np.full(n, np.nan)))[:n]
    val_acc = np.asarray(getattr(info, "validation_accuracy", np.full(n, np.nan)))[:n]
    has = np.isfinite(val_loss)
    fig = _figure(it, info.training_loss[:n], info.training_accuracy[:n], it[has],
                  val_loss[has], val_acc[has], getattr(info, "metric_name", "Accuracy"),
                  info.epoch)
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100)
    return fig


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython  # type: ignore
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class TrainingProgressPlot:
    """The live figure: :meth:`update` with the history so far."""

    def __init__(self, path: str | os.PathLike, metric_name: str, interval: float = 2.0):
        self.path = os.fspath(path)
        self.metric_name = metric_name
        self.interval = interval
        self.last = -float("inf")
        self.handle = None
        self.inline = _in_ipython()

    def update(self, history: dict[str, np.ndarray], force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        fig = _figure(history["iterations"], history["loss"], history["metric"],
                      history["val_iterations"], history["val_loss"], history["val_metric"],
                      self.metric_name, history.get("epoch"))
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fig.savefig(self.path, dpi=100)
        if self.inline:
            from IPython.display import Image, display  # type: ignore
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=80)
            img = Image(data=buf.getvalue(), format="png")
            if self.handle is None:
                self.handle = display(img, display_id=True)
            else:
                self.handle.update(img)
