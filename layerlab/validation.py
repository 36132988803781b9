"""Checking numbers given by users: one helper for options, layer
arguments and schedules, so every message reads alike and NumPy scalars
(``np.float32(0.1)``, ``np.int64(2)``) are accepted everywhere.

Examples:
    >>> check_number(np.int64(3), "training option 'max_epochs'", lo=1, integer=True)
    3
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .errors import OptionError

__all__ = ["check_number", "is_real"]


def is_real(value: Any) -> bool:
    """A real number (Python or NumPy, not bool, not a 0-d array)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_number(value: Any, what: str, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False, integer: bool = False,
                 allow_inf: bool = False, error: type[Exception] = OptionError,
                 expected: str | None = None):
    """``value`` as a Python ``int`` (``integer``) or ``float``, checked to
    lie in ``[lo, hi]`` (open ends with ``lo_open``/``hi_open``; NaN never,
    infinity only with ``allow_inf``); otherwise ``error`` naming ``what``,
    the range and the value given (``expected`` words the expectation
    instead, e.g. "a probability in [0, 1)")."""
    ok = is_real(value) and not math.isnan(value) and (allow_inf or math.isfinite(value))
    if ok and integer:
        ok = math.isinf(value) or float(value).is_integer()
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        rng = ""
        if lo is not None or hi is not None:
            rng = (f" in {'(' if lo_open else '['}{lo if lo is not None else '-inf'}, "
                   f"{hi if hi is not None else 'inf'}{')' if hi_open else ']'}")
        kind = "an integer" if integer else ("a number" if allow_inf else "a finite number")
        shown = value.item() if isinstance(value, np.generic) else value
        raise error(f"{what}: expected {expected or kind + rng}, got {shown!r}")
    if integer and math.isfinite(value):
        return int(value)
    return value if isinstance(value, int) else float(value)
