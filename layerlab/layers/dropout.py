"""Dropout layers (Srivastava et al. 2014; Tompson et al. 2015).

Both are *inverted* dropout, as in MATLAB's ``dropoutLayer`` and PyTorch:
in training each unit (or channel) is kept with probability ``1 - p`` and
the kept ones are scaled by ``1 / (1 - p)``, so that prediction is the
identity. DropConnect, which drops weights rather than units, is an option
of :class:`~layerlab.layers.dense.FullyConnected` (``drop_connect=p``).
"""

from __future__ import annotations

import torch

from ..errors import LayerError
from ..validation import check_number
from ..layer import Layer

__all__ = ["Dropout", "SpatialDropout"]


def _probability(p, what: str) -> float:
    return float(check_number(p, what, 0, 1, hi_open=True, error=LayerError,
                              expected="a probability in [0, 1)"))


def _keep_mask(shape, p: float, like: torch.Tensor) -> torch.Tensor:
    """Bernoulli(1 - p) mask already scaled by 1 / (1 - p), of ``like``'s
    dtype and device."""
    mask = torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1.0 - p)
    return mask.div_(1.0 - p)


class Dropout(Layer):
    r"""Inverted dropout: drops each element with probability ``p``.

    .. math::
        Z = \begin{cases} X \odot M / (1 - p), \; M_{i} \sim \mathrm{Bernoulli}(1 - p)
            & \text{training} \\ X & \text{prediction} \end{cases}

    A new mask is drawn for every mini-batch; the derivative is
    :math:`\partial L / \partial X = \partial L / \partial Z \odot M / (1 - p)`.

    Args:
        probability: ``p``, default 0.5 (MATLAB's ``dropoutLayer``).

    Shape: ``(N, *)`` to the same.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "dropout"
    differs_in_training = True
    is_stochastic = True

    def __init__(self, probability: float = 0.5, name: str | None = None):
        super().__init__(name=name, type="Dropout")
        self.probability = _probability(probability, "Dropout probability")
        self.description = f"{self.probability:g} dropout"

    def predict(self, X):
        return X

    def forward(self, X):
        if self.probability == 0:
            return X, None
        return X * _keep_mask(X.shape, self.probability, X), None


class SpatialDropout(Layer):
    r"""Spatial dropout (Tompson et al. 2015; PyTorch's ``Dropout2d``): drops
    whole channels of each observation, because neighbouring units of an
    activation map are correlated and dropping them one by one does little.

    .. math::
        Z_{n,c} = \begin{cases} X_{n,c} \, M_{n,c} / (1 - p), \;
            M_{n,c} \sim \mathrm{Bernoulli}(1 - p) & \text{training} \\
            X_{n,c} & \text{prediction} \end{cases}

    Args:
        probability: ``p``, the probability of dropping a channel, default 0.5.

    Shape: ``(N, C, *)`` to the same (one mask value per ``(n, c)``).
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "spatialdropout"
    differs_in_training = True
    is_stochastic = True

    def __init__(self, probability: float = 0.5, name: str | None = None):
        super().__init__(name=name, type="Spatial Dropout")
        self.probability = _probability(probability, "SpatialDropout probability")
        self.description = f"{self.probability:g} spatial (channel) dropout"

    def predict(self, X):
        if X.dim() < 3:
            raise LayerError(f"layer {self.label}: expected input (N, C, H, ...) with "
                             f"spatial dimensions, got {tuple(X.shape)}; use Dropout for "
                             f"features")
        return X

    def forward(self, X):
        self.predict(X)
        if self.probability == 0:
            return X, None
        shape = (X.shape[0], X.shape[1]) + (1,) * (X.dim() - 2)
        return X * _keep_mask(shape, self.probability, X), None
