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

from ..autograd_bridge import run_layer
from ..layer import Layer
from . import contract, testdata

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
        self.label = contract.label(layer)
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
        self.has_backward = contract.uses_backward(base)
        self.learnable_names = list(base.learnable_names)
        # State, and the buffers of modules inside the layer
        self.state_names = [n for n, _ in base.named_buffers()]
        self.input_names = (["X"] if self.num_inputs == 1 else
                            [f"X{i + 1}" for i in range(self.num_inputs)])
        self.derivative_names = [contract.derivative_name(x) for x in
                                 self.input_names + self.learnable_names]
        #: warnings for the report (e.g. random numbers drawn in __init__)
        self.warnings: list[str] = []
        #: work started before the tests run (the fresh-process round trip)
        self.background: dict[str, Any] = {}

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
        """predict in inference mode (``layer.eval()``, as a network predicts:
        a wrapped torch.nn module follows the mode), the mode restored after."""
        was = layer.training
        layer.eval()
        try:
            with torch.no_grad():
                return self._outputs(layer.predict(*X), "predict")
        finally:
            layer.train(was)

    def forward(self, layer: Layer, X: Sequence[torch.Tensor]):
        """The raw training forward: ``(Zs, memory)``."""
        self.reseed(X[0].device)
        with torch.no_grad():
            Z, memory = contract.unpack_forward(layer, contract.training_forward(layer)(*X))
        return self._outputs(Z, "forward"), memory

    def backward_raw(self, layer: Layer, X: Sequence[torch.Tensor],
                     Zs: Sequence[torch.Tensor], dLdZ: Sequence[torch.Tensor], memory: Any):
        """Call the layer's own ``backward`` with the arguments the autograd
        bridge gives it (``None`` for what ``backward_uses`` leaves out).
        Outside the bridge every derivative counts as needed."""
        keeps_x, keeps_z, keeps_memory = contract.backward_keeps(layer)
        Xa = tuple(X) if keeps_x else (None,) * len(X)
        Za = tuple(Zs) if keeps_z else (None,) * len(Zs)
        with torch.no_grad():
            return layer.backward(*Xa, *Za, *dLdZ, memory if keeps_memory else None)

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
        return contract.as_outputs(self.base, Z, method)

    # -- state --------------------------------------------------------------
    def snapshot(self, layer: Layer) -> dict[str, torch.Tensor]:
        """The layer's State, and the buffers of modules inside it (a
        wrapped torch.nn.BatchNorm2d's running statistics), by dotted name."""
        return {n: b.detach().clone() for n, b in layer.named_buffers()}

    @staticmethod
    def restore(layer: Layer, snapshot: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, t in snapshot.items():
                *path, attr = n.split(".")
                owner = layer.get_submodule(".".join(path)) if path else layer
                cur = getattr(owner, attr)
                if cur.shape == t.shape and cur.dtype == t.dtype:
                    cur.copy_(t)
                else:
                    setattr(owner, attr, t.clone())
