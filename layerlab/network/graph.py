"""Layer graphs: layers connected by name, MATLAB's ``layerGraph``.

A list of layers is a chain; a :class:`LayerGraph` adds branches and merges
(residual connections)::

    g = LayerGraph([ImageInput((1, 28, 28)), Convolution2d(3, 16, padding="same", name="c1"),
                    ReLU(name="r1"), Convolution2d(3, 16, padding="same", name="c2"),
                    Addition(2, name="add"), ...])
    g.connect("r1", "add/in2")       # the skip connection

Ports: a layer with one input has the port ``"name/in"`` (``"name"`` for
short); with several, ``"name/in1"``, ``"name/in2"``, ... Outputs likewise:
``"name"`` or ``"name/out"``, ``"name/out1"``, ...

A :class:`Block` is a small graph with one entry and one exit (such as
:func:`layerlab.residual_block`); in a list of layers it takes the place of
one layer: the previous output feeds all its entry ports, and its exit
feeds the next layer.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from typing import Iterable

import torch

from ..errors import NetworkError
from ..layer import InputLayer, Layer, OutputLayer

__all__ = ["LayerGraph", "Block", "default_layer_name"]


def default_layer_name(layer: Layer) -> str:
    """The base of a layer's automatic name: ``Convolution2d`` -> ``convolution2d``."""
    base = getattr(layer, "default_name", None) or type(layer).__name__
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base).lower()


def as_layer(item):
    """A layer for an item of a layer list: a ``torch.nn.Module`` that is
    not a layerlab layer is wrapped in a :class:`~layerlab.ModuleLayer`;
    anything else is returned as is (and refused by the caller)."""
    if isinstance(item, torch.nn.Module) and not isinstance(item, Layer):
        from ..layers.module import ModuleLayer  # the layers package imports network-free modules
        return ModuleLayer(item)
    return item


def _input_ports(layer: Layer) -> list[str]:
    return ["in"] if layer.num_inputs == 1 else [f"in{i + 1}" for i in range(layer.num_inputs)]


def _output_ports(layer: Layer) -> list[str]:
    return ["out"] if layer.num_outputs == 1 else [f"out{i + 1}" for i in range(layer.num_outputs)]


@dataclasses.dataclass
class Block:
    """A sub-graph with one entry and one exit, added to a graph like a layer.

    Attributes:
        layers: the block's layers by role, e.g. ``{"conv1": ..., "add": ...}``;
            when the block is added, each unnamed layer is named
            ``"<block name>_<role>"``.
        connections: ``(source, destination)`` pairs inside the block, in
            roles and ports, e.g. ``("bn2", "add/in1")``.
        entries: the ports the block's input feeds, e.g. ``["conv1", "add/in2"]``.
        exit: the role of the layer whose output is the block's output.
        name: the block's name; default ``"<default_name>_<k>"``.
        default_name: base of the automatic name, e.g. ``"res"``.
    """

    layers: dict
    connections: list
    entries: list
    exit: str
    name: str | None = None
    default_name: str = "block"

    def __post_init__(self):
        self.layers = {role: as_layer(layer) for role, layer in self.layers.items()}
        for role, layer in self.layers.items():
            if not isinstance(layer, Layer):
                raise NetworkError(f"Block: layer {role!r} is a {type(layer).__name__}, "
                                   f"not a layerlab.Layer")
        roles = set(self.layers)
        for spec in [s for c in self.connections for s in c] + list(self.entries) + [self.exit]:
            if spec.partition("/")[0] not in roles:
                raise NetworkError(f"Block: {spec!r} names no layer of the block; its "
                                   f"layers are {sorted(roles)}")


