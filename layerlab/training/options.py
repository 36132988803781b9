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
import tempfile
from typing import Any

from ..errors import OptionError
from ..validation import check_number
from .schedules import check_schedule_spec

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
    * ``validation_data=(X, Y)`` (or any data source: a Dataset,
      DataLoader or datastore), checked every ``validation_frequency``
      iterations (and at iterations 1 and last); ``validation_patience``
      validations without a new lowest loss stop training (inf: never).
      ``output_network``: "last-iteration" (MATLAB's behaviour) or
      "best-validation-loss".
    * ``plots="training-progress"``: a figure of loss and accuracy, saved to
      ``plots_path`` (default ``training_progress.png`` in
      ``checkpoint_path``, else a fresh file in the temporary folder, never
      the current folder; the path is printed), inline in Jupyter.
    * ``output_fn``: a function (or list) called with an
      :class:`~layerlab.training.callbacks.IterationInfo` at the start,
      after each iteration and at the end; returning True stops training.
      Reading the loss for it costs a host sync each iteration.
    * ``checkpoint_path``: a folder; ``checkpoint.safetensors`` is
      rewritten (atomically) at the end of every epoch, for
      ``train_network(..., resume_from=...)``.
    * ``progress``: the in-epoch progress line; "auto" shows it only when
      the verbose stream is a terminal.
    * ``learn_rate_schedule``: "none", "piecewise" (with
      ``learn_rate_drop_factor`` and ``learn_rate_drop_period``), "warmup",
      "polynomial", "exponential", "cosine", a schedule object, a list of
      them (run one after another) or a function ``(epoch, iteration) ->
      factor``; defined in :mod:`layerlab.training.schedules`.
    * ``metrics``: names ("accuracy", "fscore", "precision", "recall",
      "auc", "rmse", "mae"), functions ``metric(Y, T)`` or update-compute
      objects (:mod:`layerlab.training.metrics`), shown in the table and the
      plot and recorded per iteration; ``objective_metric_name`` ("loss" or
      one of the metrics' names) is what ``validation_patience`` and
      ``output_network="best-validation-..."`` watch.
    * ``log_dir``: a folder for TensorBoard event files and ``history.csv``.
    * ``precision``: "32" (default), "bf16-mixed" (autocast to bfloat16,
      CPU or GPU) or "16-mixed" (float16 with a gradient scaler, GPU only).
    * ``monitor``: per-layer statistics to record during training,
      ``("activations", "gradients")`` or single names (see
      :mod:`layerlab.monitoring`), at iteration 1 and every
      ``monitor_frequency`` iterations (default 50); kept in
      ``info.layer_statistics``, written to ``log_dir`` when set.
    * ``cuda_graphs`` (default True): on a GPU, record the training step
      (forward, loss, backward, update, metric) once as a CUDA graph and
      replay it each iteration, when every layer declares ``capturable``
      and nothing acts inside the step (hooks, the monitor, mixed
      precision, DDP; solver "sgdm"); see :mod:`layerlab.training.cuda_graph`.
      The same arithmetic as the eager step; False always runs eagerly.
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
    # trainnet, metrics and logs (see layerlab/training/trainnet.py)
    metrics: Any = None
    objective_metric_name: str = "loss"
    log_dir: str | None = None
    precision: str = "32"
    # seeing inside training (see layerlab/monitoring)
    monitor: Any = None
    monitor_frequency: int = 50
    # a GPU's step as a CUDA graph (see layerlab/training/cuda_graph.py)
    cuda_graphs: bool = True

    def __post_init__(self) -> None:
        if self.initial_learn_rate is None:
            self.initial_learn_rate = _DEFAULT_LR.get(self.solver, 0.01)
        if self.squared_gradient_decay_factor is None:
            self.squared_gradient_decay_factor = _DEFAULT_SQ_DECAY.get(self.solver, 0.999)
        validate(self)


def _number(opts, name, lo=None, hi=None, lo_open=False, hi_open=False, integer=False):
    """Check a numeric option (NumPy scalars accepted) and store it as a
    Python int or float."""
    setattr(opts, name, check_number(getattr(opts, name), f"training option '{name}'", lo, hi,
                                     lo_open, hi_open, integer))


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
    check_schedule_spec(opts.learn_rate_schedule)
    _number(opts, "learn_rate_drop_factor", 0, 1)
    _number(opts, "learn_rate_drop_period", 1, integer=True)
    for name in ("verbose", "cuda_graphs"):
        if not isinstance(getattr(opts, name), bool):
            raise OptionError(f"training option '{name}': expected True or False, "
                              f"got {getattr(opts, name)!r}")
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
    opts.gradient_threshold = check_number(
        opts.gradient_threshold, "training option 'gradient_threshold' (math.inf: no clipping)",
        0, lo_open=True, allow_inf=True)
    _choice(opts, "gradient_threshold_method", ("l2norm", "global-l2norm", "absolute-value"))
    if opts.validation_data is not None:
        from ..datastores.sources import is_data_source
        vd = opts.validation_data
        if not (isinstance(vd, (tuple, list)) and len(vd) == 2) and not is_data_source(vd):
            raise OptionError("training option 'validation_data': expected a pair (X, Y), a "
                              "torch Dataset or DataLoader or a layerlab datastore, "
                              f"got {type(vd).__name__}")
    _number(opts, "validation_frequency", 1, integer=True)
    opts.validation_patience = check_number(
        opts.validation_patience, "training option 'validation_patience' (math.inf: never)",
        1, integer=True, allow_inf=True)
    if opts.output_network == "best-validation":   # MATLAB R2024a's name: by the objective
        opts.output_network = "best-validation-loss"
    _choice(opts, "output_network", ("last-iteration", "best-validation-loss",
                                     "best-validation"))
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
    for name in ("checkpoint_path", "plots_path", "log_dir"):
        v = getattr(opts, name)
        if v is not None and not isinstance(v, (str, os.PathLike)):
            raise OptionError(f"training option '{name}': expected a path, got {v!r}")
        if v is not None:
            check_writable(v, f"training option '{name}'", folder=name != "plots_path")
    _choice(opts, "precision", ("32", "bf16-mixed", "16-mixed"))
    if opts.monitor is not None:
        from ..monitoring.statistics import check_frequency, resolve_statistics
        opts.monitor = resolve_statistics(opts.monitor)
        opts.monitor_frequency = check_frequency(opts.monitor_frequency)
    if not isinstance(opts.objective_metric_name, str):
        raise OptionError(f"training option 'objective_metric_name': expected 'loss' or a "
                          f"metric's name, got {opts.objective_metric_name!r}")
    if opts.progress not in ("auto", True, False):
        raise OptionError(f"training option 'progress': expected 'auto', True or False, "
                          f"got {opts.progress!r}")


def check_writable(path: str | os.PathLike, what: str, folder: bool) -> None:
    """Before training: ``path`` (a folder when ``folder``, else a file) can
    be written: it is not a file where a folder is wanted (or a folder
    where a file is), and the nearest existing folder above it is writable.
    Nothing is created."""
    p = os.path.abspath(os.fspath(path))
    if folder and os.path.isfile(p):
        raise OptionError(f"{what}: {os.fspath(path)!r} is a file; expected a folder")
    if not folder and os.path.isdir(p):
        raise OptionError(f"{what}: {os.fspath(path)!r} is a folder; expected a file name "
                          f"such as {os.path.join(os.fspath(path), 'training_progress.png')!r}")
    probe = p if folder else os.path.dirname(p)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise OptionError(f"{what}: cannot create {os.fspath(path)!r}: {probe!r} is a file")
    try:  # os.access says yes to root everywhere (even in /proc): try it
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise OptionError(f"{what}: cannot write to {os.fspath(path)!r}: the folder {probe!r} "
                          f"is not writable ({exc.strerror}); choose another place") from None


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
