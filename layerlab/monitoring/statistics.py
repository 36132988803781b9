"""Layer-by-layer amplitudes: what the "going deeper" lecture asks you to watch.

Depth trains only if "the gradient does not vanish" nor explode, which is
"tightly related to controlling activations" (EE-559, "Going deeper",
slides 10-11). :class:`StatisticsRecorder` measures exactly that during a
training step, through PyTorch's own hooks: every layer's output amplitude
and the gradient reaching its input, and every learnable's size, gradient
and update.

Statistics (one value per layer, or per learnable, per recorded iteration):

=============================  ==================================================
``activation_mean``            mean of the layer's output over the mini-batch
``activation_std``             standard deviation of the output (population:
                               divided by the number of elements)
``activation_zero_fraction``   fraction of output elements exactly 0 (dead
                               rectifier units)
``input_gradient_norm``        :math:`\\|\\partial L / \\partial X\\|_2` of the
                               layer's input X (all inputs together; for a
                               tensor read by several layers, the total
                               gradient reaching it)
``learnable_norm``             :math:`\\|W\\|_2` before the update
``gradient_norm``              :math:`\\|\\partial L / \\partial W\\|_2` (after
                               backward, before clipping)
``update_ratio``               :math:`\\|W_{new} - W\\|_2 / \\|W\\|_2`
=============================  ==================================================

Groups: ``"activations"`` is the first three, ``"gradients"`` the last four.
NaN marks a value that does not exist (the input layer's input has no
gradient; a softmax fused into the loss is not run as a layer in training).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import math
import os
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..errors import OptionError
from ..validation import check_number

__all__ = ["LAYER_STATISTICS", "LEARNABLE_STATISTICS", "STATISTIC_GROUPS", "LayerStatistics",
           "StatisticsRecorder", "resolve_statistics", "check_frequency"]

LAYER_STATISTICS = ("activation_mean", "activation_std", "activation_zero_fraction",
                    "input_gradient_norm")
LEARNABLE_STATISTICS = ("learnable_norm", "gradient_norm", "update_ratio")
STATISTIC_GROUPS = {
    "activations": ("activation_mean", "activation_std", "activation_zero_fraction"),
    "gradients": ("input_gradient_norm", "learnable_norm", "gradient_norm", "update_ratio"),
}
_ALL = LAYER_STATISTICS + LEARNABLE_STATISTICS


def resolve_statistics(names: Any, what: str = "training option 'monitor'") -> tuple[str, ...]:
    """The statistic names that ``names`` asks for: group names
    (``"activations"``, ``"gradients"``) and single statistics, in a fixed
    order. An unknown name is an :class:`OptionError` with a suggestion."""
    if isinstance(names, str):
        names = (names,)
    try:
        items = list(names)
    except TypeError:
        raise OptionError(f"{what}: expected a statistic name or a list of them, "
                          f"got {type(names).__name__}") from None
    if not items:
        raise OptionError(f"{what}: expected at least one statistic, got an empty list")
    chosen: set[str] = set()
    known = list(STATISTIC_GROUPS) + list(_ALL)
    for name in items:
        if not isinstance(name, str):
            raise OptionError(f"{what}: expected statistic names (strings), got "
                              f"{type(name).__name__} {name!r}")
        if name in STATISTIC_GROUPS:
            chosen.update(STATISTIC_GROUPS[name])
        elif name in _ALL:
            chosen.add(name)
        else:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise OptionError(f"{what}: unknown statistic {name!r}{hint} Known: "
                              f"{', '.join(known)}")
    return tuple(s for s in _ALL if s in chosen)


def check_frequency(value: Any, what: str = "training option 'monitor_frequency'") -> int:
    """``value`` as a positive integer (NumPy integers accepted)."""
    return check_number(value, what, lo=1, integer=True,
                        expected="a positive integer (iterations)")


@dataclasses.dataclass
class LayerStatistics:
    """Recorded statistics: ``values[name]`` is an array ``(iterations,
    layers)`` for the layer statistics and ``(iterations, learnables)`` for
    the learnable ones (NaN where a value does not exist).

    Attributes:
        iterations: the recorded iterations (1-based), ``(R,)``.
        layers: layer names, in execution order (depth).
        learnables: learnable names, ``"layer.parameter"``.
        values: statistic name -> array.

    Examples:
        >>> stats = info.layer_statistics                          # doctest: +SKIP
        >>> stats["input_gradient_norm"][0]        # per layer, iteration 1  # doctest: +SKIP
    """

    iterations: np.ndarray
    layers: list[str]
    learnables: list[str]
    values: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.values:
            raise KeyError(f"no statistic {name!r} was recorded; recorded: "
                           f"{', '.join(self.values)}")
        return self.values[name]

    @property
    def statistics(self) -> tuple[str, ...]:
        return tuple(self.values)

    def columns(self, name: str) -> list[str]:
        """The names of the columns of ``self[name]``: layers or learnables."""
        return self.layers if name in LAYER_STATISTICS else self.learnables

    def to_csv(self, path: str | os.PathLike) -> str:
        """Write the statistics as a long table: iteration, kind (layer or
        learnable), name, statistic, value. Returns the path."""
        path = os.fspath(path)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["iteration", "kind", "name", "statistic", "value"])
            for stat, arr in self.values.items():
                kind = "layer" if stat in LAYER_STATISTICS else "learnable"
                for r, it in enumerate(self.iterations):
                    for c, name in enumerate(self.columns(stat)):
                        w.writerow([int(it), kind, name, stat, repr(float(arr[r, c]))])
        return path


def _norm(t: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(t.detach().to(torch.float64))


class StatisticsRecorder:
    """Records :data:`LAYER_STATISTICS` and :data:`LEARNABLE_STATISTICS` for
    chosen iterations of a training loop, through forward hooks (output
    amplitudes, and tensor hooks on each layer's input for the gradient
    that reaches it). Hooks are attached only for a recorded iteration, so
    iterations that are not recorded cost nothing.

    The protocol, for one iteration::

        recorder.begin(iteration)     # before the forward pass
        ... forward, loss, backward ...
        recorder.after_backward()     # gradients are there, weights not updated
        ... optimizer.step() ...
        recorder.after_update()       # weights updated: the row is complete

    Args:
        net: the :class:`~layerlab.Network` (its ``layers`` are watched).
        statistics: names or groups (see :func:`resolve_statistics`).
        frequency: record iteration 1 and every ``frequency``-th iteration.
    """

    def __init__(self, net, statistics: Iterable[str] = ("activations", "gradients"),
                 frequency: int = 50):
        self.statistics = resolve_statistics(statistics)
        self.frequency = check_frequency(frequency)
        self.layers = list(net.layers)
        self.layer_names = [layer.name for layer in self.layers]
        self.learnable_params: list[tuple[str, torch.nn.Parameter]] = [
            (f"{layer.name}.{pname}", p) for layer in self.layers
            for pname, p in layer.named_parameters()]
        self._rows: dict[str, list[list[float]]] = {s: [] for s in self.statistics}
        self._iterations: list[int] = []
        self._handles: list[Any] = []
        self._current: dict[str, list[Any]] | None = None
        self._before: list[torch.Tensor] | None = None
        self._wants_layer_stats = any(s in LAYER_STATISTICS for s in self.statistics)
        self._wants_input_grad = "input_gradient_norm" in self.statistics

    # -- when ------------------------------------------------------------
    def wants(self, iteration: int) -> bool:
        """Whether ``iteration`` (1-based) is recorded."""
        return iteration == 1 or iteration % self.frequency == 0

    @property
    def active(self) -> bool:
        return self._current is not None

    # -- the protocol ----------------------------------------------------
    def begin(self, iteration: int) -> None:
        nan = math.nan
        n = len(self.layers)
        self._iterations.append(int(iteration))
        self._current = {s: [nan] * (n if s in LAYER_STATISTICS else len(self.learnable_params))
                         for s in self.statistics}
        self._grad_sq = [None] * n
        if self._wants_layer_stats:
            for i, layer in enumerate(self.layers):
                self._handles.append(layer.register_forward_hook(self._forward_hook(i)))

    def _forward_hook(self, i: int):
        cur = self._current

        def hook(module, inputs, output):
            z = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(z, torch.Tensor) and z.is_floating_point() and z.numel():
                with torch.no_grad():
                    zd = z.detach()
                    if "activation_mean" in cur:
                        cur["activation_mean"][i] = zd.mean(dtype=torch.float64)
                    if "activation_std" in cur:
                        cur["activation_std"][i] = zd.to(torch.float64).std(correction=0)
                    if "activation_zero_fraction" in cur:
                        cur["activation_zero_fraction"][i] = (zd == 0).sum() / zd.numel()
            if self._wants_input_grad:
                for x in inputs:
                    if isinstance(x, torch.Tensor) and x.requires_grad:
                        x.register_hook(self._gradient_hook(i))
        return hook

    def _gradient_hook(self, i: int):
        def hook(grad):
            sq = grad.detach().to(torch.float64).square().sum()
            self._grad_sq[i] = sq if self._grad_sq[i] is None else self._grad_sq[i] + sq
        return hook

    def after_backward(self, update_follows: bool = True) -> None:
        """Read the gradients; keep the weights to measure the update (unless
        no update follows: the update ratio then stays NaN)."""
        if self._current is None:
            return
        cur = self._current
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if "input_gradient_norm" in cur:
            for i, sq in enumerate(self._grad_sq):
                if sq is not None:
                    cur["input_gradient_norm"][i] = sq.sqrt()
        for j, (_, p) in enumerate(self.learnable_params):
            if "learnable_norm" in cur:
                cur["learnable_norm"][j] = _norm(p)
            if "gradient_norm" in cur and p.grad is not None:
                cur["gradient_norm"][j] = _norm(p.grad)
        if "update_ratio" in cur and update_follows:
            self._before = [p.detach().clone() for _, p in self.learnable_params]

    def after_update(self) -> None:
        """The weights have been updated: complete and store the row."""
        if self._current is None:
            return
        cur = self._current
        if self._before is not None:
            for j, ((_, p), w0) in enumerate(zip(self.learnable_params, self._before)):
                w0n = _norm(w0)
                cur["update_ratio"][j] = _norm(p.detach() - w0) / w0n if float(w0n) > 0 \
                    else math.nan
            self._before = None
        for s, vals in cur.items():
            self._rows[s].append([float(v) for v in vals])  # one host sync per recorded row
        self._current = None

    def cancel(self) -> None:
        """Drop a row that was begun (the step failed)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._current is not None:
            self._iterations.pop()
        self._current, self._before = None, None

    def load_rows(self, iterations: Sequence[int], values: dict[str, Any]) -> bool:
        """Continue from rows recorded earlier (a resumed run): ``values`` as
        :meth:`result` gives them. False (and nothing changed) when they do
        not fit this network and these statistics."""
        rows = len(iterations)
        for s in self.statistics:
            cols = len(self.layers) if s in LAYER_STATISTICS else len(self.learnable_params)
            arr = values.get(s)
            if arr is None or tuple(np.shape(arr)) != (rows, cols):
                return False
        self._iterations = [int(i) for i in iterations]
        for s in self.statistics:
            self._rows[s] = np.asarray(values[s], dtype=np.float64).tolist()
        return True

    def result(self) -> LayerStatistics:
        values = {}
        for s in self.statistics:
            cols = len(self.layers) if s in LAYER_STATISTICS else len(self.learnable_params)
            values[s] = np.asarray(self._rows[s], dtype=np.float64).reshape(-1, cols)
        return LayerStatistics(np.asarray(self._iterations, dtype=np.int64),
                               list(self.layer_names), [n for n, _ in self.learnable_params],
                               values)
