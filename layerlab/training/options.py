"""Training options, MATLAB's ``trainingOptions``, with its defaults.

``training_options("sgdm")`` gives InitialLearnRate 0.01, Momentum 0.9,
L2Regularization 1e-4, MaxEpochs 30, MiniBatchSize 128, Shuffle "once",
Verbose True, VerboseFrequency 50. "adam" and "rmsprop" default to a
learning rate of 0.001, gradient decay 0.9, squared gradient decay 0.999
(adam) or 0.9 (rmsprop) and epsilon 1e-8.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

from ..errors import OptionError

__all__ = ["TrainingOptions", "training_options", "SOLVERS"]

SOLVERS = ("sgdm", "adam", "rmsprop")
_DEFAULT_LR = {"sgdm": 0.01, "adam": 0.001, "rmsprop": 0.001}
_DEFAULT_SQ_DECAY = {"adam": 0.999, "rmsprop": 0.9, "sgdm": 0.999}


@dataclasses.dataclass
class TrainingOptions:
    """All options; build it with :func:`training_options`, which checks
    names and values."""

    solver: str = "sgdm"
    initial_learn_rate: float | None = None
    momentum: float = 0.9
    gradient_decay_factor: float = 0.9
    squared_gradient_decay_factor: float | None = None
    epsilon: float = 1e-8
    l2_regularization: float = 1e-4
    max_epochs: int = 30
    mini_batch_size: int = 128
    shuffle: str = "once"
    learn_rate_schedule: str = "none"
    learn_rate_drop_factor: float = 0.1
    learn_rate_drop_period: int = 10
    verbose: bool = True
    verbose_frequency: int = 50
    execution_environment: str = "auto"
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.initial_learn_rate is None:
            self.initial_learn_rate = _DEFAULT_LR.get(self.solver, 0.01)
        if self.squared_gradient_decay_factor is None:
            self.squared_gradient_decay_factor = _DEFAULT_SQ_DECAY.get(self.solver, 0.999)
        validate(self)


def _number(opts, name, lo=None, hi=None, lo_open=False, hi_open=False, integer=False):
    v = getattr(opts, name)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok and integer:
        ok = float(v).is_integer()
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        rng = ""
        if lo is not None or hi is not None:
            rng = (f" in {'(' if lo_open else '['}{lo if lo is not None else '-inf'}, "
                   f"{hi if hi is not None else 'inf'}{')' if hi_open else ']'}")
        kind = "an integer" if integer else "a finite number"
        raise OptionError(f"training option '{name}': expected {kind}{rng}, got {v!r}")
    if integer:
        setattr(opts, name, int(v))


def _choice(opts, name, choices):
    v = getattr(opts, name)
    if v not in choices:
        raise OptionError(f"training option '{name}': expected one of "
                          f"{', '.join(repr(c) for c in choices)}, got {v!r}")


def validate(opts: TrainingOptions) -> None:
    """Check every option's value; raise :class:`OptionError` naming it."""
    _choice(opts, "solver", SOLVERS)
    _number(opts, "initial_learn_rate", 0, lo_open=True)
    _number(opts, "momentum", 0, 1)
    _number(opts, "gradient_decay_factor", 0, 1, hi_open=True)
    _number(opts, "squared_gradient_decay_factor", 0, 1, hi_open=True)
    _number(opts, "epsilon", 0, lo_open=True)
    _number(opts, "l2_regularization", 0)
    _number(opts, "max_epochs", 1, integer=True)
    _number(opts, "mini_batch_size", 1, integer=True)
    _choice(opts, "shuffle", ("once", "never", "every-epoch"))
    _choice(opts, "learn_rate_schedule", ("none", "piecewise"))
    _number(opts, "learn_rate_drop_factor", 0, 1)
    _number(opts, "learn_rate_drop_period", 1, integer=True)
    if not isinstance(opts.verbose, bool):
        raise OptionError(f"training option 'verbose': expected True or False, "
                          f"got {opts.verbose!r}")
    _number(opts, "verbose_frequency", 1, integer=True)
    _choice(opts, "execution_environment", ("auto", "cpu", "gpu", "parallel", "multi-gpu"))
    if opts.seed is not None:
        _number(opts, "seed", 0, integer=True)


def training_options(solver: str = "sgdm", **options: Any) -> TrainingOptions:
    """Options for :func:`layerlab.train_network`, with MATLAB's defaults.

    Example: ``training_options("sgdm", max_epochs=10, initial_learn_rate=0.05)``.
    An unknown option name or a bad value raises :class:`OptionError`.
    """
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise OptionError(f"training_options: solver must be one of {', '.join(SOLVERS)}, "
                          f"got {solver!r}")
    known = {f.name for f in dataclasses.fields(TrainingOptions)} - {"solver"}
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise OptionError(f"training_options: unknown option '{name}'{hint}")
    return TrainingOptions(solver=solver, **options)
