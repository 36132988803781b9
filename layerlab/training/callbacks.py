"""``output_fn`` callbacks: called with an :class:`IterationInfo` record at
the start, after every iteration and at the end; a callback that returns
True stops training (MATLAB's ``OutputFcn``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ..errors import TrainingError

__all__ = ["IterationInfo", "call_output_fns"]


@dataclasses.dataclass
class IterationInfo:
    """MATLAB's ``info`` structure for output functions.

    ``state`` is "start", "iteration" or "done"; ``validation_loss`` and
    ``validation_accuracy`` are ``None`` except at iterations that validate.
    ``training_accuracy`` is in percent for classification.
    """

    state: str
    epoch: int
    iteration: int
    time_elapsed: float
    training_loss: float | None = None
    training_accuracy: float | None = None
    base_learn_rate: float | None = None
    validation_loss: float | None = None
    validation_accuracy: float | None = None


def call_output_fns(fns: list[Callable[[IterationInfo], Any]], info: IterationInfo) -> bool:
    """Call each function; True when one of them asks to stop."""
    stop = False
    for fn in fns:
        try:
            result = fn(info)
        except Exception as exc:  # noqa: BLE001 - user code: add context
            name = getattr(fn, "__name__", repr(fn))
            raise TrainingError(f"training option 'output_fn': {name} raised at iteration "
                                f"{info.iteration}: {type(exc).__name__}: {exc}") from exc
        stop = stop or result is True
    return stop
