"""Learning-rate schedules, modelled on MATLAB R2024a's
(``trainingOptions(LearnRateSchedule=...)``: "none", "piecewise",
"warmup", "polynomial", "exponential", "cosine", an array of schedule
objects, or a function handle).

A schedule gives a *factor*; the learning rate is
``initial_learn_rate * factor`` (and each learnable's learn-rate factor on
top). Each schedule counts its own steps ``s = 0, 1, 2, ...`` in its
``frequency_unit``, "epoch" or "iteration": step 0 is the first epoch (or
iteration) it is in force. The definitions below are exact: they are what
the code computes and what the tests check.

* :class:`PiecewiseSchedule`: :math:`f(s) = d^{\\lfloor s / P \\rfloor}`
  (drop factor ``d``, period ``P``): 1 for the first ``P`` epochs, ``d``
  for the next ``P``, ...
* :class:`WarmupSchedule`: :math:`f(s) = f_0 + (f_1 - f_0)\\, s / S` for
  :math:`s < S` (``S = num_steps``), lasting ``S`` steps; alone, it is
  followed by the constant :math:`f_1`.
* :class:`PolynomialSchedule`: :math:`f(s) = f_1 + (f_0 - f_1)(1 - s/S)^p`
  for :math:`s < S`, then :math:`f_1`; ``S`` defaults to the rest of the
  training.
* :class:`ExponentialSchedule`: :math:`f(s) = f_0\\, e^{-\\lambda s / P}`
  (``decay`` :math:`\\lambda`, period ``P``).
* :class:`CosineSchedule`: :math:`f(s) = f_1 + \\tfrac12 (f_0 - f_1)
  (1 + \\cos(\\pi\\, t / T))`, with warm restarts: the first cycle has
  ``T = period`` steps (default the rest of the training), each next cycle
  ``period_multiplier`` times as many, and ``t`` counts the steps since the
  cycle began.

A list of schedules runs them one after another, as MATLAB does with an
array of schedule objects: a schedule with a finite ``num_steps`` (warmup,
or any with ``num_steps=`` given) hands over to the next when its steps are
done, e.g. ``["warmup", "cosine"]`` warms up for 5 epochs and then follows
a cosine over the remaining epochs. A callable ``fn(epoch, iteration) ->
factor`` (both 1-based, iteration counted over the whole training) is
called every iteration.

Examples:
    >>> s = bind_schedule("piecewise", max_epochs=30, per_epoch=10, drop_factor=0.5,
    ...                   drop_period=10)
    >>> [s.factor(epoch, (epoch - 1) * 10 + 1) for epoch in (1, 10, 11, 21)]
    [1.0, 1.0, 0.5, 0.25]
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable

from ..errors import OptionError
from ..validation import check_number

__all__ = ["Schedule", "PiecewiseSchedule", "WarmupSchedule", "PolynomialSchedule",
           "ExponentialSchedule", "CosineSchedule", "LearnRateSchedule", "bind_schedule",
           "SCHEDULE_NAMES"]

_UNITS = ("epoch", "iteration")


class Schedule:
    """A schedule's factor at its own step ``s``; ``num_steps`` (None: no
    end) says how long it lasts in a list."""

    name = "schedule"

    def __init__(self, frequency_unit: str = "epoch", num_steps: int | None = None):
        if frequency_unit not in _UNITS:
            raise OptionError(f"{type(self).__name__}: frequency_unit must be 'epoch' or "
                              f"'iteration', got {frequency_unit!r}")
        self.frequency_unit = frequency_unit
        self.num_steps = None if num_steps is None else check_number(
            num_steps, f"{type(self).__name__} num_steps", lo=1, integer=True)

    def factor(self, s: int, remaining: int) -> float:
        """The factor at step ``s``; ``remaining`` is how many steps the
        training has left from this schedule's start (for defaults)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class ConstantSchedule(Schedule):
    name = "none"

    def factor(self, s, remaining):
        return 1.0


