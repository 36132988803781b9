"""Listeners of a :class:`~layerlab.training.trainer.TrainingRun`: the
verbose table, the progress plot, ``output_fn`` callbacks and checkpoints,
each a small object reacting to the run's events (as Keras callbacks and
Lightning hooks do).

The events, in the order a run sends them (override those you need; the
defaults do nothing)::

    on_start(run) -> bool | None        after set-up and resume, before the first
                                        iteration; True stops training at once
    on_batch_start(run, iteration)      before an iteration's forward pass
    on_gradients(run, iteration)        after its backward pass, before gradient
                                        clipping and the update (the gradients are
                                        in ``param.grad``); sent only when a
                                        listener defines it
    on_iteration(run, step) -> bool | None
                                        after every update and its scheduled
                                        validation; True stops training
    on_report(run, step)                then, once it is known whether training
                                        stops here (``step.stop``) and a final
                                        validation ran; ``step.report`` is True at
                                        the table's rows (iteration 1, every
                                        ``verbose_frequency``, the last, each
                                        validation, the stop)
    on_epoch_end(run, epoch)            after every epoch that ran to its end
    on_abort(run)                       before an error leaves the run
    on_end(run)                         after the last iteration, once the result
                                        is known (``run.stop_reason``,
                                        ``run.output_iteration``, the DDP averages)

A listener with state to keep across a resume defines ``state_dict()`` and
``load_state_dict(state)`` (tensors and JSON-ready values); the run saves
it in its checkpoints under the listener's ``name``.

What a listener may read: ``run.history`` (:class:`History`, one value per
iteration and series; add series of your own with ``run.history.add``),
``run.options``, ``run.net``, ``run.output_layer``, ``run.epoch``,
``run.iteration``, ``run.per_epoch``, ``run.total``, ``run.elapsed()``,
``run.is_main`` and ``run.table_columns`` (extra table columns, see
:class:`TableListener`).

Examples:
    >>> class PrintLoss(Listener):
    ...     def on_epoch_end(self, run, epoch):
    ...         print(epoch, run.history.value("loss", run.iteration))
    >>> # ll.train_network(X, Y, layers, opts, listeners=[PrintLoss()])
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Callable, TextIO

import torch

from .callbacks import IterationInfo, call_output_fns
from .checkpoint import save_checkpoint
from .plots import TrainingProgressPlot
from .progress import ProgressLine, is_terminal
from .table import VerboseTable

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import TrainingRun

__all__ = ["Step", "Listener", "TableListener", "PlotListener", "OutputFnListener",
           "CheckpointListener", "TableColumn"]


@dataclasses.dataclass
class Step:
    """One iteration as the listeners see it.

    ``loss`` and ``metric`` (the output layer's metric as a fraction) are
    0-d tensors on the device; ``outputs`` are the network's outputs
    (logits when the softmax is fused into the loss) and ``targets`` the
    encoded targets of the mini-batch. ``validation_loss`` and
    ``validation_metric`` are floats at iterations that validate, else None.
    At a ``report`` step, ``shown_loss`` and ``shown_metric`` hold the
    figures the table prints (averaged over the processes of a
    distributed run).
    """

    epoch: int
    iteration: int
    batch: int            # 1-based, within the epoch
    learn_rate: float
    loss: torch.Tensor
    metric: torch.Tensor
    outputs: torch.Tensor
    targets: torch.Tensor
    validated: bool = False
    validation_loss: float | None = None
    validation_metric: float | None = None
    stop: bool = False
    report: bool = False
    shown_loss: float | None = None
    shown_metric: float | None = None


class Listener:
    """Base class: every event does nothing. See the module docstring."""

    name: str = ""

    def on_start(self, run: "TrainingRun") -> bool | None:
        return None

    def on_batch_start(self, run: "TrainingRun", iteration: int) -> None:
        return None

    def on_gradients(self, run: "TrainingRun", iteration: int) -> None:
        return None

    def on_iteration(self, run: "TrainingRun", step: Step) -> bool | None:
        return None

    def on_report(self, run: "TrainingRun", step: Step) -> None:
        return None

    def on_epoch_end(self, run: "TrainingRun", epoch: int) -> None:
        return None

    def on_abort(self, run: "TrainingRun") -> None:
        return None

    def on_end(self, run: "TrainingRun") -> None:
        return None


@dataclasses.dataclass
class TableColumn:
    """An extra column of the verbose table: its two header lines and a
    function giving the cell's text for a report step (empty when it has
    nothing to show there)."""

    title: str
    subtitle: str
    cell: Callable[["TrainingRun", Step], str]


class TableListener(Listener):
    """MATLAB's verbose table on ``stream``: a row at each report step,
    the in-epoch progress line between rows (on a terminal), the closing
    rule and why training stopped. Extra columns come from
    ``run.table_columns`` (validation loss and metric when validating),
    read when training starts."""

    name = "table"

    def __init__(self, stream: TextIO, progress: bool | str):
        self.stream = stream
        self.progress_option = progress
        self.table: VerboseTable | None = None
        self.progress: ProgressLine | None = None

    def on_start(self, run):
        out = run.output_layer
        self.columns = list(run.table_columns)
        self.table = VerboseTable(out.metric_name, out.metric_is_percentage,
                                  extra=[(c.title, c.subtitle) for c in self.columns],
                                  stream=self.stream)
        if self.progress_option is True or (self.progress_option == "auto"
                                            and is_terminal(self.stream)):
            self.progress = ProgressLine(self.stream, run.options.max_epochs, run.per_epoch)
        self.table.start()

    def on_report(self, run, step):
        if step.report:
            self._clear()
            self.table.row(step.epoch, step.iteration, run.elapsed(), step.shown_loss,
                           step.shown_metric, step.learn_rate,
                           [c.cell(run, step) for c in self.columns])
        elif self.progress is not None:
            self.progress.update(step.epoch, step.batch)

    def _clear(self):
        if self.progress is not None:
            self.progress.clear()

    def on_abort(self, run):
        self._clear()

    def on_end(self, run):
        self._clear()
        self.table.end()
        if run.stop_reason == "validation-patience":
            early = run.early_stopping
            print(f"Training stopped: the validation loss did not improve on its best "
                  f"(iteration {early.best_iteration}) in {early.bad} validations.",
                  file=self.stream)
        elif run.stop_reason == "output-fn":
            print("Training stopped by an output function.", file=self.stream)


class PlotListener(Listener):
    """The training-progress figure, redrawn at report steps (at most every
    couple of seconds) and once at the end; its path is printed when
    ``verbose``."""

    name = "plot"

    def __init__(self, path: str, stream: TextIO, verbose: bool):
        self.path, self.stream, self.verbose = path, stream, verbose
        self.plot: TrainingProgressPlot | None = None

    def on_start(self, run):
        self.plot = TrainingProgressPlot(self.path, run.output_layer.metric_name)

    def on_report(self, run, step):
        if step.report:
            self.plot.update(run.plot_history())

    def on_end(self, run):
        self.plot.update(run.plot_history(), force=True)
        if self.verbose:
            print(f"Training progress plot: {self.plot.path}", file=self.stream)


class OutputFnListener(Listener):
    """``output_fn``: MATLAB's ``OutputFcn``, called with an
    :class:`IterationInfo` at the start, after each iteration and at the
    end; returning True stops training. Reading the loss for it costs a
    host synchronisation each iteration."""

    name = "output_fn"

    def __init__(self, fns: list[Callable[[IterationInfo], Any]]):
        self.fns = fns

    def on_start(self, run):
        return call_output_fns(self.fns, IterationInfo("start", run.epoch + 1, run.iteration,
                                                       run.time_before))

    def on_iteration(self, run, step):
        scale = run.metric_scale
        return call_output_fns(self.fns, IterationInfo(
            "iteration", step.epoch, step.iteration, run.elapsed(), float(step.loss),
            float(step.metric) * scale, step.learn_rate, step.validation_loss,
            step.validation_metric * scale if step.validated else None))

    def on_end(self, run):
        epoch = run.history.value("epoch", run.iteration) if run.iteration else 0
        call_output_fns(self.fns, IterationInfo("done", int(epoch), run.iteration,
                                                run.time_elapsed))


class CheckpointListener(Listener):
    """Writes the run's :meth:`~TrainingRun.state_dict` to
    ``folder/checkpoint.safetensors`` at the end of every epoch that
    completed without a stop (rank 0 only), for ``resume_from``."""

    name = "checkpoint"

    def __init__(self, folder: str | os.PathLike):
        self.folder = folder

    def on_epoch_end(self, run, epoch):
        if run.stop_reason == "max-epochs" and run.is_main:
            save_checkpoint(self.folder, run.net, run.state_dict())
