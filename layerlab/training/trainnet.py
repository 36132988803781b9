"""``trainnet``: train a network without an output layer, the loss given
as an argument (MATLAB R2024a's ``trainnet(data, net, lossFcn, options)``).

Under the hood the loss becomes a :class:`LossOutput` layer at the end of
the network for the length of the training (the public ``OutputLayer``
contract: ``loss``, ``prepare_targets``, ``metric``), the run is the same
:class:`~layerlab.training.trainer.TrainingRun` as ``train_network``'s
(table, plot, validation, checkpoints, ``resume_from``, metrics, logs), and
the network comes back without it.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any, Sequence, TextIO

import torch
import torch.nn.functional as F

from ..errors import DataError, LayerlabError, NetworkError, OptionError
from ..layer import OutputLayer
from ..network.graph import LayerGraph
from ..network.network import Network, as_network
from .listeners import Listener
from .losses import BINARY, CLASSIFICATION, Loss, checked_loss_value, resolve_loss
from .options import TrainingOptions
from .trainer import TrainingInfo, TrainingRun, _is_layers

__all__ = ["trainnet", "LossOutput"]


class _LossCallError(LayerlabError, ValueError):
    """A callable loss failed; trainnet adds the iteration."""


class LossOutput(OutputLayer):
    """A loss as the network's output layer (what ``trainnet`` trains with).

    Args:
        loss: a name (see :mod:`layerlab.training.losses`) or a callable
            ``loss(Y, T) -> scalar``.
        output_size: the size of one observation of the network's output.

    The table's metric column: accuracy for a classification or binary
    loss, RMSE for the others (as ``train_network`` shows).
    """

    default_name = "loss"

    def __init__(self, loss: Any, output_size: tuple[int, ...], name: str | None = None):
        self.lossfn: Loss = resolve_loss(loss)
        super().__init__(name=name or _safe_name(self.lossfn.name), type="Loss")
        self.output_size = tuple(output_size)
        self.description = self.lossfn.name
        self.metric_name, self.metric_is_percentage = "Accuracy", True

    @property
    def task(self) -> str | None:
        return self.lossfn.task

    @property
    def classes(self):
        """The class labels (classification losses only: for the others the
        attribute is absent, as on ``Regression``)."""
        if self.lossfn.task != CLASSIFICATION:
            raise AttributeError("classes")
        return self.lossfn.classes

    def prepare_targets(self, Y, n):
        T = self.lossfn.prepare_targets(Y, n, self.output_size, what="trainnet Y")
        if self.lossfn.task not in (CLASSIFICATION, BINARY):
            self.metric_name, self.metric_is_percentage = "RMSE", False
        return T

    def loss(self, Y, T):
        if self.lossfn.builtin:
            return self.lossfn(Y, T)
        try:
            value = self.lossfn(Y, T)
        except Exception as exc:  # noqa: BLE001 - user code: add context
            raise _LossCallError(f"loss '{self.lossfn.name}' raised {type(exc).__name__}: "
                                 f"{exc} (Y of size {tuple(Y.shape)}, T of size "
                                 f"{tuple(T.shape)} {T.dtype})") from exc
        try:
            return checked_loss_value(self.lossfn, value, 0)
        except DataError as exc:
            raise _LossCallError(str(exc).replace(" at iteration 0", "")) from None

    def metric(self, Y, T):
        if self.lossfn.task == BINARY:
            return ((Y > 0.5) == (T > 0.5)).float().mean()
        if self.lossfn.task == CLASSIFICATION:
            t = T if T.dtype == torch.int64 else T.argmax(dim=1)
            return (Y.argmax(dim=1) == t).float().mean()
        Tm = T.reshape(Y.shape).to(Y.dtype) if T.numel() == Y.numel() else T
        return (Y.float() - Tm.float()).square().mean().sqrt()


class CrossEntropyOutput(LossOutput):
    """``crossentropy`` after a ``Softmax``: training takes the loss from
    the softmax's input with ``F.cross_entropy`` (the same value, exact for
    large logits, and faster), as ``Classification`` does."""

    def loss_from_logits(self, logits, T):
        logits = logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits
        return F.cross_entropy(logits, T if T.dtype == torch.int64 else T.to(logits.dtype))


def _safe_name(name: str) -> str:
    return "loss_" + (re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "fn")


def _with_loss(layers: Any, loss: Any) -> tuple[LayerGraph, LossOutput]:
    """A copy of ``layers`` as a graph, with the loss layer at its end."""
    if not (_is_layers(layers)):
        raise NetworkError(f"trainnet: expected a list of layers, a LayerGraph or a Network, "
                           f"got {type(layers).__name__}")
    base = as_network(copy.deepcopy(layers if not isinstance(layers, Network) else layers))
    if base.output_layer is not None:
        raise NetworkError(f"trainnet: the network ends in the output layer "
                           f"'{base.output_layer.name}' ({type(base.output_layer).__name__}); "
                           f"trainnet takes the loss as an argument: remove that layer, or "
                           f"train with train_network")
    last = base.layers[-1]
    out_size = base.sizes[last.name][0]
    spec = resolve_loss(loss)
    cls = CrossEntropyOutput if (spec.builtin and spec.name == "crossentropy") else LossOutput
    names = {l.name for l in base.layers}
    name = _safe_name(spec.name)
    while name in names:
        name += "_"
    # a built-in loss by its name: the layer's arguments stay saveable (checkpoints)
    out = cls(spec.name if spec.builtin else spec, out_size, name=name)
    graph = base.graph
    graph.add_layers([out])
    graph.connect(last.name, out.name)
    return graph, out


def _without_loss(net: Network, out_name: str) -> Network:
    """The trained network without its loss layer (same layer objects)."""
    device = net.device
    net.to("cpu")
    graph = net.graph
    graph.remove_layers(out_name)
    trained = Network(graph)
    trained.to(device)
    trained.eval()
    return trained


def trainnet(*args: Any, stream: TextIO | None = None,
             resume_from: str | os.PathLike | None = None,
             listeners: Sequence[Listener] = ()) -> tuple[Network, TrainingInfo]:
    """Train a network whose loss is given by name or function.

    Called as ``trainnet(X, Y, layers, loss, options)`` or
    ``trainnet(data, layers, loss, options)`` (``data`` a torch
    ``Dataset``/``DataLoader`` or a layerlab datastore; ``options`` may be
    left out).

    Args:
        X, Y: inputs ``(N, *input_size)`` and targets (class labels for
            "crossentropy", 0/1 arrays for "binary-crossentropy", numbers of
            the network's output size for the regression losses).
        layers: a list of layers, a :class:`LayerGraph` or a
            :class:`Network` without an output layer (ending e.g. in
            ``Softmax()``); not modified.
        loss: "crossentropy", "binary-crossentropy", "mse" /
            "mean-squared-error", "l2loss", "l1loss", "huber" (defined in
            :mod:`layerlab.training.losses`) or a callable ``loss(Y, T) ->
            scalar tensor`` written with PyTorch ops.
        options: :func:`training_options` (``metrics``,
            ``objective_metric_name``, ``log_dir``, ``precision``, schedules
            and everything ``train_network`` takes).
        stream, resume_from, listeners: as for :func:`train_network`.

    Returns:
        ``(net, info)``: the trained network (without a loss layer: use
        :func:`minibatchpredict` and :func:`scores2label`, or
        :func:`testnet`) and the :class:`TrainingInfo`, whose ``history``
        holds each metric per iteration (``training_<name>``,
        ``validation_<name>``) and whose ``classes`` are the class labels
        (classification losses; else None).

    Examples:
        >>> layers = [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 20), ll.ReLU(),
        ...           ll.FullyConnected(10), ll.Softmax()]                      # doctest: +SKIP
        >>> opts = ll.training_options("sgdm", max_epochs=4, metrics=["accuracy", "fscore"])
        >>> net, info = ll.trainnet(X, Y, layers, "crossentropy", opts)        # doctest: +SKIP
    """
    if len(args) == 5:
        X, Y, layers, loss, options = args
    elif len(args) == 4 and _is_layers(args[1]):
        (X, layers, loss, options), Y = args, None
    elif len(args) == 4:
        (X, Y, layers, loss), options = args, None
    elif len(args) == 3 and _is_layers(args[1]):
        (X, layers, loss), Y, options = args, None, None
    else:
        raise OptionError(f"trainnet: expected trainnet(X, Y, layers, loss, options) or "
                          f"trainnet(data, layers, loss, options), got {len(args)} arguments")
    if options is not None and not isinstance(options, TrainingOptions):
        raise OptionError(f"trainnet: options must come from layerlab.training_options(), got "
                          f"{type(options).__name__}")
    if options is not None and options.seed is not None:
        torch.manual_seed(options.seed)   # the initial weights are drawn here, under the seed
    graph, out = _with_loss(layers, loss)
    if options is not None and options.checkpoint_path is not None and not out.lossfn.builtin:
        raise OptionError("trainnet: checkpoints (checkpoint_path) need a loss given by name; "
                          f"the function {out.lossfn.name!r} cannot be saved in a checkpoint")
    run = TrainingRun.create(X, Y, graph, options, stream=stream, resume_from=resume_from)
    for listener in listeners:
        run.add_listener(listener)
    try:
        net, info = run.run()
    except _LossCallError as exc:
        raise DataError(f"trainnet: {exc}, at iteration {run.iteration + 1}; a loss must "
                        f"return a scalar tensor computed from Y and T with PyTorch "
                        f"ops") from exc.__cause__
    info.classes = getattr(run.output_layer, "classes", None)
    return _without_loss(net, run.output_layer.name), info
