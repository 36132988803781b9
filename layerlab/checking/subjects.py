"""What ``check_layer`` and ``check_function`` accept besides a layerlab
layer: any ``torch.nn.Module`` (wrapped as a layer with
:class:`layerlab.ModuleLayer`) and any function of tensors (a
``torch.autograd.Function``'s ``apply``, or plain PyTorch code), wrapped as
a layer without a hand-written backward, so that autograd's derivatives of
it (the Function's own ``backward``) are what the checks examine."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..errors import LayerError
from ..layer import Layer

__all__ = ["as_layer", "FunctionLayer"]


def as_layer(obj: Any) -> Layer:
    """A layerlab layer as is; a ``torch.nn.Module`` wrapped as a layer."""
    if isinstance(obj, Layer):
        return obj
    if isinstance(obj, torch.nn.Module):
        from ..layers.module import ModuleLayer   # local: layers import checking-free
        return ModuleLayer(obj)
    hint = " (a function of tensors: check_function(fn, *example_inputs))" \
        if callable(obj) else ""
    raise LayerError(f"check_layer: expected a layerlab.Layer or a torch.nn.Module, got "
                     f"{type(obj).__name__}{hint}")


class FunctionLayer(Layer):
    """A function of tensors as a layer: ``predict(*X) = fn(*X)``, no
    hand-written backward (autograd differentiates ``fn``, through a
    ``torch.autograd.Function``'s own backward). The first dimension of
    each input is the observations.

    Examples:
        >>> layer = FunctionLayer(torch.tanh)
        >>> layer.predict(torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(self, fn: Callable[..., Any], num_inputs: int = 1, num_outputs: int = 1):
        super().__init__()
        if not callable(fn):
            raise LayerError(f"check_function: expected a function, got {type(fn).__name__}")
        self.__dict__["fn"] = fn
        self.__dict__["num_inputs"] = int(num_inputs)
        self.__dict__["num_outputs"] = int(num_outputs)
        self.name = "fn"

    @property
    def label(self) -> str:
        fn = self.__dict__["fn"]
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
            return f"function {owner.__name__}.apply"
        return f"function {getattr(fn, '__name__', None) or repr(fn)}"

    def predict(self, *X):
        return self.__dict__["fn"](*X)

    def __deepcopy__(self, memo):
        # the function is shared, not copied (it may be a bound method)
        new = FunctionLayer(self.__dict__["fn"], self.num_inputs, self.num_outputs)
        memo[id(self)] = new
        return new
