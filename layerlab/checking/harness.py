"""How the checks run the layer under test: fresh copies in a chosen
precision and device, test inputs, and the layer's four entry points
(``predict``, ``forward``, ``backward``, and training through the autograd
bridge) called exactly as training calls them.

The user's layer is never modified: every check works on its own deep copy.
Stochastic layers (dropout) draw their randomness from PyTorch's generator,
which is re-seeded before every training-mode evaluation, so that the same
input gives the same output (the same dropout mask) every time; the
caller's random state is restored when the check ends.
"""

from __future__ import annotations

import copy
import os
import traceback
from typing import Any, Sequence

import torch

from ..autograd_bridge import layer_label, run_layer
from ..layer import Layer
from . import testdata

__all__ = ["Subject", "describe_exception", "as_tuple"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_BRIDGE = os.path.join(os.path.dirname(_HERE), "autograd_bridge.py")
_TORCH = os.path.dirname(os.path.abspath(torch.__file__))


def describe_exception(exc: BaseException) -> str:
    """``"ValueError: ... (at my_layer.py:12)"``: the error and the line of
    the innermost frame outside PyTorch and the checker, i.e. usually the
    layer's own code."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = os.path.abspath(frame.filename)
        if not (path.startswith(_TORCH) or path.startswith(_HERE) or path == _BRIDGE):
            where = f" (at {os.path.basename(path)}:{frame.lineno})"
            break
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}{where}"


def as_tuple(Z: Any) -> tuple:
    return tuple(Z) if isinstance(Z, (tuple, list)) else (Z,)


class Subject:
    """The layer under test, initialised for ``input_sizes``.

    Args:
        layer: the user's layer (left untouched).
        input_sizes: one observation's size for each input.
        seed: fixes the test data order and the layer's randomness.
        initialize: call the copy's ``initialize(input_sizes)`` first.
    """

    def __init__(self, layer: Layer, input_sizes: Sequence[tuple[int, ...]], seed: int = 0,
                 initialize: bool = True):
        self.label = layer_label(layer)
        self.kind = type(layer).__name__
        self.sizes = [tuple(s) for s in input_sizes]
        self.seed = int(seed)
        self.num_inputs = layer.num_inputs
        self.num_outputs = layer.num_outputs
        base = copy.deepcopy(layer)
        # a layer may create its learnables only once it knows its input
        # size (Convolution2d without num_channels)
        if initialize:
            base.initialize([tuple(s) for s in self.sizes])
        self.base = base
        self.has_backward = bool(base.has_backward)
        self.learnable_names = list(base.learnable_names)
        self.state_names = list(base.state_names)
        self.input_names = (["X"] if self.num_inputs == 1 else
                            [f"X{i + 1}" for i in range(self.num_inputs)])
        self.derivative_names = [f"dLd{x}" for x in self.input_names] + \
                                [f"dLd{n}" for n in self.learnable_names]

    # -- copies and data ---------------------------------------------------
    def copy(self, dtype: torch.dtype = torch.float64, device: Any = "cpu",
             unfreeze: bool = True) -> Layer:
        """A fresh copy in ``dtype`` on ``device``; with ``unfreeze`` every
        learnable is trainable, so that every derivative gets checked."""
        layer = copy.deepcopy(self.base).to(device=device, dtype=dtype)
        if unfreeze and self.learnable_names:
            layer.unfreeze()
        return layer

    def inputs(self, n: int = 2, dtype: torch.dtype = torch.float64, device: Any = "cpu",
               variant: int = 0) -> tuple[torch.Tensor, ...]:
        """Test inputs for ``n`` observations; another ``variant`` gives
        other values."""
        out, offset = [], variant * 1_000_003
        for size in self.sizes:
            shape = (n, *size)
            out.append(testdata.input_values(shape, offset=offset, seed=self.seed,
                                             dtype=dtype, device=device))
            offset += out[-1].numel()
        return tuple(out)

    def output_gradients(self, Zs: Sequence[torch.Tensor], variant: int = 0):
        """``dLdZ`` for outputs like ``Zs``."""
        out, offset = [], variant * 1_000_003
        for Z in Zs:
            out.append(testdata.output_gradient_values(tuple(Z.shape), offset=offset,
                                                       seed=self.seed, dtype=Z.dtype,
                                                       device=Z.device))
            offset += Z.numel()
        return tuple(out)

    def reseed(self, device: Any = "cpu") -> None:
        """Fix the layer's randomness (only the generator of ``device``:
        seeding all devices would queue a seed for a CUDA generator not yet
        in use, changing the caller's random numbers later)."""
        torch.default_generator.manual_seed(self.seed)
        if torch.device(device).type == "cuda":
            torch.cuda.manual_seed(self.seed)

    # -- the layer's entry points -------------------------------------------
    def predict(self, layer: Layer, X: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return self._outputs(layer.predict(*X), "predict")

    def forward(self, layer: Layer, X: Sequence[torch.Tensor]):
        """The raw training forward: ``(Zs, memory)``."""
        self.reseed(X[0].device)
        with torch.no_grad():
            result = layer.forward(*X)
        if not isinstance(result, tuple) or len(result) != 2:
            got = type(result).__name__ + (f" of length {len(result)}"
                                           if isinstance(result, (tuple, list)) else "")
            raise TypeError(f"forward must return (Z, memory), got {got}")
        return self._outputs(result[0], "forward"), result[1]

    def backward_raw(self, layer: Layer, X: Sequence[torch.Tensor],
                     Zs: Sequence[torch.Tensor], dLdZ: Sequence[torch.Tensor], memory: Any):
        """Call the layer's own ``backward`` with the arguments the autograd
        bridge gives it (``None`` for what ``backward_uses`` leaves out).
        Outside the bridge every derivative counts as needed."""
        uses = layer.backward_uses
        Xa = tuple(X) if "X" in uses else (None,) * len(X)
        Za = tuple(Zs) if "Z" in uses else (None,) * len(Zs)
        with torch.no_grad():
            return layer.backward(*Xa, *Za, *dLdZ, memory if "memory" in uses else None)

    def derivatives(self, layer: Layer, X: Sequence[torch.Tensor], dLdZ=None):
        """What training gets as derivatives, one per input and learnable:
        the layer's own ``backward`` output, as returned, for a layer with
        one; autograd's derivatives of ``forward`` otherwise (``None`` for
        one that does not exist). Returns ``(derivatives, Zs)``."""
        if self.has_backward:
            Zs, memory = self.forward(layer, X)
            if dLdZ is None:
                dLdZ = self.output_gradients(Zs)
            return self.backward_raw(layer, X, Zs, dLdZ, memory), Zs
        grads, Zs = self.training_gradients(layer, X, dLdZ)
        return tuple(grads), Zs

    def training_gradients(self, layer: Layer, X: Sequence[torch.Tensor], dLdZ=None,
                           create_graph: bool = False):
        """Derivatives of ``L = sum(dLdZ * Z)`` with respect to every input
        and learnable as training computes them: the training forward through
        the autograd bridge (the layer's own backward when it has one).
        Returns ``(list of tensors or None, Zs)``; ``Zs`` detached."""
        self.reseed(X[0].device)
        Xg = [x.detach().clone().requires_grad_(True) for x in X]
        params = list(layer.learnables().values())
        with torch.enable_grad():
            Zs = as_tuple(run_layer(layer, tuple(Xg), training=True))
            if dLdZ is None:
                dLdZ = self.output_gradients([z.detach() for z in Zs])
            L = sum((g * z).sum() for g, z in zip(dLdZ, Zs))
            wrt = Xg + [p for p in params if p.requires_grad]
            got = torch.autograd.grad(L, wrt, allow_unused=True, create_graph=create_graph)
        grads: list[torch.Tensor | None] = list(got[:len(Xg)])
        it = iter(got[len(Xg):])
        grads += [next(it) if p.requires_grad else None for p in params]
        return grads, tuple(z.detach() for z in Zs)

    def _outputs(self, Z: Any, method: str) -> tuple[torch.Tensor, ...]:
        n = self.num_outputs
        Zs = as_tuple(Z) if n > 1 else (Z,)
        if len(Zs) != n or not all(isinstance(z, torch.Tensor) for z in Zs):
            want = "a tensor" if n == 1 else f"{n} tensors (num_outputs = {n})"
            raise TypeError(f"{method} must return {want}, got {type(Z).__name__}")
        return Zs

    # -- state --------------------------------------------------------------
    def snapshot(self, layer: Layer) -> dict[str, torch.Tensor]:
        return {n: getattr(layer, n).detach().clone() for n in layer.state_names}

    @staticmethod
    def restore(layer: Layer, snapshot: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, t in snapshot.items():
                cur = getattr(layer, n)
                if cur.shape == t.shape and cur.dtype == t.dtype:
                    cur.copy_(t)
                else:
                    setattr(layer, n, t.clone())
