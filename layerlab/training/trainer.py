"""``train_network``: train a network with one call, MATLAB's trainNetwork."""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from typing import Any, Sequence, TextIO

import numpy as np
import torch

from ..data import as_input_tensor
from ..errors import DataError, NetworkError, OptionError
from ..layer import Layer
from ..network.graph import LayerGraph
from ..network.network import Network, as_network
from .options import TrainingOptions, training_options
from .solvers import make_optimizer, set_base_learn_rate
from .table import VerboseTable
from . import distributed

__all__ = ["train_network", "TrainingInfo", "select_device"]


@dataclasses.dataclass
class TrainingInfo:
    """What happened in training, one entry per iteration (MATLAB's ``info``).

    Attributes:
        training_loss: mini-batch loss of every iteration.
        training_accuracy: mini-batch metric of every iteration, in percent
            for classification (RMSE for regression).
        base_learn_rate: the base learning rate of every iteration.
        epoch: the epoch of every iteration (1-based).
        iterations: the number of iterations run.
        time_elapsed: wall-clock seconds of the whole training.
        device: where it trained, e.g. "cpu" or "cuda:0".
    """

    training_loss: np.ndarray
    training_accuracy: np.ndarray
    base_learn_rate: np.ndarray
    epoch: np.ndarray
    iterations: int
    time_elapsed: float
    device: str
    metric_name: str = "Accuracy"


def select_device(environment: str) -> torch.device:
    """The device for ``execution_environment`` "auto", "cpu" or "gpu"."""
    if environment == "cpu":
        return torch.device("cpu")
    if environment == "gpu":
        if not torch.cuda.is_available():
            raise OptionError("training option 'execution_environment': 'gpu' was asked for "
                              "but PyTorch sees no GPU; use 'auto' or 'cpu'")
        return torch.device("cuda")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _where(device: torch.device, ctx) -> str:
    if ctx is not None:
        kind = "GPUs" if device.type == "cuda" else "CPU processes"
        return f"Training on {ctx.world_size} {kind} (DistributedDataParallel)."
    return "Training on single GPU." if device.type == "cuda" else "Training on CPU."


