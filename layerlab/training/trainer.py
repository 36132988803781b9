"""``train_network``: train a network with one call, MATLAB's trainNetwork.

The loop is a small object, :class:`TrainingRun`: a data source, the
network, its optimizer, the learning-rate schedule, a :class:`History`,
:class:`EarlyStopping` and listeners (the verbose table, the progress plot,
``output_fn`` callbacks, checkpoints; see :mod:`.listeners` for the
events). A checkpoint is the run's :meth:`~TrainingRun.state_dict`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import sys
import time
from typing import Any, Callable, Sequence, TextIO

import numpy as np
import torch

from ..datastores.sources import DataSource, InMemorySource, as_data_source, is_data_source
from ..errors import DataError, NetworkError, OptionError, PersistenceError, TrainingError
from ..layer import Layer
from ..network.graph import LayerGraph
from ..network.network import Network, as_network
from . import distributed
from .checkpoint import checkpoint_state, read_checkpoint, restore_network, restore_optimizer, \
    restore_rng
from .clipping import clip_gradients
from .cuda_graph import GraphedStep, why_not_graphed
from .history import History
from .host_memory import keep_freed_memory
from .listeners import (CheckpointListener, Listener, OutputFnListener, PlotListener, Step,
                        TableColumn, TableListener)
from .nonfinite import first_nonfinite_layer
from .options import TrainingOptions, training_options
from .metric_listeners import extend_run
from .plots import default_plot_path
from .precision import Precision
from .schedules import bind_schedule
from .solvers import make_optimizer, set_base_learn_rate
from .validation import EarlyStopping, evaluate, evaluate_batches

__all__ = ["train_network", "TrainingRun", "TrainingInfo", "select_device"]


@dataclasses.dataclass
class TrainingInfo:
    """What happened in training, one entry per iteration (MATLAB's ``info``).

    Attributes:
        training_loss: mini-batch loss of every iteration.
        training_metric: the output layer's mini-batch metric (``metric_name``)
            of every iteration: accuracy in percent for classification, RMSE
            for regression. ``training_accuracy`` is the same array (its
            older name).
        base_learn_rate: the base learning rate of every iteration.
        epoch: the epoch of every iteration (1-based).
        iterations: the number of iterations run.
        time_elapsed: wall-clock seconds of the whole training.
        device: where it trained, e.g. "cpu" or "cuda:0".
        metric_name: "Accuracy" or "RMSE".
        validation_loss, validation_metric: per iteration, NaN where the
            network was not validated (``validation_accuracy``: the older
            name of ``validation_metric``).
        stop_reason: "max-epochs", "validation-patience" or "output-fn".
        output_iteration: the iteration whose weights were returned (the
            last one, or the best validation loss's with
            ``output_network="best-validation-loss"``).
        plot_path: the training-progress PNG, when ``plots`` asked for it.
        history: every series the run recorded, by name (including those
            listeners added), over the iterations run.
        layer_statistics: with ``training_options(monitor=...)``, the
            per-layer statistics (:class:`~layerlab.monitoring.LayerStatistics`),
            else None.
        step: how the steps ran: "CUDA graph (N replays)" on a GPU when the
            step was recorded (:mod:`.cuda_graph`), else "eager: <why>".
    """

    training_loss: np.ndarray
    training_metric: np.ndarray
    base_learn_rate: np.ndarray
    epoch: np.ndarray
    iterations: int
    time_elapsed: float
    device: str
    metric_name: str = "Accuracy"
    validation_loss: np.ndarray | None = None
    validation_metric: np.ndarray | None = None
    stop_reason: str = "max-epochs"
    output_iteration: int = 0
    plot_path: str | None = None
    history: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    layer_statistics: Any = None
    step: str = "eager"

    @property
    def training_accuracy(self) -> np.ndarray:
        """``training_metric`` (the name before it held RMSE too)."""
        return self.training_metric

    @property
    def validation_accuracy(self) -> np.ndarray | None:
        """``validation_metric`` (the name before it held RMSE too)."""
        return self.validation_metric


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


class _NonFiniteLoss(Exception):
    def __init__(self, value: float):
        super().__init__(value)
        self.value = value


def train_step(model: torch.nn.Module, net: Network, optimizer: torch.optim.Optimizer | None,
               xb: torch.Tensor, tb: torch.Tensor, opts: TrainingOptions,
               params: list[torch.Tensor], check_finite: bool,
               precision: Precision | None = None,
               on_gradients: Callable[[], None] | None = None):
    """One iteration: forward, loss, backward, gradient clipping, update.
    Returns ``(loss, logits)``, still on the device. ``precision``: mixed
    precision's autocast and gradient scaler (:mod:`.precision`);
    ``on_gradients`` is called once the gradients are there (unscaled),
    before clipping and the update.

    With ``check_finite`` the loss is checked before the update (one host
    synchronisation an iteration: free on the CPU, a stall of the queue on a
    GPU), so a NaN never reaches the weights and the failed mini-batch can
    be re-run with the same weights to find the layer at fault.
    """
    if precision is None or not precision.enabled:
        Yb = model(xb, logits=True)
        loss = net.loss(Yb, tb, from_logits=True)
    else:
        with precision.autocast():
            Yb = model(xb, logits=True)
            loss = net.loss(Yb, tb, from_logits=True)
    if check_finite and not bool(torch.isfinite(loss)):
        raise _NonFiniteLoss(float(loss.detach()))
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
        if precision is None or not precision.enabled:
            loss.backward()
            if on_gradients is not None:
                on_gradients()
            clip_gradients(params, opts.gradient_threshold, opts.gradient_threshold_method)
            optimizer.step()
        else:
            precision.backward(loss)
            precision.unscale(optimizer)
            if on_gradients is not None:
                on_gradients()
            clip_gradients(params, opts.gradient_threshold, opts.gradient_threshold_method)
            precision.step(optimizer)
    return loss, Yb


def _nonfinite_error(net: Network, xb: torch.Tensor, value: float, it: int,
                     epoch: int) -> TrainingError:
    layer = first_nonfinite_layer(net, xb)
    where = (f"the first layer whose output is not finite is {layer}" if layer else
             f"every layer's output is finite: the loss of '{net.output_layer.name}' overflowed")
    return TrainingError(f"training stopped at iteration {it} (epoch {epoch}): the mini-batch "
                         f"loss is {value}; {where}. Try a smaller initial_learn_rate or a "
                         f"gradient_threshold")


class _Validation:
    """``validation_data`` as mini-batches ``(X, T)`` on the device, with
    the training classes: a pair ``(X, Y)`` (held in memory, as before) or
    any data source."""

    def __init__(self, data: Any, net: Network, device: torch.device, batch: int):
        what = "training option 'validation_data'"
        if isinstance(data, (tuple, list)) and len(data) == 2 and not is_data_source(data):
            source = as_data_source(data[0], data[1])
        else:
            source = as_data_source(data)
        source.bind(net.input_size, net.dtype, f"{what} X")
        self.batch = batch
        try:
            self.T = net.output_layer.prepare_targets(source.targets(), len(source))
        except DataError as exc:
            raise DataError(f"{what}: {exc}; validation labels must be among the training "
                            f"classes") from None
        self.source = source.to(device)
        self.device = device
        self.encode = net.output_layer.prepare_targets
        if isinstance(source, InMemorySource):
            self.T = self.T.to(device)

    def evaluate(self, net: Network) -> torch.Tensor:
        if isinstance(self.source, InMemorySource):
            return evaluate(net, self.source.X, self.T, self.batch)
        return evaluate_batches(net, ((x.to(self.device), t.to(self.device)) for x, t in
                                      self.source.labelled_batches(self.batch, self.T,
                                                                   self.encode)))


class TrainingRun:
    """One training of ``net`` on ``source`` under ``options``.

    Holds the data source, the network, the optimizer, the schedule
    (:attr:`schedule`, :mod:`.schedules`), the :class:`History`, the
    :class:`EarlyStopping` and the listeners (:mod:`.listeners`);
    :meth:`run` trains and returns ``(net, info)``; :meth:`state_dict` /
    :meth:`load_state_dict` are what checkpoints save and restore.

    Build one with :meth:`create` (what :func:`train_network` does), add
    listeners with :meth:`add_listener` before :meth:`run`.

    Examples:
        >>> run = TrainingRun.create(X, Y, layers, training_options(max_epochs=1))  # doctest: +SKIP
        >>> run.add_listener(MyLogger())                                             # doctest: +SKIP
        >>> net, info = run.run()                                                    # doctest: +SKIP
    """

    def __init__(self, source: DataSource, net: Network, options: TrainingOptions, *,
                 stream: TextIO, ctx: Any, device: torch.device):
        self.source, self.net, self.options, self.stream = source, net, options, stream
        self.ctx, self.device = ctx, device
        self.is_main = ctx is None or ctx.is_main
        self.verbose = options.verbose and self.is_main
        self.output_layer = net.output_layer
        self.metric_scale = 100.0 if self.output_layer.metric_is_percentage else 1.0
        self.targets: torch.Tensor | None = None       # all targets, encoded (set by create)
        self.validation: _Validation | None = None
        self.listeners: list[Listener] = []
        self.layer_statistics = None     # set by the monitor (training_options(monitor=))
        self.table_columns: list[TableColumn] = []
        self.plot_extras: list = []   # functions run -> {name: curves} for the progress plot
        self.stop_reason = "max-epochs"
        self.epoch = 0               # the last epoch completed
        self.iteration = 0           # iterations run
        self.time_before = 0.0       # seconds spent before a resume
        self.time_elapsed = 0.0
        self.output_iteration = 0
        self._start = time.perf_counter()

    # -- building --------------------------------------------------------
    @classmethod
    def create(cls, data: Any, Y: Any, layers: Sequence[Layer] | LayerGraph | Network,
               options: TrainingOptions | None = None, *, stream: TextIO | None = None,
               resume_from: str | os.PathLike | None = None) -> "TrainingRun":
        """Check everything and set the run up (the network copied and moved to
        the device, normalization computed, the optimizer made, the standard
        listeners added, ``resume_from`` restored)."""
        opts = options if options is not None else training_options("sgdm")
        if not isinstance(opts, TrainingOptions):
            raise OptionError(f"train_network: options must come from "
                              f"layerlab.training_options(), got {type(opts).__name__}")
        stream = stream or sys.stdout
        if opts.seed is not None:
            torch.manual_seed(opts.seed)
        net = as_network(copy.deepcopy(layers))
        if net.output_layer is None:
            raise NetworkError("train_network: the network needs an output layer at its end "
                               "(e.g. Classification() after Softmax())")
        if opts.check_layers is not False:  # check_layer on float64 copies; raises LayerCheckError
            from ..checking import check_network_layers
            check_network_layers(net, include_builtin=opts.check_layers is True)

        what = "train_network X" if Y is not None else "train_network data"
        source = as_data_source(data, Y).bind(net.input_size, net.dtype, what)
        n = len(source)
        if n == 0:
            raise DataError(f"{what}: no observations to train on")
        source.check_for_training(hasattr(net.output_layer, "classes"))
        targets = net.output_layer.prepare_targets(source.targets(), n)
        B = opts.mini_batch_size
        if not source.own_batching and B > n:
            raise OptionError(f"training option 'mini_batch_size': {B} is larger than the "
                              f"{n} observations in X")
        checkpoint = (read_checkpoint(resume_from, observations=n, solver=opts.solver)
                      if resume_from is not None else None)

        ctx = None
        if opts.execution_environment in distributed.ENVIRONMENTS:
            ctx = distributed.setup(opts.execution_environment, B)
            device = ctx.device
        else:
            device = select_device(opts.execution_environment)
        run = cls(source, net, opts, stream=stream, ctx=ctx, device=device)
        run.targets = targets
        net.to(device)
        source.to(device)
        run.validation = (None if opts.validation_data is None else
                          _Validation(opts.validation_data, net, device, B))
        if run.verbose:
            print(_where(device, ctx), file=stream)
        if net.input_layer.needs_normalization_data and checkpoint is None:
            if run.verbose:
                print("Initializing image normalization." if len(net.input_size) == 3
                      else "Initializing input normalization.", file=stream)
            with torch.no_grad():
                net.input_layer.compute_normalization(source.normalization_data().to(device))
        run._set_up_training()
        run._add_standard_listeners()
        if checkpoint is not None:
            run.load_state_dict(checkpoint_state(*checkpoint), resume_from)
        return run

    def _set_up_training(self) -> None:
        opts, ctx = self.options, self.ctx
        self.per_epoch = self.source.per_epoch(opts.mini_batch_size)
        self.total = self.per_epoch * opts.max_epochs
        self.optimizer = make_optimizer(self.net, opts)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]] \
            if self.optimizer is not None else []
        self.shuffle_generator = torch.Generator(device="cpu")
        seed = opts.seed if opts.seed is not None else int(torch.randint(0, 2**62, (1,)))
        if ctx is not None:   # every process must shuffle alike
            seed = int(ctx.broadcast_from_main(torch.tensor([seed]))[0])
        self.shuffle_generator.manual_seed(seed)
        self.data_seed = seed   # augmentation draws from (data_seed, epoch, mini-batch)
        n = len(self.source)
        # `order`: the current order of the observations (saved in checkpoints)
        self.order = torch.arange(n)
        if opts.shuffle == "once" and not self.source.own_batching:
            self.order = torch.randperm(n, generator=self.shuffle_generator)
        self.history = History(self.total, self.device)
        # hooks of issue 14: the learning-rate schedule and mixed precision
        self.schedule = bind_schedule(opts.learn_rate_schedule, opts.max_epochs, self.per_epoch,
                                      opts.learn_rate_drop_factor, opts.learn_rate_drop_period)
        self.precision = Precision(opts.precision, self.device)
        self.early_stopping = EarlyStopping(
            opts.validation_patience, keep_best=opts.output_network == "best-validation-loss")
        # The non-finite-loss guard. On the CPU each iteration's loss is checked
        # before the update (free there), so NaN never reaches the weights and
        # the failing layer can be found. On a GPU that read would stall the
        # queue every iteration: the losses recorded on the device are checked
        # at each table row and at each epoch's end instead (one read), and the
        # error names the first non-finite iteration. Under DDP the check is at
        # the table rows, on the mean over the processes (see _report).
        self.check_each_iteration = ctx is None and self.device.type == "cpu"
        self._checked_upto = 0   # iterations whose losses the deferred guard has seen
        # the step as a CUDA graph (set in run(), once the listeners are known)
        self.graphed: GraphedStep | None = None
        self.graph_status = "not started"

    def _add_standard_listeners(self) -> None:
        opts = self.options
        if self.validation is not None:
            fmt = self._format_metric
            self.table_columns += [
                TableColumn("Validation", "Loss",
                            lambda run, s: f"{s.validation_loss:.4f}" if s.validated else ""),
                TableColumn("Validation", self.output_layer.metric_name,
                            lambda run, s: fmt(s.validation_metric) if s.validated else "")]
        extend_run(self)   # issue 14: metrics, objective, log_dir, output checks
        if self.verbose:
            self.add_listener(TableListener(self.stream, opts.progress))
        if opts.plots == "training-progress" and self.is_main:
            path = opts.plots_path or (os.path.join(opts.checkpoint_path, "training_progress.png")
                                       if opts.checkpoint_path else default_plot_path())
            self.add_listener(PlotListener(path, self.stream, self.verbose))
        if opts.output_fn is not None:
            fns = opts.output_fn
            self.add_listener(OutputFnListener(list(fns) if isinstance(fns, (list, tuple))
                                               else [fns]))
        if opts.monitor is not None:
            from ..monitoring.listener import MonitorListener
            self.add_listener(MonitorListener(opts.monitor, opts.monitor_frequency,
                                              opts.log_dir if self.is_main else None))
        if opts.checkpoint_path is not None:
            self.add_listener(CheckpointListener(opts.checkpoint_path))

    def _format_metric(self, value: float) -> str:
        return (f"{100 * value:.2f}%" if self.output_layer.metric_is_percentage
                else f"{value:.4f}")

    def add_listener(self, listener: Listener) -> None:
        """Add a listener (before :meth:`run`); listeners hear events in the
        order they were added, except that checkpoints come last (so they
        save the others' state after their ``on_epoch_end``)."""
        at = len(self.listeners)
        if not isinstance(listener, CheckpointListener):
            while at and isinstance(self.listeners[at - 1], CheckpointListener):
                at -= 1
        self.listeners.insert(at, listener)

    # -- checkpoints -----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs, after epoch ``self.epoch``: counters,
        optimizer, random generators, the data order and seed, the history,
        early stopping and listeners' states (the network's weights are
        ``self.net.state_dict()``, saved beside it)."""
        rng = {"torch": torch.get_rng_state(), "shuffle": self.shuffle_generator.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"epoch": self.epoch, "iteration": self.iteration,
                "time_elapsed": self.elapsed(), "solver": self.options.solver,
                "data_seed": self.data_seed,
                "optimizer": (self.optimizer.state_dict() if self.optimizer is not None
                              else None),
                "rng": rng, "order": self.order, "history": self.history.state_dict(),
                "early_stopping": self.early_stopping.state_dict(),
                "listeners": {l.name: l.state_dict() for l in self.listeners
                              if hasattr(l, "state_dict")}}

    def load_state_dict(self, state: dict[str, Any], where: Any = "the checkpoint") -> None:
        """Continue from a :meth:`state_dict` (and, with ``"network"`` in it,
        the network's weights)."""
        if "network" in state:
            restore_network(self.net, state["network"], where)
        restore_optimizer(self.optimizer, state["optimizer"], where)
        restore_rng(state["rng"], self.shuffle_generator)
        it = int(state["iteration"])
        order = state["order"]
        file = os.fspath(where)
        if order.shape != self.order.shape:
            raise PersistenceError(f"{file!r} was written for other data: {order.shape[0]} "
                                   f"training observations there, {self.order.shape[0]} here")
        if it > self.total:
            raise PersistenceError(f"{file!r} was written for other options: it is at "
                                   f"iteration {it}, these options train {self.total} "
                                   f"iterations in all")
        self.order = order
        self.iteration, self.epoch = it, int(state["epoch"])
        self.time_before = float(state["time_elapsed"])
        if state.get("data_seed") is not None:
            self.data_seed = int(state["data_seed"])
        self.history.load_state_dict(state["history"])
        self.early_stopping.load_state_dict(state["early_stopping"], self.device)
        for l in self.listeners:
            if hasattr(l, "load_state_dict") and l.name in state.get("listeners", {}):
                l.load_state_dict(state["listeners"][l.name])

    # -- running ---------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds of training so far (including those before a resume)."""
        return time.perf_counter() - self._start

    def _tell_gradients(self, listeners: list[Listener], iteration: int) -> None:
        for l in listeners:
            l.on_gradients(self, iteration)

    def _listeners_of(self, event: str) -> list[Listener]:
        """The listeners that define ``event`` (not Listener's default)."""
        default = getattr(Listener, event)
        return [l for l in self.listeners if getattr(type(l), event, default) is not default]

    def _emit(self, event: str, *args) -> bool:
        stop = False
        for l in self.listeners:
            stop = (getattr(l, event)(self, *args) is True) or stop
        return stop

    def run(self) -> tuple[Network, TrainingInfo]:
        """Train from ``self.epoch + 1`` to ``max_epochs`` (or a stop)."""
        opts, net = self.options, self.net
        # DDP wraps the network for the training steps; `net` stays the plain one
        self.model = self.ctx.wrap(net) if self.ctx is not None else net
        net.train()
        if self.device.type == "cpu":
            keep_freed_memory()   # no page faults for each step's tensors
        self._prepare_graph()
        self._start = time.perf_counter() - self.time_before
        if self._emit("on_start"):
            self.stop_reason = "output-fn"
        try:
            for epoch in range(self.epoch + 1, opts.max_epochs + 1):
                if self.stop_reason != "max-epochs":
                    break
                if self._run_epoch(epoch):
                    break
                self._check_recorded_losses()   # before listeners save this epoch's network
                self.epoch = epoch
                self._emit("on_epoch_end", epoch)
        except BaseException:
            self._emit("on_abort")
            raise
        return self._finish()

    def _prepare_graph(self) -> None:
        """Record the step as a CUDA graph when it may be (see
        :mod:`.cuda_graph`); ``graph_status`` says why not otherwise."""
        opts = self.options
        inside = self._listeners_of("on_batch_start") + self._listeners_of("on_gradients")
        reason = why_not_graphed(self.net, self.optimizer, device=self.device,
                                 enabled=opts.cuda_graphs, distributed=self.ctx is not None,
                                 mixed_precision=self.precision.enabled,
                                 step_listeners=inside)
        if reason is not None:
            self.graph_status = f"eager: {reason}"
            return

        def eager_step(xb, tb):
            return train_step(self.model, self.net, self.optimizer, xb, tb, opts, self.params,
                              False, self.precision)

        self.graphed = GraphedStep(self.optimizer, eager_step, self.output_layer.metric)
        self.graph_status = "CUDA graph"

    def _run_epoch(self, epoch: int) -> bool:
        """One epoch's iterations; True when training stopped in it."""
        opts, ctx = self.options, self.ctx
        if opts.shuffle == "every-epoch" and not self.source.own_batching:
            self.order = self.order.index_select(
                0, torch.randperm(len(self.source), generator=self.shuffle_generator))
        lr = self.learn_rate(epoch, self.iteration + 1)
        if self.optimizer is not None:
            set_base_learn_rate(self.optimizer, lr)
        per_iteration = self.schedule.per_iteration
        B = opts.mini_batch_size
        rows = None
        if ctx is not None:   # this process's share of each global mini-batch
            rows = ((lambda size: ctx.shard(0, size)) if self.source.own_batching
                    else (lambda b: ctx.shard(b * B, (b + 1) * B)))
        # with DDP a rank that raised alone would leave the others waiting in a
        # collective; there the check happens at the table rows (all ranks) instead;
        # on a GPU it is deferred to the rows and epoch ends (check_each_iteration)
        check_finite = self.check_each_iteration
        batches = self.source.epoch_batches(
            self.order, B, self.per_epoch, epoch, self.targets, self.device, rows=rows,
            seed=self.data_seed, encode=self.output_layer.prepare_targets)
        # listeners of the step's inside (e.g. the monitor): told only when there are
        starts = self._listeners_of("on_batch_start")
        grads = self._listeners_of("on_gradients")
        for b, (xb, tb) in enumerate(batches):
            if per_iteration and b:   # a schedule by iteration (or a function)
                lr = self.learn_rate(epoch, self.iteration + 1)
                if self.optimizer is not None:
                    set_base_learn_rate(self.optimizer, lr)
            it = self.iteration + 1
            for l in starts:
                l.on_batch_start(self, it)
            graphed = (self.graphed.step(xb, tb)
                       if self.graphed is not None and self.graphed.active else None)
            if graphed is not None:
                # the graph's outputs are overwritten by the next replay
                loss, Yb, metric = graphed[0].clone(), graphed[1], graphed[2].clone()
            else:
                on_gradients = (functools.partial(self._tell_gradients, grads, it) if grads
                                else None)
                try:
                    loss, Yb = train_step(self.model, self.net, self.optimizer, xb, tb, opts,
                                          self.params, check_finite, self.precision,
                                          on_gradients)
                except _NonFiniteLoss as bad:
                    raise _nonfinite_error(self.net, xb, bad.value, self.iteration + 1,
                                           epoch) from None
                with torch.no_grad():
                    Yb = Yb.detach()
                    metric = self.output_layer.metric(Yb, tb)
            if self._after_step(Step(epoch, self.iteration + 1, b + 1, lr, loss.detach(),
                                     metric, Yb, tb)):
                return True
        return False

    def learn_rate(self, epoch: int, iteration: int) -> float:
        """The base learning rate at ``iteration`` (1-based) of ``epoch``."""
        return float(self.options.initial_learn_rate) * self.schedule.factor(epoch, iteration)

    def _after_step(self, step: Step) -> bool:
        """Record, validate, ask the listeners; True when training stops."""
        opts = self.options
        it = self.iteration = step.iteration
        self.history.record(it, loss=step.loss, metric=step.metric,
                            learn_rate=step.learn_rate, epoch=step.epoch)
        last = it == self.total
        if self.validation is not None and (it == 1 or it % opts.validation_frequency == 0
                                            or last):
            self._validate(step)
            if self.early_stopping.update(self.net, step.validation_loss, it):
                step.stop, self.stop_reason = True, "validation-patience"
        if self._emit("on_iteration", step) and not step.stop:
            step.stop, self.stop_reason = True, "output-fn"
        if step.stop and self.validation is not None and not step.validated:
            self._validate(step)    # a final validation
        if opts.verbose and (it == 1 or it % opts.verbose_frequency == 0 or last
                             or step.validated or step.stop):
            self._report(step)
        self._emit("on_report", step)
        return step.stop

    def _validate(self, step: Step) -> None:
        vl, vm = self.validation.evaluate(self.net).tolist()
        step.validated, step.validation_loss, step.validation_metric = True, vl, vm
        self.history.record(step.iteration, validation_loss=vl, validation_metric=vm)

    def _report(self, step: Step) -> None:
        """The figures of a table row (every process takes part under DDP)."""
        row = torch.stack([step.loss, step.metric])
        if self.ctx is not None:   # rank 0 prints the mean over the processes
            row = self.ctx.mean(row)
            if not bool(torch.isfinite(row[0])):
                losses = self.history.device_series("loss")
                bad_it = int(torch.nonzero(~torch.isfinite(losses))[0]) + 1
                raise TrainingError(f"training stopped: the mini-batch loss became "
                                    f"non-finite at iteration {bad_it}")
        else:
            self._check_recorded_losses()
        step.report = True
        step.shown_loss, step.shown_metric = float(row[0]), float(row[1])

    def _check_recorded_losses(self) -> None:
        """The deferred non-finite guard (single device, not the CPU): one
        read of whether any loss recorded since the last check is not finite;
        a TrainingError naming the first such iteration if one is."""
        start, end = self._checked_upto, self.iteration
        if self.check_each_iteration or self.ctx is not None or end <= start:
            return
        self._checked_upto = end
        finite = torch.isfinite(self.history.device_series("loss")[start:end])
        if bool(finite.all()):
            return
        first = start + int(torch.nonzero(~finite)[0])   # 0-based
        value = self.history.value("loss", first + 1)
        epoch = int(self.history.value("epoch", first + 1))
        raise TrainingError(
            f"training stopped at iteration {first + 1} (epoch {epoch}): the mini-batch loss "
            f"is {value}. On {self.device.type} the loss is checked at each table row and "
            f"epoch's end (found at iteration {end}) so the device never waits for the "
            f"host; the weights are no longer finite. Try a smaller initial_learn_rate or a "
            f"gradient_threshold; on the CPU the layer at fault is named")

    def _finish(self) -> tuple[Network, TrainingInfo]:
        self._check_recorded_losses()
        if self.graphed is not None:
            g = self.graphed
            self.graph_status = (f"eager: the recording failed ({g.failure})" if g.failure else
                                 f"CUDA graph ({g.replays} replays" +
                                 (", then eager: a mini-batch of another size)"
                                  if not g.active else ")"))
            self.graphed = None   # the graph's memory goes with it
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.time_elapsed = self.elapsed()
        if self.ctx is not None:
            for name in ("loss", "metric"):
                self.history.set_device_series(name, self.ctx.mean(
                    self.history.device_series(name)))
            self.ctx.close()
        self.output_iteration = self.iteration
        early = self.early_stopping
        if self.options.output_network == "best-validation-loss" and early.best_state is not None:
            self.net.load_state_dict(early.best_state)
            self.output_iteration = early.best_iteration
        self.net.eval()
        self._emit("on_end")
        return self.net, self.info()

    def plot_history(self) -> dict[str, np.ndarray]:
        """The series the progress plot draws, metric in display units."""
        h, scale = self.history, self.metric_scale
        val_loss = h.column("validation_loss")
        has = np.isfinite(val_loss)
        iters = np.arange(1, h.iterations + 1)
        return {"iterations": iters, "loss": h.column("loss"),
                "metric": h.column("metric") * scale, "epoch": h.column("epoch"),
                "val_iterations": iters[has], "val_loss": val_loss[has],
                "val_metric": h.column("validation_metric")[has] * scale,
                "extra": {k: v for f in self.plot_extras for k, v in f(self).items()}}

    def info(self) -> TrainingInfo:
        h, scale = self.history, self.metric_scale
        plot = next((l for l in self.listeners if isinstance(l, PlotListener)), None)
        return TrainingInfo(
            training_loss=h.column("loss"), training_metric=h.column("metric") * scale,
            base_learn_rate=h.column("learn_rate"), epoch=h.column("epoch"),
            iterations=h.iterations, time_elapsed=self.time_elapsed, device=str(self.device),
            step=self.graph_status,
            metric_name=self.output_layer.metric_name,
            validation_loss=h.column("validation_loss"),
            validation_metric=h.column("validation_metric") * scale,
            stop_reason=self.stop_reason, output_iteration=self.output_iteration,
            plot_path=plot.plot.path if plot is not None and plot.plot is not None else None,
            history={name: h.column(name) for name in h.series},
            layer_statistics=self.layer_statistics)


def _is_layers(value: Any) -> bool:
    return isinstance(value, (Network, LayerGraph)) or (
        isinstance(value, (list, tuple)) and len(value) > 0
        and all(isinstance(v, Layer) for v in value))


def train_network(X: Any, Y: Any = None, layers: Any = None, options: Any = None, *,
                  stream: TextIO | None = None,
                  resume_from: str | os.PathLike | None = None,
                  listeners: Sequence[Listener] = ()) -> tuple[Network, TrainingInfo]:
    """Train a network and return it with the training record.

    Called as ``train_network(X, Y, layers, options)`` or
    ``train_network(data, layers, options)``.

    Args:
        X: inputs of size ``(N, *input_size)`` (images ``(N, C, H, W)``,
            features ``(N, C)``): a NumPy array or tensor (held in memory), or
            a NumPy memmap or other array-like (read per mini-batch).
        Y: targets, e.g. class labels (ints, strings, any hashable), length ``N``.
        data: instead of ``X, Y``: a torch ``Dataset`` of ``(x, y)`` pairs, a
            ``DataLoader`` (its own batching and shuffling) or a layerlab
            datastore (:class:`~layerlab.ImageDatastore`,
            :class:`~layerlab.AugmentedImageDatastore`); see
            :mod:`layerlab.datastores.sources`.
        layers: a list of layers, a :class:`LayerGraph` or a :class:`Network`
            (training continues from its weights). The layers given are not
            modified: training works on a copy.
        options: :func:`training_options`; default ``training_options("sgdm")``.
        stream: where the verbose table goes (default standard output).
        resume_from: a checkpoint file (or the ``checkpoint_path`` folder)
            written by an earlier run with the same ``layers``, data and
            options: training continues after its epoch, and with a ``seed``
            ends with the same weights as a run that was never interrupted
            (augmentation included).
        listeners: extra :class:`~layerlab.training.listeners.Listener` objects.

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

    Examples:
        >>> X, Y, _ = ll.datasets.digits_train()                      # doctest: +SKIP
        >>> net, info = ll.train_network(X, Y, layers, opts)          # doctest: +SKIP
        >>> net, info = ll.train_network(ll.ImageDatastore("digits/"), layers, opts)  # doctest: +SKIP
    """
    if _is_layers(Y) and (layers is None or isinstance(layers, TrainingOptions)):
        X, Y, layers, options = X, None, Y, layers    # train_network(data, layers, options)
    if layers is None:
        raise NetworkError("train_network: no layers given; call train_network(X, Y, layers, "
                           "options) or train_network(data, layers, options)")
    run = TrainingRun.create(X, Y, layers, options, stream=stream, resume_from=resume_from)
    for listener in listeners:
        run.add_listener(listener)
    return run.run()
