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
import tempfile
import time
from typing import Any

import numpy as np

__all__ = ["plot_training", "TrainingProgressPlot", "default_plot_path"]


def _figure(iterations, loss, metric, val_iterations, val_loss, val_metric,
            metric_name: str, epoch=None, extra=None):
    """``extra``: ``{name: {"iterations", "values", "val_iterations",
    "val_values"}}``, the ``metrics`` option's curves, in a third panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    extra = extra or {}
    fig = Figure(figsize=(8, 8 if extra else 6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3 if extra else 2, 1, sharex=True)
    ax_m, ax_l = axes[0], axes[-1]
    if extra:
        ax_x = axes[1]
        for k, (name, c) in enumerate(extra.items()):
            color = f"C{(k + 2) % 10}"
            ax_x.plot(c["iterations"], c["values"], color=color, lw=0.8, label=name)
            if len(c["val_iterations"]):
                ax_x.plot(c["val_iterations"], c["val_values"], "--o", color=color, ms=3, lw=1,
                          label=f"{name} (validation)")
        ax_x.set_ylabel("Metrics")
    ax_m.plot(iterations, metric, color="tab:blue", lw=0.8, label="mini-batch")
    ax_l.plot(iterations, loss, color="tab:orange", lw=0.8, label="mini-batch")
    if len(val_iterations):
        ax_m.plot(val_iterations, val_metric, "k--o", ms=3, lw=1, label="validation")
        ax_l.plot(val_iterations, val_loss, "k--o", ms=3, lw=1, label="validation")
    ax_m.set_ylabel(metric_name)
    ax_l.set_ylabel("Loss")
    ax_l.set_xlabel("Iteration")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    if epoch is not None and len(iterations):
        # epoch boundaries, as MATLAB shades them
        starts = np.flatnonzero(np.diff(np.asarray(epoch[:len(iterations)]))) + 1
        for s in starts:
            for ax in axes:
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
    hist = getattr(info, "history", None) or {}
    extra = {}
    for key in hist:      # the metrics option's series: training_<name>, validation_<name>
        if key.startswith("training_") and f"validation_{key[9:]}" in hist:
            v = np.asarray(hist[f"validation_{key[9:]}"])[:n]
            ok = np.isfinite(v)
            extra[key[9:]] = {"iterations": it, "values": np.asarray(hist[key])[:n],
                              "val_iterations": it[ok], "val_values": v[ok]}
    fig = _figure(it, info.training_loss[:n], info.training_accuracy[:n], it[has],
                  val_loss[has], val_acc[has], getattr(info, "metric_name", "Accuracy"),
                  info.epoch, extra)
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100)
    return fig


def default_plot_path() -> str:
    """Where the progress plot goes when neither ``plots_path`` nor
    ``checkpoint_path`` is given: a fresh file in the temporary folder
    (never the current folder), e.g.
    ``/tmp/layerlab/training_progress-20260101-120000-1234.png``."""
    folder = os.path.join(tempfile.gettempdir(), "layerlab")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(folder, f"training_progress-{stamp}-{os.getpid()}.png")


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
                      self.metric_name, history.get("epoch"), history.get("extra"))
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
