"""``layerlab check MODULE:CLASS --input-size ... [--args JSON]``: run
:func:`~layerlab.check_layer` on a layer class from the command line.

``MODULE`` is an importable module (``mypackage.layers``, looked up from
the current folder too) or a path to a Python file (``my_layer.py``).
``--input-size`` is one observation's size, ``20 24 24`` or ``20,24,24``;
for a layer with several inputs, one comma-separated size per input
(``3,4,4 3,4,4``). ``--args`` is a JSON list of positional arguments or an
object of keyword arguments for the constructor. Exit status: 0 when every
test passed or was skipped, 1 when one failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import sys

from ..errors import LayerError
from ..layer import Layer
from .check_layer import TEST_NAMES, check_layer

__all__ = ["add_arguments", "run", "load_layer_class", "parse_input_size"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="MODULE:CLASS",
                   help="the layer class, e.g. my_layers:MyELU or path/to/file.py:MyELU")
    p.add_argument("--input-size", nargs="+", required=True, metavar="SIZE",
                   help="one observation's size, e.g. 20 24 24 or 20,24,24; several inputs: "
                        "one comma-separated size each, e.g. 3,4,4 3,4,4")
    p.add_argument("--args", default=None, metavar="JSON",
                   help="constructor arguments: a JSON list (positional) or object (keywords)")
    p.add_argument("--tests", nargs="+", default=None, choices=TEST_NAMES, metavar="TEST",
                   help=f"run only these tests ({', '.join(TEST_NAMES)})")
    p.add_argument("--skip", nargs="+", default=None, choices=TEST_NAMES, metavar="TEST",
                   help="leave these tests out")
    p.add_argument("--seed", type=int, default=0, help="fixes the test data (default 0)")


def _import(module: str):
    if module.endswith(".py") or os.sep in module or "/" in module:
        path = os.path.abspath(module)
        if not os.path.isfile(path):
            raise LayerError(f"layerlab check: no such file {module!r}")
        # imported under its own name with its folder on the module path, as
        # `import my_layers` from that folder would, so that the class is
        # found again by that name (layerlab.load, the new process of the
        # save_load_fresh_process test); another name only if that one is
        # taken by a different module
        name = os.path.splitext(os.path.basename(path))[0]
        taken = sys.modules.get(name)
        if taken is not None and os.path.abspath(getattr(taken, "__file__", "") or "") == path:
            return taken
        if taken is not None or not name.isidentifier():
            name = "_layerlab_check_" + "".join(c if c.isalnum() else "_" for c in name)
        folder = os.path.dirname(path)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod              # dataclasses and pickling look modules up
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[name]
            raise
        return mod
    # like `python -m`, modules in the current folder are found
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(module)


def load_layer_class(target: str) -> type[Layer]:
    """``"module:Class"`` or ``"path/file.py:Class"`` -> the class, which
    must derive from :class:`layerlab.Layer`."""
    module, sep, cls_name = target.rpartition(":")
    if not sep or not module or not cls_name:
        raise LayerError(f"layerlab check: expected MODULE:CLASS, e.g. my_layers:MyELU, "
                         f"got {target!r}")
    try:
        mod = _import(module)
    except LayerError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module: explain, do not trace
        raise LayerError(f"layerlab check: cannot import {module!r}: "
                         f"{type(exc).__name__}: {exc}") from exc
    cls = getattr(mod, cls_name, None)
    if cls is None:
        raise LayerError(f"layerlab check: module {module!r} has no class {cls_name!r}")
    if not (inspect.isclass(cls) and issubclass(cls, Layer)):
        raise LayerError(f"layerlab check: {target} is not a layerlab.Layer class")
    return cls


def parse_input_size(tokens: list[str]):
    """``["20", "24", "24"]`` or ``["20,24,24"]`` -> ``(20, 24, 24)``;
    ``["3,4,4", "3,4,4"]`` -> ``[(3, 4, 4), (3, 4, 4)]``."""
    def bad(why: str) -> LayerError:
        return LayerError(f"layerlab check --input-size: {why}; expected positive integers "
                          f"such as 20 24 24 or 20,24,24 (several inputs: 3,4,4 3,4,4), got "
                          f"{' '.join(tokens)!r}")

    def number(text: str) -> int:
        text = text.strip()
        if not text.isdigit():
            raise bad("an empty part (two commas, or a comma at an end)" if not text
                      else f"{text!r} is not a positive integer")
        if int(text) < 1:
            raise bad(f"{text} is not a positive integer")
        return int(text)

    if any("," in t for t in tokens):
        sizes = [tuple(number(v) for v in t.split(",")) for t in tokens]
        return sizes[0] if len(sizes) == 1 else sizes
    return tuple(number(t) for t in tokens)


def _constructor_args(text: str | None):
    if text is None:
        return [], {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LayerError(f"layerlab check --args: not valid JSON ({exc}): {text!r}") from None
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        return [], value
    return [value], {}


def run(args: argparse.Namespace) -> int:
    cls = load_layer_class(args.target)
    size = parse_input_size(args.input_size)
    pos, kw = _constructor_args(args.args)
    try:
        layer = cls(*pos, **kw)
    except LayerError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's constructor
        hint = ""
        if isinstance(exc, TypeError) and "argument" in str(exc):
            try:
                sig = f"{cls.__name__}{inspect.signature(cls.__init__)}".replace("(self, ", "(")
            except (TypeError, ValueError):
                sig = cls.__name__
            hint = (f"; its constructor is {sig}: pass the arguments with --args, e.g. "
                    f"--args '[20]' (positional) or --args '{{\"num_channels\": 20}}' "
                    f"(by name)")
        raise LayerError(f"layerlab check: {cls.__name__}(*{pos}, **{kw}) raised "
                         f"{type(exc).__name__}: {exc}{hint}") from exc
    report = check_layer(layer, size, tests=args.tests, seed=args.seed,
                         skip=args.skip or ())
    return 0 if report.passed else 1
