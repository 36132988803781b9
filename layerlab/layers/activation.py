"""Activation layers: element-wise nonlinearities.

Each maps ``(N, C, *)`` to the same shape. Per-channel parameters have
shape ``(C,)``; a single shared parameter has shape ``(1,)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..autograd_bridge import layer_label
from ..errors import LayerError
from ..layer import Layer, Learnable
from ._util import per_channel, positive_int, sum_per_channel

__all__ = ["ReLU", "ELU"]


class ReLU(Layer):
    r"""Rectified linear unit: :math:`Z = \max(0, X)`."""

    default_name = "relu"

    def __init__(self, name: str | None = None):
        super().__init__(name=name, type="ReLU")
        self.description = "ReLU"

    def predict(self, X):
        return torch.relu(X)


class ELU(Layer):
    r"""Exponential linear unit (Clevert, Unterthiner & Hochreiter 2016),
    the layer of the seed post, with a hand-written backward.

    .. math::
        Z = \begin{cases} X & X > 0 \\ \alpha\,(e^{X} - 1) & X \le 0 \end{cases}

    .. math::
        \frac{\partial L}{\partial X} = \frac{\partial L}{\partial Z}
            \begin{cases} 1 & X > 0 \\ \alpha + Z & X \le 0 \end{cases},
        \qquad
        \frac{\partial L}{\partial \alpha} = \sum_{n,h,w}
            \frac{\partial L}{\partial Z}\,(e^{\min(X, 0)} - 1)

    Args:
        num_channels: ``C``: one alpha per channel, initialised uniformly in
            [0, 1) as in the seed post, learnable by default. Omitted: one
            alpha shared by all channels.
        alpha: the initial (or fixed) value when ``num_channels`` is omitted,
            default 1.0.
        learnable: whether alpha is trained; default True with
            ``num_channels``, False without (``ELU(alpha=1.0,
            learnable=False)`` is the Revisited post's fixed-alpha ELU).

    Shape: ``(N, C, *)`` to the same. Learnable ``alpha``: ``(C,)`` or ``(1,)``.
    The training forward keeps ``exp(min(X, 0)) - 1`` as its memory (the
    reader's faster variant in the seed post).
    """

    default_name = "elu"

    def __init__(self, num_channels: int | None = None, alpha: float = 1.0,
                 learnable: bool | None = None, name: str | None = None):
        super().__init__(name=name, type="Exponential Linear Unit")
        if num_channels is not None:
            c = positive_int(num_channels, "ELU num_channels")
            value = torch.rand(c)
            self.description = f"Exponential linear unit with {c} channels"
        else:
            if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
                raise LayerError(f"ELU alpha: expected a number, got {alpha!r}")
            value = torch.tensor([float(alpha)])
            self.description = f"Exponential linear unit with alpha: {alpha}"
        if learnable is None:
            learnable = num_channels is not None
        self.alpha = Learnable(value, learnable=bool(learnable))

    def _a(self, X):
        if X.dim() < 2 or self.alpha.numel() not in (1, X.shape[1]):
            raise LayerError(f"layer {layer_label(self)}: alpha has {self.alpha.numel()} "
                             f"channels, got input of size {tuple(X.shape)}")
        return per_channel(self.alpha, X)

    def predict(self, X):
        m = F.elu(X).clamp(max=0)           # exp(min(X, 0)) - 1, without overflow
        return torch.addcmul(torch.relu(X), self._a(X), m)

    def forward(self, X):
        m = F.elu(X).clamp_(max=0)
        return torch.addcmul(torch.relu(X), self._a(X), m), m

    def backward(self, X, Z, dLdZ, memory):
        a = self._a(X)
        dLdX = None
        if self.needs_gradient(0):
            # alpha * exp(X) = alpha + Z where X <= 0; 1 where X > 0
            dLdX = torch.where(X > 0, dLdZ, dLdZ * torch.addcmul(a, a, memory))
        dLdAlpha = None
        if self.needs_gradient("alpha"):
            g = sum_per_channel(dLdZ * memory)
            dLdAlpha = g.sum().reshape(1) if self.alpha.numel() == 1 else g
        return dLdX, dLdAlpha
