"""A network: layers, connected, sized and ready to run.

:class:`Network` turns a list of layers or a :class:`LayerGraph` into a
``torch.nn.Module``: it validates the graph, infers every layer's input size
(calling each layer's ``initialize``), and runs the layers in topological
order, in training (``forward``, hand-written ``backward`` bridged into
autograd) or in inference (``predict``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..autograd_bridge import check_output_dtype, run_layer
from ..errors import LayerlabError, NetworkError
from ..layer import InputLayer, Layer, OutputLayer
from .graph import LayerGraph

__all__ = ["Network", "as_network", "probe_layer"]


def probe_layer(layer: Layer, xs: Sequence[torch.Tensor], device: torch.device | None = None,
                where: str = "") -> tuple[torch.Tensor, ...]:
    """Initialise ``layer`` for inputs ``xs`` (a small batch each) and run its
    ``predict`` on them (no hooks, no autograd): its outputs, as a tuple. A
    failure is a :class:`NetworkError` naming the layer and the input sizes
    (``where`` says where they came from). Used to size networks and by
    :func:`~layerlab.summary`."""
    sizes = [tuple(x.shape[1:]) for x in xs]
    try:
        with torch.no_grad():
            layer.draw_initial_values()
            layer.initialize(sizes)
            if device is not None:
                layer.to(device)
            z = run_layer(layer, tuple(xs), training=False)
            check_output_dtype(layer, xs, z, "predict")
    except LayerlabError as exc:
        raise NetworkError(f"{exc}" if "layer '" in str(exc) else
                           f"layer {layer.label}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - user code: add context
        desc = ", ".join(str(s) for s in sizes)
        raise NetworkError(f"layer {layer.label} cannot take input of size {desc}"
                           f"{where}: {type(exc).__name__}: {exc}") from exc
    return z if isinstance(z, tuple) else (z,)


class Network(torch.nn.Module):
    """Layers connected into a runnable network.

    Args:
        layers: a list of layers (a chain) or a :class:`LayerGraph`.

    Attributes:
        layers: the layers in execution order (a ``ModuleList``).
        input_layer, output_layer: the first layer and the loss layer (or
            ``None`` for a network without a loss).
        sizes: the output size (one observation) of each layer, by name.
        classes: the class labels of a classification network.
    """

    def __init__(self, layers: Sequence[Layer] | LayerGraph):
        super().__init__()
        graph = layers if isinstance(layers, LayerGraph) else LayerGraph(layers)
        order = graph.validate()
        self.graph = graph
        self.layers = torch.nn.ModuleList([graph.layer(n) for n in order])
        index = {n: i for i, n in enumerate(order)}
        # For each layer: (index of source layer, output index) per input.
        self._plan: list[tuple[tuple[int, int], ...]] = []
        for n in order:
            layer = graph.layer(n)
            srcs = () if isinstance(layer, InputLayer) else tuple(
                (index[s], k) for s, k in graph.sources(n))
            self._plan.append(srcs)
        inputs = [l for l in self.layers if isinstance(l, InputLayer)]
        if len(inputs) != 1:
            raise NetworkError(f"networks with {len(inputs)} input layers are not supported; "
                               f"found {[l.name for l in inputs]}")
        self.input_layer: InputLayer = inputs[0]
        last = self.layers[-1]
        self.output_layer: OutputLayer | None = last if isinstance(last, OutputLayer) else None
        # e.g. Softmax followed by cross-entropy: training takes the loss from
        # the softmax's input (OutputLayer.takes_logits_from / loss_from_logits)
        self._fuse_softmax = bool(
            self.output_layer is not None and len(self.layers) >= 2
            and self._plan[-1] == ((len(self.layers) - 2, 0),)
            and self.output_layer.takes_logits_from(self.layers[-2]))
        self.sizes: dict[str, tuple[tuple[int, ...], ...]] = {}
        self._infer_sizes()
        #: run fused layer pairs (Layer.fused_with) where nothing needs the
        #: value between them; False runs every layer on its own
        self.fuse_layers = True
        self._fused = self._find_fusions()
        # each fused run's own layers, for _may_fuse's per-call look (a slice
        # of the ModuleList would build a new Module every step)
        layers = list(self.layers)
        self._fused_parts = {i: tuple(layers[i:end + 1]) for i, (end, _) in self._fused.items()}

    def _find_fusions(self) -> dict[int, tuple[int, Layer]]:
        """{i: (j, the layer computing layers i..j together)}. A layer whose
        output feeds only the next layer, which takes nothing else, is
        asked whether it fuses with it (:meth:`Layer.fused_with`); a fused
        layer is asked again about the layer after it, and the layer before
        is asked about it (so a convolution meets the batch normalization +
        ELU pair as one). The fused layers are not submodules: they hold the
        network's own."""
        consumers: dict[int, int] = {}
        for srcs in self._plan:
            for j, _ in srcs:
                consumers[j] = consumers.get(j, 0) + 1

        def chained(i: int) -> bool:   # layer i's output feeds only layer i + 1
            return (i + 1 < len(self.layers) and consumers.get(i) == 1
                    and self._plan[i + 1] == ((i, 0),) and self.layers[i].num_outputs == 1)

        # runs of layers [start, end] and the layer computing each; merged
        # from the end, so that a layer meets the fused run after it
        runs: list[list] = [[i, i, layer] for i, layer in enumerate(self.layers)]
        k = len(runs) - 2
        while k >= 0:
            first, second = runs[k], runs[k + 1]
            fused = self._ask_fused(first[2], second[2]) if chained(first[1]) else None
            if fused is not None:
                runs[k:k + 2] = [[first[0], second[1], fused]]
                if k + 1 < len(runs):
                    continue           # the new run may fuse with the next one too
            k -= 1
        return {start: (end, layer) for start, end, layer in runs if end > start}

    @staticmethod
    def _ask_fused(a: Layer, b: Layer) -> Layer | None:
        try:
            f = a.fused_with(b)
        except LayerlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code: add context
            raise NetworkError(f"layer {a.label}: fused_with({b.label}) raised "
                               f"{type(exc).__name__}: {exc}") from exc
        if f is not None and not isinstance(f, Layer):
            raise NetworkError(f"layer {a.label}: fused_with must return a Layer or "
                               f"None, got {type(f).__name__}")
        return f

    # -- construction ----------------------------------------------------
    def _infer_sizes(self) -> None:
        """Initialise each layer for its input size and record output sizes,
        running ``predict`` on a small batch of zeros."""
        outputs: list[tuple[torch.Tensor, ...]] = []
        was_training = self.training
        self.eval()
        # layers already holding learnables (e.g. a trained network's, on a
        # GPU) set the device: the probe runs there, new layers move there
        p = next(iter(self.parameters()), None)
        device = p.device if p is not None else None
        try:
            with torch.no_grad():
                for i, (layer, srcs) in enumerate(zip(self.layers, self._plan)):
                    if isinstance(layer, InputLayer):
                        x = torch.zeros((2, *layer.input_size), device=device)
                        xs = (x,)
                    else:
                        xs = tuple(outputs[j][k] for j, k in srcs)
                    where = "" if not srcs else " from " + ", ".join(
                        f"'{self.layers[j].name}'" for j, _ in srcs)
                    z = probe_layer(layer, xs, device, where)
                    outputs.append(z)
                    self.sizes[layer.name] = tuple(tuple(t.shape[1:]) for t in z)
        finally:
            self.train(was_training)

    # -- queries ---------------------------------------------------------
    def layer(self, name: str) -> Layer:
        for l in self.layers:
            if l.name == name:
                return l
        raise NetworkError(f"the network has no layer named {name!r}; its layers are "
                           f"{[l.name for l in self.layers]}")

    @property
    def input_size(self) -> tuple[int, ...]:
        return self.input_layer.input_size

    @property
    def classes(self) -> list[Any] | None:
        return getattr(self.output_layer, "classes", None)

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The floating type of the learnables (inputs are converted to it)."""
        for t in self.parameters():
            if t.is_floating_point():
                return t.dtype
        for t in self.buffers():
            if t.is_floating_point():
                return t.dtype
        return torch.get_default_dtype()

    @property
    def fuses_softmax(self) -> bool:
        return self._fuse_softmax

    # -- running ---------------------------------------------------------
    def forward(self, X: torch.Tensor, until: int | None = None,  # type: ignore[override]
                logits: bool = False) -> torch.Tensor:
        """The network's output (the input of its loss layer), in training or
        inference according to ``self.training``.

        ``logits=True`` stops before a final softmax (used by training with
        the fused cross-entropy). ``until`` returns the output of layer
        number ``until`` instead.
        """
        stop = len(self.layers) if self.output_layer is None else len(self.layers) - 1
        if logits and self._fuse_softmax:
            stop -= 1
        if until is not None:
            stop = until + 1
        return self._run(X, stop, fuse=True)[stop - 1]

    def layer_outputs(self, X: torch.Tensor, stop: int | None = None) -> list[Any]:
        """The outputs of layers ``0 .. stop - 1`` (default: all but the
        output layer), in training or inference according to
        ``self.training``; a layer with several outputs gives a tuple.
        Every layer runs on its own (no fused pairs), so every output is
        there."""
        if stop is None:
            stop = len(self.layers) - (1 if self.output_layer is not None else 0)
        return self._run(X, stop, fuse=False)

    def _run(self, X: torch.Tensor, stop: int, fuse: bool) -> list[Any]:
        """The outputs of layers ``0 .. stop - 1``; with ``fuse``, a fused
        run of layers (see :meth:`_find_fusions`) leaves ``None`` for all
        but its last layer's output."""
        values: list[Any] = [None] * stop
        fused = self._fused if fuse and self.fuse_layers else {}
        i = 0
        while i < stop:
            layer = self.layers[i]
            srcs = self._plan[i]
            if not srcs:
                xs = (X,)
            else:
                xs = tuple(values[j][k] if isinstance(values[j], tuple) else values[j]
                           for j, k in srcs)
            run = fused.get(i)
            if run is not None and run[0] < stop and _may_fuse(self._fused_parts[i]):
                i = run[0]
                layer = self.layers[i]
                z = values[i] = run_layer(run[1], xs, training=layer.training)
            else:
                # through nn.Module.__call__ (hooks fire); each layer runs in
                # its own mode, which net.train() / net.eval() set
                z = values[i] = layer(*xs)
            # the full check (and its message) only when a dtype differs
            if isinstance(z, torch.Tensor) and isinstance(xs[0], torch.Tensor) \
                    and z.dtype != xs[0].dtype or isinstance(z, tuple):
                check_output_dtype(layer, xs, z, "forward" if layer.training else "predict")
            i += 1
        return values

    def loss(self, Y: torch.Tensor, T: torch.Tensor, from_logits: bool = False) -> torch.Tensor:
        """The output layer's loss for output ``Y`` (logits when ``from_logits``)."""
        if self.output_layer is None:
            raise NetworkError("the network has no output layer (e.g. Classification()) "
                               "to compute a loss")
        if from_logits and self._fuse_softmax:
            return self.output_layer.loss_from_logits(Y, T)
        return self.output_layer.loss(Y, T)

    def predict(self, X, mini_batch_size: int = 1024):
        """Outputs (e.g. class scores ``(N, K)``) for inputs ``X``, processed
        in mini-batches in inference mode. Returns a NumPy array for NumPy
        input and a tensor for tensor input."""
        was_tensor = isinstance(X, torch.Tensor)
        parts = [z for (z,) in self.infer_in_batches(X, mini_batch_size, what="predict X")]
        Y = torch.cat(parts) if parts else torch.empty(0)
        return Y if was_tensor else Y.cpu().numpy()

    def infer_in_batches(self, X, mini_batch_size: int = 1024, until: int | None = None,
                         what: str = "X") -> list[tuple[torch.Tensor, ...]]:
        """The network's outputs (or layer ``until``'s, as a tuple of its
        outputs) for ``X`` in inference mode, one entry per mini-batch; ``X``
        is checked against the input layer and converted to the network's
        dtype and device. The training mode is restored afterwards."""
        from ..data import as_input_tensor
        Xt = as_input_tensor(X, self.input_size, what, dtype=self.dtype)
        was_training = self.training
        self.eval()
        device = self.device
        outs = []
        try:
            with torch.inference_mode():
                for start in range(0, Xt.shape[0], mini_batch_size):
                    xb = Xt[start:start + mini_batch_size].to(device, non_blocking=True)
                    z = self(xb, until=until)
                    outs.append(z if isinstance(z, tuple) else (z,))
        finally:
            self.train(was_training)
        return outs

    def classify(self, X, mini_batch_size: int = 1024) -> np.ndarray:
        """Predicted labels, of the training labels' kind."""
        if self.classes is None:
            raise NetworkError("classify needs a trained classification network "
                               "(its Classification layer has no classes yet)")
        scores = self.predict(torch.as_tensor(X) if not isinstance(X, torch.Tensor) else X,
                              mini_batch_size)
        idx = scores.argmax(dim=1).cpu().numpy()
        return np.asarray(self.classes)[idx]

    def __repr__(self) -> str:
        rows = [f"  {i + 1:>3} {l.name:<20} {type(l).__name__:<22} -> "
                f"{', '.join(str(s) for s in self.sizes.get(l.name, ()))}"
                for i, l in enumerate(self.layers)]
        return "Network(\n" + "\n".join(rows) + "\n)"


