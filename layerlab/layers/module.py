"""Any ``torch.nn.Module`` as a layer: :class:`ModuleLayer`.

A module placed in a layer list or a :class:`~layerlab.LayerGraph` is
wrapped automatically; wrap it yourself to name it::

    layers = [ll.ImageInput((1, 28, 28)),
              torch.nn.Conv2d(1, 8, 3),                    # wrapped as conv2d_1
              ll.ModuleLayer(torch.nn.BatchNorm2d(8), name="bn"),
              ll.ELU(8), torch.nn.Flatten(), torch.nn.LazyLinear(10),
              ll.Softmax(), ll.Classification()]

The module's parameters are the layer's learnables, under the module's own
names (``"weight"``, ``"bias"``, ``"0.weight"`` in a ``Sequential``), so
``freeze``, ``set_learn_rate_factor`` and ``set_l2_factor`` work on them;
its buffers (batch norm's running statistics) are the layer's State. The
network's ``train()`` / ``eval()`` reach the module, so dropout and batch
norm behave as in PyTorch. The output size is found by running the module
once on a small batch of zeros (which also materialises lazy modules).

Saving: a module of one of torch.nn's own classes listed in
:data:`REBUILDABLE` (or a ``Sequential`` of them) is saved as its class
name and constructor arguments (read back from its same-named attributes,
as ``torch.nn.Conv2d(in_channels=1, out_channels=8, kernel_size=(3, 3),
...)``) and rebuilt from this closed list only; loading imports nothing a
file names. :attr:`ModuleLayer.config` / :meth:`ModuleLayer.from_config`
are that pair.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from ..errors import LayerError
from ..layer import Layer

__all__ = ["ModuleLayer", "REBUILDABLE", "register_module_class", "module_spec",
           "module_from_spec"]

# torch.nn classes rebuilt from their constructor arguments: a closed list
# (never a name read from a file resolved by import)
REBUILDABLE: dict[str, type[nn.Module]] = {c.__name__: c for c in (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear, nn.Bilinear,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm,
    nn.InstanceNorm2d, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout2d,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Softmax, nn.LogSoftmax,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d, nn.Upsample, nn.ZeroPad2d, nn.Embedding,
)}

#: user torch.nn.Module classes the program registered (register_module_class),
#: by ``module.qualname``: saved and rebuilt by their constructor arguments as
#: the torch.nn classes above; a file cannot add to it
_USER_CLASSES: dict[str, type[nn.Module]] = {}


def register_module_class(cls: type[nn.Module]) -> type[nn.Module]:
    """Let a user ``torch.nn.Module`` class inside a :class:`ModuleLayer`
    be saved and loaded: by its constructor arguments, each read back from
    the same-named attribute (as for torch.nn's own classes), rebuilt at
    load by this program's class (loading never imports it: the program
    that loads registers it too, e.g. by importing the module that
    defines it). Usable as a decorator.

    Examples:
        >>> @ll.register_module_class
        ... class Scale(torch.nn.Module):
        ...     def __init__(self, factor=2.0):
        ...         super().__init__(); self.factor = factor
        ...     def forward(self, x): return x * self.factor
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)) or issubclass(cls, Layer):
        raise LayerError(f"register_module_class: expected a torch.nn.Module subclass "
                         f"(not a layerlab Layer), got {cls!r:.80}")
    _USER_CLASSES[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def _rebuildable(name: str) -> type[nn.Module] | None:
    return REBUILDABLE.get(name) or _USER_CLASSES.get(name)


def _spec_name(cls: type[nn.Module]) -> str | None:
    if REBUILDABLE.get(cls.__name__) is cls:
        return cls.__name__
    user = f"{cls.__module__}.{cls.__qualname__}"
    return user if _USER_CLASSES.get(user) is cls else None


_SKIP = {"self", "device", "dtype"}
_JSONABLE = (bool, int, float, str, type(None))


def _plain(value: Any) -> bool:
    if isinstance(value, _JSONABLE):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return False


def module_spec(module: nn.Module, where: str) -> dict[str, Any]:
    """``{"class": "Conv2d", "args": {...}}`` for a module of a
    :data:`REBUILDABLE` class (``{"class": "Sequential", "modules": [...]}``
    for a Sequential of them): each constructor parameter read from the
    same-named attribute (a tensor-or-None attribute such as ``bias`` as
    whether it is present)."""
    cls = type(module)
    if cls is nn.Sequential:
        return {"class": "Sequential",
                "modules": [module_spec(m, f"{where}[{i}]") for i, m in enumerate(module)]}
    name = _spec_name(cls)
    if name is None:
        raise LayerError(
            f"{where}: a {cls.__module__}.{cls.__qualname__} module cannot be saved by its "
            f"constructor arguments: torch.nn's own classes in "
            f"layerlab.layers.module.REBUILDABLE (and Sequentials of them) are rebuilt, and "
            f"user classes registered with layerlab.register_module_class({cls.__qualname__})")
    args: dict[str, Any] = {}
    for pname, p in inspect.signature(cls.__init__).parameters.items():
        if pname in _SKIP or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not hasattr(module, pname):
            if p.default is p.empty:
                raise LayerError(f"{where}: cannot read {cls.__name__}'s constructor "
                                 f"argument {pname!r} back from the module")
            continue
        value = getattr(module, pname)
        if isinstance(value, torch.Tensor) or value is None and pname == "bias":
            value = value is not None          # bias=True/False
        if isinstance(value, torch.Size):
            value = tuple(value)
        if not _plain(value):
            raise LayerError(f"{where}: {cls.__name__}'s argument {pname!r} is a "
                             f"{type(value).__name__}; only numbers, strings and tuples "
                             f"are saved")
        args[pname] = value
    return {"class": name, "args": args}


def module_from_spec(spec: Any, where: str = "ModuleLayer") -> nn.Module:
    """The module :func:`module_spec` describes, built from the closed list
    :data:`REBUILDABLE` only."""
    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
        raise LayerError(f"{where}: expected a module description "
                         f"{{'class': ..., 'args': {{...}}}}, got {spec!r:.80}")
    name = spec["class"]
    if name == "Sequential":
        return nn.Sequential(*[module_from_spec(s, f"{where}[{i}]")
                               for i, s in enumerate(spec.get("modules", []))])
    cls = _rebuildable(name)
    if cls is None:
        raise LayerError(f"{where}: {name!r} is not a module class ModuleLayer rebuilds; it "
                         f"rebuilds torch.nn's {sorted(REBUILDABLE)}, Sequential and the user "
                         f"classes this program registered with "
                         f"layerlab.register_module_class (registered: "
                         f"{sorted(_USER_CLASSES) or 'none'})")
    args = spec.get("args", {})
    if not isinstance(args, dict) or not all(_plain(v) for v in args.values()):
        raise LayerError(f"{where}: the arguments of {name} must be numbers, strings and "
                         f"tuples, got {args!r:.80}")
    try:
        return cls(**args)
    except Exception as exc:  # noqa: BLE001 - add which module
        raise LayerError(f"{where}: {name}(**{args!r:.120}) failed: "
                         f"{type(exc).__name__}: {exc}") from exc


def _has(module: nn.Module, kinds: tuple[type, ...]) -> bool:
    return any(isinstance(m, kinds) for m in module.modules())


class ModuleLayer(Layer):
    r"""A ``torch.nn.Module`` as a layer: :math:`Z = \text{module}(X)`.

    Args:
        module: the module (any ``torch.nn.Module`` that is not a layerlab
            layer), or its description from :attr:`config` (``{"class":
            "Conv2d", "args": {...}}``), rebuilt from :data:`REBUILDABLE`.
        name: the layer's name; default from the module's class
            (``conv2d_1``).
        output_size: one observation's output size, when the module cannot
            be run on a small batch of zeros to find it.

    Learnables: the module's parameters by their names in the module
    (``"weight"``, ``"bias"``); State: its buffers. ``predict`` and
    ``forward`` both call the module, in the mode ``train()`` / ``eval()``
    set (batch norm and dropout behave as in PyTorch).

    Examples::

        layer = ll.ModuleLayer(torch.nn.Conv2d(1, 8, 3), name="conv")
        layer.set_learn_rate_factor("bias", 2.0)
        net = ll.Network([ll.ImageInput((1, 28, 28)), layer, torch.nn.Flatten(), ...])
    """

    def __init__(self, module: nn.Module | dict, name: str | None = None,
                 output_size: tuple[int, ...] | None = None):
        if isinstance(module, dict):
            module = module_from_spec(module, f"ModuleLayer {name or ''}".strip())
        if isinstance(module, Layer) or not isinstance(module, nn.Module):
            raise LayerError(f"ModuleLayer: expected a torch.nn.Module that is not a "
                             f"layerlab.Layer, got {type(module).__name__}")
        super().__init__(name=name, type=f"torch.nn {type(module).__name__}")
        self.module = module
        self.output_size = None if output_size is None else tuple(int(s) for s in output_size)
        self.description = repr(module) if len(repr(module)) <= 80 else type(module).__name__
        # what check_layer and the trainer read about a layer's behaviour
        self.couples_observations = _has(module, (nn.modules.batchnorm._BatchNorm,))
        self.is_stochastic = _has(module, (nn.modules.dropout._DropoutNd,))
        self.differs_in_training = self.couples_observations or self.is_stochastic or \
            _has(module, (nn.modules.instancenorm._InstanceNorm,))

    @property
    def default_name(self) -> str:  # type: ignore[override]
        return type(self.module).__name__

    def _submodule_learnable_name(self, module_name: str, parameter_name: str) -> str:
        return parameter_name       # "weight", not "module.weight"

    def initialize(self, input_sizes):
        if self.output_size is not None:
            return
        sizes = ", ".join(str(tuple(s)) for s in input_sizes)
        was = self.module.training
        try:
            p = next(iter(self.module.parameters()), None)
            probe = [torch.zeros((2, *s), device=p.device if p is not None else "cpu",
                                 dtype=p.dtype if p is not None and p.is_floating_point()
                                 else torch.get_default_dtype()) for s in input_sizes]
            self.module.eval()
            with torch.no_grad():
                self.module(*probe)     # also materialises lazy modules
        except Exception as exc:  # noqa: BLE001 - user module: name it
            raise LayerError(
                f"layer {self.label}: running the torch.nn module {type(self.module).__name__} "
                f"once on zeros of input size {sizes} to infer its output size failed "
                f"({type(exc).__name__}: {exc}); check the input size, or give "
                f"ModuleLayer(module, output_size=...) and the input layer's input_size") from exc
        finally:
            self.module.train(was)

    def predict(self, *X):
        return self.module(*X)

    @property
    def config(self) -> dict[str, Any]:
        """``{"module": <description>, "name": ..., "output_size": ...}``:
        the constructor's arguments with the module described by its class
        and arguments (:func:`module_spec`), ready for JSON. Raises a
        :class:`LayerError` for a module ModuleLayer cannot rebuild."""
        return {"module": module_spec(self.module, f"layer {self.label}"),
                "name": self.name or None, "output_size": self.output_size}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ModuleLayer":
        """The layer :attr:`config` describes (fresh weights), rebuilt from
        :data:`REBUILDABLE` only."""
        return cls(**config)
