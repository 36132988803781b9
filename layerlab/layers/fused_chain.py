"""A chain of layers with hand-written backwards, run as one layer.

Each layer a network runs through the autograd bridge costs one
``torch.autograd.Function`` node: its bookkeeping (saving the values for
backward, the engine's call back into Python, checking what backward
returns) is paid per layer and per step. On small layers that bookkeeping,
not the arithmetic, is the step: the experiments' deep MLP, ten blocks of
fully connected 100 + batch norm + ELU on mini-batches of 100, spends less
time in its products and kernels than in the Python around them. A
:class:`FusedChain` pays it once for the whole chain.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .. import kernels
from ..errors import LayerError
from ..layer import Layer

__all__ = ["FusedChain", "DenseBatchNormELUChain"]


class FusedChain(Layer):
    r"""Layers ``f_1, ..., f_k``, each with one input, one output and its own
    ``backward``, computed as one layer: :math:`Z = f_k(\cdots f_1(X))`.

    Training runs each part's ``forward`` in turn and keeps every part's
    input, output and ``memory``; backward runs the parts' ``backward`` in
    reverse, each part's :math:`\partial L / \partial X` being the
    :math:`\partial L / \partial Z` of the part before it:

    .. math::
        \frac{\partial L}{\partial Z_{i-1}} = \mathrm{backward}_i\Big(Z_{i-1}, Z_i,
            \frac{\partial L}{\partial Z_i}, \mathrm{memory}_i\Big)_X,
        \qquad Z_0 = X,\ Z_k = Z

    Each part is told which of its derivatives are needed
    (:meth:`~layerlab.Layer.backward_with_needs`): the chain's own needs for
    its learnables, the chain's for the first part's input, and always the
    input's derivative for the others. The values are the parts' own, so
    a chain computes exactly what its parts compute one by one.

    A layer makes chains by returning one from
    :meth:`~layerlab.Layer.fused_with`:
    :class:`~layerlab.layers.fused.DenseBatchNormELU` chains with the next
    such block, so a network runs the deep MLP's ten blocks as one layer.

    Args:
        parts: the layers, in order (at least two). A part that is itself
            a chain contributes its parts.

    Shape: the first part's input to the last part's output. Learnables:
    the parts', as ``parts.<i>.<name>``.
    """

    backward_uses = ("X", "Z", "memory")

    def __init__(self, parts: Sequence[Layer], name: str | None = None):
        super().__init__(name=name, type="Fused chain")
        flat: list[Layer] = []
        for p in parts:
            flat.extend(p.parts if isinstance(p, FusedChain) else [p])
        if len(flat) < 2:
            raise LayerError(f"FusedChain parts: expected at least two layers, got {len(flat)}")
        for p in flat:
            if not isinstance(p, Layer):
                raise LayerError(f"FusedChain parts: expected layers, got {type(p).__name__}")
            if p.num_inputs != 1 or p.num_outputs != 1 or type(p).backward is Layer.backward:
                raise LayerError(f"FusedChain part {p.label}: expected a layer with one input, "
                                 f"one output and its own backward")
        self.parts = torch.nn.ModuleList(flat)
        # what a chain is, it is as its parts are
        self.differs_in_training = any(p.differs_in_training for p in flat)
        self.couples_observations = any(p.couples_observations for p in flat)
        self.is_stochastic = any(p.is_stochastic for p in flat)
        self.capturable = all(p.capturable for p in flat)
        self.backward_is_differentiable = all(p.backward_is_differentiable for p in flat)
        self.description = f"{len(flat)} layers fused: " + ", ".join(p.label for p in flat)

    @property
    def label(self) -> str:
        parts = self.parts
        return f"{parts[0].label} ... {parts[-1].label} ({len(parts)} fused)"

    def initialize(self, input_sizes):
        sizes = list(input_sizes)
        for p in self.parts:
            p.initialize(sizes)
            with torch.no_grad():   # the next part's input size, from a probe
                ref = next(iter(p.parameters()), None)
                x = torch.zeros((2, *sizes[0]), dtype=ref.dtype if ref is not None else None,
                                device=ref.device if ref is not None else None)
                was = p.training
                p.eval()
                try:
                    sizes = [tuple(p.predict(x).shape[1:])]
                finally:
                    p.train(was)

    def predict(self, X):
        for p in self.parts:
            X = p.predict(X)
        return X

    def forward(self, X):
        outputs, memories = [], []
        for p in self.parts:
            result = p.training_forward(X)
            if not isinstance(result, tuple) or len(result) != 2 \
                    or not isinstance(result[0], torch.Tensor):
                raise LayerError(f"layer {p.label} (in {self.label}): forward must return "
                                 f"(Z, memory) with Z a tensor")
            X, memory = result
            outputs.append(X)
            memories.append(memory)
        # the parts' outputs but the last (the chain's Z) are the inputs of
        # the next ones
        return X, (outputs[:-1], memories)

    def _counts(self, total: int) -> list[int]:
        """The number of learnables of each part, counted when first asked
        and again whenever they no longer add up to ``total`` (a part that
        gained or lost one)."""
        counts = self.__dict__.get("_part_counts")
        if counts is None or sum(counts) != total:
            counts = [len(p.learnable_names) for p in self.parts]
            self.__dict__["_part_counts"] = counts
        return counts

    def backward(self, X, Z, dLdZ, memory):
        inner, memories = memory
        parts = self.parts
        k = len(parts)
        inputs, outputs = [X, *inner], [*inner, Z]
        needs = self.needed_gradients()
        counts = self._counts(len(needs) - 1 if needs is not None
                              else len(self.learnable_names))
        end = 1 + sum(counts)               # the learnables' needs are needs[1:end]
        grads: list = [None] * k
        for i in range(k - 1, -1, -1):
            part, n = parts[i], counts[i]
            start = end - n
            part_needs = None if needs is None else (needs[0] if i == 0 else True,
                                                     *needs[start:end])
            out = part.backward_with_needs(part_needs, inputs[i], outputs[i], dLdZ,
                                           memories[i])
            if not isinstance(out, (tuple, list)) or len(out) != 1 + n:
                raise LayerError(f"layer {part.label} (in {self.label}): backward must return "
                                 f"{1 + n} derivatives (dLdX, then one per learnable)")
            dLdZ = out[0]
            if dLdZ is None and i > 0:
                raise LayerError(f"layer {part.label} (in {self.label}): backward returned "
                                 f"None for dLdX, which the layer before it needs")
            grads[i] = out[1:]
            end = start
        return (dLdZ, *(g for part_grads in grads for g in part_grads))


class DenseBatchNormELUChain(FusedChain):
    r"""A chain of :class:`~layerlab.layers.fused.DenseBatchNormELU` blocks,
    the experiments' deep MLP, and the plain fully connected layer after
    them if there is one (the head), computed by one compiled call each way.

    The values and formulas are the parts' own (:class:`FusedChain`,
    :class:`~layerlab.layers.fused.DenseBatchNormELU`,
    :class:`~layerlab.FullyConnected`): per block
    :math:`A = X W^\top + b`, :math:`Z = \mathrm{ELU}_\alpha(\mathrm{BN}(A))`;
    backward :math:`\partial L/\partial A` by batch norm + ELU's formulas,
    :math:`\partial L/\partial W = (\partial L/\partial A)^\top X`,
    :math:`\partial L/\partial X = (\partial L/\partial A) W` and a zero bias
    derivative; the head :math:`Z = X W^\top + b`. On the CPU in float32 the
    whole chain runs in ``kernels/dense_batchnorm_elu_chain.c``: PyTorch's
    own BLAS for the products (its ``sgemm_``), the batch norm + ELU kernel
    for the rest, one buffer for the step's memory (each block's ``A``, ``Z``
    and batch statistics), and backward on two threads (the chain that each
    block waits for on one, the weight derivatives on the other), where the
    parts one by one cost a Python layer and three or four PyTorch ops each
    (the deep MLP's step: bench/README.md). Elsewhere (a GPU, float64,
    ``torch.func``, second derivatives, a build of PyTorch without
    ``sgemm_``) the parts run one by one.
    """

    def __init__(self, parts: Sequence[Layer], name: str | None = None):
        super().__init__(parts, name=name)
        from .dense import FullyConnected
        from .fused import DenseBatchNormELU
        *blocks, last = self.parts
        for p in blocks + ([] if type(last) is FullyConnected else [last]):
            if type(p) is not DenseBatchNormELU:
                raise LayerError(f"DenseBatchNormELUChain parts: expected DenseBatchNormELU "
                                 f"blocks and at most a FullyConnected after them, "
                                 f"got {p.label}")
        if type(last) is FullyConnected and (last.drop_connect > 0 or not blocks):
            raise LayerError(f"DenseBatchNormELUChain head {last.label}: expected a "
                             f"FullyConnected without DropConnect after at least one block")

    def fused_with(self, following):
        """A plain :class:`~layerlab.FullyConnected` after the chain's blocks
        (the classifier of the deep MLP) joins it as its head."""
        from .dense import FullyConnected
        if (type(following) is FullyConnected and following.drop_connect == 0
                and type(self.parts[-1]) is not FullyConnected):
            return DenseBatchNormELUChain([*self.parts, following])
        return None

    def _plan(self, X) -> "kernels.DenseChainPlan | None":
        """The compiled chain's plan for the parts' current tensors (kept
        while they stay the same objects at the same addresses), or
        ``None`` when the kernel cannot take them (then the parts compute
        one by one, with their own checks and errors)."""
        from .activation import ELU
        if X.dim() != 2 or X.shape[0] < 2 or not kernels.usable(
                X, library="dense_batchnorm_elu_chain"):
            return None
        tensors, eps, momenta = [], [], []
        head = None
        for p in self.parts:
            mods = p._modules
            if not mods:    # the head
                head = (p._parameters.get("weights"), p._parameters.get("bias"))
                tensors += head
                continue
            fc, bn, act = mods["dense"], mods["batchnorm"], mods["activation"]
            fp, bp, bb = fc._parameters, bn._parameters, bn._buffers
            tensors += (fp.get("weights"), fp.get("bias"), bp.get("scale"), bp.get("offset"),
                        act._parameters["alpha"] if type(act) is ELU else _ZERO_ALPHA,
                        bb.get("trained_mean"), bb.get("trained_variance"))
            eps.append(bn.epsilon)
            momenta.append(bn.momentum)
        plan = self.__dict__.get("_kernel_plan")
        if plan is None or not plan.matches(tensors, eps, momenta):
            plan = self._new_plan(tensors, eps, momenta, X.shape[1], head is not None)
            self.__dict__["_kernel_plan"] = plan
        return plan if plan is not None and X.shape[1] == plan.dims[0] else None

    @staticmethod
    def _new_plan(tensors, eps, momenta, d, has_head) -> "kernels.DenseChainPlan | None":
        """A plan for these tensors, or ``None`` where their sizes do not
        chain or the kernel cannot read them."""
        if any(t is None for t in tensors) or not kernels.usable(
                *tensors, library="dense_batchnorm_elu_chain"):
            return None
        blocks = []
        n_blocks = len(eps)
        for i in range(n_blocks):
            W, b, gamma, beta, alpha, mean, var = tensors[7 * i:7 * i + 7]
            k = W.shape[0]
            if (W.dim() != 2 or W.shape[1] != d or not b.numel() == gamma.numel()
                    == beta.numel() == mean.numel() == var.numel() == k
                    or alpha.numel() not in (1, k)):
                return None
            blocks.append((W, b, gamma, beta, alpha, eps[i], momenta[i], mean, var))
            d = k
        # a ReLU block (alpha 0) has no alpha of its own to take a derivative
        alpha_wanted = [tensors[7 * i + 4] is not _ZERO_ALPHA for i in range(n_blocks)]
        head = None
        if has_head:
            W, b = tensors[7 * n_blocks:]
            if W.dim() != 2 or W.shape[1] != d or b.numel() != W.shape[0]:
                return None
            head = (W, b)
        return kernels.DenseChainPlan(blocks, head, alpha_wanted)

    def forward(self, X):
        Xf = X.flatten(1) if X.dim() > 2 else X
        plan = self._plan(Xf)
        if plan is not None:
            done = kernels.dense_chain_forward(Xf, plan)
            if done is not None:
                Z, ws = done
                # the plan goes to backward as a Python value (not saved
                # tensors): backward reads the learnables as they are then,
                # as every hand-written layer's backward does
                return Z, (ws, _Held(plan))
        return super().training_forward(X)

    def backward(self, X, Z, dLdZ, memory):
        if not (isinstance(memory, tuple) and len(memory) == 2
                and type(memory[1]) is _Held):      # the parts ran one by one
            return super().backward(X, Z, dLdZ, memory)
        ws, plan = memory[0], memory[1].value
        Xf = X.flatten(1) if X.dim() > 2 else X
        needs = self.needed_gradients()
        dX, grads = kernels.dense_chain_backward(
            Xf, ws, Z, dLdZ.contiguous(), plan, needs is None or needs[0])
        # in the chain's learnables' order (the plan's), the blocks' biases'
        # derivatives zeros (batch normalization removes the bias)
        out = [None if dX is None else dX.view(X.shape), *grads]
        if needs is not None:
            out = [g if n else None for g, n in zip(out, needs)]
        return tuple(out)


class _Held:
    """A Python value carried in a layer's ``memory`` as it is (the bridge
    saves only tensors, and tuples, lists and dicts of them, for backward)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


#: a ReLU's alpha (the batch norm + ELU kernel's ReLU)
_ZERO_ALPHA = torch.zeros(1)
