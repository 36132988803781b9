"""Weight initializers, by name or as objects.

``"glorot"`` (Xavier uniform, MATLAB's default since R2019a):
``U(-sqrt(6 / (fan_in + fan_out)), +sqrt(6 / (fan_in + fan_out)))``;
``"he"``: ``N(0, 2 / fan_in)``; ``"narrow-normal"``: ``N(0, 0.01^2)`` (MATLAB's
default before R2019a); ``Gaussian(std)``: ``N(0, std^2)``; ``"zeros"``,
``"ones"``; or any callable ``f(shape) -> array`` supplied by the user.

For a convolution with kernel ``kh x kw``, ``C`` input and ``F`` output
channels, ``fan_in = kh*kw*C`` and ``fan_out = kh*kw*F``; for a fully
connected layer they are the input and output sizes.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from ..errors import LayerError
from ..validation import check_number

__all__ = ["Gaussian", "initialize", "NAMES"]

NAMES = ("glorot", "he", "narrow-normal", "zeros", "ones")


class Gaussian:
    """``N(mean, std^2)`` initial values."""

    def __init__(self, std: float, mean: float = 0.0):
        self.std = float(check_number(std, "Gaussian initializer: std", 0, error=LayerError,
                                      expected="a finite number >= 0"))
        self.mean = float(check_number(mean, "Gaussian initializer: mean", error=LayerError))

    def __call__(self, shape):
        return torch.randn(shape) * self.std + self.mean

    def __repr__(self):
        return f"Gaussian(std={self.std}, mean={self.mean})"


def check_initializer(spec: Any, what: str) -> None:
    """Raise a clear error for an initializer that :func:`initialize` would
    not understand (called in constructors, before any size is known)."""
    if isinstance(spec, str):
        if spec not in NAMES:
            raise LayerError(f"{what}: unknown initializer {spec!r}; expected one of "
                             f"{', '.join(NAMES)}, a Gaussian(std) or a function of the shape")
    elif not callable(spec):
        raise LayerError(f"{what}: expected an initializer name or a callable, "
                         f"got {type(spec).__name__}")


def initialize(spec: str | Callable, shape: tuple[int, ...], fan_in: int, fan_out: int,
               what: str) -> torch.Tensor:
    """Initial values of ``shape`` for initializer ``spec``; ``what`` names
    the layer and parameter in errors."""
    check_initializer(spec, what)
    if spec == "glorot":
        bound = math.sqrt(6.0 / max(fan_in + fan_out, 1))
        return torch.empty(shape).uniform_(-bound, bound)
    if spec == "he":
        return torch.randn(shape) * math.sqrt(2.0 / max(fan_in, 1))
    if spec == "narrow-normal":
        return torch.randn(shape) * 0.01
    if spec == "zeros":
        return torch.zeros(shape)
    if spec == "ones":
        return torch.ones(shape)
    value = spec(tuple(shape))  # type: ignore[operator]
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if tuple(t.shape) != tuple(shape):
        raise LayerError(f"{what}: the initializer returned size {tuple(t.shape)}, "
                         f"expected {tuple(shape)}")
    return t.to(torch.float32)
