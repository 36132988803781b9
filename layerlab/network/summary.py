"""``layerlab.summary``: a table of a network's layers, like MATLAB's
``analyzeNetwork`` and Keras' ``model.summary()``.

One row per layer: name, type, output (activation) size of one observation,
learnables with their shapes, learnable and frozen parameter counts; then
the totals. A layer that cannot take its input is marked with the reason,
and the layers after it are marked as not reached, instead of the whole
analysis failing.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

import torch

from ..errors import LayerlabError, NetworkError
from ..layer import InputLayer, Layer
from .graph import Block, LayerGraph, as_layer
from .network import Network, probe_layer

__all__ = ["summary", "Summary", "SummaryRow"]


@dataclasses.dataclass
class SummaryRow:
    """One layer of a :class:`Summary`.

    Attributes:
        index: 1-based position in execution order.
        name, type: the layer's name and type ("Convolution").
        activations: the output size(s) of one observation, ``None`` if the
            layer could not run.
        learnables: each learnable's shape, by name.
        learnable_params: the number of trained parameters.
        frozen_params: the number of frozen (not trained) parameters.
        state_values: the number of state values (e.g. running statistics).
        error: why the layer could not run, or ``None``.
    """

    index: int
    name: str
    type: str
    activations: tuple[tuple[int, ...], ...] | None
    learnables: dict[str, tuple[int, ...]]
    learnable_params: int
    frozen_params: int
    state_values: int
    error: str | None = None


@dataclasses.dataclass
class Summary:
    """The result of :func:`summary`; ``str(summary)`` is the table."""

    rows: list[SummaryRow]

    @property
    def learnable_params(self) -> int:
        return sum(r.learnable_params for r in self.rows)

    @property
    def frozen_params(self) -> int:
        return sum(r.frozen_params for r in self.rows)

    @property
    def total_params(self) -> int:
        return self.learnable_params + self.frozen_params

    @property
    def state_values(self) -> int:
        return sum(r.state_values for r in self.rows)

    @property
    def errors(self) -> dict[str, str]:
        """The layers that could not run, with the reason."""
        return {r.name: r.error for r in self.rows if r.error is not None}

    def row(self, name: str) -> SummaryRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise NetworkError(f"the summary has no layer named {name!r}")

    def __str__(self) -> str:
        head = ("#", "Name", "Type", "Activations", "Learnables", "Learnable", "Frozen")
        body = []
        for r in self.rows:
            acts = "ERROR" if r.error is not None and r.activations is None else (
                ", ".join(_size(a) for a in r.activations) if r.activations else "-")
            learn = ", ".join(f"{k} {_size(v)}" for k, v in r.learnables.items()) or "-"
            body.append((str(r.index), r.name, r.type, acts, learn,
                         f"{r.learnable_params:,}", f"{r.frozen_params:,}"))
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
                  for i, h in enumerate(head)]
        right = {0, 5, 6}

        def fmt(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        lines = [fmt(head), "  ".join("-" * w for w in widths)]
        for r, cells in zip(self.rows, body):
            lines.append(fmt(cells))
            if r.error is not None:
                lines.append(" " * (widths[0] + 2) + "! " + r.error)
        lines.append("  ".join("-" * w for w in widths))
        lines.append(f"Total parameters: {self.total_params:,} (learnable: "
                     f"{self.learnable_params:,}, frozen: {self.frozen_params:,}); "
                     f"state values: {self.state_values:,}")
        if self.errors:
            lines.append(f"{len(self.errors)} layer(s) could not run: "
                         f"{', '.join(self.errors)}")
        return "\n".join(lines)

    __repr__ = __str__


def _size(shape) -> str:
    return "x".join(str(int(s)) for s in shape) if len(shape) else "scalar"


def _as_graph(layers_or_net: Any) -> LayerGraph:
    """A deep copy of the graph, so that the analysis never changes the
    user's layers (initializing them, naming them)."""
    if isinstance(layers_or_net, Network):
        return copy.deepcopy(layers_or_net.graph)
    if isinstance(layers_or_net, LayerGraph):
        return copy.deepcopy(layers_or_net)
    if isinstance(layers_or_net, (torch.nn.Module, Block)):
        layers_or_net = [layers_or_net]
    if not isinstance(layers_or_net, (list, tuple)):
        raise NetworkError(f"summary: expected a list of layers, a LayerGraph or a Network, "
                           f"got {type(layers_or_net).__name__}")
    layers_or_net = [as_layer(item) for item in layers_or_net]
    for i, item in enumerate(layers_or_net):
        if not isinstance(item, (Layer, Block)):
            raise NetworkError(f"summary: item {i} is a {type(item).__name__}, not a "
                               f"layerlab.Layer")
    return LayerGraph(copy.deepcopy(list(layers_or_net)))


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, LayerlabError) else f"{type(exc).__name__}: {exc}"


