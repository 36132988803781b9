"""Logging a run: TensorBoard event files and a CSV of the history
(``training_options(log_dir=...)``), and writing a finished run's ``info``
to CSV or JSON.

In ``log_dir`` a run writes

* TensorBoard event files (``torch.utils.tensorboard.SummaryWriter``), one
  scalar per tag and iteration: ``train/loss``, ``train/<metric>``,
  ``train/learn_rate``, and at the validation iterations
  ``validation/loss`` and ``validation/<metric>`` (metrics as fractions,
  not percent); view them with ``tensorboard --logdir <log_dir>``;
* ``history.csv``: one row per iteration with the same figures (empty
  cells where the network was not validated), flushed every epoch.

TensorBoard is the optional extra ``pip install layerlab[tensorboard]``;
only ``log_dir`` needs it.

Examples:
    >>> logger = RunLogger("runs/exp1", metric_names=["accuracy"])  # doctest: +SKIP
    >>> logger.log(1, epoch=1, values={"train/loss": 2.3, "train/learn_rate": 0.01})  # doctest: +SKIP
    >>> logger.close()  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from typing import Any, Sequence

import numpy as np

from ..errors import OptionError

__all__ = ["RunLogger", "summary_writer", "write_info"]


def summary_writer(log_dir: str | os.PathLike):
    """A TensorBoard ``SummaryWriter`` on ``log_dir``, or an
    :class:`OptionError` saying how to install TensorBoard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise OptionError(f"training option 'log_dir': writing TensorBoard logs needs the "
                          f"tensorboard package ({exc}); install it with "
                          f"`pip install layerlab[tensorboard]` (or `pip install tensorboard`), "
                          f"or leave log_dir out") from None
    return SummaryWriter(log_dir=os.fspath(log_dir))


class RunLogger:
    """TensorBoard scalars and ``history.csv`` for one run.

    Args:
        log_dir: the folder (created when missing).
        metric_names: the metrics' names, for the CSV's columns.
        resume: append to an existing ``history.csv`` (after ``resume_from``).
    """

    def __init__(self, log_dir: str | os.PathLike, metric_names: Sequence[str] = (),
                 resume: bool = False):
        self.log_dir = os.fspath(log_dir)
        os.makedirs(self.log_dir, exist_ok=True)
        self.writer = summary_writer(self.log_dir)
        names = list(metric_names)
        self.columns = (["iteration", "epoch", "train/learn_rate", "train/loss"]
                        + [f"train/{m}" for m in names] + ["validation/loss"]
                        + [f"validation/{m}" for m in names])
        self.csv_path = os.path.join(self.log_dir, "history.csv")
        append = resume and os.path.exists(self.csv_path)
        self._file = open(self.csv_path, "a" if append else "w", newline="")
        self._csv = csv.writer(self._file)
        if not append:
            self._csv.writerow(self.columns)

    def log(self, iteration: int, epoch: int, values: dict[str, float]) -> None:
        """One iteration's figures, by tag (``train/loss``, ...); tags the
        CSV does not have go to TensorBoard only."""
        for tag, v in values.items():
            if v is not None and math.isfinite(v):
                self.writer.add_scalar(tag, v, iteration)
        row = [iteration, epoch] + [_cell(values.get(c)) for c in self.columns[2:]]
        self._csv.writerow(row)

    def flush(self) -> None:
        self._file.flush()
        self.writer.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            self.writer.close()


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(float(v))


def _fields(info: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(info):
        return {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
    return dict(vars(info))


def write_info(info: Any, path: str | os.PathLike) -> str:
    """Write a training ``info`` (:class:`TrainingInfo`) to ``path``:
    ``.csv``, one row per iteration with every per-iteration series as a
    column; ``.json``, everything (series as lists, NaN as null). Returns
    the path.

    Examples:
        >>> # net, info = ll.trainnet(X, Y, layers, "crossentropy", opts)
        >>> # ll.write_info(info, "run.csv")
    """
    path = os.fspath(path)
    fields = _fields(info)
    n = int(fields.get("iterations", 0))
    series = {k: np.asarray(v) for k, v in fields.items()
              if isinstance(v, (np.ndarray, list)) and len(v) == n and np.asarray(v).ndim == 1}
    for k, v in list(fields.items()):   # dicts of series (e.g. metrics by name)
        if isinstance(v, dict):
            for name, arr in v.items():
                a = np.asarray(arr)
                if a.ndim == 1 and len(a) == n:
                    series[f"{k}.{name}"] = a
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["iteration"] + list(series))
            for i in range(n):
                w.writerow([i + 1] + [_cell(series[k][i]) if series[k].dtype.kind == "f"
                                      else series[k][i].item() for k in series])
        return path
    if ext == ".json":
        def plain(v):
            if isinstance(v, np.ndarray):
                return [plain(x) for x in v.tolist()]
            if isinstance(v, dict):
                return {str(k): plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, np.generic):
                return plain(v.item())
            return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
        with open(path, "w") as f:
            json.dump({k: plain(v) for k, v in fields.items()}, f, indent=1)
        return path
    raise OptionError(f"write_info: expected a path ending in .csv or .json, got {path!r}")
