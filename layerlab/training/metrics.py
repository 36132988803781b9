"""Metrics for training and testing (MATLAB's ``trainingOptions(Metrics=...)``
and ``testnet``), each an object with the update-compute interface:
``reset()``, ``update(Y, T)`` for a mini-batch, ``compute()`` for everything
since the last reset.

``Y`` are the network's outputs (class scores ``(N, K)`` for
classification, probabilities of the same size as ``T`` for a binary
task, responses for regression); ``T`` the prepared targets (class indices
``(N,)``, 0/1 arrays, or numbers).

Definitions (``c`` a class, :math:`\\hat y_n = \\arg\\max_k Y_{nk}`;
``TP_c``, ``FP_c``, ``FN_c`` counted over all observations seen):

* ``accuracy``: :math:`\\frac1N \\sum_n [\\hat y_n = t_n]`; for a binary task
  the fraction of elements with :math:`[Y > 0.5] = T`. Shown in percent.
* ``precision``: :math:`\\frac1K \\sum_c TP_c / (TP_c + FP_c)` (macro average;
  a class never predicted counts 0), ``recall``:
  :math:`\\frac1K \\sum_c TP_c / (TP_c + FN_c)`, ``fscore``:
  :math:`\\frac1K \\sum_c 2 P_c R_c / (P_c + R_c)` (F1, 0 where
  :math:`P_c + R_c = 0`). ``average="micro"`` pools the counts over the
  classes instead. For a binary task each output column is a class.
* ``auc``: the area under the ROC curve of each class against the rest from
  its score (the Mann-Whitney statistic, ties counted one half), averaged
  over the classes that have both positives and negatives.
* ``rmse``: :math:`\\sqrt{\\frac1{NR} \\sum (Y - T)^2}`; ``mae``:
  :math:`\\frac1{NR} \\sum |Y - T|` (regression).

A callable ``metric(Y, T) -> number`` is averaged over the mini-batches
weighted by their size. Any object with ``update`` and ``compute`` (e.g. a
``torchmetrics.Metric``) is used as it is; its name is its ``name``
attribute or its class name.

Examples:
    >>> import torch
    >>> m = resolve_metric("recall", "classification")
    >>> m.update(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), torch.tensor([0, 1, 1]))
    >>> float(m.compute())      # class 0: 1/1, class 1: 1/2
    0.75
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable

import torch

from ..errors import OptionError

__all__ = ["Metric", "Accuracy", "Precision", "Recall", "FScore", "AUC", "RMSE", "MAE",
           "resolve_metric", "resolve_metrics", "METRIC_NAMES", "metric_value"]


class Metric:
    """Base of the built-in metrics. ``percentage`` metrics show in percent
    in the table; ``higher_is_better`` decides what "best" means for
    ``objective_metric_name``."""

    name = "metric"
    percentage = False
    higher_is_better = True
    tasks: tuple[str, ...] = ("classification", "binary", "regression")

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, Y: torch.Tensor, T: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _labels(Y: torch.Tensor, T: torch.Tensor, task: str):
    """Predicted and true classes as one-hot boolean (N, K) tensors."""
    if task == "binary":
        return (Y.reshape(Y.shape[0], -1) > 0.5), (T.reshape(T.shape[0], -1) > 0.5)
    K = Y.shape[1]
    pred = torch.nn.functional.one_hot(Y.argmax(dim=1), K).bool()
    if T.dtype != torch.int64:                     # probabilities: their argmax
        T = T.argmax(dim=1)
    return pred, torch.nn.functional.one_hot(T, K).bool()


class Accuracy(Metric):
    name = "accuracy"
    percentage = True
    tasks = ("classification", "binary")

    def __init__(self, task: str = "classification"):
        self.task = task
        self.reset()

    def reset(self) -> None:
        self.correct = self.count = 0

    def update(self, Y, T) -> None:
        if self.task == "binary":
            p, t = _labels(Y, T, self.task)
            self.correct = self.correct + (p == t).sum()
            self.count += p.numel()
        else:
            t = T if T.dtype == torch.int64 else T.argmax(dim=1)
            self.correct = self.correct + (Y.argmax(dim=1) == t).sum()
            self.count += Y.shape[0]

    def compute(self) -> torch.Tensor:
        return torch.as_tensor(self.correct, dtype=torch.float64) / max(self.count, 1)


class _Counts(Metric):
    """True positives, false positives and false negatives per class."""

    tasks = ("classification", "binary")
    percentage = False

    def __init__(self, task: str = "classification", average: str = "macro"):
        if average not in ("macro", "micro"):
            raise OptionError(f"metric '{self.name}': average must be 'macro' or 'micro', "
                              f"got {average!r}")
        self.task, self.average = task, average
        self.reset()

    def reset(self) -> None:
        self.tp = self.fp = self.fn = None

    def update(self, Y, T) -> None:
        p, t = _labels(Y, T, self.task)
        tp, fp, fn = (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)
        if self.tp is None:
            self.tp, self.fp, self.fn = tp, fp, fn
        else:
            self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn

    def _pr(self):
        tp, fp, fn = (x.double() for x in (self.tp, self.fp, self.fn))
        if self.average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp_min(1), 0.0)
        recall = torch.where(tp + fn > 0, tp / (tp + fn).clamp_min(1), 0.0)
        return precision, recall

    def compute(self) -> torch.Tensor:
        if self.tp is None:
            return torch.tensor(math.nan, dtype=torch.float64)
        return self._value(*self._pr()).mean()


class Precision(_Counts):
    name = "precision"

    def _value(self, p, r):
        return p


class Recall(_Counts):
    name = "recall"

    def _value(self, p, r):
        return r


class FScore(_Counts):
    name = "fscore"

    def _value(self, p, r):
        return torch.where(p + r > 0, 2 * p * r / (p + r).clamp_min(1e-300), 0.0)


def _binary_auc(score: torch.Tensor, positive: torch.Tensor) -> torch.Tensor | None:
    """Mann-Whitney: P(score of a positive > score of a negative), ties 1/2."""
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    s = score.double()
    order = torch.argsort(s)
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, s.numel() + 1, dtype=s.dtype)
    # average the ranks of tied scores
    uniq, inverse = torch.unique(s, return_inverse=True)
    sums = torch.zeros(uniq.numel(), dtype=s.dtype).index_add_(0, inverse, ranks)
    counts = torch.zeros(uniq.numel(), dtype=s.dtype).index_add_(0, inverse, torch.ones_like(s))
    ranks = (sums / counts)[inverse]
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


class AUC(Metric):
    name = "auc"
    tasks = ("classification", "binary")

    def __init__(self, task: str = "classification"):
        self.task = task
        self.reset()

    def reset(self) -> None:
        self.scores: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def update(self, Y, T) -> None:
        self.scores.append(Y.detach().reshape(Y.shape[0], -1).float().cpu())
        self.targets.append(T.detach().cpu())

    def compute(self) -> torch.Tensor:
        if not self.scores:
            return torch.tensor(math.nan, dtype=torch.float64)
        S, T = torch.cat(self.scores), torch.cat(self.targets)
        if self.task == "binary":
            P = T.reshape(T.shape[0], -1) > 0.5
        else:
            t = T if T.dtype == torch.int64 else T.argmax(dim=1)
            P = torch.nn.functional.one_hot(t, S.shape[1]).bool()
        aucs = [a for c in range(S.shape[1])
                if (a := _binary_auc(S[:, c], P[:, c])) is not None]
        if not aucs:
            return torch.tensor(math.nan, dtype=torch.float64)
        return torch.stack(aucs).mean()


class _Errors(Metric):
    tasks = ("regression",)
    higher_is_better = False

    def __init__(self, task: str = "regression"):
        self.task = task
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.count = 0

    def update(self, Y, T) -> None:
        e = Y.double() - T.reshape(Y.shape).double()
        self.total = self.total + self._err(e).sum()
        self.count += e.numel()


class RMSE(_Errors):
    name = "rmse"

    def _err(self, e):
        return e.square()

    def compute(self):
        return (torch.as_tensor(self.total, dtype=torch.float64) / max(self.count, 1)).sqrt()


class MAE(_Errors):
    name = "mae"

    def _err(self, e):
        return e.abs()

    def compute(self):
        return torch.as_tensor(self.total, dtype=torch.float64) / max(self.count, 1)


_BUILTIN: dict[str, type[Metric]] = {
    "accuracy": Accuracy, "precision": Precision, "recall": Recall, "fscore": FScore,
    "auc": AUC, "rmse": RMSE, "mae": MAE,
}
METRIC_NAMES = tuple(_BUILTIN)


class FunctionMetric(Metric):
    """A callable ``fn(Y, T) -> number``, averaged over the observations."""

    def __init__(self, fn: Callable, name: str):
        self.fn, self.name = fn, name
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, Y, T) -> None:
        self.total = self.total + self.fn(Y, T) * Y.shape[0]
        self.count += Y.shape[0]

    def compute(self):
        return self.total / max(self.count, 1)


class _Adapter(Metric):
    """A user's update-compute object (torchmetrics style): passed the
    tensors on their device; ``reset`` called when it has one."""

    def __init__(self, obj: Any, name: str):
        self.obj, self.name = obj, name
        self.higher_is_better = getattr(obj, "higher_is_better", True) is not False

    def reset(self) -> None:
        if hasattr(self.obj, "reset"):
            self.obj.reset()

    def update(self, Y, T) -> None:
        self.obj.update(Y, T)

    def compute(self):
        return self.obj.compute()


def resolve_metric(spec: Any, task: str) -> Metric:
    """A metric object from a name, a callable or an update-compute
    object; ``task`` is the loss's ("classification", "binary",
    "regression"). A name that does not fit the task or is unknown raises
    :class:`OptionError`."""
    if isinstance(spec, str):
        key = spec.strip().lower().replace("-", "").replace("_", "")
        key = {"f1": "fscore", "f1score": "fscore", "rocauc": "auc"}.get(key, key)
        if key not in _BUILTIN:
            close = difflib.get_close_matches(key, METRIC_NAMES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise OptionError(f"training option 'metrics': unknown metric '{spec}'{hint} "
                              f"(expected {', '.join(METRIC_NAMES)}, a function metric(Y, T) "
                              f"or an object with update and compute)")
        cls = _BUILTIN[key]
        if task not in cls.tasks:
            fits = [n for n, c in _BUILTIN.items() if task in c.tasks]
            raise OptionError(f"training option 'metrics': '{key}' does not fit a {task} loss "
                              f"(metrics for {task}: {', '.join(fits)})")
        return cls(task)
    if isinstance(spec, Metric):
        return spec
    if hasattr(spec, "update") and hasattr(spec, "compute"):
        name = getattr(spec, "name", None)
        return _Adapter(spec, name if isinstance(name, str) else type(spec).__name__)
    if callable(spec):
        return FunctionMetric(spec, getattr(spec, "__name__", type(spec).__name__))
    raise OptionError(f"training option 'metrics': expected names, functions or objects with "
                      f"update and compute, got {type(spec).__name__}")


def resolve_metrics(specs: Any, task: str) -> list[Metric]:
    """The option's list (a single name or object is a list of one);
    names must be distinct."""
    if specs is None:
        return []
    if isinstance(specs, str) or not isinstance(specs, (list, tuple)):
        specs = [specs]
    metrics = [resolve_metric(s, task) for s in specs]
    names = [m.name for m in metrics]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise OptionError(f"training option 'metrics': the name {sorted(dup)[0]!r} is given "
                          f"twice; give each metric a distinct name (a `name` attribute)")
    return metrics


def metric_value(value: Any, name: str) -> float:
    """A metric's result as a Python float (a 0-d tensor, NumPy or Python
    number)."""
    try:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"size {tuple(value.shape)}")
            return float(value.detach().reshape(()))
        return float(value)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"metric '{name}': compute() must return a number, got "
                          f"{type(value).__name__} ({exc})") from None
