"""A GPU training step recorded once as a CUDA graph and replayed.

On a GPU a small network's step is bound by the host, not the GPU: each of
the step's few hundred kernels (forward, loss, backward, the solver's
update, the mini-batch metric) costs tens of microseconds of Python,
autograd and launch work, and the GPU finishes each in a few. A CUDA graph
records the kernels of one step once and replays them all with one launch
(PyTorch's ``torch.cuda.graphs``, "whole-network capture"). Per iteration
the host then only copies the mini-batch into the graph's input tensors and
launches the replay.

A replay re-runs the recorded GPU work and nothing else, so the step must be
the same every iteration up to the values of tensors. :func:`why_not_graphed`
says when that is not known to hold, and training then runs eagerly:

* a layer that does not declare ``capturable = True`` (the layer contract:
  no host reads of tensor values, no Python state changed per call; every
  built-in layer declares it, a user's layer may);
* hooks on a layer (module or global), listeners that act inside the step
  (``on_batch_start``, ``on_gradients``: the monitor), mixed precision (the
  gradient scaler reads its overflow flag on the host), several processes
  (DDP), a solver other than SGDM (PyTorch's Adam and RMSprop keep their
  learning rate as a Python float);
* ``training_options(cuda_graphs=False)``.

The learning rate lives in device tensors that the schedule writes between
replays (:meth:`SGDM.use_learn_rate_tensors`); the non-finite guard reads
the recorded losses at the table rows (``TrainingRun.check_each_iteration``
is False on a GPU). A mini-batch of another size (a data source whose last
mini-batch is smaller) ends the graph: the rest of training runs eagerly.

Shapes: the graph holds ``X (B, *input)`` and ``T`` of the first captured
mini-batch; its outputs ``loss ()``, ``Y (B, K)`` and ``metric ()`` are
overwritten by each replay (the trainer copies the loss and metric into the
history before the next).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..network.network import Network, _global_hooks, _has_hooks
from .solvers import SGDM

__all__ = ["GraphedStep", "why_not_graphed"]

# eager iterations before the capture, on a side stream as PyTorch asks
# (cuDNN's algorithm choice, lazy initialisation and the solver's state
# happen there, not in the recording)
WARMUP_STEPS = 3


def why_not_graphed(net: Network, optimizer: Any, *, device: torch.device, enabled: bool,
                    distributed: bool, mixed_precision: bool,
                    step_listeners: list[Any]) -> str | None:
    """``None`` when a training step of ``net`` may be recorded as a CUDA
    graph; otherwise the reason it runs eagerly (shown by nothing: eager is
    the ordinary path, and the reason is kept in ``run.graph_status``)."""
    if device.type != "cuda":
        return "not on a GPU"
    if not enabled:
        return "training_options(cuda_graphs=False)"
    if distributed:
        return "several processes (DDP)"
    if mixed_precision:
        return "mixed precision (the gradient scaler reads its overflow flag on the host)"
    if optimizer is None:
        return "every learnable is frozen (no update to record)"
    if not isinstance(optimizer, SGDM):
        return (f"solver {type(optimizer).__name__} (only SGDM reads its learning rate "
                f"from the device)")
    if step_listeners:
        return ("listeners inside the step: "
                + ", ".join(sorted({type(l).__name__ for l in step_listeners})))
    if _global_hooks():
        return "global module hooks are registered"
    for m in net.modules():
        if _has_hooks(m):
            return f"hooks on {getattr(m, 'label', type(m).__name__)}"
    for layer in net.layers:
        if not layer.capturable:
            return f"layer {layer.label} does not declare capturable = True"
    return None


class GraphedStep:
    """``step(xb, tb) -> (loss, Y, metric)``: the training step of
    ``eager_step`` (forward, loss, backward, update: a function of the
    mini-batch returning ``(loss, Y)``) and ``metric(Y, T)``, eagerly for
    the first :data:`WARMUP_STEPS` mini-batches, then recorded once and
    replayed. ``active`` turns False for good when a mini-batch of another
    size comes (the caller then runs ``eager_step`` itself)."""

    def __init__(self, optimizer: SGDM, eager_step: Callable[[torch.Tensor, torch.Tensor], Any],
                 metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self.optimizer, self.eager_step, self.metric_fn = optimizer, eager_step, metric
        self.active = True
        self.warm = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.side = torch.cuda.Stream()
        self.replays = 0
        self.failure: str | None = None   # why the recording failed, if it did

    def step(self, xb: torch.Tensor, tb: torch.Tensor):
        if self.graph is None and self.warm < WARMUP_STEPS:
            self.warm += 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                loss, Y = self.eager_step(xb, tb)
                # detached: the autograd graph (and the AccumulateGrad nodes
                # made on this side stream) must not outlive the step, or
                # the recorded backward would meet them on another stream
                loss, Y = loss.detach(), Y.detach()
                with torch.no_grad():
                    metric = self.metric_fn(Y, tb)
            torch.cuda.current_stream().wait_stream(self.side)
            return loss, Y, metric
        if self.graph is None:
            try:
                self._capture(xb, tb)
            except RuntimeError as exc:
                # e.g. a layer that declares capturable but reads a value on
                # the host: nothing of the recording ran, so this mini-batch
                # and the rest of training run eagerly
                self.failure = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                self.release()
                return None
        elif xb.shape != self.x.shape or tb.shape != self.t.shape:
            self.release()
            return None
        self.x.copy_(xb)
        self.t.copy_(tb)
        self.graph.replay()
        self.replays += 1
        return self.loss, self.Y, self.metric

    def _capture(self, xb: torch.Tensor, tb: torch.Tensor) -> None:
        self.optimizer.use_learn_rate_tensors()
        self.x, self.t = xb.clone(), tb.clone()
        self.optimizer.zero_grad(set_to_none=True)   # gradients from the graph's pool
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss, Y = self.eager_step(self.x, self.t)
            with torch.no_grad():
                self.loss, self.Y = loss.detach(), Y.detach()
                self.metric = self.metric_fn(self.Y, self.t)
        self.graph = graph

    def release(self) -> None:
        """Stop replaying (the rest of training runs eagerly)."""
        self.active = False
        self.graph = None
