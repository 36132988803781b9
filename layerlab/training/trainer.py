"""``train_network``: train a network with one call, MATLAB's trainNetwork."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
from typing import Any, Sequence, TextIO

import numpy as np
import torch

from ..data import as_input_tensor
from ..errors import DataError, NetworkError, OptionError, TrainingError
from ..layer import Layer
from ..network.graph import LayerGraph
from ..network.network import Network, as_network
from .options import TrainingOptions, training_options
from .solvers import make_optimizer, set_base_learn_rate
from .table import VerboseTable
from . import distributed
from .callbacks import IterationInfo, call_output_fns
from .checkpoint import (read_checkpoint, restore_network, restore_optimizer, restore_rng,
                         save_checkpoint)
from .clipping import clip_gradients
from .nonfinite import first_nonfinite_layer
from .plots import TrainingProgressPlot
from .progress import ProgressLine, is_terminal
from .validation import EarlyStopping, evaluate

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
        validation_loss, validation_accuracy: per iteration, NaN where
            the network was not validated.
        stop_reason: "max-epochs", "validation-patience" or "output-fn".
        output_iteration: the iteration whose weights were returned (the
            last one, or the best validation loss's with
            ``output_network="best-validation-loss"``).
        plot_path: the training-progress PNG, when ``plots`` asked for it.
    """

    training_loss: np.ndarray
    training_accuracy: np.ndarray
    base_learn_rate: np.ndarray
    epoch: np.ndarray
    iterations: int
    time_elapsed: float
    device: str
    metric_name: str = "Accuracy"
    validation_loss: np.ndarray | None = None
    validation_accuracy: np.ndarray | None = None
    stop_reason: str = "max-epochs"
    output_iteration: int = 0
    plot_path: str | None = None


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


class _NonFiniteLoss(Exception):
    def __init__(self, value: float):
        super().__init__(value)
        self.value = value


def train_step(model: torch.nn.Module, net: Network, optimizer: torch.optim.Optimizer | None,
               xb: torch.Tensor, tb: torch.Tensor, opts: TrainingOptions,
               params: list[torch.Tensor], check_finite: bool):
    """One iteration: forward, loss, backward, gradient clipping, update.
    Returns ``(loss, logits)``, still on the device.

    With ``check_finite`` the loss is checked before the update (one host
    synchronisation an iteration: free on the CPU, a stall of the queue on a
    GPU), so a NaN never reaches the weights and the failed mini-batch can
    be re-run with the same weights to find the layer at fault.
    """
    Yb = model(xb, logits=True)
    loss = net.loss(Yb, tb, from_logits=True)
    if check_finite and not bool(torch.isfinite(loss)):
        raise _NonFiniteLoss(float(loss.detach()))
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(params, opts.gradient_threshold, opts.gradient_threshold_method)
        optimizer.step()
    return loss, Yb


def _validation_tensors(opts: TrainingOptions, net: Network, device: torch.device):
    if opts.validation_data is None:
        return None
    Xv, Yv = opts.validation_data
    Xv = as_input_tensor(Xv, net.input_size, "training option 'validation_data' X", dtype=net.dtype)
    classes = getattr(net.output_layer, "classes", "absent")
    Tv = net.output_layer.prepare_targets(Yv, Xv.shape[0])
    if classes != "absent" and classes is not None and net.output_layer.classes != classes:
        raise DataError(f"training option 'validation_data': its labels "
                        f"{net.output_layer.classes} are not the training labels {classes}")
    return Xv.to(device), Tv.to(device)


def _nonfinite_error(net: Network, xb: torch.Tensor, value: float, it: int,
                     epoch: int) -> TrainingError:
    layer = first_nonfinite_layer(net, xb)
    where = (f"the first layer whose output is not finite is {layer}" if layer else
             f"every layer's output is finite: the loss of '{net.output_layer.name}' overflowed")
    return TrainingError(f"training stopped at iteration {it} (epoch {epoch}): the mini-batch "
                         f"loss is {value}; {where}. Try a smaller initial_learn_rate or a "
                         f"gradient_threshold")