def summary(layers_or_net: Sequence[Layer] | LayerGraph | Network,
            input_size: Sequence[int] | None = None) -> Summary:
    """Analyze a network: sizes, learnables and parameter counts per layer.

    Args:
        layers_or_net: a list of layers (and blocks), a
            :class:`~layerlab.LayerGraph` or a :class:`~layerlab.Network`.
        input_size: one observation's size, e.g. ``(1, 28, 28)``. Needed only
            for layers without an input layer (it feeds every unconnected
            input); with an input layer it replaces the data the input
            layer receives (a different size is then reported there).

    Returns:
        a :class:`Summary`; print it for the table. Structural errors (a
        cycle) raise a :class:`~layerlab.NetworkError`; a layer whose input
        does not fit is marked with the reason in its row.
    """
    graph = _as_graph(layers_or_net)
    if input_size is not None:
        input_size = tuple(int(s) for s in input_size)
    order = graph.topological_order(allow_unconnected=True)
    has_input_layer = any(isinstance(graph.layer(n), InputLayer) for n in order)
    outputs: dict[str, tuple[torch.Tensor, ...] | None] = {}
    rows: list[SummaryRow] = []
    with torch.no_grad():
        for i, name in enumerate(order, start=1):
            layer = graph.layer(name)
            layer.eval()
            error, xs = None, []
            if isinstance(layer, InputLayer):
                xs = [torch.zeros((2, *(input_size or layer.input_size)))]
            else:
                for k, src in enumerate(graph.sources(name, allow_unconnected=True)):
                    if src is None:
                        if input_size is not None and not has_input_layer:
                            xs.append(torch.zeros((2, *input_size)))
                            continue
                        error = (f"input {k + 1} is not connected"
                                 + ("" if has_input_layer else "; give input_size"))
                        break
                    produced = outputs.get(src[0])
                    if produced is None:
                        error = f"not reached: its input from '{src[0]}' could not be computed"
                        break
                    xs.append(produced[src[1]])
            Z = None
            if error is None:
                try:
                    Z = probe_layer(layer, xs)      # as Network sizes its layers
                except NetworkError as exc:     # reported in the row
                    cause = exc.__cause__ if exc.__cause__ is not None else exc
                    sizes = ", ".join(str(tuple(x.shape[1:])) for x in xs)
                    error = f"cannot take input of size {sizes}: {_reason(cause)}"
                    Z = None
            outputs[name] = Z
            params = layer.learnables()
            rows.append(SummaryRow(
                index=i, name=name, type=layer.type,
                activations=None if Z is None else tuple(tuple(z.shape[1:]) for z in Z),
                learnables={k: tuple(p.shape) for k, p in params.items()},
                learnable_params=sum(p.numel() for p in params.values() if p.requires_grad),
                frozen_params=sum(p.numel() for p in params.values() if not p.requires_grad),
                state_values=sum(b.numel() for b in layer.buffers()),
                error=error))
    return Summary(rows)
