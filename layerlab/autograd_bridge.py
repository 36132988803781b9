"""Runs a layer in training or inference, bridging a hand-written
``backward`` into PyTorch's autograd.

A layer with its own ``backward`` is wrapped in a ``torch.autograd.Function``
whose forward calls the layer's ``forward`` and whose backward calls the
layer's ``backward``. The inputs, outputs and the tensors of the ``memory``
value are kept with ``ctx.save_for_backward`` (never as attributes of
``ctx``, which would leak them), so they are freed with the graph.
"""

from __future__ import annotations

import operator
from typing import Any

import torch

from .errors import LayerError, LayerlabError

__all__ = ["run_layer"]


def _as_outputs(layer, Z: Any, method: str) -> tuple[torch.Tensor, ...]:
    n = layer.num_outputs
    if n == 1:
        if isinstance(Z, torch.Tensor):
            return (Z,)
        raise LayerError(f"layer {layer.label}: {method} must return a tensor, "
                         f"got {type(Z).__name__}")
    if not isinstance(Z, (tuple, list)) or len(Z) != n or \
            not all(isinstance(z, torch.Tensor) for z in Z):
        raise LayerError(f"layer {layer.label}: {method} must return {n} tensors "
                         f"(num_outputs={n}), got {type(Z).__name__}"
                         + (f" of length {len(Z)}" if isinstance(Z, (tuple, list)) else ""))
    return tuple(Z)


