"""What a file can make layerlab build: this module is the whole list.

A saved network names its layers' classes by import path
(``"mylayers.MyELU"``). Loading never imports a module and never looks
anything up by that path: it only chooses among classes the program already
has, in this order:

1. the classes the caller passes, ``load(path, custom_layers=[MyELU])``,
   matched by import path or else by class name (so a script that defines
   its own ``MyELU`` can load a file saved from another script);
2. layerlab's built-in layers, and the classes layerlab's own wrappers
   register with :func:`register_layer_class` (matched by class name when the
   path is inside ``layerlab.``, so files survive moves between modules);
3. :class:`~layerlab.Layer` subclasses already defined in the running program
   (modules it imported, the script itself), matched by exact import path.

The chosen class is then called with the file's constructor arguments,
which are JSON data plus the value types listed in :data:`VALUE_TYPES`
(each rebuilt by the explicit function registered for it). Nothing else
from a file is ever called.

Examples:
    >>> find_layer_class("layerlab.layers.activation.ELU").__name__
    'ELU'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..errors import PersistenceError
from ..layer import Layer

__all__ = ["class_path", "find_layer_class", "is_builtin", "register_layer_class",
           "register_value_type", "ValueType", "VALUE_TYPES"]

_REGISTERED: list[type] = []


def class_path(cls: type) -> str:
    """``module.QualName`` of a class, as files name it."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register_layer_class(cls: type) -> type:
    """Allow files to name ``cls`` (a :class:`Layer` subclass) without the
    caller passing it: for layerlab's own layers and wrappers defined outside
    :mod:`layerlab.layers` (e.g. a wrapper of ``torch.nn`` modules). Usable
    as a class decorator; returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer_class: expected a layerlab.Layer subclass, got {cls!r}")
    if cls not in _REGISTERED:
        _REGISTERED.append(cls)
    return cls


def _builtins() -> list[type]:
    from .. import layers   # local: the layers import this package's users
    found = [getattr(layers, n) for n in layers.__all__]
    return [c for c in found if isinstance(c, type) and issubclass(c, Layer)] + _REGISTERED


def is_builtin(cls: type) -> bool:
    """Whether ``cls`` is one of layerlab's own (built-in or registered) layers."""
    return cls in _builtins()


def _program_classes() -> Iterable[type]:
    """Every Layer subclass defined so far in this process."""
    seen: set[type] = set()
    todo = list(Layer.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.add(cls)
            yield cls
            todo.extend(cls.__subclasses__())


def _short_name(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def find_layer_class(path: Any, custom_layers: Iterable[type] = ()) -> type:
    """The layer class a file names by ``path``; :class:`PersistenceError`
    (saying how to make it loadable) for any other name."""
    if not isinstance(path, str) or not path:
        raise PersistenceError(f"the file names a layer class by {path!r}, not by a "
                               f"'module.ClassName' string")
    custom = list(custom_layers)
    for cls in custom:
        if not (isinstance(cls, type) and issubclass(cls, Layer)):
            raise PersistenceError(f"custom_layers: expected layerlab.Layer subclasses, got "
                                   f"{cls!r}")
    name = _short_name(path)
    by_path = [c for c in custom if class_path(c) == path]
    by_name = [c for c in custom if c.__qualname__ == name or c.__name__ == name]
    for match in (by_path, by_name):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            raise PersistenceError(f"custom_layers holds {len(match)} classes named "
                                   f"{name!r}; pass only the one for {path!r}")
    builtins = _builtins()
    for cls in builtins:
        if class_path(cls) == path or (path.startswith("layerlab.") and cls.__name__ == name):
            return cls
    for cls in _program_classes():
        if class_path(cls) == path and "<locals>" not in cls.__qualname__:
            return cls
    raise PersistenceError(
        f"the file names the layer class {path!r}, which this program does not define: "
        f"import the module that defines {path} before loading, or pass the class with "
        f"load(path, custom_layers=[{name}]). Loading never imports modules named by a "
        f"file; it builds only layerlab's layers, the classes passed in custom_layers and "
        f"Layer classes the program already defines")


# ---------------------------------------------------------------------------
# Value types: the objects (other than JSON data) a constructor argument may be
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ValueType:
    """An object type allowed in constructor arguments, with its own
    explicit conversion to plain JSON fields and back."""

    cls: type
    to_fields: Callable[[Any], dict[str, Any]]
    from_fields: Callable[[dict[str, Any]], Any]
    fields: tuple[str, ...]


VALUE_TYPES: dict[str, ValueType] = {}


def register_value_type(tag: str, cls: type, to_fields: Callable[[Any], dict[str, Any]],
                        from_fields: Callable[[dict[str, Any]], Any],
                        fields: tuple[str, ...]) -> None:
    """Allow ``cls`` objects in constructor arguments, saved as
    ``{"__value__": tag, "fields": to_fields(obj)}`` and rebuilt with
    ``from_fields(fields)`` (which receives exactly ``fields``, as decoded
    JSON data, and must validate them)."""
    VALUE_TYPES[tag] = ValueType(cls, to_fields, from_fields, tuple(fields))


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PersistenceError(f"{what}: expected a finite number, got {value!r:.40}")
    return float(value)


def _gaussian_from_fields(f: dict[str, Any]) -> Any:
    from ..layers.initializers import Gaussian
    std, mean = _finite(f["std"], "Gaussian std"), _finite(f["mean"], "Gaussian mean")
    if std < 0:
        raise PersistenceError(f"Gaussian std: expected >= 0, got {std}")
    return Gaussian(std, mean)


def _register_builtin_value_types() -> None:
    from ..layers.initializers import Gaussian
    register_value_type("Gaussian", Gaussian, lambda g: {"std": g.std, "mean": g.mean},
                        _gaussian_from_fields, ("std", "mean"))


_register_builtin_value_types()

# Files of format version 1 wrote a Gaussian as {"__object__": PATH, "kwargs": ...};
# the path is compared as a string, never imported.
LEGACY_OBJECTS = {"layerlab.layers.initializers.Gaussian": "Gaussian"}
