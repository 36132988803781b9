"""Fully connected layers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import kernels
from ..errors import LayerError
from ..validation import check_number
from ..layer import Layer, Learnable
from . import initializers
from ._util import positive_int

__all__ = ["DenseLayer", "FullyConnected"]


class DenseLayer(Layer):
    """Base of the layers with ``weights`` ``(R, D)`` and ``bias`` ``(R,)``
    applied to the flattened input: the input size ``D`` is inferred when
    the layer is built into a network, or given as ``input_size``.

    A subclass sets ``weights_initializer`` and ``bias_initializer`` and
    says how many rows it needs (``weight_rows``); :meth:`_features` checks
    and flattens an input.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    @property
    def weight_rows(self) -> int:  # pragma: no cover - every subclass says
        raise NotImplementedError

    def _create(self, d: int) -> None:
        rows, what = self.weight_rows, f"layer {self.label}"
        self.weights = Learnable(initializers.initialize(
            self.weights_initializer, (rows, d), d, rows, what + " weights"))
        self.bias = Learnable(initializers.initialize(
            self.bias_initializer, (rows,), d, rows, what + " bias"))

    def initialize(self, input_sizes):
        (size,) = input_sizes
        d = math.prod(size)
        if not self.has_learnable("weights"):
            self._create(d)
        elif self.weights.shape[1] != d:
            raise LayerError(f"layer {self.label}: weights expect {self.weights.shape[1]} "
                             f"inputs, got {d} (input size {tuple(size)})")

    def _features(self, X):
        """``X`` as ``(N, D)``: images are flattened; a wrong size is an error
        naming the layer."""
        if X.dim() > 2:
            X = X.flatten(1)
        if X.dim() != 2 or X.shape[1] != self.weights.shape[1]:
            raise LayerError(f"layer {self.label}: expected input with "
                             f"{self.weights.shape[1]} features, got {tuple(X.shape)}")
        return X