class LayerGraph:
    """A directed acyclic graph of layers.

    Args:
        layers: optional list of layers (or :class:`Block` objects), added
            as a chain (each one's output feeds the next one's first input).
    """

    def __init__(self, layers: Iterable[Layer | Block] | None = None):
        self._layers: dict[str, Layer] = {}
        # destination port "name/inK" -> source "name/outK"
        self._edges: dict[str, str] = {}
        if layers is not None:
            self.add_layers(layers)

    # -- building --------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self._layers.values())

    @property
    def connections(self) -> list[tuple[str, str]]:
        """``(source, destination)`` pairs, e.g. ``("conv_1/out", "relu_1/in")``."""
        return [(src, dst) for dst, src in self._edges.items()]

    def layer(self, name: str) -> Layer:
        try:
            return self._layers[name]
        except KeyError:
            raise NetworkError(f"the graph has no layer named {name!r}; its layers are "
                               f"{list(self._layers)}") from None

    def _add(self, layer: Layer) -> str:
        layer = as_layer(layer)
        if not isinstance(layer, Layer):
            raise NetworkError(f"expected a layerlab.Layer, got {type(layer).__name__} "
                               f"({layer!r:.60})")
        if any(existing is layer for existing in self._layers.values()):
            raise NetworkError(f"layer {layer.label} was added twice; "
                               f"use a separate layer object for each place")
        if not layer.name:
            base = default_layer_name(layer)
            i = 1
            while f"{base}_{i}" in self._layers:
                i += 1
            layer.name = f"{base}_{i}"
        elif layer.name in self._layers:
            raise NetworkError(f"two layers are named {layer.name!r}: layer names must be unique")
        self._layers[layer.name] = layer
        return layer.name

    def add_layers(self, layers: Iterable[Layer | Block] | Layer | Block) -> "LayerGraph":
        """Add layers (or blocks), connected one after another (not to
        existing layers). Returns the graph."""
        if isinstance(layers, (torch.nn.Module, Block)):
            layers = [layers]
        if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
            raise NetworkError(f"expected a list of layers, got {type(layers).__name__}")
        prev = None
        for i, item in enumerate(layers):
            item = as_layer(item)
            if not isinstance(item, (Layer, Block)):
                raise NetworkError(f"layers[{i}] is a {type(item).__name__} ({item!r:.60}), not "
                                   f"a layerlab.Layer, a torch.nn.Module or a Block such as "
                                   f"residual_block()")
            if isinstance(item, Block):
                entries, exit_name = self._add_block(item)
                if prev is not None:
                    for port in entries:
                        self.connect(prev, port)
                prev = self._first_output(exit_name)
                continue
            name = self._add(item)
            if prev is not None:
                # as in MATLAB: a chain feeds a layer's first input
                self.connect(prev, f"{name}/{_input_ports(item)[0]}")
            prev = self._first_output(name)
        return self

    def _first_output(self, spec: str) -> str:
        name, sep, port = spec.partition("/")
        return spec if sep else f"{name}/{_output_ports(self.layer(name))[0]}"

    def add_block(self, block: Block, after: str | None = None) -> str:
        """Add a :class:`Block`, fed by the output ``after`` if given;
        returns the name of its exit layer (to connect further)."""
        entries, exit_name = self._add_block(block)
        if after is not None:
            for port in entries:
                self.connect(after, port)
        return exit_name

    def _add_block(self, block: Block) -> tuple[list[str], str]:
        if not isinstance(block, Block):
            raise NetworkError(f"expected a Block, got {type(block).__name__}")
        base = block.name
        if base is None:
            i = 1
            while any(n.startswith(f"{block.default_name}_{i}_") for n in self._layers):
                i += 1
            base = f"{block.default_name}_{i}"
        names = {}
        for role, layer in block.layers.items():
            if not layer.name:
                layer.name = f"{base}_{role}"
            names[role] = self._add(layer)

        def port(spec: str) -> str:
            role, sep, rest = spec.partition("/")
            return names[role] + sep + rest

        for src, dst in block.connections:
            self.connect(port(src), port(dst))
        return [port(e) for e in block.entries], port(block.exit)

    def _port(self, spec: str, outputs: bool) -> str:
        if not isinstance(spec, str):
            raise NetworkError(f"expected a layer or port name such as 'add/in2', got {spec!r}")
        name, _, port = spec.partition("/")
        layer = self.layer(name)
        ports = _output_ports(layer) if outputs else _input_ports(layer)
        if not port:
            if len(ports) != 1:
                raise NetworkError(f"layer {name!r} has {'outputs' if outputs else 'inputs'} "
                                   f"{[f'{name}/{p}' for p in ports]}: name one")
            port = ports[0]
        if port not in ports:
            raise NetworkError(f"layer {name!r} has no {'output' if outputs else 'input'} "
                               f"{port!r}; it has {ports}")
        return f"{name}/{port}"

    def connect(self, source: str, destination: str) -> "LayerGraph":
        """Connect an output (``"relu_1"``) to an input (``"add/in2"``)."""
        src = self._port(source, outputs=True)
        dst = self._port(destination, outputs=False)
        if dst in self._edges:
            raise NetworkError(f"input {dst!r} is already connected to {self._edges[dst]!r}; "
                               f"disconnect it first")
        self._edges[dst] = src
        return self

    def disconnect(self, source: str, destination: str) -> "LayerGraph":
        src = self._port(source, outputs=True)
        dst = self._port(destination, outputs=False)
        if self._edges.get(dst) != src:
            raise NetworkError(f"{src!r} is not connected to {dst!r}")
        del self._edges[dst]
        return self

    def remove_layers(self, *names: str) -> "LayerGraph":
        for n in names:
            self.layer(n)
            del self._layers[n]
            self._edges = {d: s for d, s in self._edges.items()
                           if not d.startswith(n + "/") and not s.startswith(n + "/")}
        return self

    # -- analysis --------------------------------------------------------
    def sources(self, name: str, allow_unconnected: bool = False
                ) -> list[tuple[str, int] | None]:
        """For each input of layer ``name``: (source layer, output index).
        An input that is not connected raises a :class:`NetworkError`, or,
        with ``allow_unconnected``, gives ``None``."""
        layer = self.layer(name)
        out: list[tuple[str, int] | None] = []
        for port in _input_ports(layer):
            src = self._edges.get(f"{name}/{port}")
            if src is None:
                if not allow_unconnected:
                    raise NetworkError(f"input '{name}/{port}' of layer {layer.label} "
                                       f"is not connected")
                out.append(None)
                continue
            sname, sport = src.split("/")
            out.append((sname, 0 if sport == "out" else int(sport[3:]) - 1))
        return out

    def topological_order(self, allow_unconnected: bool = False) -> list[str]:
        """Layer names so that every layer comes after its sources; raises a
        :class:`NetworkError` naming the layers of a cycle (and, unless
        ``allow_unconnected``, naming an input that is not connected)."""
        def sources(n: str) -> list[str]:
            if isinstance(self._layers[n], InputLayer):
                return []
            srcs = self.sources(n, allow_unconnected)
            return [s[0] for s in srcs if s is not None]

        deps = {n: sources(n) for n in self._layers}
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(n: str, path: list[str]) -> None:
            if state.get(n) == 2:
                return
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n]
                raise NetworkError(f"the graph has a cycle: {' -> '.join(cycle)}")
            state[n] = 1
            for d in deps[n]:
                visit(d, path + [n])
            state[n] = 2
            order.append(n)

        for n in self._layers:
            visit(n, [])
        return order

    def validate(self) -> list[str]:
        """Check the structure; return the topological order.

        Errors: no layers; an input layer that is not first or a non-input
        layer with an unconnected input; a cycle; outputs that feed nothing
        (other than the network's final layer); an output layer that is not
        last.
        """
        if not self._layers:
            raise NetworkError("the network has no layers")
        inputs = [n for n, l in self._layers.items() if isinstance(l, InputLayer)]
        if not inputs:
            raise NetworkError("the network has no input layer (e.g. ImageInput((1, 28, 28))) "
                               "as its first layer")
        order = self.topological_order()
        for n in inputs:
            if any(d.startswith(n + "/") for d in self._edges):
                raise NetworkError(f"input layer {n!r} cannot take inputs")
        consumers: dict[str, list[str]] = defaultdict(list)
        for dst, src in self._edges.items():
            consumers[src].append(dst)
        sinks = []
        for n, layer in self._layers.items():
            unused = [f"{n}/{p}" for p in _output_ports(layer) if f"{n}/{p}" not in consumers]
            if isinstance(layer, OutputLayer):
                if len(unused) != len(_output_ports(layer)):
                    raise NetworkError(f"output layer {n!r} must be the last layer, but it "
                                       f"feeds {consumers[f'{n}/out']}")
                sinks.append(n)
            elif unused:
                sinks.append(n)
                if len(unused) != len(_output_ports(layer)):
                    raise NetworkError(f"output(s) {unused} of layer {n!r} are not connected")
        if len(sinks) != 1:
            raise NetworkError(f"the network must end in one layer, but these layers' outputs "
                               f"are not connected to anything: {sinks}")
        return order

    def __repr__(self) -> str:
        return f"LayerGraph({len(self._layers)} layers, {len(self._edges)} connections)"