_hooks = torch.nn.modules.module


def _has_hooks(layer: torch.nn.Module) -> bool:
    return bool(layer._forward_hooks or layer._forward_pre_hooks or layer._backward_hooks
                or getattr(layer, "_backward_pre_hooks", None))


def _global_hooks() -> bool:
    """Whether a hook is registered on every module
    (``torch.nn.modules.module.register_module_forward_hook`` and kin)."""
    return bool(_hooks._global_forward_hooks or _hooks._global_forward_pre_hooks
                or _hooks._global_backward_hooks
                or getattr(_hooks, "_global_backward_pre_hooks", None))


def _may_fuse(layers) -> bool:
    """Whether a fused run of layers may run now: all in the same mode, none
    asked to use autograd, no hook (on one of them or on every module) that
    would miss a call or a value between them."""
    mode = layers[0].training
    for l in layers:    # a loop, not all() over _has_hooks: this runs every step
        if (l.training != mode or l.use_autograd or l._forward_hooks or l._forward_pre_hooks
                or l._backward_hooks or l._backward_pre_hooks):
            return False
    return not _global_hooks()


def as_network(layers: Sequence[Layer] | LayerGraph | Network) -> Network:
    """A :class:`Network` from a list of layers, a graph or a network."""
    if isinstance(layers, Network):
        return layers
    if isinstance(layers, Layer):
        raise NetworkError("expected a list of layers, got a single layer "
                           f"{layers.label}: wrap it in [ ]")
    if not isinstance(layers, (LayerGraph, list, tuple)):
        raise NetworkError(f"expected a list of layers or a LayerGraph, "
                           f"got {type(layers).__name__}")
    return Network(layers)
