"""Maxout (Goodfellow et al. 2013): the maximum over groups of ``k`` pieces,
after a convolution or fully connected layer (:class:`Maxout`) or fused
with its own fully connected layer (:class:`FullyConnectedMaxout`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import LayerError
from ..layer import Layer
from . import initializers
from ._util import may_work_in_place, positive_int
from .dense import DenseLayer

__all__ = ["Maxout", "FullyConnectedMaxout"]


def _check_pieces(layer, X, k):
    if X.dim() < 2 or X.shape[1] % k:
        raise LayerError(f"layer {layer.label}: expected input (N, C*{k}, ...) "
                         f"with channels divisible by num_pieces {k}, got {tuple(X.shape)}")


class Maxout(Layer):
    r"""Maxout over groups of channels (Goodfellow et al. 2013): the maximum
    of ``k`` consecutive channels.

    .. math::  Z_{n,c} = \max_{j = 0}^{k-1} X_{n, ck + j}

    Following a convolution or a fully connected layer with ``C*k`` outputs
    this is the maxout unit of the paper, :math:`\max_j (x^\top W_{\cdot,j} +
    b_j)`; see also :class:`FullyConnectedMaxout`.

    Hand-written backward: the derivative goes to the winning piece only,

    .. math::
        \frac{\partial L}{\partial X_{n,ck+j}} =
            \frac{\partial L}{\partial Z_{n,c}} \, [j = j^*_{n,c}],
        \qquad j^*_{n,c} = \operatorname{argmax}_j X_{n,ck+j}

    (the first winning piece when several are equal). The training forward
    keeps the winners :math:`j^*` as its memory, one byte each (``bool``
    for two pieces, ``uint8`` for up to 256): a k-th of X's size in elements
    and a quarter in
    bytes, instead of X and Z, which is all that training keeps for the
    backward (``backward_uses``).

    Args:
        num_pieces: ``k`` (>= 2 to do anything), default 2.

    Shape: ``(N, C*k, *)`` to ``(N, C, *)``.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "maxout"

    def __init__(self, num_pieces: int = 2, name: str | None = None):
        super().__init__(name=name, type="Maxout")
        self.num_pieces = positive_int(num_pieces, "Maxout num_pieces")
        self.description = f"maxout over groups of {self.num_pieces} channels"

    def _grouped(self, X):
        k = self.num_pieces
        _check_pieces(self, X, k)
        return X.view(X.shape[0], X.shape[1] // k, k, *X.shape[2:])

    def initialize(self, input_sizes):
        (size,) = input_sizes
        if len(size) < 1 or size[0] % self.num_pieces:
            raise LayerError(f"layer {self.label}: expected (C*{self.num_pieces}, ...) "
                             f"with channels divisible by num_pieces {self.num_pieces}, got "
                             f"input of size {tuple(size)}")

    def predict(self, X):
        return self._grouped(X).amax(dim=2)

    def forward(self, X):
        Xg = self._grouped(X)
        if self.num_pieces == 2:
            # the common case, fast: max with indices costs 10x amax on CPU;
            # strict > sends ties to the first piece
            winner = torch.gt(Xg[:, :, 1], Xg[:, :, 0])   # bool: one byte, vmap-able
            return Xg.amax(dim=2), winner
        Z, winner = Xg.max(dim=2)                  # the first maximum on ties
        return Z, winner.to(torch.uint8) if self.num_pieces <= 256 else winner

    # backward reads only the winners kept by forward: neither X nor Z is kept
    backward_uses = ("memory",)

    def backward(self, X, Z, dLdZ, memory):
        if not self.needs_gradient(0):
            return (None,)
        N, C = dLdZ.shape[:2]
        if self.num_pieces == 2 and not may_work_in_place(dLdZ):
            # backward differentiated (create_graph, torch.func): no out= ops
            Gw = dLdZ * memory.to(dLdZ.dtype)
            dLdX = torch.stack([dLdZ - Gw, Gw], dim=2)
        elif self.num_pieces == 2:
            # float arithmetic, not a scatter: piece 1 gets G w, piece 0 G - G w
            dLdX = dLdZ.new_empty((N, C, 2, *dLdZ.shape[2:]))
            torch.mul(dLdZ, memory.to(dLdZ.dtype), out=dLdX[:, :, 1])
            torch.sub(dLdZ, dLdX[:, :, 1], out=dLdX[:, :, 0])
        else:
            dLdX = dLdZ.new_zeros((N, C, self.num_pieces, *dLdZ.shape[2:]))
            dLdX.scatter_(2, memory.long().unsqueeze(2), dLdZ.unsqueeze(2))
        return dLdX.view(N, C * self.num_pieces, *dLdZ.shape[2:])


class FullyConnectedMaxout(DenseLayer):
    r"""Fully connected maxout layer (Goodfellow et al. 2013): ``K`` outputs,
    each the maximum of ``k`` affine pieces of the input.

    .. math::  Z_{n,i} = \max_{j=1}^{k} \left( X_n^\top W_{ik+j} + b_{ik+j} \right)

    An image input ``(N, C, H, W)`` is flattened to ``(N, C*H*W)`` first.

    Args:
        output_size: ``K``.
        num_pieces: ``k``, default 2.
        input_size: ``D``, inferred from the input when omitted.
        weights_initializer, bias_initializer: see
            :mod:`layerlab.layers.initializers`, default ``"glorot"`` and ``"zeros"``.

    Shape: ``(N, D)`` or ``(N, *S)`` with ``prod(S) = D`` to ``(N, K)``.
    Learnables: ``weights`` ``(K*k, D)``, ``bias`` ``(K*k,)`` (rows ``ik`` to
    ``ik + k - 1`` are the pieces of output ``i``).
    """

    default_name = "fcmaxout"

    def __init__(self, output_size: int, num_pieces: int = 2, input_size: int | None = None,
                 weights_initializer="glorot", bias_initializer="zeros",
                 name: str | None = None):
        super().__init__(name=name, type="Fully Connected Maxout")
        self.output_size = positive_int(output_size, "FullyConnectedMaxout output_size")
        self.num_pieces = positive_int(num_pieces, "FullyConnectedMaxout num_pieces")
        initializers.check_initializer(weights_initializer,
                                       "FullyConnectedMaxout weights_initializer")
        initializers.check_initializer(bias_initializer, "FullyConnectedMaxout bias_initializer")
        self.weights_initializer = weights_initializer
        self.bias_initializer = bias_initializer
        self.description = (f"{self.output_size} maxout outputs of {self.num_pieces} "
                            f"pieces each")
        if input_size is not None:
            self._create(positive_int(input_size, "FullyConnectedMaxout input_size"))

    @property
    def weight_rows(self) -> int:
        return self.output_size * self.num_pieces

    def predict(self, X):
        X = self._features(X)
        U = F.linear(X, self.weights, self.bias)
        return U.view(X.shape[0], self.output_size, self.num_pieces).amax(dim=2)
