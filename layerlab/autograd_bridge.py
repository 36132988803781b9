"""Runs a layer in training or inference, bridging a hand-written
``backward`` into PyTorch's autograd.

A layer with its own ``backward`` is wrapped in a ``torch.autograd.Function``
whose forward calls the layer's ``forward`` and whose backward calls the
layer's ``backward``. The inputs, outputs and the tensors of the ``memory``
value are kept with ``ctx.save_for_backward`` (never as attributes of
``ctx``, which would leak them), so they are freed with the graph.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from .errors import LayerError

__all__ = ["run_layer", "layer_label"]


def layer_label(layer) -> str:
    """How errors name a layer: ``'elu_1' (ELU)``."""
    return f"'{layer.name}' ({type(layer).__name__})" if layer.name else type(layer).__name__


def _as_outputs(layer, Z: Any, method: str) -> tuple[torch.Tensor, ...]:
    n = layer.num_outputs
    if n == 1:
        if isinstance(Z, torch.Tensor):
            return (Z,)
        raise LayerError(f"layer {layer_label(layer)}: {method} must return a tensor, "
                         f"got {type(Z).__name__}")
    if not isinstance(Z, (tuple, list)) or len(Z) != n or \
            not all(isinstance(z, torch.Tensor) for z in Z):
        raise LayerError(f"layer {layer_label(layer)}: {method} must return {n} tensors "
                         f"(num_outputs={n}), got {type(Z).__name__}"
                         + (f" of length {len(Z)}" if isinstance(Z, (tuple, list)) else ""))
    return tuple(Z)


def _unpack_forward(layer, result: Any) -> tuple[Any, Any]:
    if not isinstance(result, tuple) or len(result) != 2:
        raise LayerError(f"layer {layer_label(layer)}: forward must return (Z, memory), "
                         f"got {type(result).__name__}"
                         + (f" of length {len(result)}" if isinstance(result, tuple) else ""))
    return result


# ---- memory values: any nesting of tuples, lists and dicts of tensors -----
def _flatten(memory: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(memory, torch.Tensor):
        tensors.append(memory)
        return ("T", len(tensors) - 1)
    if isinstance(memory, (tuple, list)):
        return (type(memory).__name__, [_flatten(m, tensors) for m in memory])
    if isinstance(memory, dict):
        return ("dict", {k: _flatten(v, tensors) for k, v in memory.items()})
    return ("V", memory)


def _unflatten(spec: Any, tensors: tuple[torch.Tensor, ...]) -> Any:
    kind, payload = spec
    if kind == "T":
        return tensors[payload]
    if kind == "tuple":
        return tuple(_unflatten(s, tensors) for s in payload)
    if kind == "list":
        return [_unflatten(s, tensors) for s in payload]
    if kind == "dict":
        return {k: _unflatten(v, tensors) for k, v in payload.items()}
    return payload


class _HandWrittenBackward(torch.autograd.Function):
    """``forward(ctx, layer, n_in, *X, *W)``: W are the layer's learnables in
    declaration order, passed so that autograd routes their derivatives."""

    @staticmethod
    def forward(ctx, layer, n_in, *args):  # type: ignore[override]
        X = args[:n_in]
        Z, memory = _unpack_forward(layer, layer.forward(*X))
        Zs = _as_outputs(layer, Z, "forward")
        mem_tensors: list[torch.Tensor] = []
        ctx.mem_spec = _flatten(memory, mem_tensors)
        ctx.layer = layer
        ctx.n_in = n_in
        ctx.n_out = len(Zs)
        ctx.shapes = [(a.shape, a.dtype) for a in args]
        # keep only what backward reads (Layer.backward_uses), so that an
        # unused input or output is not held alive until the backward pass
        # read once: a layer may decide per instance (a property), and what
        # was kept here is what backward must unpack
        uses = layer.backward_uses
        ctx.keeps = ("X" in uses, "Z" in uses, "memory" in uses)
        ctx.save_for_backward(*(X if ctx.keeps[0] else ()), *(Zs if ctx.keeps[1] else ()),
                              *(mem_tensors if ctx.keeps[2] else ()))
        return Zs if layer.num_outputs > 1 else Zs[0]

    @staticmethod
    @once_differentiable
    def backward(ctx, *dLdZ):  # type: ignore[override]
        layer = ctx.layer
        saved = ctx.saved_tensors
        n_in = ctx.n_in if ctx.keeps[0] else 0
        n_out = ctx.n_out if ctx.keeps[1] else 0
        X = saved[:n_in] if n_in else (None,) * ctx.n_in
        Z = saved[n_in:n_in + n_out] if n_out else (None,) * ctx.n_out
        rest = saved[n_in + n_out:]
        memory = _unflatten(ctx.mem_spec, rest) if ctx.keeps[2] else None
        layer._needs = ctx.needs_input_grad[2:]
        try:
            grads = layer.backward(*X, *Z, *dLdZ, memory)
        finally:
            layer._needs = None
        grads = _check_gradients(layer, grads, ctx.shapes, ctx.n_in)
        return (None, None, *grads)


def _gradient_names(layer, n_in: int) -> list[str]:
    return [f"dLdX{i + 1}" if n_in > 1 else "dLdX" for i in range(n_in)] + \
           [f"dLd{n}" for n in layer.learnable_names]


def _check_gradients(layer, grads: Any, shapes: list, n_in: int):
    # runs every training step: the common case (right shapes and dtypes)
    # costs a few comparisons; names are built only for an error message
    expected = len(shapes)
    if isinstance(grads, (tuple, list)) and len(grads) == expected and all(
            g is None or (isinstance(g, torch.Tensor) and g.shape == shape and g.dtype == dtype)
            for g, (shape, dtype) in zip(grads, shapes)):
        return list(grads)
    names = _gradient_names(layer, n_in)
    if isinstance(grads, torch.Tensor) or grads is None:
        grads = (grads,)
    if not isinstance(grads, (tuple, list)) or len(grads) != expected:
        got = len(grads) if isinstance(grads, (tuple, list)) else type(grads).__name__
        raise LayerError(
            f"layer {layer_label(layer)}: backward must return {expected} derivatives "
            f"({', '.join(names)}), got {got}")
    out = []
    for g, (shape, dtype), name in zip(grads, shapes, names):
        if g is None:
            out.append(None)
            continue
        if not isinstance(g, torch.Tensor):
            raise LayerError(f"layer {layer_label(layer)}: backward's {name} must be a tensor "
                             f"or None, got {type(g).__name__}")
        if g.shape != shape:
            raise LayerError(f"layer {layer_label(layer)}: backward's {name} has size "
                             f"{tuple(g.shape)}, expected {tuple(shape)}")
        if g.dtype != dtype:
            raise LayerError(f"layer {layer_label(layer)}: backward's {name} is {g.dtype}, "
                             f"expected {dtype} like its input")
        out.append(g)
    return out


def _full_precision(layer, X: tuple[torch.Tensor, ...], params: list[torch.Tensor]):
    """Mixed precision (autocast): a layer with a hand-written backward runs
    in full precision, as ``torch.amp.custom_fwd(cast_inputs=torch.float32)``
    runs a custom autograd Function: its inputs are cast to its learnables'
    dtype (float32 without learnables) and autocast is off inside it, so its
    forward and backward see the dtypes they see without mixed precision."""
    dtype = params[0].dtype if params else torch.float32
    X = tuple(x.to(dtype) if x.is_floating_point() else x for x in X)
    with torch.autocast(X[0].device.type, enabled=False):
        return _HandWrittenBackward.apply(layer, len(X), *X, *params)


def run_layer(layer, X: tuple[torch.Tensor, ...], training: bool):
    """Run ``layer`` on inputs ``X``: ``predict`` at inference, ``forward``
    in training, through the hand-written ``backward`` when the layer has
    one and a derivative is needed. Returns the output (a tuple when the
    layer has several)."""
    if len(X) != layer.num_inputs:
        raise LayerError(f"layer {layer_label(layer)} takes {layer.num_inputs} input(s), "
                         f"got {len(X)}")
    if not training:
        Z = layer.predict(*X)
        _as_outputs(layer, Z, "predict")
        return Z
    params = list(layer.learnables().values())
    if layer.has_backward and torch.is_grad_enabled() and (
            any(p.requires_grad for p in params) or any(x.requires_grad for x in X)):
        if X and torch.is_autocast_enabled(X[0].device.type):
            return _full_precision(layer, X, params)
        return _HandWrittenBackward.apply(layer, len(X), *X, *params)
    Z, _ = _unpack_forward(layer, layer.forward(*X))
    _as_outputs(layer, Z, "forward")
    return Z
