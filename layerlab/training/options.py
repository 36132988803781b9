"""Training options, MATLAB's ``trainingOptions``, with its defaults.

``training_options("sgdm")`` gives InitialLearnRate 0.01, Momentum 0.9,
L2Regularization 1e-4, MaxEpochs 30, MiniBatchSize 128, Shuffle "once",
Verbose True, VerboseFrequency 50, ValidationFrequency 50,
ValidationPatience Inf (newer MATLAB; early stopping off), GradientThreshold
Inf ("l2norm"), Plots "none". "adam" and "rmsprop" default to a
learning rate of 0.001, gradient decay 0.9, squared gradient decay 0.999
(adam) or 0.9 (rmsprop) and epsilon 1e-8.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from typing import Any

from ..errors import OptionError

__all__ = ["TrainingOptions", "training_options", "SOLVERS"]

SOLVERS = ("sgdm", "adam", "rmsprop")
_DEFAULT_LR = {"sgdm": 0.01, "adam": 0.001, "rmsprop": 0.001}
_DEFAULT_SQ_DECAY = {"adam": 0.999, "rmsprop": 0.9, "sgdm": 0.999}


@dataclasses.dataclass
class TrainingOptions:
    """All options; build it with :func:`training_options`, which checks
    names and values.

    Beyond the solver's own options:

    * ``gradient_threshold`` (inf: off) and ``gradient_threshold_method``
      "l2norm" (each learnable's gradient on its own), "global-l2norm" (all
      together) or "absolute-value" (element-wise); see
      :mod:`layerlab.training.clipping`.
    * ``validation_data=(X, Y)``, checked every ``validation_frequency``
      iterations (and at iterations 1 and last); ``validation_patience``
      validations without a new lowest loss stop training (inf: never).
      ``output_network``: "last-iteration" (MATLAB's behaviour) or
      "best-validation-loss".
    * ``plots="training-progress"``: a figure of loss and accuracy, saved to
      ``plots_path`` (default ``training_progress.png`` in
      ``checkpoint_path`` or the current folder), inline in Jupyter.
    * ``output_fn``: a function (or list) called with an
      :class:`~layerlab.training.callbacks.IterationInfo` at the start,
      after each iteration and at the end; returning True stops training.
      Reading the loss for it costs a host sync each iteration.
    * ``checkpoint_path``: a folder; ``checkpoint.safetensors`` is
      rewritten (atomically) at the end of every epoch, for
      ``train_network(..., resume_from=...)``.
    * ``progress``: the in-epoch progress line; "auto" shows it only when
      the verbose stream is a terminal.
    """

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
    check_layers: bool | None = None   # check_layer before training: None user layers, True all
    gradient_threshold: float = math.inf
    gradient_threshold_method: str = "l2norm"
    validation_data: Any = None
    validation_frequency: int = 50
    validation_patience: float = math.inf
    output_network: str = "last-iteration"
    plots: str = "none"
    plots_path: str | None = None
    output_fn: Any = None
    checkpoint_path: str | None = None
    progress: str = "auto"

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
    if opts.check_layers is not None and not isinstance(opts.check_layers, bool):
        raise OptionError(f"training option 'check_layers': expected None (check user-defined "
                          f"layers), True (all) or False (none), got {opts.check_layers!r}")
    _validate_extras(opts)


def _validate_extras(opts: TrainingOptions) -> None:
    """Gradient clipping, validation, plots, callbacks and checkpoints."""
    v = opts.gradient_threshold
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            and not math.isnan(v)):
        raise OptionError(f"training option 'gradient_threshold': expected a number > 0 "
                          f"(math.inf: no clipping), got {v!r}")
    _choice(opts, "gradient_threshold_method", ("l2norm", "global-l2norm", "absolute-value"))
    if opts.validation_data is not None:
        vd = opts.validation_data
        if not (isinstance(vd, (tuple, list)) and len(vd) == 2):
            raise OptionError("training option 'validation_data': expected a pair (X, Y), "
                              f"got {type(vd).__name__}")
    _number(opts, "validation_frequency", 1, integer=True)
    p = opts.validation_patience
    if not (isinstance(p, (int, float)) and not isinstance(p, bool) and p >= 1
            and (p == math.inf or float(p).is_integer())):
        raise OptionError(f"training option 'validation_patience': expected an integer >= 1 "
                          f"or math.inf, got {p!r}")
    _choice(opts, "output_network", ("last-iteration", "best-validation-loss"))
    if opts.output_network == "best-validation-loss" and opts.validation_data is None:
        raise OptionError("training option 'output_network': 'best-validation-loss' needs "
                          "validation_data")
    _choice(opts, "plots", ("none", "training-progress"))
    if opts.output_fn is not None:
        fns = opts.output_fn if isinstance(opts.output_fn, (list, tuple)) else [opts.output_fn]
        for f in fns:
            if not callable(f):
                raise OptionError(f"training option 'output_fn': expected a function "
                                  f"(or a list of functions), got {type(f).__name__}")
    for name in ("checkpoint_path", "plots_path"):
        v = getattr(opts, name)
        if v is not None and not isinstance(v, (str, os.PathLike)):
            raise OptionError(f"training option '{name}': expected a path, got {v!r}")
    if opts.progress not in ("auto", True, False):
        raise OptionError(f"training option 'progress': expected 'auto', True or False, "
                          f"got {opts.progress!r}")


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
