"""Normalization layers: batch normalization (statistics over the
mini-batch) and layer normalization (statistics over each observation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import LayerError
from ..validation import check_number
from ..layer import Layer, Learnable, State
from . import initializers
from ._util import per_channel, positive_int

__all__ = ["BatchNormalization", "LayerNormalization"]

BACKWARDS = ("native", "formula")


def _epsilon(value, what: str) -> float:
    return float(check_number(value, f"{what} epsilon", 0, lo_open=True, error=LayerError,
                              expected="a number > 0"))


class _AffinePerChannel(Layer):
    """Shared by the normalization layers: learnable ``offset`` (beta) and
    ``scale`` (gamma) of shape ``(C,)``, created when ``C`` is known."""

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    def _init_affine(self, num_channels, offset_initializer, scale_initializer) -> None:
        kind = type(self).__name__
        initializers.check_initializer(offset_initializer, f"{kind} offset_initializer")
        initializers.check_initializer(scale_initializer, f"{kind} scale_initializer")
        self.offset_initializer = offset_initializer
        self.scale_initializer = scale_initializer
        if num_channels is not None:
            self._create(positive_int(num_channels, f"{kind} num_channels"))

    def _create(self, c: int) -> None:
        what = f"layer {self.label}"
        self.offset = Learnable(initializers.initialize(self.offset_initializer, (c,), c, c,
                                                        what + " offset"))
        self.scale = Learnable(initializers.initialize(self.scale_initializer, (c,), c, c,
                                                       what + " scale"))

    def initialize(self, input_sizes):
        (size,) = input_sizes
        if len(size) < 1:
            raise LayerError(f"layer {self.label}: expected input (C, ...) with "
                             f"channels, got input of size {tuple(size)}")
        if not self.has_learnable("scale"):
            self._create(size[0])
        elif self.scale.shape[0] != size[0]:
            raise LayerError(f"layer {self.label}: has {self.scale.shape[0]} channels, "
                             f"got input of size {tuple(size)}")

    def _check(self, X):
        if not self.has_learnable("scale"):
            raise LayerError(f"layer {self.label}: the number of channels is not known "
                             f"yet; give num_channels or put the layer in a network")
        if X.dim() < 2 or X.shape[1] != self.scale.shape[0]:
            raise LayerError(f"layer {self.label}: expected input (N, "
                             f"{self.scale.shape[0]}, ...), got {tuple(X.shape)}")


class BatchNormalization(_AffinePerChannel):
    r"""Batch normalization (Ioffe & Szegedy 2015), MATLAB's
    ``batchNormalizationLayer``.

    In training, with the mini-batch mean :math:`\mu_B` and biased variance
    :math:`\sigma_B^2` of each channel, over the ``m`` values of the channel
    in the mini-batch (``N``, or ``N*H*W`` for images),

    .. math::
        \hat X = \frac{X - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}}, \qquad
        Z = \gamma \hat X + \beta

    and the running statistics move towards the batch's:
    ``trained_mean = (1 - momentum) * trained_mean + momentum * mu_B``, and
    likewise the variance with the unbiased ``sigma_B^2 * m / (m - 1)``. In
    prediction the running statistics replace the batch's:
    :math:`Z = \gamma (X - \hat\mu) / \sqrt{\hat\sigma^2 + \epsilon} + \beta`.

    The derivatives (the lecture "Going deeper", slide 42), per channel:

    .. math::
        \frac{\partial L}{\partial \gamma} = \sum \frac{\partial L}{\partial Z} \hat X,
        \quad
        \frac{\partial L}{\partial \beta} = \sum \frac{\partial L}{\partial Z},
        \quad
        \frac{\partial L}{\partial \hat X} = \gamma \frac{\partial L}{\partial Z},

    .. math::
        \frac{\partial L}{\partial \sigma_B^2} = -\frac{1}{2} (\sigma_B^2 + \epsilon)^{-3/2}
            \sum \frac{\partial L}{\partial \hat X} (X - \mu_B),
        \quad
        \frac{\partial L}{\partial \mu_B} = -\frac{1}{\sqrt{\sigma_B^2 + \epsilon}}
            \sum \frac{\partial L}{\partial \hat X},

    .. math::
        \frac{\partial L}{\partial X} = \frac{\partial L}{\partial \hat X}
            \frac{1}{\sqrt{\sigma_B^2 + \epsilon}}
            + \frac{2}{m} \frac{\partial L}{\partial \sigma_B^2} (X - \mu_B)
            + \frac{1}{m} \frac{\partial L}{\partial \mu_B}

    Args:
        epsilon: added to the variance, default 1e-5 (MATLAB's).
        momentum: weight of the new batch in the running statistics, 0.1.
        num_channels: ``C``, inferred from the input when omitted.
        backward: ``"native"`` (default): PyTorch's fused ``batch_norm`` and
            its own derivative (the fastest); ``"formula"``: the hand-written
            :meth:`backward` above (the lecture's formulas). Both compute the
            same values; ``bench/layers.py`` compares their speed.
        offset_initializer, scale_initializer: initial ``beta`` and
            ``gamma``, default ``"zeros"`` and ``"ones"`` (see
            :mod:`layerlab.layers.initializers`).

    Shape: ``(N, C)`` (statistics per feature) or ``(N, C, H, W)``
    (statistics per channel); output the same. Learnables ``offset``
    (beta) and ``scale`` (gamma), ``(C,)``; state ``trained_mean``,
    ``trained_variance``, ``(C,)``.
    """

    default_name = "batchnorm"

    differs_in_training = True
    couples_observations = True

    def __init__(self, epsilon: float = 1e-5, momentum: float = 0.1,
                 num_channels: int | None = None, name: str | None = None,
                 backward: str = "native", offset_initializer="zeros",
                 scale_initializer="ones"):
        super().__init__(name=name, type="Batch Normalization")
        self.epsilon = _epsilon(epsilon, "BatchNormalization")
        self.momentum = float(check_number(momentum, "BatchNormalization momentum", 0, 1,
                                           error=LayerError, expected="a number in [0, 1]"))
        if backward not in BACKWARDS:
            raise LayerError(f"BatchNormalization backward: expected one of {BACKWARDS}, "
                             f"got {backward!r}")
        self.backward_mode = backward
        self.description = "Batch normalization"
        self._init_affine(num_channels, offset_initializer, scale_initializer)

    def _create(self, c: int) -> None:
        super()._create(c)
        self.trained_mean = State(torch.zeros(c))
        self.trained_variance = State(torch.ones(c))

    @property
    def has_backward(self) -> bool:
        # the hand-written backward is used only when asked for
        return self.backward_mode == "formula"

    def predict(self, X):
        self._check(X)
        return F.batch_norm(X, self.trained_mean, self.trained_variance, self.scale,
                            self.offset, False, 0.0, self.epsilon)

    def initialize(self, input_sizes):
        super().initialize(input_sizes)
        # images or features: fused_with decides by it
        self._images = len(input_sizes[0]) > 1

    def fused_with(self, following):
        """A following :class:`~layerlab.layers.activation.ELU` (exactly that
        class) runs fused with this layer, as
        :class:`~layerlab.layers.fused.BatchNormELU`, unless the hand-written
        formula backward was asked for (``backward="formula"``); so does a
        :class:`~layerlab.layers.activation.ReLU` on images. On small feature
        batches a ReLU stays on its own: batch norm's native op and
        ``torch.relu`` run without the bridge there, and the fused layer's
        bridge would cost more than the passes it saves (the deep ReLU MLP:
        2.9 ms a step unfused against 4.4 fused; bench/README.md)."""
        from .activation import ELU, ReLU
        from .fused import BatchNormELU
        if self.backward_mode != "native":
            return None
        if type(following) is ELU or (type(following) is ReLU
                                      and self.__dict__.get("_images", False)):
            return BatchNormELU(self, following)
        return None

    def _values_per_channel(self, X) -> int:
        m = X.numel() // X.shape[1]
        if m < 2:
            raise LayerError(f"layer {self.label}: training needs more than one value "
                             f"per channel, got input of size {tuple(X.shape)}")
        return m

    def forward(self, X):
        self._check(X)
        if self.backward_mode == "native":
            self._values_per_channel(X)
            # F.batch_norm updates trained_mean / trained_variance in place
            # (the layer's State), with the unbiased variance.
            return F.batch_norm(X, self.trained_mean, self.trained_variance, self.scale,
                                self.offset, True, self.momentum, self.epsilon), None
        m = self._values_per_channel(X)
        dims = [0] + list(range(2, X.dim()))
        # two passes (mean, then the mean square of X - mean): stable, and on
        # CPU several times faster than torch.var_mean over dims (0, 2, 3)
        mean = X.mean(dim=dims)
        centered = X - per_channel(mean, X)
        var = (centered * centered).mean(dim=dims)
        inv_std = torch.rsqrt(var + self.epsilon)
        with torch.no_grad():
            mom = self.momentum
            self.trained_mean.mul_(1 - mom).add_(mean.to(self.trained_mean.dtype), alpha=mom)
            self.trained_variance.mul_(1 - mom).add_(
                var.to(self.trained_variance.dtype), alpha=mom * m / (m - 1))
        # Z = gamma * inv_std * (X - mu) + beta, in one pass
        Z = torch.addcmul(per_channel(self.offset, X), centered,
                          per_channel(self.scale * inv_std, X))
        # X itself is kept by the bridge; X-hat is recomputed from it.
        return Z, (mean, inv_std)

    def backward(self, X, Z, dLdZ, memory):
        mean, inv_std = memory
        m = X.numel() // X.shape[1]
        dims = [0] + list(range(2, X.dim()))
        gamma = self.scale
        sum_g = dLdZ.sum(dim=dims)                                  # sum dL/dZ
        sum_gx = (dLdZ * X).sum(dim=dims)                           # sum dL/dZ * X
        sum_g_centered = sum_gx - mean * sum_g                      # sum dL/dZ (X - mu)
        dLdoffset = sum_g if self.needs_gradient("offset") else None
        dLdscale = sum_g_centered * inv_std if self.needs_gradient("scale") else None
        dLdX = None
        if self.needs_gradient(0):
            # dL/dvar and dL/dmu from dL/dX-hat = gamma * dL/dZ (slide 42)
            dLdVar = -0.5 * inv_std ** 3 * gamma * sum_g_centered
            dLdMu = -inv_std * gamma * sum_g
            # dL/dX = dL/dZ * gamma * inv_std + X * (2/m) dL/dvar
            #         + (dL/dmu / m - (2/m) dL/dvar * mu), per channel
            a = gamma * inv_std
            c = 2.0 / m * dLdVar
            b = dLdMu / m - c * mean
            dLdX = torch.addcmul(per_channel(b, X), dLdZ, per_channel(a, X))
            dLdX.addcmul_(X, per_channel(c, X))
        return dLdX, dLdoffset, dLdscale


class LayerNormalization(_AffinePerChannel):
    r"""Layer normalization (Ba, Kiros & Hinton 2016), MATLAB's
    ``layerNormalizationLayer``: each observation is normalized over all
    its channels and spatial positions, then scaled and shifted per channel.

    .. math::
        Z_{n,c} = \gamma_c \frac{X_{n,c} - \mu_n}{\sqrt{\sigma_n^2 + \epsilon}} + \beta_c

    with :math:`\mu_n`, :math:`\sigma_n^2` the mean and biased variance of
    observation ``n`` (over ``C``, or ``C*H*W`` values). Training and
    prediction are the same; observations are independent.

    Args:
        epsilon: default 1e-5.
        num_channels: ``C``, inferred from the input when omitted.
        offset_initializer, scale_initializer: default ``"zeros"``, ``"ones"``.

    Shape: ``(N, C, *)`` to the same. Learnables ``offset`` (beta) and
    ``scale`` (gamma), ``(C,)``.
    """

    default_name = "layernorm"

    def __init__(self, epsilon: float = 1e-5, num_channels: int | None = None,
                 offset_initializer="zeros", scale_initializer="ones",
                 name: str | None = None):
        super().__init__(name=name, type="Layer Normalization")
        self.epsilon = _epsilon(epsilon, "LayerNormalization")
        self.description = "Layer normalization"
        self._init_affine(num_channels, offset_initializer, scale_initializer)

    def predict(self, X):
        self._check(X)
        # group normalization with a single group is exactly this: one mean
        # and variance per observation, gamma and beta per channel
        return F.group_norm(X, 1, self.scale, self.offset, self.epsilon)
