"""Sweeps: a study's configurations as a grid, or a random sample, over named
options, the way Experiment Manager's hyperparameter tables declare them.

The options are the keyword arguments of the study's run function: training
options (learning rate, mini-batch size), layer arguments (an activation's
parameter), switches (with or without batch normalization). The result is an
ordinary ``{name: params}`` dictionary for :class:`~layerlab.experiments.Study`,
so a sweep gets the same repeats with shared seeds, paired tests, CSV and
report as any study::

    configurations = grid(learn_rate=[0.01, 0.1], batch_norm=[False, True])
    # {"learn_rate=0.01, batch_norm=False": {"learn_rate": 0.01, "batch_norm": False}, ...}
    study = Study("lr-bn", run, configurations, ["accuracy"], comparisons="best")

``random_sample`` draws ``n`` configurations, each option from a list
(uniformly) or from :class:`Uniform`, :class:`LogUniform` or
:class:`IntUniform`, with its own seed (the sample is part of the study: the
same seed gives the same configurations).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import OptionError

__all__ = ["grid", "random_sample", "Uniform", "LogUniform", "IntUniform"]


class Uniform:
    """``U[low, high)``.

    Examples:
        >>> 0.8 <= Uniform(0.8, 0.99).draw(np.random.default_rng(0)) < 0.99
        True
    """

    def __init__(self, low: float, high: float):
        _check_range(type(self).__name__, low, high)
        self.low, self.high = float(low), float(high)

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.low:g}, {self.high:g})"


class LogUniform(Uniform):
    """``exp(U[log low, log high))``: for learning rates and other scales
    (as many draws between 0.001 and 0.01 as between 0.01 and 0.1)."""

    def __init__(self, low: float, high: float):
        super().__init__(low, high)
        if self.low <= 0:
            raise OptionError(f"LogUniform: low must be > 0, got {low!r}")

    def draw(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


class IntUniform(Uniform):
    """An integer uniform in ``[low, high]`` (both included)."""

    def draw(self, rng: np.random.Generator) -> int:
        return int(rng.integers(int(self.low), int(self.high) + 1))


def _check_range(kind: str, low, high) -> None:
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise OptionError(f"{kind}: expected finite numbers, got {low!r}, {high!r}")
    if not low < high:
        raise OptionError(f"{kind}: expected low < high, got {low!r}, {high!r}")


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (bool, int, str)) or value is None:
        return str(value)
    return getattr(value, "__name__", None) or repr(value)


def _name(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_label(v)}" for k, v in params.items())


def _check_options(what: str, options: Mapping[str, Any]) -> None:
    if not options:
        raise OptionError(f"{what}: name at least one option, e.g. {what}(learn_rate=[0.01, 0.1])")


def grid(**options: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Every combination of the options' values (the first option varies
    slowest), named ``"option=value, ..."``.

    Examples:
        >>> list(grid(lr=[0.01, 0.1], bn=[False, True]))
        ['lr=0.01, bn=False', 'lr=0.01, bn=True', 'lr=0.1, bn=False', 'lr=0.1, bn=True']
    """
    _check_options("grid", options)
    for k, values in options.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise OptionError(f"grid option {k!r}: expected a non-empty list of values, "
                              f"got {values!r}")
    keys = list(options)
    out: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*(options[k] for k in keys)):
        params = dict(zip(keys, combo))
        out[_name(params)] = params
    return out


def random_sample(n: int, seed: int = 0, **options: Any) -> dict[str, dict[str, Any]]:
    """``n`` configurations, each option drawn independently: from a list
    (uniformly), a :class:`Uniform`, :class:`LogUniform` or
    :class:`IntUniform`; any other value is fixed. Repeated draws are
    dropped (the result may then have fewer than ``n``).

    Examples:
        >>> s = random_sample(3, seed=1, lr=LogUniform(1e-3, 1e-1), bn=[False, True])
        >>> len(s), sorted(next(iter(s.values())))
        (3, ['bn', 'lr'])
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise OptionError(f"random_sample n: expected an integer >= 1, got {n!r}")
    _check_options("random_sample", options)
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, Any]] = {}
    for _ in range(int(n)):
        params = {}
        for k, spec in options.items():
            if isinstance(spec, Uniform):
                params[k] = spec.draw(rng)
            elif isinstance(spec, (list, tuple)):
                if not spec:
                    raise OptionError(f"random_sample option {k!r}: the list of values is empty")
                params[k] = spec[int(rng.integers(len(spec)))]
            else:
                params[k] = spec
        out.setdefault(_name(params), params)
    return out
