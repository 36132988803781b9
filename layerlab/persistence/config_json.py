"""Constructor arguments to JSON and back.

JSON has no tuples, infinities or objects, so those are tagged:
``{"__tuple__": [...]}``, ``{"__float__": "inf"}``, ``{"__dict__": {...}}``,
``{"__object__": "layerlab.layers.initializers.Gaussian", "kwargs": {...}}``
(only classes inside layerlab are rebuilt this way). An initializer argument
that cannot be written (e.g. a lambda) is stored as ``{"__unsaved__": repr}``
and read back as ``"zeros"``: the saved weights replace the initial values
anyway.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np

from ..errors import PersistenceError

__all__ = ["encode", "decode", "import_path", "resolve"]


def import_path(obj_or_cls: Any) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


def encode(value: Any, where: str) -> Any:
    """``value`` as JSON-ready data; ``where`` names it in errors."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.generic,)):
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
    if type(value).__module__.startswith("layerlab.") and hasattr(value, "__dict__"):
        return {"__object__": import_path(value),
                "kwargs": {k: encode(v, where) for k, v in vars(value).items()}}
    if where.endswith("_initializer") and callable(value):
        return {"__unsaved__": repr(value)}
    raise PersistenceError(f"{where}: cannot save a value of type {type(value).__name__} "
                           f"({value!r:.60}); constructor arguments must be numbers, strings, "
                           f"tuples, lists, dicts or None")


def decode(data: Any) -> Any:
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "__tuple__" in data:
        return tuple(decode(v) for v in data["__tuple__"])
    if "__float__" in data:
        return float(data["__float__"])
    if "__dict__" in data:
        return {k: decode(v) for k, v in data["__dict__"].items()}
    if "__unsaved__" in data:
        return "zeros"
    if "__object__" in data:
        path = data["__object__"]
        if not path.startswith("layerlab."):
            raise PersistenceError(f"refusing to build object {path!r}: only layerlab's own "
                                   f"objects are rebuilt from files")
        return resolve(path, "object")(**{k: decode(v) for k, v in data["kwargs"].items()})
    raise PersistenceError(f"unexpected value in the file's architecture: {data!r:.80}")


def resolve(path: str, what: str) -> Any:
    """The class (or function) at import path ``module.Qual.Name``."""
    if not isinstance(path, str) or "." not in path:
        raise PersistenceError(f"bad {what} import path {path!r} in the file")
    parts = path.split(".")
    # the longest importable module prefix, then attributes
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise PersistenceError(f"cannot find {what} class {path!r}: import the module that "
                           f"defines it (or install it) before loading, and check the "
                           f"class was not renamed")
