"""What ``training_options(metrics=..., objective_metric_name=...,
log_dir=...)`` add to a :class:`~layerlab.training.trainer.TrainingRun`
(``train_network`` and ``trainnet`` alike), as listeners:

* :class:`MetricsListener`: each metric on every mini-batch (series
  ``training_<name>`` of ``info.history``) and over the validation data at
  each validation (``validation_<name>``, computed in the same pass as the
  validation loss), two table columns and a curve in the progress plot per
  metric; with ``objective_metric_name`` set to a metric, early stopping
  and ``output_network="best-validation"`` watch that metric instead of
  the loss (its best is its highest, or its lowest for rmse and mae).
* :class:`LogListener`: TensorBoard event files and ``history.csv`` in
  ``log_dir`` (:mod:`.runlog`), written at the end of every epoch from
  the history (no host synchronisation per iteration).

:func:`extend_run` also checks, before training, that a classification
network gives as many scores as there are classes, and that a
``Classification`` layer is fed probabilities (see :func:`check_output`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import DataError, NetworkError, OptionError
from .listeners import Listener, TableColumn
from .metrics import Metric, metric_value, resolve_metrics
from .validation import EarlyStopping

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import TrainingRun

__all__ = ["MetricsListener", "LogListener", "extend_run", "check_output", "task_of"]


def task_of(output_layer: Any) -> str:
    """"classification", "binary" or "regression" for an output layer."""
    task = getattr(output_layer, "task", None)
    if task is not None:
        return task
    return "classification" if hasattr(output_layer, "classes") else "regression"


def _scores(run: "TrainingRun", Y: torch.Tensor) -> torch.Tensor:
    """The network's outputs as the metrics see them: softmax scores even
    where training takes the loss from the logits; float32."""
    Y = Y.float() if Y.dtype in (torch.bfloat16, torch.float16) else Y
    return torch.softmax(Y, dim=1) if run.net.fuses_softmax else Y


def _fmt(metric: Metric, value: float) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{100 * value:.2f}%" if getattr(metric, "percentage", False) else f"{value:.4f}"


class _MetricValidation:
    """Wraps the run's validation: the loss and the output layer's metric
    as before, and each metric over all validation batches, in one pass."""

    def __init__(self, inner: Any, run: "TrainingRun", metrics: list[Metric]):
        self.inner, self.run, self.metrics = inner, run, metrics
        self.last: dict[str, float] = {}

    def _batches(self):
        """The validation mini-batches ``(X, T)`` on the device, as the
        run's own validation reads them."""
        v = self.inner
        src = v.source
        if hasattr(src, "X"):                      # in memory, on the device
            for s in range(0, src.X.shape[0], v.batch):
                yield src.X[s:s + v.batch], v.T[s:s + v.batch]
            return
        for x, t in src.labelled_batches(v.batch, v.T, v.encode):
            yield x.to(v.device), t.to(v.device)

    @torch.no_grad()
    def evaluate(self, net) -> torch.Tensor:
        was_training = net.training
        net.eval()
        out = net.output_layer
        for m in self.metrics:
            m.reset()
        total, count = None, 0
        try:
            with self.run.precision.autocast():
                for xb, tb in self._batches():
                    logits = net(xb, logits=True)
                    w = xb.shape[0]
                    part = torch.stack([net.loss(logits, tb, from_logits=True).float() * w,
                                        out.metric(logits, tb).float() * w])
                    total = part if total is None else total + part
                    count += w
                    scores = _scores(self.run, logits)
                    for m in self.metrics:
                        m.update(scores, tb)
        finally:
            net.train(was_training)
        self.last = {m.name: metric_value(m.compute(), m.name) for m in self.metrics}
        return total / count


class _ObjectiveEarlyStopping(EarlyStopping):
    """Early stopping (and the best network) by a metric: ``update`` gets
    the validation loss but uses the metric's last validation value,
    negated when higher is better (so lower is always better here)."""

    def __init__(self, patience, keep_best, validation: _MetricValidation, metric: Metric):
        super().__init__(patience, keep_best)
        self.validation, self.metric = validation, metric

    def update(self, net, loss, iteration):
        v = self.validation.last[self.metric.name]
        return super().update(net, -v if self.metric.higher_is_better else v, iteration)


