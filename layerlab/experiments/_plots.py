"""Figure helpers shared by the studies (matplotlib, written to PNG)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

__all__ = ["plot_curves", "smooth"]


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Moving average over ``window`` steps (shorter at the start), so noisy
    mini-batch losses show their trend; ``window <= 1`` returns ``y``."""
    if window <= 1 or len(y) < 2:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty_like(y, dtype=float)
    for i in range(len(y)):
        lo = max(0, i + 1 - window)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def plot_curves(result, panels: Sequence[tuple[str, str]], fname: str, out: str, *,
                configurations: Sequence[str] | None = None, x_label: str = "iteration",
                x_of: dict[str, np.ndarray] | None = None, log_y: Sequence[str] = (),
                window: int = 1, title: str = "", styles: dict[str, dict] | None = None):
    """One panel per ``(curve, label)``: every configuration's curve, the
    mean over repeats as a line and ± one standard deviation as a band (on a
    log axis, named in ``log_y``, the band is the range over repeats).

    ``x_of`` maps a curve name to its x values (default 1, 2, ...);
    ``styles`` maps a configuration to matplotlib keyword arguments."""
    from matplotlib.figure import Figure   # no pyplot: the user's backend is left alone

    names = list(configurations or result.configurations)
    fig = Figure(figsize=(5.2 * len(panels), 4.0))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (curve, label) in zip(axes[0], panels):
        for c in names:
            try:
                ys = result.curve(c, curve)
            except Exception:  # noqa: BLE001 - a configuration without this curve
                continue
            ys = np.stack([smooth(y, window) for y in ys])
            x = (x_of or {}).get(curve)
            x = np.arange(1, ys.shape[1] + 1) if x is None else np.asarray(x)[:ys.shape[1]]
            mean = ys.mean(0)
            style = dict((styles or {}).get(c, {}))
            line, = ax.plot(x, mean, label=c, lw=1.4, **style)
            if ys.shape[0] > 1:
                if curve in log_y:
                    # mean - std goes below zero on a log axis: show the range
                    lo, hi = ys.min(0), ys.max(0)
                else:
                    sd = ys.std(0, ddof=1)
                    lo, hi = mean - sd, mean + sd
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_xlabel(x_label)
        ax.set_ylabel(label)
        if curve in log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, fname), dpi=110)
    return fname
