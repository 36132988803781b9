"""Study ``activations``: the seed post's plot of ELU, leaky ReLU and ReLU,
and every built-in element-wise activation with its derivative.

Each activation is a configuration. A run measures:

- ``derivative_error``: the largest difference, over a grid on [-10, 3]
  (the seed plot's range) without the kink at 0, between the derivative
  the layer gives in training (its hand-written ``backward`` where it has
  one, else autograd) and a central finite difference of its ``predict``,
  both in float64. It is the same in every repeat (no randomness): a
  correctness check, not a statistic.
- ``time_ms``: forward plus backward on a float32 batch (``(1000, 1000)``
  in the full study), the median of several timings. Repeats are
  interleaved across activations, so a busy spell on a shared machine hits
  all of them; comparisons are against ReLU.

Activations that are not element-wise (CReLU doubles the channels, Maxout
takes the maximum over groups of channels) or need constructor arguments
are listed in the report and not measured.
"""

from __future__ import annotations

import copy
import inspect
import statistics
import time

import torch

import layerlab as ll
from layerlab.layers import activation as activation_module

from .study import Metric, Study

__all__ = ["make_study", "elementwise_activations", "SEED_PLOT"]

# The seed post's plot: elu with alpha 1, leaky ReLU with scale 0.1, ReLU,
# on [-10, 3].
SEED_PLOT = (("ELU", lambda: ll.ELU(alpha=1.0)), ("Leaky ReLU", lambda: ll.LeakyReLU(0.1)),
             ("ReLU", lambda: ll.ReLU()))


def elementwise_activations() -> tuple[dict[str, type], dict[str, str]]:
    """The built-in activation classes that can be made without arguments
    and map ``(N, C)`` to the same shape, by name; and the others, with the
    reason they are left out."""
    chosen, skipped = {}, {}
    for name in getattr(activation_module, "__all__", []):
        cls = getattr(activation_module, name, None)
        if not (inspect.isclass(cls) and issubclass(cls, ll.Layer)):
            continue
        try:
            layer = cls()
        except Exception as exc:  # noqa: BLE001 - e.g. a required argument
            skipped[name] = f"needs constructor arguments ({type(exc).__name__})"
            continue
        try:
            x = torch.linspace(-2, 2, 8).reshape(2, 4)
            z = layer.eval().predict(x)
        except Exception as exc:  # noqa: BLE001
            skipped[name] = f"cannot take (N, C) input without more setup ({type(exc).__name__})"
            continue
        if not isinstance(z, torch.Tensor) or z.shape != x.shape:
            skipped[name] = "not element-wise (changes the shape)"
            continue
        chosen[name] = cls
    return chosen, skipped


def _derivative(layer: ll.Layer, x: torch.Tensor) -> torch.Tensor:
    """dZ/dX of an element-wise layer in training mode (its own backward)."""
    x = x.clone().requires_grad_(True)
    layer.train()
    z = layer(x)
    (g,) = torch.autograd.grad(z.sum(), x)
    return g


def _derivative_error(cls: type) -> float:
    layer = copy.deepcopy(cls()).double()
    x = torch.linspace(-10, 3, 2601, dtype=torch.float64)
    x = x[x.abs() > 1e-3].reshape(1, -1)          # away from the kink at 0
    h = 1e-6
    with torch.no_grad():
        fd = (layer.predict(x + h) - layer.predict(x - h)) / (2 * h)
    return float((_derivative(layer, x) - fd).abs().max())