class MetricsListener(Listener):
    """The metrics of ``training_options(metrics=...)``; see the module."""

    name = "metrics"

    def __init__(self, metrics: list[Metric]):
        self.metrics = metrics

    def attach(self, run: "TrainingRun") -> None:
        for m in self.metrics:
            run.history.add(f"training_{m.name}", on_device=True)
            run.history.add(f"validation_{m.name}", on_device=False)

        def cell(m, kind):
            def text(run, step):
                if kind == "validation" and not step.validated:
                    return ""
                return _fmt(m, run.history.value(f"{kind}_{m.name}", step.iteration))
            return text
        shown = run.output_layer.metric_name.lower()
        for m in self.metrics:
            if m.name == shown:   # the table's own metric column shows it already
                continue
            label = m.name if len(m.name) <= 13 else m.name[:12] + "."
            run.table_columns.append(TableColumn("Mini-batch", label, cell(m, "training")))
            if run.validation is not None:
                run.table_columns.append(TableColumn("Validation", label,
                                                     cell(m, "validation")))
        run.plot_extras.append(self.plot_series)

    def on_iteration(self, run, step):
        Y = _scores(run, step.outputs)
        values = {}
        for m in self.metrics:
            m.reset()
            m.update(Y, step.targets)
            v = m.compute()
            values[f"training_{m.name}"] = (v.detach().to(run.device) if isinstance(v, torch.Tensor)
                                           else metric_value(v, m.name))
        if step.validated and isinstance(run.validation, _MetricValidation):
            for name, v in run.validation.last.items():
                values[f"validation_{name}"] = v
        run.history.record(step.iteration, **values)

    def on_report(self, run, step):
        # a final validation at a stop runs after on_iteration: record it too
        if step.validated and isinstance(run.validation, _MetricValidation):
            run.history.record(step.iteration, **{f"validation_{n}": v
                                                 for n, v in run.validation.last.items()})

    def plot_series(self, run) -> dict[str, dict[str, np.ndarray]]:
        """Curves for the progress plot: each metric's mini-batch and
        validation values, in display units."""
        h = run.history
        iters = np.arange(1, h.iterations + 1)
        out = {}
        for m in self.metrics:
            scale = 100.0 if getattr(m, "percentage", False) else 1.0
            val = h.column(f"validation_{m.name}")
            has = np.isfinite(val)
            out[m.name] = {"iterations": iters, "values": h.column(f"training_{m.name}") * scale,
                           "val_iterations": iters[has], "val_values": val[has] * scale}
        return out


class LogListener(Listener):
    """TensorBoard and ``history.csv`` in ``log_dir`` (:mod:`.runlog`)."""

    name = "log"

    def __init__(self, log_dir, metric_names: list[str]):
        self.log_dir, self.metric_names = log_dir, metric_names
        self.logger = None
        self.logged = 0

    def on_start(self, run):
        from .runlog import RunLogger
        self.logger = RunLogger(self.log_dir, self.metric_names, resume=run.iteration > 0)
        self.logged = run.iteration

    def _write(self, run):
        h = run.history
        n = h.iterations
        if self.logger is None or n <= self.logged:
            return
        cols = {"train/loss": h.column("loss"), "train/learn_rate": h.column("learn_rate"),
                "validation/loss": h.column("validation_loss")}
        out = run.output_layer
        scale = 1.0   # metrics as fractions in the logs
        cols[f"train/{out.metric_name.lower()}"] = h.column("metric") * scale
        cols[f"validation/{out.metric_name.lower()}"] = h.column("validation_metric") * scale
        for name in self.metric_names:
            cols[f"train/{name}"] = h.column(f"training_{name}")
            cols[f"validation/{name}"] = h.column(f"validation_{name}")
        epochs = h.column("epoch")
        for i in range(self.logged, n):
            self.logger.log(i + 1, int(epochs[i]), {k: float(v[i]) for k, v in cols.items()})
        self.logger.flush()
        self.logged = n

    def on_epoch_end(self, run, epoch):
        self._write(run)

    def on_abort(self, run):
        self._write(run)
        if self.logger is not None:
            self.logger.close()

    def on_end(self, run):
        self._write(run)
        self.logger.close()


