"""Fused layers: two layers computed as one, in fewer passes over memory.

A network asks each layer whether it fuses with the one after it
(:meth:`layerlab.Layer.fused_with`, a public part of the layer contract
that any layer may implement) and, in training and inference, runs the
fused layer in place of the pair when nothing needs the pair's middle
value: no hook on either layer, no caller asking for every layer's output
(``Network.layer_outputs``, the monitor). The fused layer holds the two
original layers as its submodules, so it computes with their learnables and
state, and gradients reach their parameters: saving, the optimizer and
``state_dict`` see only the original layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import kernels
from ..errors import LayerError
from ..layer import Layer
from ._util import per_channel, sum_per_channel
from .activation import ELU, ReLU
from .normalization import BatchNormalization

__all__ = ["BatchNormELU"]


def _compute_dtype(X: torch.Tensor) -> torch.dtype:
    """float32 for half-precision X (statistics and their derivatives lose
    too much there), else X's own type."""
    return torch.float32 if X.dtype in (torch.float16, torch.bfloat16) else X.dtype


class BatchNormELU(Layer):
    r"""Batch normalization followed by an ELU (or a ReLU), in one pass each
    way: what a network runs for the pair ``BatchNormalization()``,
    ``ELU(...)`` (see :meth:`BatchNormalization.fused_with`).

    With the batch's (training) or the running (inference) per-channel mean
    :math:`\mu` and variance :math:`\sigma^2`,

    .. math::
        Y = \gamma \frac{X - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta, \qquad
        Z = \begin{cases} Y & Y > 0 \\ \alpha\,(e^{Y} - 1) & Y \le 0 \end{cases}

    (a ReLU is the ELU with :math:`\alpha = 0`). Backward, per channel, with
    :math:`\hat X = (X - \mu) / \sqrt{\sigma^2 + \epsilon}` and ``m`` values
    per channel:

    .. math::
        \frac{\partial L}{\partial Y} = \frac{\partial L}{\partial Z}
            \begin{cases} 1 & Y > 0 \\ \alpha e^{Y} & Y \le 0 \end{cases},\quad
        \frac{\partial L}{\partial \alpha} = \sum \frac{\partial L}{\partial Z}
            (e^{\min(Y, 0)} - 1),

    .. math::
        \frac{\partial L}{\partial \beta} = \sum \frac{\partial L}{\partial Y},\quad
        \frac{\partial L}{\partial \gamma} = \sum \frac{\partial L}{\partial Y} \hat X,\quad
        \frac{\partial L}{\partial X} = \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}}
            \Big(\frac{\partial L}{\partial Y} - \frac{1}{m}\frac{\partial L}{\partial \beta}
            - \frac{\hat X}{m} \frac{\partial L}{\partial \gamma}\Big)

    On the CPU in float32 both directions run in the compiled kernel of
    :mod:`layerlab.kernels` (two passes over X forward, two backward; Y is
    never stored: backward recomputes it from X); elsewhere (a GPU, float64,
    ``torch.func``, ``torch.compile``, second derivatives) the same formulas
    in PyTorch ops. Training keeps X and the per-channel mean and inverse
    standard deviation (``backward_uses``), where the separate layers keep
    X, Y and the ELU's memory.

    Args:
        batchnorm: the :class:`BatchNormalization` (default: a new one).
        activation: the :class:`ELU` or :class:`ReLU` after it (default: a
            new ``ELU()``).

    Shape: ``(N, C, *)`` to the same. Learnables: ``batchnorm.offset``,
    ``batchnorm.scale`` ``(C,)`` and, for an ELU, ``activation.alpha``
    ``(C,)`` or ``(1,)``; state: the batch normalization's.
    """

    default_name = "batchnorm_elu"
    differs_in_training = True
    couples_observations = True
    # X (Y is recomputed from it) and the batch's statistics, never Z
    backward_uses = ("X", "memory")

    def __init__(self, batchnorm: BatchNormalization | None = None,
                 activation: ELU | ReLU | None = None, name: str | None = None):
        super().__init__(name=name, type="Batch Normalization + ELU")
        batchnorm = BatchNormalization() if batchnorm is None else batchnorm
        activation = ELU() if activation is None else activation
        if type(batchnorm) is not BatchNormalization:
            raise LayerError(f"BatchNormELU batchnorm: expected a BatchNormalization, "
                             f"got {type(batchnorm).__name__}")
        if type(activation) not in (ELU, ReLU):
            raise LayerError(f"BatchNormELU activation: expected an ELU or a ReLU, "
                             f"got {type(activation).__name__}")
        self.batchnorm = batchnorm
        self.activation = activation
        self.description = f"{batchnorm.description}, then {activation.description}"

    @property
    def label(self) -> str:
        bn, act = self.batchnorm, self.activation
        if bn.name or act.name:
            return f"{bn.label} + {act.label} (fused)"
        return super().label

    def initialize(self, input_sizes):
        self.batchnorm.initialize(input_sizes)
        self.activation.initialize(input_sizes)

    def _alpha(self, X) -> torch.Tensor:
        """alpha as ``(C,)`` or ``(1,)``: the ELU's, a ReLU's 0."""
        act = self.activation
        if type(act) is ReLU:
            return X.new_zeros(1)
        alpha = act.alpha
        if alpha.numel() != 1 and (X.dim() < 2 or alpha.numel() != X.shape[1]):
            act._a(X)     # the ELU's own error, naming the layer
        return alpha

    def _values_per_channel(self, X) -> int:
        return self.batchnorm._values_per_channel(X)

    # ---- inference -------------------------------------------------------
    def predict(self, X):
        bn = self.batchnorm
        bn._check(X)
        alpha = self._alpha(X)
        if kernels.usable(X, bn.scale, bn.offset, alpha, bn.trained_mean, bn.trained_variance):
            done = kernels.batchnorm_elu_forward(
                X, bn.scale, bn.offset, alpha, bn.epsilon, running_mean=bn.trained_mean,
                running_var=bn.trained_variance, batch_statistics=False)
            if done is not None:
                return done[0]
        return self.activation.predict(bn.predict(X))

    # ---- training --------------------------------------------------------
    def forward(self, X):
        bn = self.batchnorm
        bn._check(X)
        self._values_per_channel(X)
        alpha = self._alpha(X)
        if kernels.usable(X, bn.scale, bn.offset, alpha, bn.trained_mean, bn.trained_variance):
            done = kernels.batchnorm_elu_forward(
                X, bn.scale, bn.offset, alpha, bn.epsilon, bn.momentum, bn.trained_mean,
                bn.trained_variance)
            if done is not None:
                Z, mean, invstd = done
                return Z, (mean, invstd)
        # PyTorch ops: batch_norm moves the running statistics as the layer
        # does; the batch's statistics are kept for backward (in float32 for
        # half-precision input, as batch_norm computes them)
        dims = [0] + list(range(2, X.dim()))
        var, mean = torch.var_mean(X.to(_compute_dtype(X)), dim=dims, correction=0)
        invstd = torch.rsqrt(var + bn.epsilon)
        Y = F.batch_norm(X, bn.trained_mean, bn.trained_variance, bn.scale, bn.offset, True,
                         bn.momentum, bn.epsilon)
        Z = torch.where(Y > 0, Y, per_channel(alpha, X) * (torch.exp(Y.clamp(max=0)) - 1))
        return Z, (mean, invstd)

    def backward(self, X, Z, dLdZ, memory):
        bn = self.batchnorm
        mean, invstd = memory
        alpha = self._alpha(X)
        need_x = self.needs_gradient(0)
        if kernels.usable(X, dLdZ, bn.scale, bn.offset, alpha, mean, invstd):
            done = kernels.batchnorm_elu_backward(X, dLdZ.contiguous(), bn.scale, bn.offset,
                                                  alpha, mean, invstd, need_x)
            if done is not None:
                dLdX, dLdscale, dLdoffset, dLdalpha = done
                return (dLdX, dLdoffset, dLdscale, *self._alpha_gradient(dLdalpha))
        m = X.numel() // X.shape[1]
        low = _compute_dtype(X)
        if low != X.dtype:
            # half precision: the formula's differences cancel, so compute in
            # float32 (as PyTorch's own batch_norm backward does on the CPU)
            grads = self._backward_ops(X.to(low), dLdZ.to(low), mean, invstd, alpha.to(low),
                                       m, need_x)
            dtypes = [X.dtype] + [p.dtype for p in self.learnables().values()]
            return tuple(None if g is None else g.to(d) for g, d in zip(grads, dtypes))
        return self._backward_ops(X, dLdZ, mean, invstd, alpha, m, need_x)

    def _backward_ops(self, X, dLdZ, mean, invstd, alpha, m, need_x):
        """backward in PyTorch ops (differentiable: second derivatives)."""
        bn = self.batchnorm
        gamma = per_channel(bn.scale.to(X.dtype), X)
        beta = per_channel(bn.offset.to(X.dtype), X)
        xhat = (X - per_channel(mean, X)) * per_channel(invstd, X)
        Y = gamma * xhat + beta
        e = torch.exp(Y.clamp(max=0))
        positive = Y > 0
        dLdY = torch.where(positive, dLdZ, dLdZ * per_channel(alpha, X) * e)
        dLdoffset = sum_per_channel(dLdY)
        dLdscale = sum_per_channel(dLdY * xhat)
        dLdX = None
        if need_x:
            dLdX = gamma * per_channel(invstd, X) * (
                dLdY - per_channel(dLdoffset, X) / m - xhat * per_channel(dLdscale, X) / m)
        dLdalpha = sum_per_channel(torch.where(positive, torch.zeros_like(dLdZ),
                                               dLdZ * (e - 1)))
        return (dLdX, dLdoffset, dLdscale, *self._alpha_gradient(dLdalpha))

    def _alpha_gradient(self, per_channel_sums) -> tuple:
        """dL/dalpha as the ELU declares alpha (one shared value: the sum);
        nothing for a ReLU, which has no learnable."""
        act = self.activation
        if isinstance(act, ReLU):
            return ()
        if not self.needs_gradient("activation.alpha"):
            return (None,)
        if act.alpha.numel() == 1:
            return (per_channel_sums.sum().reshape(1),)
        return (per_channel_sums,)
