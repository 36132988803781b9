"""The monitor as a :class:`~layerlab.training.listeners.Listener` of a training run."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..training.listeners import Listener
from .statistics import LAYER_STATISTICS, LayerStatistics, StatisticsRecorder

__all__ = ["MonitorListener"]


class MonitorListener(Listener):
    """Records per-layer statistics at iteration 1 and every ``frequency``
    iterations (``training_options(monitor=..., monitor_frequency=...)``):
    hooks go on before the forward pass of a recorded iteration, the
    gradients are read before clipping and the update, the update ratio
    after it. The result is ``info.layer_statistics``; with ``log_dir`` it
    is also written there as TensorBoard scalars (``layers/<statistic>/<layer>``,
    ``learnables/<statistic>/<learnable>``) and ``layer_statistics.csv``.
    """

    name = "monitor"

    def __init__(self, statistics, frequency: int, log_dir: str | os.PathLike | None = None):
        self.statistics, self.frequency, self.log_dir = statistics, frequency, log_dir
        self.recorder: StatisticsRecorder | None = None
        self._restored: dict[str, Any] | None = None

    def on_start(self, run):
        self.recorder = StatisticsRecorder(run.net, self.statistics, self.frequency)
        if self._restored is not None:
            self._restore(self._restored)
        return None

    def on_batch_start(self, run, iteration):
        if self.recorder.wants(iteration):
            self.recorder.begin(iteration)

    def on_gradients(self, run, iteration):
        self.recorder.after_backward()

    def on_iteration(self, run, step):
        self.recorder.after_update()
        return None

    def on_abort(self, run):
        if self.recorder is not None:
            self.recorder.cancel()
            run.layer_statistics = self.recorder.result()

    def on_end(self, run):
        stats = self.recorder.result()
        run.layer_statistics = stats
        if self.log_dir is not None:
            os.makedirs(self.log_dir, exist_ok=True)
            stats.to_csv(os.path.join(self.log_dir, "layer_statistics.csv"))
            _write_tensorboard(stats, self.log_dir)

    # -- checkpoints: the rows recorded so far -----------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.recorder is None:
            return {}
        stats = self.recorder.result()
        state: dict[str, Any] = {"iterations": torch.as_tensor(stats.iterations)}
        for name, arr in stats.values.items():
            state[name] = torch.as_tensor(arr)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = dict(state)

    def _restore(self, state: dict[str, Any]) -> None:
        its = state.get("iterations")
        if isinstance(its, torch.Tensor) and its.dim() == 1:
            values = {k: v.to(torch.float64).numpy() for k, v in state.items()
                      if k != "iterations" and isinstance(v, torch.Tensor)}
            self.recorder.load_rows(its.tolist(), values)   # False: start afresh


def _write_tensorboard(stats: LayerStatistics, log_dir: str | os.PathLike) -> None:
    from ..training.runlog import summary_writer
    writer = summary_writer(log_dir)
    try:
        for name, arr in stats.values.items():
            group = "layers" if name in LAYER_STATISTICS else "learnables"
            for c, column in enumerate(stats.columns(name)):
                for r, it in enumerate(stats.iterations):
                    v = float(arr[r, c])
                    if np.isfinite(v):
                        writer.add_scalar(f"{group}/{name}/{column}", v, int(it))
    finally:
        writer.close()
