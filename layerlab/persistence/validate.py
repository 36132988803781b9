"""Checks on a file's contents before anything is built from them.

:func:`check_architecture` checks the JSON description field by field (types,
names, the format version); :func:`check_tensors` compares the stored
tensors with the ones the architecture implies (names, sizes, dtypes),
computed on PyTorch's ``meta`` device, so that a file declaring a huge
layer with small weights fails before anything is allocated. Every failure
is a :class:`PersistenceError` naming the file and the field.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import PersistenceError

__all__ = ["check_architecture", "check_tensors", "check_fields", "FLOATING"]

FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_LAYER_FIELDS = {"class": str, "name": str, "config": dict, "frozen": list,
                 "learn_rate_factors": dict, "l2_factors": dict, "classes": list}
_REQUIRED = ("class", "name", "config")


def check_fields(obj: Any, types: dict[str, Any], required: tuple[str, ...], where: str,
                 path: Any) -> None:
    """``obj`` is a dict whose keys are among ``types`` (each of its type)
    and include ``required``."""
    if not isinstance(obj, dict):
        raise PersistenceError(f"{path!r}: {where} should be a JSON object, the file has "
                               f"{type(obj).__name__}")
    for k in required:
        if k not in obj:
            raise PersistenceError(f"{path!r}: {where} has no {k!r} field")
    for k, v in obj.items():
        if k not in types:
            raise PersistenceError(f"{path!r}: {where} has an unknown field {k!r}")
        allowed = types[k] if isinstance(types[k], tuple) else (types[k],)
        # JSON's true/false are bools, which Python counts as ints: not here
        if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed
                                          and object not in allowed):
            raise PersistenceError(f"{path!r}: {where} field {k!r} should be "
                                   f"{_type_name(types[k])}, the file has {v!r:.60}")


def _type_name(t: Any) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def _factor(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def check_architecture(meta: dict[str, Any], path: Any) -> None:
    """The layers and connections fields of a file's description."""
    layers = meta.get("layers")
    if not isinstance(layers, list) or not layers:
        raise PersistenceError(f"{path!r}: 'layers' should be a non-empty list")
    names = set()
    for i, entry in enumerate(layers):
        where = f"layer {i + 1}"
        check_fields(entry, _LAYER_FIELDS, _REQUIRED, where, path)
        where = f"layer {i + 1} ('{entry['name']}')"
        if entry["name"] in names:
            raise PersistenceError(f"{path!r}: two layers are named {entry['name']!r}")
        names.add(entry["name"])
        if not all(isinstance(n, str) for n in entry.get("frozen", [])):
            raise PersistenceError(f"{path!r}: {where}: 'frozen' should list learnable names")
        for key in ("learn_rate_factors", "l2_factors"):
            if not all(_factor(f) for f in entry.get(key, {}).values()):
                raise PersistenceError(f"{path!r}: {where}: {key} should be finite numbers "
                                       f">= 0, the file has {entry[key]!r:.80}")
        for label in entry.get("classes", []):
            if label is None or not isinstance(label, (str, int, float)):
                raise PersistenceError(f"{path!r}: {where}: class labels should be strings "
                                       f"or numbers, the file has {label!r:.40}")
    connections = meta.get("connections", [])
    if not isinstance(connections, list) or not all(
            isinstance(c, list) and len(c) == 2 and all(isinstance(s, str) for s in c)
            for c in connections):
        raise PersistenceError(f"{path!r}: 'connections' should be a list of "
                               f"[source, destination] name pairs")


def check_tensors(expected: dict[str, torch.Tensor], stored: dict[str, torch.Tensor],
                  path: Any) -> None:
    """Stored tensors vs the ones the built network holds (usually ``meta``
    tensors): the same names and sizes, floating where the network's are
    (any float dtype: a float64 network stays float64), else the same dtype."""
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    if missing or extra:
        raise PersistenceError(f"{path!r}: the stored tensors do not fit the architecture "
                               f"(missing {missing[:5]}, unexpected {extra[:5]})")
    for k, want in expected.items():
        got = stored[k]
        if tuple(got.shape) != tuple(want.shape):
            raise PersistenceError(f"{path!r}: tensor {k!r} has size {tuple(got.shape)}, the "
                                   f"architecture implies {tuple(want.shape)}")
        fits = (got.dtype in FLOATING) if want.dtype in FLOATING else got.dtype == want.dtype
        if not fits:
            raise PersistenceError(f"{path!r}: tensor {k!r} is {got.dtype}, the architecture "
                                   f"implies {want.dtype}")