class FullyConnected(DenseLayer):
    r"""Fully connected layer, MATLAB's ``fullyConnectedLayer(output_size)``.

    .. math::  Z = X W^\top + b

    An image input ``(N, C, H, W)`` is flattened to ``(N, C*H*W)`` first.

    DropConnect (Wan et al. 2013), ``drop_connect=p``: in training each
    mini-batch uses the weights :math:`W \odot M / (1 - p)` with a fresh
    mask :math:`M_{kd} \sim \mathrm{Bernoulli}(1 - p)` (the bias is kept);
    prediction uses :math:`W`, the mean of the masked weights (inverted
    scaling, like :class:`~layerlab.layers.dropout.Dropout`, rather than the
    paper's Gaussian moment matching at inference).

    Args:
        output_size: ``K``, the number of outputs.
        input_size: ``D``, inferred from the input when omitted.
        weights_initializer, bias_initializer: default ``"glorot"`` and ``"zeros"``.
        drop_connect: ``p``, the probability of dropping a weight in
            training, default 0 (no DropConnect).

    Shape: input ``(N, D)`` or ``(N, *S)`` with ``prod(S) = D``; output
    ``(N, K)``. Learnables: ``weights`` ``(K, D)``, ``bias`` ``(K,)``.
    """

    default_name = "fc"

    def __init__(self, output_size: int, input_size: int | None = None,
                 weights_initializer="glorot", bias_initializer="zeros",
                 drop_connect: float = 0.0, name: str | None = None):
        super().__init__(name=name, type="Fully Connected")
        self.output_size = positive_int(output_size, "FullyConnected output_size")
        self.drop_connect = float(check_number(
            drop_connect, "FullyConnected drop_connect", 0, 1, hi_open=True, error=LayerError,
            expected="a probability in [0, 1)"))
        if self.drop_connect > 0:
            # this instance's training output is random and differs from predict
            self.differs_in_training = True
            self.is_stochastic = True
        initializers.check_initializer(weights_initializer, "FullyConnected weights_initializer")
        initializers.check_initializer(bias_initializer, "FullyConnected bias_initializer")
        self.weights_initializer = weights_initializer
        self.bias_initializer = bias_initializer
        self.description = f"{self.output_size} fully connected outputs"
        if input_size is not None:
            self._create(positive_int(input_size, "FullyConnected input_size"))

    @property
    def weight_rows(self) -> int:
        return self.output_size

    def _skinny(self, *tensors) -> bool:
        """Whether the compiled kernel for few outputs and a long input
        (:mod:`layerlab.kernels`, ``dense_skinny.c``) computes the products:
        at most 16 outputs, at least :data:`LONG_INPUT` inputs, CPU float32
        (bench/README.md: 1.4-2.3x faster than MKL's products there)."""
        W = self.weights
        return (W.shape[0] <= kernels.DENSE_MAX_OUTPUTS and W.shape[1] >= self.LONG_INPUT
                and self.bias.numel() == W.shape[0]          # C reads it by output
                and kernels.usable(W, self.bias, *tensors, library="dense_skinny"))

    def _affine(self, X, W, b):
        """``X W^T + b``: the compiled kernel where it applies, else
        ``(W X^T + b)^T``: on CPU, MKL's product with the long dimension
        ``D`` inner is about 2x faster for the seed's (128, 11520) x
        (11520, 10) than ``F.linear``'s (bench/README.md); the small
        (N, K) result is made contiguous."""
        if self._skinny(X, W):
            Z = kernels.dense_forward(X, W, b)
            if Z is not None:
                return Z
        return torch.addmm(b.unsqueeze(1), W, X.t()).t().contiguous()

    def predict(self, X):
        X = self._features(X)
        if torch.is_grad_enabled() and (X.requires_grad or self.weights.requires_grad):
            # differentiated by autograd: F.linear's derivative keeps every
            # gradient contiguous (the transposed form's would not be)
            return F.linear(X, self.weights, self.bias)
        return self._affine(X, self.weights, self.bias)

    def forward(self, X):
        if self.drop_connect == 0:
            return self.predict(X), None
        X = self._features(X)
        p = self.drop_connect
        mask = torch.empty_like(self.weights).bernoulli_(1.0 - p).div_(1.0 - p)
        return self._affine(X, self.weights * mask, self.bias), mask

    def fused_with(self, following):
        """A following :class:`~layerlab.layers.fused.BatchNormELU` (the
        network's fused batch normalization + ELU) runs fused with this
        layer, as :class:`~layerlab.layers.fused.DenseBatchNormELU`, unless
        this layer uses DropConnect (its random mask) or is a subclass."""
        from .fused import BatchNormELU, DenseBatchNormELU
        if type(self) is not FullyConnected or self.drop_connect > 0 \
                or type(following) is not BatchNormELU:
            return None
        return DenseBatchNormELU(self, following)

    # backward reads X and forward's DropConnect mask (None without), never Z
    backward_uses = ("X", "memory")

    # The hand-written path pays where the product is long and skinny (the
    # seed's 11520 -> 10: the faster (W X^T)^T form); for small layers (the
    # deep MLP's 100 -> 100) the cost of running a hand-written backward
    # outweighs it, and autograd differentiates F.linear instead
    # (bench/README.md). DropConnect always uses it.
    LONG_INPUT = 2048

    @property
    def has_backward(self) -> bool:
        if self.drop_connect > 0 or "weights" not in self._parameters:
            return True
        return self.weights.shape[1] >= self.LONG_INPUT and self.weights.shape[0] <= 64

    def backward(self, X, Z, dLdZ, memory):
        r"""With :math:`\tilde W = W` (or :math:`W \odot M / (1 - p)` under
        DropConnect, ``memory`` holding :math:`M / (1 - p)`):

        .. math::
            \frac{\partial L}{\partial X} = \frac{\partial L}{\partial Z} \tilde W,
            \qquad
            \frac{\partial L}{\partial W} = \Big(\frac{\partial L}{\partial Z}\Big)^\top X
                \;(\odot\, M / (1 - p)),
            \qquad
            \frac{\partial L}{\partial b} = \sum_n \frac{\partial L}{\partial Z_n}

        ``dLdZ.t() @ X`` passes the transpose to BLAS as a flag: no
        transposed copy of either operand is made.
        """
        W = self.weights if memory is None else self.weights * memory
        dLdX = dLdW = dLdb = None
        Xf = X.flatten(1) if X.dim() > 2 else X
        if self._skinny(Xf, W, dLdZ):
            # the compiled kernel: each product reads X (or writes dL/dX) once
            if self.needs_gradient(0):
                dLdX = kernels.dense_input_grad(dLdZ, W)
                dLdX = None if dLdX is None else dLdX.view(X.shape)
            if self.needs_gradient("weights"):
                dLdW = kernels.dense_weight_grad(dLdZ, Xf)
                if dLdW is not None and memory is not None:
                    dLdW.mul_(memory)
        if dLdX is None and self.needs_gradient(0):
            dLdX = (dLdZ @ W).view(X.shape)
        if dLdW is None and self.needs_gradient("weights"):
            dLdW = dLdZ.t() @ Xf
            if memory is not None:
                dLdW.mul_(memory)
        if self.needs_gradient("bias"):
            dLdb = dLdZ.sum(0)
        return dLdX, dLdW, dLdb
