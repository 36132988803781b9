"""Small helpers shared by the built-in layers (argument checks and
per-channel broadcasting). Users may import them too."""

from __future__ import annotations

import numbers
from typing import Any

import torch

from ..errors import LayerError
from ..validation import check_number


def per_channel(p: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """View a per-channel parameter of shape ``(C,)`` (or ``(1,)``) so that it
    broadcasts against ``X`` of shape ``(N, C, *spatial)``."""
    return p.view(1, -1, *([1] * (X.dim() - 2)))


def sum_per_channel(G: torch.Tensor) -> torch.Tensor:
    """Sum ``G`` of shape ``(N, C, *spatial)`` over everything but the
    channels: the derivative of a per-channel parameter, ``(C,)``."""
    if G.dim() == 2:
        return G.sum(0)
    return G.sum(dim=[d for d in range(G.dim()) if d != 1])


def positive_int(value: Any, what: str) -> int:
    """An integer >= 1 (Python or NumPy; not a float, not a bool)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise LayerError(f"{what}: expected a positive integer, got {value!r}")
    return check_number(value, what, lo=1, integer=True, error=LayerError,
                        expected="a positive integer")


def int_pair(value: Any, what: str, minimum: int = 1) -> tuple[int, int]:
    """Accept ``k`` or ``(kh, kw)``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum
                       for v in value)):
        raise LayerError(f"{what}: expected an integer >= {minimum} or a pair of them, "
                         f"got {value!r}")
    return int(value[0]), int(value[1])


def size_tuple(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        t = tuple(int(v) for v in value)
        ok = all(v >= 1 for v in t) and all(float(v) == int(v) for v in value) and len(t) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise LayerError(f"{what}: expected a size such as (1, 28, 28), got {value!r}")
    return t


def may_work_in_place(*tensors: torch.Tensor) -> bool:
    """Whether a layer may write into new tensors in place or with ``out=``
    (fast on CPU: each new large tensor costs about a pass itself).

    Not when autograd records the computation (an in-place op may overwrite
    what a derivative needs, and ``out=`` is not differentiable), nor under a
    ``torch.func`` transform (``vmap`` cannot batch ``out=``, nor write a
    batched result into an unbatched tensor), nor in ``torch.compile``
    (which fuses the out-of-place form anyway).

    Examples::

        if may_work_in_place(X):
            return X.clamp(max=0).exp_().sub_(1)
        return X.clamp(max=0).exp() - 1
    """
    if torch.compiler.is_compiling():
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return not any(torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)