def _unpack_forward(layer, result: Any) -> tuple[Any, Any]:
    if not isinstance(result, tuple) or len(result) != 2:
        raise LayerError(f"layer {layer.label}: forward must return (Z, memory), "
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


class _Box:
    """Carries the structure of ``memory`` from forward to setup_context (an
    object, not a list: torch.func rebuilds lists, a pytree node)."""

    __slots__ = ("spec", "params", "rng")

    def __init__(self, params):
        self.spec = self.rng = None
        self.params = params     # the layer's own learnables, as run_layer passed them

    def stand_ins(self, W) -> bool:
        """Whether ``W`` are not the layer's own learnables (torch.func)."""
        return not all(map(operator.is_, W, self.params))


class _Slots:
    """Temporarily make the layer compute with the tensors autograd passes
    to the Function (under ``torch.func`` they are not the layer's own
    Parameter objects but their unwrapped or functional stand-ins)."""

    __slots__ = ("layer", "names", "values", "saved")

    def __init__(self, layer, values):
        self.layer, self.values = layer, values
        self.names = layer.learnable_names if values else []
        self.saved = None

    def __enter__(self):
        if not self.values:
            return self
        current = self.layer.learnables()
        if all(current[n] is v for n, v in zip(self.names, self.values)):
            return self
        self.saved = [(n, current[n]) for n in self.names]
        for n, v in zip(self.names, self.values):
            _set_learnable(self.layer, n, v)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            for n, v in self.saved:
                _set_learnable(self.layer, n, v)


def _set_learnable(layer, name: str, value: torch.Tensor) -> None:
    owner, attr = layer, name
    if name not in layer._parameters:   # a submodule's parameter, by dotted path
        for mname, module in layer._modules.items():
            for pname, _ in module.named_parameters():
                if layer._submodule_learnable_name(mname, pname) == name:
                    *path, attr = pname.split(".")
                    owner = module.get_submodule(".".join(path)) if path else module
                    break
            else:
                continue
            break
    owner._parameters[attr] = value


def _dead_wrapper_unwrapper():
    """What ``torch.autograd.Function.apply`` uses to unwrap dead
    ``torch.func`` wrappers before the C++ apply, where this PyTorch has it
    and the transform test (else ``None``: Function.apply is used)."""
    try:
        torch._C._are_functorch_transforms_active  # noqa: B018 - must exist too
        return torch._C._functorch.unwrap_if_dead
    except AttributeError:
        return None


_unwrap_if_dead = _dead_wrapper_unwrapper()


class _HandWrittenBackward(torch.autograd.Function):
    """``apply(layer, n_in, box, *X, *W)``: W are the layer's learnables in
    declaration order, passed so that autograd routes their derivatives;
    ``box`` is a fresh :class:`_Box` through which forward hands
    ``setup_context`` the structure of ``memory``.

    The outputs are ``(*Z, *memory tensors)``: the memory tensors are
    outputs (non-differentiable) so that ``setup_context`` can save them and
    ``torch.func.vmap`` batches them (``generate_vmap_rule``).

    Second derivatives: when backward itself is differentiated
    (``create_graph=True``, ``torch.func.grad`` of a gradient), the layer's
    ``training_forward`` is run again from the saved input with autograd on,
    so that ``memory`` depends on ``X`` and the learnables, and the layer's
    ``backward`` is run on that graph: its ops give the second derivative.
    State (batch normalization's running statistics) is restored after that
    rerun; a stochastic layer reruns under the random state of the first run.
    """

    generate_vmap_rule = True

    @classmethod
    def fast_apply(cls, *args):
        """``apply(*args)`` without its argument binding.
        torch.autograd.Function.apply binds the arguments to forward's
        signature with inspect on every call (about 50 us, as much as the
        rest of the bridge); forward takes no keywords or defaults, so
        binding changes nothing: go straight to the C++ apply, as
        Function.apply does after binding, unless a torch.func transform is
        active or torch.compile is tracing: then Function.apply's own route
        (a separate method rather than an override of ``apply``, which
        Dynamo before PyTorch 2.12 cannot trace)."""
        if (_unwrap_if_dead is None or torch._C._are_functorch_transforms_active()
                or torch.compiler.is_compiling()):
            return cls.apply(*args)
        # args: layer, n_in, box (not tensors), then the tensors
        return super(torch.autograd.Function, cls).apply(
            *args[:3], *map(_unwrap_if_dead, args[3:]))

    @staticmethod
    def forward(layer, n_in, box, *args):  # type: ignore[override]
        X = args[:n_in]
        W = args[n_in:]
        if layer.is_stochastic:    # replayed if backward is differentiated
            box.rng = torch.get_rng_state()
        with _Slots(layer, W if box.stand_ins(W) else ()):
            Z, memory = _unpack_forward(
                layer, _user_code(layer, "forward", layer.training_forward, *X))
        Zs = _as_outputs(layer, Z, "forward")
        mem_tensors: list[torch.Tensor] = []
        box.spec = _flatten(memory, mem_tensors)
        # outputs must be new tensors (an input returned as-is would alias it)
        outs = [z if not any(z is a for a in args) else z.view_as(z) for z in Zs]
        return (*outs, *(m.detach() for m in mem_tensors))

    @staticmethod
    def setup_context(ctx, inputs, output):
        layer, n_in, box = inputs[:3]
        args = inputs[3:]
        X, W = args[:n_in], args[n_in:]
        n_out = layer.num_outputs
        Zs, mem_tensors = output[:n_out], output[n_out:]
        if mem_tensors:
            ctx.mark_non_differentiable(*mem_tensors)
            # no zero-filled gradient for each memory tensor (autograd would
            # make one the size of, say, a whole activation every step):
            # backward fills in only an output Z that got none
            ctx.set_materialize_grads(False)
            ctx.out_meta = [(z.shape, z.dtype, z.device) for z in Zs]
        ctx.mem_spec = box.spec
        ctx.layer = layer
        ctx.n_in, ctx.n_out, ctx.n_mem = n_in, n_out, len(mem_tensors)
        ctx.shapes = [(a.shape, a.dtype) for a in args]
        # keep only what backward reads (Layer.backward_uses), so that an
        # unused input or output is not held alive until the backward pass;
        # read once: a layer may decide per instance (a property), and what
        # is kept here is what backward unpacks
        uses = layer.backward_uses
        ctx.keeps_x, ctx.keeps_z, ctx.keeps_memory = "X" in uses, "Z" in uses, "memory" in uses
        ctx.rng_state = box.rng
        # W are needed only where they are not the layer's own Parameters
        # (torch.func passes stand-ins); the layer's own are read from it
        if not box.stand_ins(W):
            W = ()
        ctx.n_w = len(W)
        ctx.save_for_backward(*(X if ctx.keeps_x else ()), *(Zs if ctx.keeps_z else ()),
                              *(mem_tensors if ctx.keeps_memory else ()), *W)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        layer = ctx.layer
        dLdZ = grads[:ctx.n_out]
        if ctx.n_mem and any(g is None for g in dLdZ):   # see setup_context
            dLdZ = tuple(torch.zeros(shape, dtype=dtype, device=device) if g is None else g
                         for g, (shape, dtype, device) in zip(dLdZ, ctx.out_meta))
        saved = list(ctx.saved_tensors)
        W = saved[len(saved) - ctx.n_w:] if ctx.n_w else []
        X = [saved.pop(0) for _ in range(ctx.n_in)] if ctx.keeps_x else [None] * ctx.n_in
        Z = [saved.pop(0) for _ in range(ctx.n_out)] if ctx.keeps_z else [None] * ctx.n_out
        mem = [saved.pop(0) for _ in range(ctx.n_mem)] if ctx.keeps_memory else None
        memory = _unflatten(ctx.mem_spec, mem) if mem is not None else None
        if torch.is_grad_enabled():   # backward is being differentiated
            X, Z, memory = _for_second_derivative(ctx, layer, X, Z, memory, W)
        with _Slots(layer, W):
            # as layer.backward_with_needs, whose length check autograd's
            # needs (one per input and learnable) do not need
            dW = _user_code(layer, "backward", layer._backward_with,
                            ctx.needs_input_grad[3:], (*X, *Z, *dLdZ, memory))
        dW = _check_gradients(layer, dW, ctx.shapes, ctx.n_in)
        _check_frozen_by_none(layer, dW, ctx.needs_input_grad[3:], ctx.n_in)
        return (None, None, None, *dW)

def _floating(memory: Any) -> bool:
    tensors: list[torch.Tensor] = []
    _flatten(memory, tensors)
    return any(t.is_floating_point() for t in tensors)


def _for_second_derivative(ctx, layer, X, Z, memory, W):
    """X, Z and memory as functions of the input and the learnables, for a
    backward whose own derivative is wanted."""
    if not layer.backward_is_differentiable:
        raise LayerError(
            f"layer {layer.label}: its backward is not differentiable "
            f"(backward_is_differentiable = False), so second derivatives (create_graph=True, "
            f"gradient penalties, Hessian-vector products, torch.func.grad of a gradient) "
            f"cannot go through it; set layer.use_autograd = True to let autograd "
            f"differentiate its forward instead")
    # Z (an output of this Function) is differentiable already, and memory
    # that is not floating (masks, indices) has no derivative: nothing to
    # recompute unless memory holds floating tensors
    if memory is None or not _floating(memory):
        return X, Z, memory
    if not ctx.keeps_x:
        raise LayerError(
            f"layer {layer.label}: second derivatives through its backward need its "
            f"input X to recompute its memory, but backward_uses = "
            f"{tuple(layer.backward_uses)} does not keep X; add 'X' to backward_uses "
            f"or set layer.use_autograd = True")
    state = {k: b.clone() for k, b in layer.named_buffers()}
    rng = torch.random.fork_rng(devices=[]) if layer.is_stochastic else None
    try:
        if rng is not None:
            rng.__enter__()
            torch.set_rng_state(ctx.rng_state)
        with _Slots(layer, W):
            Zr, memory = _unpack_forward(layer, layer.training_forward(*X))
    finally:
        if rng is not None:
            rng.__exit__(None, None, None)
        # through .data: the rerun's graph may hold a buffer (batch_norm
        # saves the running statistics), and a copy that bumped its version
        # would make that graph unusable (the fused chain's inner outputs)
        with torch.no_grad():
            for k, b in layer.named_buffers():
                b.data.copy_(state[k])
    Zs = _as_outputs(layer, Zr, "forward")
    return X, list(Zs) if ctx.keeps_z else Z, memory if ctx.keeps_memory else None


def _gradient_names(layer, n_in: int) -> list[str]:
    return [f"dLdX{i + 1}" if n_in > 1 else "dLdX" for i in range(n_in)] + \
           [f"dLd{n}" for n in layer.learnable_names]


def _name_the_layer(exc: BaseException, layer, method: str) -> None:
    """Say in the traceback which layer's code raised (the exception keeps
    its type, so a user's own except clauses still catch it)."""
    note = f"raised in the {method} of layer {layer.label}"
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


def _user_code(layer, method: str, fn, *args):
    """``fn(*args)``, a user layer's own code: an exception it raises keeps its
    type and gains a note naming the layer."""
    try:
        return fn(*args)
    except LayerlabError:
        raise
    except Exception as exc:
        _name_the_layer(exc, layer, method)
        raise


def _check_frozen_by_none(layer, grads: list, needs: tuple, n_in: int) -> None:
    """A learnable that needs a gradient must not get None from backward: it
    would silently never train."""
    names = None
    for k in range(n_in, len(grads)):
        if grads[k] is None and k < len(needs) and needs[k]:
            names = names or _gradient_names(layer, n_in)
            learnable = layer.learnable_names[k - n_in]
            raise LayerError(
                f"layer {layer.label}: backward returned None for {names[k]}, but learnable "
                f"'{learnable}' is trained (it requires a gradient), so it would never "
                f"change; return its derivative, or freeze it with "
                f"layer.freeze({learnable!r}) (backward may test "
                f"self.needs_gradient({learnable!r}))")


def check_output_dtype(layer, X: tuple, Z: Any, method: str) -> None:
    """The output keeps the input's floating type (else the next layer would
    be blamed for a mismatch this layer made). Networks check it after each
    layer; check_layer's ``types`` test reports it on a single layer."""
    x = next((x for x in X if isinstance(x, torch.Tensor) and x.is_floating_point()), None)
    if x is None or x.is_meta or torch.is_autocast_enabled(x.device.type):
        return
    for z in (Z if isinstance(Z, (tuple, list)) else (Z,)):
        if isinstance(z, torch.Tensor) and z.dtype != x.dtype:
            raise LayerError(f"layer {layer.label}: {method} returned {z.dtype} for "
                             f"{x.dtype} input; return the input's type (e.g. create new "
                             f"tensors with dtype=X.dtype)")


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
            f"layer {layer.label}: backward must return {expected} derivatives "
            f"({', '.join(names)}), got {got}")
    out = []
    for g, (shape, dtype), name in zip(grads, shapes, names):
        if g is None:
            out.append(None)
            continue
        if not isinstance(g, torch.Tensor):
            raise LayerError(f"layer {layer.label}: backward's {name} must be a tensor "
                             f"or None, got {type(g).__name__}")
        if g.shape != shape:
            raise LayerError(f"layer {layer.label}: backward's {name} has size "
                             f"{tuple(g.shape)}, expected {tuple(shape)}")
        if g.dtype != dtype:
            raise LayerError(f"layer {layer.label}: backward's {name} is {g.dtype}, "
                             f"expected {dtype} like its input")
        out.append(g)
    return out


