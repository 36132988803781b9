"""Optional packages: features that need a package layerlab does not
require (ONNX export needs ``onnx``, its check ``onnxruntime``) import it
through :func:`require`, so that a plain install says what is missing and
how to install it, instead of failing deep inside another library.

Examples:
    >>> from layerlab.optional import require
    >>> onnx = require("onnx", feature="export_onnx", extra="onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingPackageError

__all__ = ["require", "missing_message"]


def missing_message(package: str, *, feature: str, extra: str) -> str:
    """What to tell a user whose environment lacks ``package``."""
    return (f"{feature} needs the package {package!r}, which is not installed in this "
            f"environment: pip install \"layerlab[{extra}]\" (or pip install {package})")


def require(package: str, *, feature: str, extra: str) -> ModuleType:
    """Import and return ``package``; when it is not installed, raise
    :class:`~layerlab.errors.MissingPackageError` naming it, the ``feature``
    that needs it and the layerlab ``extra`` that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        if exc.name is not None and exc.name != package and \
                not exc.name.startswith(package + "."):
            raise              # the package is there but one of its own imports failed
        raise MissingPackageError(missing_message(package, feature=feature, extra=extra)) \
            from exc
