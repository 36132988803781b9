"""Checking and converting user data: inputs X and labels Y."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .errors import DataError

__all__ = ["as_input_tensor", "encode_labels", "row_chunks"]

#: the most values a whole-data check or sum works on at once: the
#: temporaries it makes (a bool mask, a float64 copy) stay a few MB however
#: large the data
CHUNK_VALUES = 1 << 20


def row_chunks(t: torch.Tensor, values: int | None = None):
    """``t`` split along its first dimension into views of about ``values``
    values each (:data:`CHUNK_VALUES` unless given; at least one row)."""
    if not t.dim():
        return (t,)
    per_row = max(1, math.prod(t.shape[1:]))
    return t.split(max(1, (values or CHUNK_VALUES) // per_row))


def as_input_tensor(X: Any, input_size: tuple[int, ...], what: str = "X",
                    dtype: torch.dtype | None = None) -> torch.Tensor:
    """``X`` (NumPy array or tensor, ``(N, *input_size)``) as a floating
    tensor, checked for size and for NaN/Inf: of ``dtype`` (a network's
    type: NumPy's float64 arrays meet float32 networks) when given, else
    float32 (float64 kept)."""
    if isinstance(X, torch.Tensor):
        t = X.detach()
        if t.is_complex():
            raise DataError(f"{what}: expected real numbers, got a complex tensor ({t.dtype}); "
                            f"pass X.real or X.abs() explicitly")
    else:
        try:
            arr = np.asarray(X)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{what}: expected a NumPy array or tensor, "
                            f"got {type(X).__name__}") from exc
        if np.iscomplexobj(arr):
            raise DataError(f"{what}: expected real numbers, got complex values ({arr.dtype}); "
                            f"pass X.real or np.abs(X) explicitly")
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise DataError(f"{what}: expected numbers, got an array of {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if dtype is not None:
        t = t.to(dtype)
    elif not torch.is_floating_point(t) or t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    expected = (len(input_size) + 1)
    if t.dim() == expected - 1 and tuple(t.shape) == tuple(input_size):
        raise DataError(f"{what}: got one observation of size {tuple(t.shape)}; "
                        f"expected a batch (N, {', '.join(map(str, input_size))}): "
                        f"add a leading dimension, e.g. X[None]")
    if t.dim() != expected or tuple(t.shape[1:]) != tuple(input_size):
        raise DataError(f"{what}: expected size (N, {', '.join(map(str, input_size))}) "
                        f"for the network's input layer, got {tuple(t.shape)}")
    # checked a chunk of rows at a time: a mask of the whole data set would
    # add a quarter of its size to the peak memory
    start = 0
    for chunk in row_chunks(t) if t.numel() else ():
        if not bool(torch.isfinite(chunk).all()):
            bad = start + int((~torch.isfinite(chunk)).flatten(1).any(1).nonzero()[0])
            raise DataError(f"{what}: contains NaN or Inf (first in observation {bad})")
        start += chunk.shape[0]
    return t


def encode_labels(Y: Any, n: int, classes: list | None = None, what: str = "Y"
                  ) -> tuple[torch.Tensor, list]:
    """Class labels (ints or strings, 1-d, length ``n``) as class indices
    ``(n,)`` int64, and the sorted list of classes (or the given ones)."""
    if isinstance(Y, torch.Tensor):
        Y = Y.detach().cpu().numpy()
    arr = np.asarray(Y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{what}: expected a 1-d array of labels, got size {arr.shape}")
    if arr.shape[0] != n:
        raise DataError(f"{what}: got {arr.shape[0]} labels for {n} observations in X")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{what}: class labels must be integers or strings, got "
                            f"non-integer floats (for regression use a Regression output)")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iuUSbO":
        raise DataError(f"{what}: expected integer or string labels, got {arr.dtype}")
    if classes is None:
        classes = np.unique(arr).tolist()
    lookup = {c: i for i, c in enumerate(classes)}
    try:
        idx = np.fromiter((lookup[v] for v in arr.tolist()), dtype=np.int64, count=n)
    except KeyError as exc:
        raise DataError(f"{what}: label {exc.args[0]!r} is not one of the network's classes "
                        f"{classes}") from None
    return torch.from_numpy(idx), list(classes)


def numeric_targets(Y: Any, n: int, who: str) -> torch.Tensor:
    """Regression targets: numbers (or booleans), one row per observation
    (``n`` of them), finite; as a float32 tensor of ``Y``'s shape (the loss
    and the metric cast it to the network's dtype). ``who`` starts the
    error messages (e.g. ``"layer 'r' (Regression)"``)."""
    if isinstance(Y, torch.Tensor):
        Y = Y.detach().cpu().numpy()
    arr = np.asarray(Y)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{who}: expected numeric targets, got an array of {arr.dtype}")
    if arr.ndim == 0 or arr.shape[0] != n:
        raise DataError(f"{who}: got {arr.shape[0] if arr.ndim else 'a scalar'} targets for "
                        f"{n} observations in X")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr.reshape(n, -1)).any(1))[0])
        raise DataError(f"{who}: targets contain NaN or Inf (first in observation {bad})")
    return torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float32))
