"""Loss functions for :func:`layerlab.trainnet`, by name or as a callable
(MATLAB's ``trainnet(data, net, lossFcn, options)``).

Each loss takes the network's output ``Y`` (e.g. softmax scores ``(N, K)``,
responses ``(N, R)``) and the prepared targets ``T`` and returns a scalar.
``N`` is the number of observations in the mini-batch; the sums run over
everything but the observation dimension. The losses are computed in
float32 (or float64 for a float64 network) even under mixed precision.

============================  =====================================================  ==========
name                          definition                                             targets
============================  =====================================================  ==========
``"crossentropy"``            :math:`-\\frac1N \\sum_n \\sum_k T_{nk} \\log Y_{nk}`      labels
``"binary-crossentropy"``     :math:`-\\frac1{NK} \\sum_{n,k} T \\log Y + (1-T)\\log(1-Y)` 0/1 array
``"mse"``, ``"mean-squared-error"``  :math:`\\frac1{NR} \\sum_{n,i} (Y_{ni}-T_{ni})^2`      numbers
``"l2loss"``                  :math:`\\frac1N \\sum_{n,i} (Y_{ni}-T_{ni})^2`              numbers
``"l1loss"``                  :math:`\\frac1N \\sum_{n,i} |Y_{ni}-T_{ni}|`                numbers
``"huber"``                   :math:`\\frac1N \\sum_{n,i} h(Y_{ni}-T_{ni})`, with        numbers
                              :math:`h(e) = e^2/2` for :math:`|e| \\le 1`, else
                              :math:`|e| - 1/2`
============================  =====================================================  ==========

``crossentropy``, ``l2loss``, ``l1loss`` and ``huber`` are MATLAB's dlarray
functions with their default ``NormalizationFactor="batch-size"`` (summed
over the responses, averaged over the observations); ``mse`` and
``binary-crossentropy`` average over every element (as
``torch.nn.functional.mse_loss`` and ``binary_cross_entropy`` do). For
``crossentropy`` the targets are class labels (ints or strings: the
classes are taken from them, sorted) or an ``(N, K)`` array of
probabilities; ``log Y`` is clamped at the smallest positive float so a
zero score gives a large finite loss. ``binary-crossentropy`` wants
sigmoid outputs in [0, 1] and targets of the same size.

A callable ``loss(Y, T) -> scalar tensor`` written with PyTorch ops is used
as it is (its targets are the user's numbers as a float tensor, or class
indices for integer or string labels with ``classes`` from them).

Examples:
    >>> import torch
    >>> loss = resolve_loss("huber")
    >>> float(loss(torch.tensor([[0.0], [3.0]]), torch.tensor([[0.5], [0.0]])))
    1.3125
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data import encode_labels, numeric_targets
from ..errors import DataError, OptionError

__all__ = ["Loss", "resolve_loss", "LOSS_NAMES"]

# task: what the targets are and which metrics fit
CLASSIFICATION, BINARY, REGRESSION = "classification", "binary", "regression"


def _float(Y: torch.Tensor) -> torch.Tensor:
    """Losses in at least float32 (bfloat16 outputs under autocast)."""
    return Y.float() if Y.dtype in (torch.float16, torch.bfloat16) else Y


def crossentropy(Y: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    Y = _float(Y)
    logY = Y.clamp_min(torch.finfo(Y.dtype).tiny).log()
    if T.dtype == torch.int64:            # class indices
        return -logY.gather(1, T.view(-1, 1)).sum() / Y.shape[0]
    return -(T.to(Y.dtype) * logY).sum() / Y.shape[0]


def binary_crossentropy(Y: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    # F.binary_cross_entropy clamps log at -100, as the clamp above does in effect
    return F.binary_cross_entropy(_float(Y), T.to(_float(Y).dtype))


def mse(Y: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    Y = _float(Y)
    return (Y - T.to(Y.dtype)).square().mean()


def l2loss(Y: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    Y = _float(Y)
    return (Y - T.to(Y.dtype)).square().sum() / Y.shape[0]


def l1loss(Y: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    Y = _float(Y)
    return (Y - T.to(Y.dtype)).abs().sum() / Y.shape[0]


def huber(Y: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    Y = _float(Y)
    return F.huber_loss(Y, T.to(Y.dtype), reduction="sum", delta=1.0) / Y.shape[0]


_BUILTIN: dict[str, tuple[Callable, str]] = {
    "crossentropy": (crossentropy, CLASSIFICATION),
    "binary-crossentropy": (binary_crossentropy, BINARY),
    "mse": (mse, REGRESSION),
    "mean-squared-error": (mse, REGRESSION),
    "l2loss": (l2loss, REGRESSION),
    "l1loss": (l1loss, REGRESSION),
    "huber": (huber, REGRESSION),
}
LOSS_NAMES = tuple(_BUILTIN)


class Loss:
    """A loss with what it needs to know about its targets.

    Attributes:
        name: the name (a built-in's, or the callable's ``__name__``).
        task: "classification" (labels), "binary" (0/1 arrays) or
            "regression" (numbers); decides which metrics fit.
        classes: the class labels, once :meth:`prepare_targets` has seen them
            (classification only).
    """

    def __init__(self, fn: Callable, name: str, task: str | None, builtin: bool):
        self.fn, self.name, self.task, self.builtin = fn, name, task, builtin
        self.classes: list | None = None

    def __call__(self, Y: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        return self.fn(Y, T)

    def __repr__(self) -> str:
        return f"Loss({self.name!r})"

    # -- targets --------------------------------------------------------
    def prepare_targets(self, Y: Any, n: int, output_size: tuple[int, ...],
                        what: str = "Y") -> torch.Tensor:
        """The user's targets as a tensor for ``n`` observations, checked
        against the network's output size (one observation)."""
        arr = Y.detach().cpu().numpy() if isinstance(Y, torch.Tensor) else np.asarray(Y)
        labels = arr.dtype.kind in "iuUSOb" and arr.ndim == 1 or (
            arr.ndim == 2 and arr.shape[1] == 1 and arr.dtype.kind in "USO")
        task = self.task
        if task is None:   # a callable: labels if they look like labels, else numbers
            task = CLASSIFICATION if labels else REGRESSION
            self.task = task
        if task == CLASSIFICATION and (labels or arr.ndim == 1):
            T, classes = encode_labels(arr, n, self.classes, what=what)
            self.classes = classes
            k = int(np.prod(output_size))
            if self.builtin and (len(output_size) != 1 or len(classes) != k):
                self._class_count_error(len(classes), output_size, classes, what)
            return T
        T = numeric_targets(arr, n, f"{what}: loss '{self.name}'")
        per_obs = int(np.prod(T.shape[1:])) if T.dim() > 1 else 1
        if self.builtin and per_obs != int(np.prod(output_size)):
            raise DataError(f"{what}: loss '{self.name}': the network gives outputs of size "
                            f"{tuple(output_size)} per observation but the targets have size "
                            f"{tuple(T.shape[1:]) or '()'}; the targets must have the "
                            f"network's output size")
        if self.builtin:
            T = T.reshape(n, *output_size)
        if task == BINARY and self.builtin and not bool(((T == 0) | (T == 1) |
                                                         ((T > 0) & (T < 1))).all()):
            raise DataError(f"{what}: loss 'binary-crossentropy' expects targets in [0, 1]")
        if task == CLASSIFICATION and self.builtin:   # probabilities (N, K)
            if T.dim() != 2:
                raise DataError(f"{what}: loss 'crossentropy' expects class labels (N,) or "
                                f"probabilities (N, K), got size {tuple(T.shape)}")
        return T

    def _class_count_error(self, got: int, output_size, classes, what: str) -> None:
        k = int(np.prod(output_size))
        if len(output_size) != 1:
            raise DataError(f"{what}: loss '{self.name}' expects the network to give class "
                            f"scores (N, K), but it gives outputs of size {tuple(output_size)}; "
                            f"end the network with FullyConnected(K) and Softmax()")
        shown = classes if len(classes) <= 12 else classes[:12] + ["..."]
        more = "more" if got > k else "fewer"
        raise DataError(f"{what}: the labels have {got} classes {shown} but the network "
                        f"gives {k} scores per observation ({more} classes than outputs); "
                        f"use FullyConnected({got}) before the Softmax")