def _apply_hand_written(layer, X: tuple[torch.Tensor, ...], params: list[torch.Tensor]):
    """The layer's forward with its hand-written backward as the derivative.

    Under mixed precision (autocast) the caller casts the inputs to the
    learnables' dtype and turns autocast off, as
    ``torch.amp.custom_fwd(cast_inputs=torch.float32)`` does for a custom
    autograd Function, so forward and backward see the dtypes they see
    without mixed precision."""
    try:
        out = _HandWrittenBackward.fast_apply(layer, len(X), _Box(params), *X, *params)
    except (NotImplementedError, RuntimeError) as exc:
        if "jvp" not in str(exc):
            raise
        # forward-mode AD (torch.func.jvp, torch.autograd.forward_ad) does
        # not go through a hand-written backward (a custom jvp would
        # break torch.compile's graph): autograd differentiates forward
        return _unpack_forward(layer, layer.training_forward(*X))[0]
    n = layer.num_outputs
    return out[0] if n == 1 else tuple(out[:n])


def run_layer(layer, X: tuple[torch.Tensor, ...], training: bool):
    """Run ``layer`` on inputs ``X``: ``predict`` at inference, ``forward``
    in training, through the hand-written ``backward`` when the layer has
    one and a derivative is needed. Returns the output (a tuple when the
    layer has several)."""
    if len(X) != layer.num_inputs:
        raise LayerError(f"layer {layer.label} takes {layer.num_inputs} input(s), "
                         f"got {len(X)}")
    if not training:
        Z = _user_code(layer, "predict", layer.predict, *X)
        _as_outputs(layer, Z, "predict")
        return Z
    params = layer._learnable_values()
    if layer.has_backward and not layer.use_autograd and torch.is_grad_enabled() and (
            any(p.requires_grad for p in params) or any(x.requires_grad for x in X)):
        if X and torch.is_autocast_enabled(X[0].device.type):
            # mixed precision: the hand-written layer runs in full precision
            dtype = params[0].dtype if params else torch.float32
            X = tuple(x.to(dtype) if x.is_floating_point() else x for x in X)
            with torch.autocast(X[0].device.type, enabled=False):
                return _apply_hand_written(layer, X, params)
        return _apply_hand_written(layer, X, params)
    Z, _ = _unpack_forward(layer, _user_code(layer, "forward", layer.training_forward, *X))
    _as_outputs(layer, Z, "forward")
    return Z