def _base_learn_rate(opts: TrainingOptions, epoch: int) -> float:
    lr = float(opts.initial_learn_rate)
    if opts.learn_rate_schedule == "piecewise":
        lr *= opts.learn_rate_drop_factor ** ((epoch - 1) // opts.learn_rate_drop_period)
    return lr


def train_network(X: Any, Y: Any, layers: Sequence[Layer] | LayerGraph | Network,
                  options: TrainingOptions | None = None, *,
                  stream: TextIO | None = None) -> tuple[Network, TrainingInfo]:
    """Train a network and return it with the training record.

    Args:
        X: inputs, a NumPy array or tensor of size ``(N, *input_size)``
            (images ``(N, C, H, W)``, features ``(N, C)``).
        Y: targets, e.g. class labels (ints or strings), length ``N``.
        layers: a list of layers, a :class:`LayerGraph` or a :class:`Network`
            (training continues from its weights). The layers given are not
            modified: training works on a copy.
        options: :func:`training_options`; default ``training_options("sgdm")``.
        stream: where the verbose table goes (default standard output).

    Returns:
        ``(net, info)``: the trained :class:`Network` and a :class:`TrainingInfo`.

    The incomplete last mini-batch of every epoch is discarded, as in MATLAB:
    5000 observations at 128 make 39 iterations an epoch.
    """
    opts = options if options is not None else training_options("sgdm")
    if not isinstance(opts, TrainingOptions):
        raise OptionError(f"train_network: options must come from layerlab.training_options(), "
                          f"got {type(opts).__name__}")
    stream = stream or sys.stdout
    if opts.seed is not None:
        torch.manual_seed(opts.seed)
    if isinstance(layers, (list, tuple)):
        for i, l in enumerate(layers):
            if not isinstance(l, Layer):
                raise NetworkError(f"train_network: layers[{i}] is a {type(l).__name__}, "
                                   f"not a layerlab.Layer")
    net = copy.deepcopy(as_network(layers) if isinstance(layers, Network) else layers)
    net = as_network(net)
    if net.output_layer is None:
        raise NetworkError("train_network: the network needs an output layer at its end "
                           "(e.g. Classification() after Softmax())")

    Xt = as_input_tensor(X, net.input_size, "train_network X")
    n = Xt.shape[0]
    T = net.output_layer.prepare_targets(Y, n)
    B = opts.mini_batch_size
    if B > n:
        raise OptionError(f"training option 'mini_batch_size': {B} is larger than the "
                          f"{n} observations in X")
    per_epoch = n // B
    total = per_epoch * opts.max_epochs

    ctx = None
    if opts.execution_environment in distributed.ENVIRONMENTS:
        ctx = distributed.setup(opts.execution_environment, B)
        device = ctx.device
    else:
        device = select_device(opts.execution_environment)
    verbose = opts.verbose and (ctx is None or ctx.is_main)
    net.to(device)
    Xt, T = Xt.to(device), T.to(device)
    if verbose:
        print(_where(device, ctx), file=stream)
    if net.input_layer.needs_normalization_data:
        if verbose:
            print("Initializing image normalization." if len(net.input_size) == 3
                  else "Initializing input normalization.", file=stream)
        with torch.no_grad():
            net.input_layer.compute_normalization(Xt)

    optimizer = make_optimizer(net, opts)
    gen = torch.Generator(device="cpu")
    shuffle_seed = opts.seed if opts.seed is not None else int(torch.randint(0, 2**62, (1,)))
    if ctx is not None:   # every process must shuffle alike
        shuffle_seed = int(ctx.broadcast_from_main(torch.tensor([shuffle_seed]))[0])
    gen.manual_seed(shuffle_seed)

    def shuffled(x, t):
        perm = torch.randperm(n, generator=gen).to(device)
        return x.index_select(0, perm), t.index_select(0, perm)

    if opts.shuffle == "once":
        Xt, T = shuffled(Xt, T)

    losses = torch.zeros(total, device=device)
    metrics = torch.zeros(total, device=device)
    lrs = np.zeros(total)
    epochs = np.zeros(total, dtype=np.int64)
    out = net.output_layer
    table = VerboseTable(out.metric_name, out.metric_is_percentage, stream=stream)
    if verbose:
        table.start()

    # DDP wraps the network for the training steps; `net` stays the plain one
    model = ctx.wrap(net) if ctx is not None else net
    net.train()
    start = time.perf_counter()
    it = 0
    for epoch in range(1, opts.max_epochs + 1):
        if opts.shuffle == "every-epoch":
            Xt, T = shuffled(Xt, T)
        lr = _base_learn_rate(opts, epoch)
        if optimizer is not None:
            set_base_learn_rate(optimizer, lr)
        for b in range(per_epoch):
            rows = slice(b * B, (b + 1) * B) if ctx is None else ctx.shard(b * B, (b + 1) * B)
            xb, tb = Xt[rows], T[rows]
            Yb = model(xb, logits=True)
            loss = net.loss(Yb, tb, from_logits=True)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                losses[it] = loss.detach()
                metrics[it] = out.metric(Yb.detach(), tb)
            lrs[it] = lr
            epochs[it] = epoch
            it += 1
            if opts.verbose and (it == 1 or it % opts.verbose_frequency == 0 or it == total):
                elapsed = time.perf_counter() - start
                row = torch.stack([losses[it - 1], metrics[it - 1]])
                if ctx is not None:  # every process takes part; rank 0 prints
                    row = ctx.mean(row)
                if verbose:
                    table.row(epoch, it, elapsed, float(row[0]), float(row[1]), lr)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    if verbose:
        table.end()
    if ctx is not None:
        losses, metrics = ctx.mean(losses), ctx.mean(metrics)
        ctx.close()
    net.eval()
    scale = 100.0 if out.metric_is_percentage else 1.0
    info = TrainingInfo(training_loss=losses.cpu().numpy(),
                        training_accuracy=metrics.cpu().numpy() * scale,
                        base_learn_rate=lrs, epoch=epochs, iterations=it,
                        time_elapsed=elapsed, device=str(device),
                        metric_name=out.metric_name)
    return net, info