def resolve_loss(loss: Any) -> Loss:
    """A :class:`Loss` from a name (see the module's table) or a callable
    ``loss(Y, T) -> scalar``; an unknown name raises :class:`OptionError`
    with the closest name."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        key = loss.strip().lower()
        if key in _BUILTIN:
            fn, task = _BUILTIN[key]
            return Loss(fn, key, task, builtin=True)
        close = difflib.get_close_matches(key, LOSS_NAMES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise OptionError(f"trainnet: unknown loss '{loss}'{hint} (expected one of "
                          f"{', '.join(LOSS_NAMES)}, or a function loss(Y, T))")
    if callable(loss):
        return Loss(loss, getattr(loss, "__name__", type(loss).__name__), None, builtin=False)
    raise OptionError(f"trainnet: loss must be a name ({', '.join(LOSS_NAMES)}) or a "
                      f"function loss(Y, T) -> scalar, got {type(loss).__name__}")


def checked_loss_value(loss: Loss, value: Any, iteration: int) -> torch.Tensor:
    """A callable loss's result, checked: a scalar tensor with a gradient
    (its finiteness is checked by the training step)."""
    if not isinstance(value, torch.Tensor):
        raise DataError(f"loss '{loss.name}' returned {type(value).__name__} at iteration "
                        f"{iteration}; expected a scalar torch tensor computed with "
                        f"PyTorch ops from Y and T")
    if value.numel() != 1:
        raise DataError(f"loss '{loss.name}' returned a tensor of size {tuple(value.shape)} at "
                        f"iteration {iteration}; expected a scalar (reduce it, e.g. "
                        f".mean())")
    return value.reshape(())