def train_network(X: Any, Y: Any, layers: Sequence[Layer] | LayerGraph | Network,
                  options: TrainingOptions | None = None, *,
                  stream: TextIO | None = None,
                  resume_from: str | os.PathLike | None = None) -> tuple[Network, TrainingInfo]:
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
        resume_from: a checkpoint file (or the ``checkpoint_path`` folder)
            written by an earlier run with the same ``layers``, data and
            options: training continues after its epoch, and with a ``seed``
            ends with the same weights as a run that was never interrupted.

    Returns:
        ``(net, info)``: the trained :class:`Network` and a :class:`TrainingInfo`.

    The incomplete last mini-batch of every epoch is discarded, as in MATLAB:
    5000 observations at 128 make 39 iterations an epoch.

    Validation (``validation_data``) runs at iteration 1, every
    ``validation_frequency`` iterations and at the end. Early stopping
    (``validation_patience``) returns the network of the last iteration, as
    MATLAB does, unless ``output_network="best-validation-loss"``.
    A NaN or Inf mini-batch loss raises :class:`TrainingError` naming the
    iteration and the first layer whose output is not finite.
    """
    opts = options if options is not None else training_options("sgdm")
    if not isinstance(opts, TrainingOptions):
        raise OptionError(f"train_network: options must come from layerlab.training_options(), "
                          f"got {type(opts).__name__}")
    stream = stream or sys.stdout
    if opts.seed is not None:
        torch.manual_seed(opts.seed)
    net = copy.deepcopy(as_network(layers) if isinstance(layers, Network) else layers)
    net = as_network(net)
    if net.output_layer is None:
        raise NetworkError("train_network: the network needs an output layer at its end "
                           "(e.g. Classification() after Softmax())")
    if opts.check_layers is not False:  # check_layer on float64 copies; raises LayerCheckError
        from ..checking import check_network_layers
        check_network_layers(net, include_builtin=opts.check_layers is True)

    Xt = as_input_tensor(X, net.input_size, "train_network X", dtype=net.dtype)
    n = Xt.shape[0]
    T = net.output_layer.prepare_targets(Y, n)
    B = opts.mini_batch_size
    if B > n:
        raise OptionError(f"training option 'mini_batch_size': {B} is larger than the "
                          f"{n} observations in X")
    per_epoch = n // B
    total = per_epoch * opts.max_epochs
    checkpoint = read_checkpoint(resume_from, observations=n, iterations=total,
                                 solver=opts.solver) if resume_from is not None else None

    ctx = None
    if opts.execution_environment in distributed.ENVIRONMENTS:
        ctx = distributed.setup(opts.execution_environment, B)
        device = ctx.device
    else:
        device = select_device(opts.execution_environment)
    verbose = opts.verbose and (ctx is None or ctx.is_main)
    is_main = ctx is None or ctx.is_main
    net.to(device)
    Xt, T = Xt.to(device), T.to(device)
    val = _validation_tensors(opts, net, device)
    if verbose:
        print(_where(device, ctx), file=stream)
    if net.input_layer.needs_normalization_data and checkpoint is None:
        if verbose:
            print("Initializing image normalization." if len(net.input_size) == 3
                  else "Initializing input normalization.", file=stream)
        with torch.no_grad():
            net.input_layer.compute_normalization(Xt)

    optimizer = make_optimizer(net, opts)
    params = [p for group in optimizer.param_groups for p in group["params"]] \
        if optimizer is not None else []
    gen = torch.Generator(device="cpu")
    shuffle_seed = opts.seed if opts.seed is not None else int(torch.randint(0, 2**62, (1,)))
    if ctx is not None:   # every process must shuffle alike
        shuffle_seed = int(ctx.broadcast_from_main(torch.tensor([shuffle_seed]))[0])
    gen.manual_seed(shuffle_seed)

    # `order`: the current order of the observations (saved in checkpoints)
    order = torch.arange(n)
    if opts.shuffle == "once":
        order = torch.randperm(n, generator=gen)

    losses = torch.zeros(total, device=device)
    metrics = torch.zeros(total, device=device)
    val_loss = np.full(total, np.nan)
    val_metric = np.full(total, np.nan)
    lrs = np.zeros(total)
    epochs = np.zeros(total, dtype=np.int64)
    early = EarlyStopping(opts.validation_patience,
                          keep_best=opts.output_network == "best-validation-loss")
    it, first_epoch, time_before = 0, 1, 0.0
    if checkpoint is not None:
        tensors, meta = checkpoint
        restore_network(net, tensors, resume_from)
        restore_optimizer(optimizer, tensors, meta)
        restore_rng(tensors, gen)
        state = meta["checkpoint"]
        it, first_epoch = state["iteration"], state["epoch"] + 1
        time_before = state["time_elapsed"]
        order = tensors["data.order"]
        if order.shape != (n,) or it > total:
            raise OptionError(f"resume_from: the checkpoint {os.fspath(resume_from)!r} was "
                              f"written for other data or options ({order.shape[0]} "
                              f"observations, {it} iterations)")
        losses[:it] = tensors["hist.loss"].to(device)
        metrics[:it] = tensors["hist.metric"].to(device)
        val_loss[:it] = tensors["hist.val_loss"].numpy()
        val_metric[:it] = tensors["hist.val_metric"].numpy()
        lrs[:it] = tensors["hist.lr"].numpy()
        epochs[:it] = tensors["hist.epoch"].numpy()
        e = meta["checkpoint"]["early"]
        early.best_loss = float(e["best_loss"]) if not isinstance(e["best_loss"], dict) \
            else math.inf
        early.bad, early.best_iteration = e["bad"], e["best_iteration"]
        if early.keep_best and any(k.startswith("best.") for k in tensors):
            early.best_state = {k[5:]: v.to(device) for k, v in tensors.items()
                                if k.startswith("best.")}
    Xc, Tc = Xt.index_select(0, order.to(device)), T.index_select(0, order.to(device))

    out = net.output_layer
    extra = [("Validation", "Loss"), ("Validation", out.metric_name)] if val is not None else []
    table = VerboseTable(out.metric_name, out.metric_is_percentage, extra=extra, stream=stream)
    fns = [] if opts.output_fn is None else (
        list(opts.output_fn) if isinstance(opts.output_fn, (list, tuple)) else [opts.output_fn])
    show_progress = verbose and (opts.progress is True or
                                 (opts.progress == "auto" and is_terminal(stream)))
    progress = ProgressLine(stream, opts.max_epochs, per_epoch) if show_progress else None
    plot = None
    if opts.plots == "training-progress" and is_main:
        plot_path = opts.plots_path or os.path.join(opts.checkpoint_path or ".",
                                                    "training_progress.png")
        plot = TrainingProgressPlot(plot_path, out.metric_name)
    scale = 100.0 if out.metric_is_percentage else 1.0

    def history() -> dict[str, np.ndarray]:
        has = np.isfinite(val_loss[:it])
        iters = np.arange(1, it + 1)
        return {"iterations": iters, "loss": losses[:it].cpu().numpy(),
                "metric": metrics[:it].cpu().numpy() * scale, "epoch": epochs[:it],
                "val_iterations": iters[has], "val_loss": val_loss[:it][has],
                "val_metric": val_metric[:it][has] * scale}

    if verbose:
        table.start()
    # DDP wraps the network for the training steps; `net` stays the plain one
    model = ctx.wrap(net) if ctx is not None else net
    net.train()
    # with DDP a rank that raised alone would leave the others waiting in a
    # collective; there the check happens at the table rows (all ranks) instead
    check_finite = ctx is None
    start = time.perf_counter() - time_before
    stop_reason = "max-epochs"
    if fns and call_output_fns(fns, IterationInfo("start", first_epoch, it, time_before)):
        stop_reason = "output-fn"
    for epoch in range(first_epoch, opts.max_epochs + 1):
        if stop_reason != "max-epochs":
            break
        if opts.shuffle == "every-epoch":
            order = order.index_select(0, torch.randperm(n, generator=gen))
            Xc, Tc = Xt.index_select(0, order.to(device)), T.index_select(0, order.to(device))
        lr = _base_learn_rate(opts, epoch)
        if optimizer is not None:
            set_base_learn_rate(optimizer, lr)
        for b in range(per_epoch):
            rows = slice(b * B, (b + 1) * B) if ctx is None else ctx.shard(b * B, (b + 1) * B)
            xb, tb = Xc[rows], Tc[rows]
            try:
                loss, Yb = train_step(model, net, optimizer, xb, tb, opts, params, check_finite)
            except _NonFiniteLoss as bad:
                if progress is not None:
                    progress.clear()
                raise _nonfinite_error(net, xb, bad.value, it + 1, epoch) from None
            with torch.no_grad():
                losses[it] = loss.detach()
                metrics[it] = out.metric(Yb.detach(), tb)
            lrs[it] = lr
            epochs[it] = epoch
            it += 1
            last = it == total
            validate = val is not None and (it == 1 or it % opts.validation_frequency == 0
                                            or last)
            stop = False
            if validate:
                vl, vm = evaluate(net, val[0], val[1], B).tolist()
                val_loss[it - 1], val_metric[it - 1] = vl, vm
                if early.update(net, vl, it):
                    stop, stop_reason = True, "validation-patience"
            if fns:
                info_now = IterationInfo(
                    "iteration", epoch, it, time.perf_counter() - start, float(losses[it - 1]),
                    float(metrics[it - 1]) * scale, lr,
                    val_loss[it - 1] if validate else None,
                    val_metric[it - 1] * scale if validate else None)
                if call_output_fns(fns, info_now) and not stop:
                    stop, stop_reason = True, "output-fn"
            if stop and val is not None and not validate:  # a final validation
                vl, vm = evaluate(net, val[0], val[1], B).tolist()
                val_loss[it - 1], val_metric[it - 1], validate = vl, vm, True
            if opts.verbose and (it == 1 or it % opts.verbose_frequency == 0 or last
                                 or validate or stop):
                elapsed = time.perf_counter() - start
                row = torch.stack([losses[it - 1], metrics[it - 1]])
                if ctx is not None:  # every process takes part; rank 0 prints
                    row = ctx.mean(row)
                    if not bool(torch.isfinite(row[0])):
                        bad_it = int(torch.nonzero(~torch.isfinite(losses[:it]))[0]) + 1
                        raise TrainingError(f"training stopped: the mini-batch loss became "
                                            f"non-finite at iteration {bad_it}")
                if verbose:
                    if progress is not None:
                        progress.clear()
                    cells = [f"{val_loss[it - 1]:.4f}",
                             table.fmt_metric(val_metric[it - 1])] if validate else []
                    table.row(epoch, it, elapsed, float(row[0]), float(row[1]), lr, cells)
                if plot is not None:
                    plot.update(history())
            elif progress is not None:
                progress.update(epoch, b + 1)
            if stop:
                break
        if stop_reason == "max-epochs" and opts.checkpoint_path is not None and is_main:
            save_checkpoint(opts.checkpoint_path, net, optimizer, epoch=epoch, iteration=it,
                            time_elapsed=time.perf_counter() - start, shuffle_generator=gen,
                            order=order, history={
                                "loss": losses, "metric": metrics,
                                "val_loss": torch.from_numpy(val_loss),
                                "val_metric": torch.from_numpy(val_metric),
                                "lr": torch.from_numpy(lrs), "epoch": torch.from_numpy(epochs)},
                            early={"best_loss": early.best_loss, "bad": early.bad,
                                   "best_iteration": early.best_iteration},
                            best_state=early.best_state, solver=opts.solver)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    if verbose:
        if progress is not None:
            progress.clear()
        table.end()
        if stop_reason == "validation-patience":
            print(f"Training stopped: the validation loss did not improve on its best "
                  f"(iteration {early.best_iteration}) in {early.bad} validations.", file=stream)
        elif stop_reason == "output-fn":
            print("Training stopped by an output function.", file=stream)
    if ctx is not None:
        losses, metrics = ctx.mean(losses), ctx.mean(metrics)
        ctx.close()
    output_iteration = it
    if opts.output_network == "best-validation-loss" and early.best_state is not None:
        net.load_state_dict(early.best_state)
        output_iteration = early.best_iteration
    net.eval()
    plot_path = None
    if plot is not None:
        plot.update(history(), force=True)
        plot_path = plot.path
        if verbose:
            print(f"Training progress plot: {plot_path}", file=stream)
    if fns:
        call_output_fns(fns, IterationInfo("done", int(epochs[it - 1]) if it else 0, it, elapsed))
    info = TrainingInfo(training_loss=losses[:it].cpu().numpy(),
                        training_accuracy=metrics[:it].cpu().numpy() * scale,
                        base_learn_rate=lrs[:it], epoch=epochs[:it], iterations=it,
                        time_elapsed=elapsed, device=str(device),
                        metric_name=out.metric_name,
                        validation_loss=val_loss[:it], validation_accuracy=val_metric[:it] * scale,
                        stop_reason=stop_reason, output_iteration=output_iteration,
                        plot_path=plot_path)
    return net, info
