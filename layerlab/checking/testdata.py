"""Test data for the checks: deterministic, low-discrepancy, away from kinks.

As MATLAB's ``checkLayer``, the inputs come from a Halton sequence (here
its one-dimensional form, the van der Corput sequence in a prime base),
so the values are spread evenly and are all distinct (no ties for a max).
The values are put in a fixed pseudo-random order so that neighbouring
elements are not correlated (consecutive van der Corput points alternate
regularly, which could make sums cancel).

Inputs lie in ``[-2, -0.1] U [0.1, 2]``: at least 0.1 from 0, where ReLU,
ELU, leaky ReLU and CReLU have their kink, far more than the finite
difference steps (about 1e-5). Output derivatives ``dLdZ`` lie in
``(-1, 1)``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["van_der_corput", "halton_values", "input_values", "output_gradient_values",
           "direction_values", "KINK_MARGIN", "INPUT_RANGE"]

#: inputs are at least this far from 0 ...
KINK_MARGIN = 0.1
#: ... and at most this far
INPUT_RANGE = 2.0

# the base of each kind of data: distinct primes, as the dimensions of a
# Halton sequence
_INPUT_BASE, _DLDZ_BASE, _DIRECTION_BASE = 2, 3, 5


def van_der_corput(n: int, base: int, start: int = 1) -> np.ndarray:
    """Points ``start, ..., start + n - 1`` of the van der Corput sequence in
    ``base`` (the radical inverse of the index), in (0, 1)."""
    i = np.arange(start, start + n, dtype=np.int64)
    out = np.zeros(n, dtype=np.float64)
    scale = 1.0 / base
    while i.any():
        out += scale * (i % base)
        i //= base
        scale /= base
    return out


@functools.lru_cache(maxsize=32)
def _halton_cached(n: int, base: int, offset: int, seed: int) -> np.ndarray:
    u = van_der_corput(n, base, start=offset + 1)
    u = u[np.random.default_rng(seed + 7919 * base + offset).permutation(n)]
    u.setflags(write=False)
    return u


def halton_values(n: int, base: int, offset: int, seed: int) -> np.ndarray:
    """``n`` distinct van der Corput points in (0, 1), starting at index
    ``offset + 1``, in an order fixed by ``seed`` (cached: the checks ask
    for the same data many times)."""
    return _halton_cached(int(n), int(base), int(offset), int(seed)).copy()


def _tensor(values: np.ndarray, shape, dtype, device) -> torch.Tensor:
    return torch.from_numpy(values.reshape(shape)).to(dtype=dtype, device=device)


def input_values(shape, *, offset: int = 0, seed: int = 0, dtype=torch.float64,
                 device="cpu") -> torch.Tensor:
    """Inputs of ``shape`` in ``[-2, -0.1] U [0.1, 2]`` (see module doc)."""
    n = int(np.prod(shape))
    v = 2.0 * halton_values(n, _INPUT_BASE, offset, seed) - 1.0        # (-1, 1)
    x = np.where(v >= 0, 1.0, -1.0) * (KINK_MARGIN + (INPUT_RANGE - KINK_MARGIN) * np.abs(v))
    return _tensor(x, shape, dtype, device)


def output_gradient_values(shape, *, offset: int = 0, seed: int = 0, dtype=torch.float64,
                           device="cpu") -> torch.Tensor:
    """``dLdZ`` of ``shape`` in (-1, 1)."""
    n = int(np.prod(shape))
    return _tensor(2.0 * halton_values(n, _DLDZ_BASE, offset, seed) - 1.0, shape, dtype, device)


def direction_values(shape, *, offset: int = 0, seed: int = 0, dtype=torch.float64,
                     device="cpu") -> torch.Tensor:
    """A dense direction of ``shape`` with entries in (-1, 1), for
    directional derivatives."""
    n = int(np.prod(shape))
    return _tensor(2.0 * halton_values(n, _DIRECTION_BASE, offset, seed) - 1.0, shape,
                   dtype, device)
