"""What the checks read of the layer contract and of the autograd bridge,
in one place: the training forward, whether the hand-written backward is
used, how derivatives are named, and which PyTorch features the bridge
supports (``torch.func`` and second derivatives through a hand-written
backward arrived with the "PyTorch citizen" work; before it, the checks
that need them are skipped with that reason instead of failing every
hand-written layer)."""

from __future__ import annotations

from typing import Any

import torch

from .. import autograd_bridge
from ..layer import Layer

__all__ = ["training_forward", "defines_training_forward", "uses_backward", "label",
           "derivative_name", "bridge_supports_torch_func", "bridge_supports_double_backward",
           "as_outputs", "unpack_forward", "backward_keeps"]


def label(layer) -> str:
    """How reports name a layer: ``'elu_1' (ELU)`` (``Layer.label``)."""
    return layer.label


def training_forward(layer: Layer):
    """The layer's training computation returning ``(Z, memory)``: the
    ``forward`` its class defines (``Layer.training_forward``)."""
    return getattr(layer, "training_forward", None) or layer.forward


def defines_training_forward(layer: Layer) -> bool:
    """Whether the layer's class defines its own training forward."""
    if hasattr(Layer, "training_forward"):
        return type(layer).training_forward is not Layer.training_forward
    return type(layer).forward is not Layer.forward


def uses_backward(layer: Layer) -> bool:
    """Whether training goes through the layer's hand-written backward."""
    return bool(layer.has_backward) and not bool(getattr(layer, "use_autograd", False))


def derivative_name(what: str) -> str:
    """``"X"`` -> ``"dLdX"``, learnable ``"alpha"`` -> ``"dLdalpha"``: the
    contract's naming (``dLd`` + the name as declared, as in MATLAB's
    ``dLd<Name>``)."""
    return f"dLd{what}"


def as_outputs(layer: Layer, Z: Any, method: str) -> tuple[torch.Tensor, ...]:
    """The outputs as a tuple, checked as the bridge checks them."""
    return autograd_bridge._as_outputs(layer, Z, method)


def unpack_forward(layer: Layer, result: Any) -> tuple[Any, Any]:
    """``(Z, memory)`` from a training forward's result, as the bridge reads it."""
    return autograd_bridge._unpack_forward(layer, result)


def backward_keeps(layer: Layer) -> tuple[bool, bool, bool]:
    """Whether training keeps X, Z and memory for ``backward``
    (``Layer.backward_uses``); what is not kept is passed as ``None``."""
    uses = layer.backward_uses
    return "X" in uses, "Z" in uses, "memory" in uses


def bridge_supports_torch_func() -> bool:
    """Whether a hand-written backward works under ``torch.func`` (vmap,
    grad): the bridge's Function defines ``setup_context``."""
    fn = autograd_bridge._HandWrittenBackward
    return fn.setup_context is not torch.autograd.Function.setup_context


def bridge_supports_double_backward() -> bool:
    """Whether the bridge differentiates a hand-written backward again
    (second derivatives) instead of being ``once_differentiable``."""
    return bridge_supports_torch_func() and hasattr(Layer, "backward_is_differentiable")
