"""Normalization layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..autograd_bridge import layer_label
from ..errors import LayerError
from ..layer import Layer, Learnable, State
from ._util import positive_int

__all__ = ["BatchNormalization"]


class BatchNormalization(Layer):
    r"""Batch normalization (Ioffe & Szegedy 2015), MATLAB's
    ``batchNormalizationLayer``.

    In training, with the mini-batch mean :math:`\mu_B` and biased variance
    :math:`\sigma_B^2` of each channel (over ``N`` and the spatial
    dimensions),

    .. math::  Z = \gamma \frac{X - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta

    and the running statistics move towards the batch's:
    ``trained_mean = (1 - momentum) * trained_mean + momentum * mu_B``, and
    likewise the variance with the unbiased ``sigma_B^2 * m / (m - 1)``. In
    prediction the running statistics replace the batch's.

    Args:
        epsilon: added to the variance, default 1e-5 (MATLAB's).
        momentum: weight of the new batch in the running statistics, 0.1.
        num_channels: ``C``, inferred from the input when omitted.

    Shape: ``(N, C)`` (statistics per feature) or ``(N, C, H, W)``
    (statistics per channel); output the same. Learnables ``offset``
    (beta) and ``scale`` (gamma), ``(C,)``; state ``trained_mean``,
    ``trained_variance``, ``(C,)``.
    """

    default_name = "batchnorm"

    differs_in_training = True
    couples_observations = True

    def __init__(self, epsilon: float = 1e-5, momentum: float = 0.1,
                 num_channels: int | None = None, name: str | None = None):
        super().__init__(name=name, type="Batch Normalization")
        if not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise LayerError(f"BatchNormalization epsilon: expected a number > 0, got {epsilon!r}")
        if not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise LayerError(f"BatchNormalization momentum: expected a number in [0, 1], "
                             f"got {momentum!r}")
        self.epsilon, self.momentum = float(epsilon), float(momentum)
        self.description = "Batch normalization"
        if num_channels is not None:
            self._create(positive_int(num_channels, "BatchNormalization num_channels"))

    def _create(self, c: int) -> None:
        self.offset = Learnable(torch.zeros(c))
        self.scale = Learnable(torch.ones(c))
        self.trained_mean = State(torch.zeros(c))
        self.trained_variance = State(torch.ones(c))

    def initialize(self, input_sizes):
        (size,) = input_sizes
        if "scale" not in self._parameters:
            self._create(size[0])
        elif self.scale.shape[0] != size[0]:
            raise LayerError(f"layer {layer_label(self)}: has {self.scale.shape[0]} channels, "
                             f"got input of size {tuple(size)}")

    def _check(self, X):
        if X.dim() < 2 or X.shape[1] != self.scale.shape[0]:
            raise LayerError(f"layer {layer_label(self)}: expected input (N, "
                             f"{self.scale.shape[0]}, ...), got {tuple(X.shape)}")

    def predict(self, X):
        self._check(X)
        return F.batch_norm(X, self.trained_mean, self.trained_variance, self.scale,
                            self.offset, False, 0.0, self.epsilon)

    def forward(self, X):
        self._check(X)
        # F.batch_norm updates trained_mean / trained_variance in place
        # (the layer's State), with the unbiased variance.
        return F.batch_norm(X, self.trained_mean, self.trained_variance, self.scale,
                            self.offset, True, self.momentum, self.epsilon), None
