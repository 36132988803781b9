"""Exceptions layerlab raises for user mistakes.

Every message names the layer or option concerned, what was expected and
what was given. They derive from ``ValueError`` (or ``TypeError``) so that
code catching the standard exceptions keeps working.
"""


class LayerlabError(Exception):
    """Base class of layerlab's errors."""


class LayerError(LayerlabError, ValueError):
    """A layer was defined or used wrongly (bad learnable, bad backward)."""


class NetworkError(LayerlabError, ValueError):
    """Layers that do not connect: sizes, names, cycles, missing inputs."""


class OptionError(LayerlabError, ValueError):
    """An unknown training option or a bad option value."""


class DataError(LayerlabError, ValueError):
    """Training or prediction data of the wrong size, type or content."""


class TrainingError(LayerlabError, RuntimeError):
    """Training could not go on (e.g. the loss became NaN or Inf)."""


class PersistenceError(LayerlabError, ValueError):
    """A file could not be saved or loaded (missing, corrupt, unknown class)."""


class MissingPackageError(LayerlabError, ImportError):
    """An optional package that a feature needs is not installed (the
    message says which and how to install it)."""