class PiecewiseSchedule(Schedule):
    """Multiply by ``drop_factor`` every ``period`` steps (MATLAB's
    ``piecewiseLearnRate``; ``LearnRateDropFactor``/``LearnRateDropPeriod``)."""

    name = "piecewise"

    def __init__(self, drop_factor: float = 0.1, period: int = 10, frequency_unit: str = "epoch",
                 num_steps: int | None = None):
        super().__init__(frequency_unit, num_steps)
        self.drop_factor = check_number(drop_factor, "PiecewiseSchedule drop_factor", 0, 1)
        self.period = check_number(period, "PiecewiseSchedule period", 1, integer=True)

    def factor(self, s, remaining):
        return float(self.drop_factor) ** (s // self.period)


class WarmupSchedule(Schedule):
    """Linear from ``initial_factor`` to ``final_factor`` over ``num_steps``
    steps (MATLAB's ``warmupLearnRate``)."""

    name = "warmup"

    def __init__(self, initial_factor: float = 0.0, final_factor: float = 1.0,
                 num_steps: int = 5, frequency_unit: str = "epoch"):
        super().__init__(frequency_unit, num_steps)
        self.initial_factor = check_number(initial_factor, "WarmupSchedule initial_factor", 0)
        self.final_factor = check_number(final_factor, "WarmupSchedule final_factor", 0)

    def factor(self, s, remaining):
        if s >= self.num_steps:
            return float(self.final_factor)
        return self.initial_factor + (self.final_factor - self.initial_factor) * s / self.num_steps


class PolynomialSchedule(Schedule):
    """From ``initial_factor`` to ``final_factor`` along ``(1 - s/S)^power``
    (MATLAB's ``polynomialLearnRate``)."""

    name = "polynomial"

    def __init__(self, initial_factor: float = 1.0, final_factor: float = 0.0, power: float = 1.0,
                 num_steps: int | None = None, frequency_unit: str = "epoch"):
        super().__init__(frequency_unit, num_steps)
        self.initial_factor = check_number(initial_factor, "PolynomialSchedule initial_factor", 0)
        self.final_factor = check_number(final_factor, "PolynomialSchedule final_factor", 0)
        self.power = check_number(power, "PolynomialSchedule power", 0, lo_open=True)

    def factor(self, s, remaining):
        S = self.num_steps or remaining
        if s >= S:
            return float(self.final_factor)
        return self.final_factor + (self.initial_factor - self.final_factor) * \
            (1 - s / S) ** self.power


class ExponentialSchedule(Schedule):
    """``initial_factor * exp(-decay * s / period)`` (MATLAB's
    ``exponentialLearnRate``)."""

    name = "exponential"

    def __init__(self, initial_factor: float = 1.0, decay: float = 0.1, period: float = 1,
                 frequency_unit: str = "epoch", num_steps: int | None = None):
        super().__init__(frequency_unit, num_steps)
        self.initial_factor = check_number(initial_factor, "ExponentialSchedule initial_factor", 0)
        self.decay = check_number(decay, "ExponentialSchedule decay", 0)
        self.period = check_number(period, "ExponentialSchedule period", 0, lo_open=True)

    def factor(self, s, remaining):
        return self.initial_factor * math.exp(-self.decay * s / self.period)


class CosineSchedule(Schedule):
    """Cosine from ``initial_factor`` to ``final_factor`` with warm
    restarts (MATLAB's ``cosineLearnRate``; SGDR)."""

    name = "cosine"

    def __init__(self, initial_factor: float = 1.0, final_factor: float = 0.0,
                 period: int | None = None, period_multiplier: float = 1,
                 frequency_unit: str = "epoch", num_steps: int | None = None):
        super().__init__(frequency_unit, num_steps)
        self.initial_factor = check_number(initial_factor, "CosineSchedule initial_factor", 0)
        self.final_factor = check_number(final_factor, "CosineSchedule final_factor", 0)
        self.period = None if period is None else check_number(
            period, "CosineSchedule period", 1, integer=True)
        self.period_multiplier = check_number(period_multiplier,
                                              "CosineSchedule period_multiplier", 1)

    def factor(self, s, remaining):
        T = float(self.period or max(remaining, 1))
        t = float(s)
        while t >= T:          # the cycle that step s falls in
            t -= T
            T *= self.period_multiplier
        return self.final_factor + 0.5 * (self.initial_factor - self.final_factor) * \
            (1 + math.cos(math.pi * t / T))


_BY_NAME: dict[str, type[Schedule]] = {
    "none": ConstantSchedule, "piecewise": PiecewiseSchedule, "warmup": WarmupSchedule,
    "polynomial": PolynomialSchedule, "exponential": ExponentialSchedule,
    "cosine": CosineSchedule,
}
SCHEDULE_NAMES = tuple(_BY_NAME)


class LearnRateSchedule:
    """The training's schedule, bound to its length: :meth:`factor` at a
    (1-based) epoch and iteration."""

    def __init__(self, parts: list[Schedule] | Callable, max_epochs: int, per_epoch: int):
        self.parts, self.max_epochs, self.per_epoch = parts, max_epochs, per_epoch
        # the constant after a lone warm-up, as MATLAB's "warmup"
        if isinstance(parts, list) and parts[-1].num_steps is not None:
            self.parts = parts + [ConstantSchedule()]
            last = parts[-1]
            if isinstance(last, (WarmupSchedule, PolynomialSchedule)):
                self.parts[-1] = _Hold(last.final_factor)

    @property
    def per_iteration(self) -> bool:
        """Whether the factor can change within an epoch (set every iteration)."""
        return callable(self.parts) or any(p.frequency_unit == "iteration" for p in self.parts)

    def factor(self, epoch: int, iteration: int) -> float:
        if callable(self.parts):
            return _checked_factor(self.parts(epoch, iteration), epoch, iteration)
        total = self.max_epochs * self.per_epoch
        done = iteration - 1                          # iterations before this one
        start = 0
        for part in self.parts:
            length = None if part.num_steps is None else part.num_steps * (
                self.per_epoch if part.frequency_unit == "epoch" else 1)
            if length is None or done < start + length:
                if part.frequency_unit == "epoch":
                    s = (done - start) // self.per_epoch
                    remaining = max(math.ceil((total - start) / self.per_epoch), 1)
                else:
                    s, remaining = done - start, max(total - start, 1)
                return float(part.factor(s, remaining))
            start += length
        raise AssertionError("unreachable: the last part has no end")  # pragma: no cover


class _Hold(ConstantSchedule):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def factor(self, s, remaining):
        return float(self.value)


def _checked_factor(value: Any, epoch: int, iteration: int) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = math.nan
    if not (math.isfinite(f) and f >= 0):
        raise OptionError(f"training option 'learn_rate_schedule': the function returned "
                          f"{value!r} at epoch {epoch}, iteration {iteration}; expected a "
                          f"finite factor >= 0")
    return f


def _part(spec: Any, drop_factor: float, drop_period: int) -> Schedule:
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        if spec == "piecewise":
            return PiecewiseSchedule(drop_factor, drop_period)
        if spec in _BY_NAME:
            return _BY_NAME[spec]()
        close = difflib.get_close_matches(spec, SCHEDULE_NAMES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise OptionError(f"training option 'learn_rate_schedule': unknown schedule "
                          f"{spec!r}{hint} (expected one of {', '.join(SCHEDULE_NAMES)}, a "
                          f"schedule object, a list of them, or a function "
                          f"(epoch, iteration) -> factor)")
    raise OptionError(f"training option 'learn_rate_schedule': expected a name, a schedule "
                      f"object or a function, got {type(spec).__name__}")


def check_schedule_spec(spec: Any) -> None:
    """Raise :class:`OptionError` for a spec :func:`bind_schedule` would refuse."""
    if callable(spec) and not isinstance(spec, Schedule):
        return
    for s in (spec if isinstance(spec, (list, tuple)) else [spec]):
        _part(s, 0.1, 10)
    if isinstance(spec, (list, tuple)) and not spec:
        raise OptionError("training option 'learn_rate_schedule': the list is empty")


def bind_schedule(spec: Any, max_epochs: int, per_epoch: int, drop_factor: float = 0.1,
                  drop_period: int = 10) -> LearnRateSchedule:
    """The option's value (name, schedule, list or callable) bound to the
    training's length; "piecewise" by name takes the drop factor and period
    options."""
    if callable(spec) and not isinstance(spec, Schedule):
        return LearnRateSchedule(spec, max_epochs, per_epoch)
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    check_schedule_spec(specs)
    return LearnRateSchedule([_part(s, drop_factor, drop_period) for s in specs],
                             max_epochs, per_epoch)
