"""The training record: one value per iteration for each named series.

The mini-batch loss and metric stay on the training device (writing them
costs no host synchronisation); everything else is a NumPy array. A series
that was not recorded at an iteration holds NaN (the validation series,
for example, only at the iterations that validate).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["History", "STANDARD_SERIES"]

# name -> kept on the device (True) or on the host (False)
STANDARD_SERIES = {"loss": True, "metric": True, "learn_rate": False, "epoch": False,
                   "validation_loss": False, "validation_metric": False}

# checkpoints written before the series had their present names
_OLD_NAMES = {"lr": "learn_rate", "val_loss": "validation_loss",
              "val_metric": "validation_metric"}


class History:
    """Named per-iteration series of length ``total`` (the planned number of
    iterations), filled as training goes; ``iterations`` counts those run.

    Besides the standard series (``loss``, ``metric``: the mini-batch loss
    and the output layer's metric as a fraction; ``learn_rate``; ``epoch``;
    ``validation_loss`` / ``validation_metric``, NaN where not validated),
    listeners may :meth:`add` their own (e.g. a metric column); every series
    is saved in checkpoints and restored on resume.

    Examples:
        >>> h = History(total=3, device=torch.device("cpu"))
        >>> h.record(1, loss=torch.tensor(0.7), learn_rate=0.01, epoch=1)
        >>> h.column("learn_rate")   # only the iterations run
        array([0.01])
    """

    def __init__(self, total: int, device: torch.device):
        self.total, self.device = total, device
        self.iterations = 0
        self.series: dict[str, torch.Tensor | np.ndarray] = {}
        for name, on_device in STANDARD_SERIES.items():
            self.add(name, on_device)
        self.series["epoch"] = np.zeros(total, dtype=np.int64)

    def add(self, name: str, on_device: bool = False) -> None:
        """A new series, NaN until recorded (no-op when it exists)."""
        if name in self.series:
            return
        self.series[name] = (torch.full((self.total,), float("nan"), device=self.device)
                             if on_device else np.full(self.total, np.nan))

    def record(self, iteration: int, **values) -> None:
        """Values of iteration ``iteration`` (1-based) by series name; a
        tensor is written on the device without a host synchronisation."""
        i = iteration - 1
        for name, value in values.items():
            s = self.series[name]
            if isinstance(s, torch.Tensor):
                s[i] = value.detach() if isinstance(value, torch.Tensor) else value
            else:
                s[i] = float(value) if isinstance(value, torch.Tensor) else value
        self.iterations = max(self.iterations, iteration)

    def value(self, name: str, iteration: int) -> float:
        """One value as a Python float (a host sync for a device series)."""
        return float(self.series[name][iteration - 1])

    def column(self, name: str) -> np.ndarray:
        """A series over the iterations run, as a NumPy array."""
        s = self.series[name][:self.iterations]
        return s.cpu().numpy() if isinstance(s, torch.Tensor) else s.copy()

    def device_series(self, name: str) -> torch.Tensor:
        """A device series over the iterations run (no copy)."""
        return self.series[name][:self.iterations]  # type: ignore[return-value]

    def set_device_series(self, name: str, values: torch.Tensor) -> None:
        """Replace the iterations run of a device series (e.g. by their mean
        over the processes of a distributed run)."""
        self.series[name][:self.iterations] = values

    # -- checkpoints ------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every series over the iterations run, as CPU tensors."""
        return {name: torch.as_tensor(self.column(name)) for name in self.series}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the iterations run from :meth:`state_dict`; series the
        state has but this history lacks are added."""
        n = 0
        for name, values in state.items():
            name = _OLD_NAMES.get(name, name)
            if name not in self.series:
                self.add(name, on_device=False)
            n = int(values.shape[0])
            s = self.series[name]
            if isinstance(s, torch.Tensor):
                s[:n] = values.to(s.device, s.dtype)
            else:
                s[:n] = values.numpy()
        self.iterations = n
