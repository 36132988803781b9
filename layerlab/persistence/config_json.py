"""Constructor arguments (and other saved settings) to JSON and back.

JSON has no tuples, infinities or objects, so those are tagged, each tag
alone in its object:

* ``{"__tuple__": [...]}``, ``{"__dict__": {...}}`` (string keys),
  ``{"__float__": "inf"}`` (``"inf"``, ``"-inf"`` or ``"nan"``);
* ``{"__value__": "Gaussian", "fields": {"std": 0.1, "mean": 0.0}}``: one of
  the value types of :data:`~layerlab.persistence.registry.VALUE_TYPES`,
  rebuilt by its registered function;
* ``{"__unsaved__": repr}``: an initializer argument that cannot be
  written (a user's function of the shape), read back as ``"zeros"``: the
  saved weights replace the initial values anyway.

Decoding accepts nothing else: no import paths, no calls.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import PersistenceError
from .registry import LEGACY_OBJECTS, VALUE_TYPES

__all__ = ["encode", "decode"]

MAX_DEPTH = 32          # nesting deeper than this is not a layer's settings
_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode(value: Any, where: str, *, initializer: bool = False) -> Any:
    """``value`` as JSON-ready data; ``where`` names it in errors.

    ``initializer=True`` says the value is an initializer argument: a
    function there (which a file cannot hold) is written as unsaved.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, where) for v in value]}
    if isinstance(value, list):
        return [encode(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    for tag, vt in VALUE_TYPES.items():
        if type(value) is vt.cls:
            return {"__value__": tag, "fields": {k: encode(v, f"{where}.{k}")
                                                 for k, v in vt.to_fields(value).items()}}
    if initializer and callable(value):
        return {"__unsaved__": repr(value)[:200]}
    raise PersistenceError(f"{where}: cannot save a value of type {type(value).__name__} "
                           f"({value!r:.60}); constructor arguments must be numbers, strings, "
                           f"tuples, lists, dicts, None or one of {sorted(VALUE_TYPES)}")


def decode(data: Any, where: str = "a setting", depth: int = 0) -> Any:
    """The value :func:`encode` wrote; :class:`PersistenceError` naming
    ``where`` for anything else."""
    if depth > MAX_DEPTH:
        raise PersistenceError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if data is None or isinstance(data, (bool, str, int)):
        return data
    if isinstance(data, float):
        if not math.isfinite(data):
            raise PersistenceError(f"{where}: bare {data} in the file (written as __float__)")
        return data
    if isinstance(data, list):
        return [decode(v, where, depth + 1) for v in data]
    if not isinstance(data, dict):
        raise PersistenceError(f"{where}: unexpected {type(data).__name__} in the file")
    keys = set(data)
    if keys == {"__tuple__"} and isinstance(data["__tuple__"], list):
        return tuple(decode(v, where, depth + 1) for v in data["__tuple__"])
    if keys == {"__float__"} and data["__float__"] in _FLOATS:
        return _FLOATS[data["__float__"]]
    if keys == {"__dict__"} and isinstance(data["__dict__"], dict):
        return {k: decode(v, f"{where}[{k!r}]", depth + 1) for k, v in data["__dict__"].items()}
    if keys == {"__unsaved__"}:
        return "zeros"
    if keys == {"__value__", "fields"} or keys == {"__object__", "kwargs"}:
        tag = data.get("__value__")
        if "__object__" in data:   # format version 1: a path compared as text
            tag = LEGACY_OBJECTS.get(data["__object__"]) if isinstance(data["__object__"], str) \
                else None
        fields = data.get("fields", data.get("kwargs"))
        vt = VALUE_TYPES.get(tag) if isinstance(tag, str) else None
        if vt is None:
            shown = data.get("__value__", data.get("__object__"))
            raise PersistenceError(f"{where}: refusing to build {shown!r:.80} from the file; "
                                   f"a file may hold only these value types: "
                                   f"{sorted(VALUE_TYPES)}")
        if not isinstance(fields, dict) or set(fields) != set(vt.fields):
            raise PersistenceError(f"{where}: a {tag} needs exactly the fields "
                                   f"{list(vt.fields)}, the file has {fields!r:.80}")
        try:
            return vt.from_fields({k: decode(v, where, depth + 1) for k, v in fields.items()})
        except PersistenceError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bad value: name it
            raise PersistenceError(f"{where}: the file's {tag} {fields!r:.80} is not valid: "
                                   f"{exc}") from None
    raise PersistenceError(f"{where}: unexpected value in the file: {data!r:.80}")