def check_output(run: "TrainingRun") -> None:
    """Before training: a classification network's scores fit its classes,
    and a ``Classification`` layer is fed by a ``Softmax`` (or another
    layer giving probabilities: a user-defined layer is checked on the
    first mini-batch instead)."""
    from ..layers.output import Classification, Softmax
    net, out = run.net, run.output_layer
    if not isinstance(out, Classification):
        return
    srcs = net.graph.sources(out.name, allow_unconnected=True)
    src = net.layer(srcs[0][0]) if srcs and srcs[0] is not None else None
    size = net.sizes[src.name][srcs[0][1]] if src is not None else None
    k = len(out.classes or [])
    if size is not None and (len(size) != 1 or size[0] != k):
        more = "more" if k > (size[0] if len(size) == 1 else 0) else "fewer"
        shown = list(out.classes)[:12] + (["..."] if k > 12 else [])
        raise DataError(f"train_network Y: the labels have {k} classes {shown} but layer "
                        f"'{src.name}' gives {size[0] if len(size) == 1 else size} scores per "
                        f"observation ({more} classes than outputs); make the last "
                        f"FullyConnected layer FullyConnected({k})")
    if isinstance(src, Softmax):
        return
    builtin = type(src).__module__.startswith("layerlab.")
    if builtin:
        raise NetworkError(f"layer '{out.name}' (Classification) takes class probabilities, "
                           f"but its input comes from '{src.name}' ({type(src).__name__}), "
                           f"which does not give probabilities: put Softmax() before it")
    run.add_listener(_ProbabilityCheck(src.name))


class _ProbabilityCheck(Listener):
    """A user layer feeding Classification: its first mini-batch of
    outputs must be probabilities (each row >= 0, summing to 1)."""

    name = "probability_check"

    def __init__(self, source: str):
        self.source = source

    def on_iteration(self, run, step):
        if step.iteration != 1 or run.iteration != 1:
            return None
        Y = step.outputs.float()
        ok = bool((Y >= 0).all()) and bool(((Y.sum(1) - 1).abs() < 1e-3).all())
        if not ok:
            raise NetworkError(f"layer '{run.output_layer.name}' (Classification) takes class "
                               f"probabilities, but layer '{self.source}' gave rows that are "
                               f"not (negative values or sums other than 1) at iteration 1: "
                               f"put Softmax() before the Classification layer")
        return None


def extend_run(run: "TrainingRun") -> None:
    """Add what the options ask for (metrics, objective, log_dir) and the
    output checks to a run being set up (called by ``TrainingRun``)."""
    opts = run.options
    if not hasattr(run, "plot_extras"):
        run.plot_extras = []
    check_output(run)
    metrics = resolve_metrics(opts.metrics, task_of(run.output_layer))
    objective = opts.objective_metric_name
    names = [m.name for m in metrics]
    if objective not in ["loss"] + names:
        raise OptionError(f"training option 'objective_metric_name': expected 'loss' or one of "
                          f"the metrics {names}, got {objective!r}")
    if metrics:
        listener = MetricsListener(metrics)
        if run.validation is not None:
            run.validation = _MetricValidation(run.validation, run, metrics)
            if objective != "loss":
                metric = metrics[names.index(objective)]
                run.early_stopping = _ObjectiveEarlyStopping(
                    opts.validation_patience, run.early_stopping.keep_best, run.validation,
                    metric)
        listener.attach(run)
        run.add_listener(listener)
    if opts.log_dir is not None and run.is_main:
        run.add_listener(LogListener(opts.log_dir, names))