def _time_ms(cls: type, shape: tuple[int, int], reps: int) -> float:
    layer = cls()
    x = torch.randn(shape)
    for _ in range(2):                             # warm-up (allocator, thread pool)
        _derivative(layer, x)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        _derivative(layer, x)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def make_study(quick: bool = False) -> Study:
    chosen, skipped = elementwise_activations()
    shape = (500, 1000) if quick else (1000, 1000)
    reps = 7 if quick else 15
    baseline = "ReLU" if "ReLU" in chosen else next(iter(chosen))

    def run(name: str, seed: int) -> dict:
        cls = chosen[name]
        return {"derivative_error": _derivative_error(cls),
                "time_ms": _time_ms(cls, shape, reps)}

    def figures(result, out):
        return [_seed_plot(out), _all_plot(chosen, out)]

    def notes(result) -> str:
        lines = [f"- Left out: {k}: {v}." for k, v in skipped.items()]
        worst = max((result.mean(c, "derivative_error"), c) for c in result.configurations)
        lines.append(f"- Largest derivative error: {worst[0]:.1e} ({worst[1]}); finite "
                     f"differences in float64 with step 1e-6 are accurate to about 1e-9.")
        return "\n".join(lines)

    return Study(
        "activations", run, {n: dict(name=n) for n in chosen},
        metrics=[Metric("time_ms", "forward + backward (ms)", ".2f", better="lower"),
                 Metric("derivative_error", "max |derivative - finite difference|", ".1e",
                        test=False, plot=False)],
        repeats=2 if quick else 5, comparisons=[(c, baseline) for c in chosen if c != baseline],
        figures=[figures], parallel=False,
        title="Activations and their derivatives" + (" (quick)" if quick else ""),
        description=("The seed post compares the ELU's shape with leaky ReLU and ReLU. Here "
                     "every built-in element-wise activation is drawn with its derivative, "
                     "the derivative each layer uses in training is checked against finite "
                     "differences, and forward + backward is timed."
                     + (" **Quick form: a smaller batch, 2 repeats.**" if quick else "")),
        settings={"activations": ", ".join(f"{n}()" for n in chosen)
                  + " (default arguments: ELU alpha 1 fixed, LeakyReLU scale 0.01)",
                  "derivative check": "float64, grid of 2601 points on [-10, 3] without "
                                      "|x| <= 1e-3, central difference with step 1e-6",
                  "timing": f"float32 input {shape}, d(sum Z)/dX by autograd through the "
                            f"layer in training mode, median of {reps} after one warm-up; "
                            f"the PyTorch threads of each run are in runs.csv; runs one "
                            f"at a time (a timing study: parallel runs would compete)"},
        notes=notes)


def _seed_plot(out: str) -> tuple[str, str]:
    from matplotlib.figure import Figure   # no pyplot: the user's backend is left alone

    x = torch.linspace(-10, 3, 1301).reshape(1, -1)
    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    for label, make in SEED_PLOT:
        with torch.no_grad():
            z = make().eval().predict(x)
        ax.plot(x[0].numpy(), z[0].numpy(), lw=2, label=label)
    ax.spines["left"].set_position("zero")
    ax.spines["bottom"].set_position("zero")
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.legend(loc="upper left")
    ax.set_title("The seed post's plot: ELU (alpha 1), leaky ReLU (0.1), ReLU", fontsize=9)
    fig.tight_layout()
    fname = "seed_plot.png"
    fig.savefig(f"{out}/{fname}", dpi=110)
    return fname, "ELU, leaky ReLU and ReLU on [-10, 3], drawn by layerlab's layers"


def _all_plot(chosen: dict[str, type], out: str) -> tuple[str, str]:
    from matplotlib.figure import Figure   # no pyplot: the user's backend is left alone

    n = len(chosen)
    cols = min(3, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(4.0 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    x = torch.linspace(-4, 4, 801, dtype=torch.float64).reshape(1, -1)
    for ax, (name, cls) in zip(axes.flat, chosen.items()):
        layer = copy.deepcopy(cls()).double()
        with torch.no_grad():
            z = layer.eval().predict(x)
        d = _derivative(layer, x)
        ax.plot(x[0].numpy(), z[0].numpy(), lw=2, label="Z")
        ax.plot(x[0].numpy(), d[0].detach().numpy(), lw=1.5, ls="--", label="dZ/dX")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fname = "activations.png"
    fig.savefig(f"{out}/{fname}", dpi=110)
    return fname, "Every built-in element-wise activation (solid) and its derivative (dashed)"
