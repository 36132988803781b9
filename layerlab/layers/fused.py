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
from .convolution import Convolution2d
from .normalization import BatchNormalization

__all__ = ["BatchNormELU", "ConvBatchNormELU", "DenseBatchNormELU"]


def _compute_dtype(X: torch.Tensor) -> torch.dtype:
    """float32 for half-precision X (statistics and their derivatives lose
    too much there), else X's own type."""
    return torch.float32 if X.dtype in (torch.float16, torch.bfloat16) else X.dtype


def _sizes_agree(bn: BatchNormalization) -> bool:
    n = bn.scale.numel()
    return bn.offset.numel() == n and bn.trained_mean.numel() == n \
        and bn.trained_variance.numel() == n


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
    never stored: backward recomputes it from X, and takes the ELU's
    derivative :math:`\alpha e^Y = Z + \alpha` from the output, as PyTorch's
    ``elu_backward`` does); elsewhere (a GPU, float64, ``torch.func``,
    ``torch.compile``, second derivatives) the same formulas in PyTorch
    ops. Training keeps X, Z (which the next layer keeps anyway) and the
    per-channel mean and inverse standard deviation (``backward_uses``),
    where the separate layers keep X, Y, Z and the ELU's memory.

    Args:
        batchnorm: the :class:`BatchNormalization` (default: a new one).
        activation: the :class:`ELU` or :class:`ReLU` after it (default: a
            new ``ELU()``).

    Shape: ``(N, C, *)`` to the same. Learnables: ``batchnorm.offset``,
    ``batchnorm.scale`` ``(C,)`` and, for an ELU, ``activation.alpha``
    ``(C,)`` or ``(1,)``; state: the batch normalization's.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "batchnorm_elu"
    differs_in_training = True
    couples_observations = True
    # X (Y is recomputed from it), Z (the compiled backward reads the ELU's
    # derivative from it: the next layer keeps it alive anyway) and the
    # batch's statistics
    backward_uses = ("X", "Z", "memory")

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

    def _kernel(self, X, *more) -> bool:
        """Whether the compiled kernel computes on X (and ``more``): it reads
        every per-channel tensor of the batch normalization by channel, so
        their sizes must agree (a replaced learnable of another size leaves
        it to PyTorch's ops and their error)."""
        bn = self.batchnorm
        return _sizes_agree(bn) and kernels.usable(X, bn.scale, bn.offset, bn.trained_mean,
                                                   bn.trained_variance, *more)

    # ---- inference -------------------------------------------------------
    def predict(self, X):
        bn = self.batchnorm
        bn._check(X)
        alpha = self._alpha(X)
        if self._kernel(X, alpha):
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
        if self._kernel(X, alpha):
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
        if self._kernel(X, alpha, dLdZ, mean, invstd):
            done = kernels.batchnorm_elu_backward(
                X, dLdZ.contiguous(), bn.scale, bn.offset, alpha, mean, invstd, need_x,
                Z=Z if Z is not None and kernels.usable(Z) else None)
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
        needs = self.needed_gradients()   # alpha is the last learnable
        if needs is not None and not needs[-1]:
            return (None,)
        if act.alpha.numel() == 1:
            return (per_channel_sums.sum().reshape(1),)
        return (per_channel_sums,)


class _ThenBatchNormELU(Layer):
    """Base of the layers computing a layer and then a :class:`BatchNormELU`
    (a convolution, a fully connected layer)."""

    def _hold(self, attribute: str, first: Layer, batchnorm_elu: BatchNormELU) -> None:
        """The three original layers as submodules (in that order: the order
        of the learnables), the pair kept for its computations."""
        if type(batchnorm_elu) is not BatchNormELU:
            raise LayerError(f"{type(self).__name__} batchnorm_elu: expected a BatchNormELU, "
                             f"got {type(batchnorm_elu).__name__}")
        setattr(self, attribute, first)
        self.batchnorm = batchnorm_elu.batchnorm
        self.activation = batchnorm_elu.activation
        # the first layer and the pair's computations, on the same submodules
        # (not registered a second time: the learnables are this layer's)
        object.__setattr__(self, "_first", first)
        object.__setattr__(self, "_bn_elu", batchnorm_elu)
        self.description = f"{first.description}, then {batchnorm_elu.description}"

    @property
    def label(self) -> str:
        return f"{self._first.label} + {self._bn_elu.label}"


class ConvBatchNormELU(_ThenBatchNormELU):
    r"""A convolution, batch normalization and an ELU (or ReLU) as one layer:
    what a network runs for ``Convolution2d`` followed by a fused
    :class:`BatchNormELU` (see :meth:`Convolution2d.fused_with`), the first
    three layers of the seed network.

    .. math::
        A = W \star X + b, \qquad Z = \mathrm{ELU}_\alpha(\mathrm{BN}_{\gamma,\beta}(A))

    with the formulas of :class:`~layerlab.layers.convolution.Convolution2d`
    and :class:`BatchNormELU`. On the CPU in float32, for a first layer (no
    dL/dX wanted) with few input channels, the compiled kernel saves two
    passes over ``A`` that go to main memory: the batch statistics are summed
    from each image's ``A`` while it is in cache, and backward computes each
    image's dL/dA into a small buffer and takes the convolution's weight
    gradient from it at once. Otherwise the parts compute as they would on
    their own. Training keeps X, Z and ``A`` with the batch's statistics.
    The convolution's bias has a zero derivative, exactly: batch
    normalization subtracts the batch mean, which the bias shifts as much as
    it shifts ``A`` (the separate layers compute it as a sum that is zero up
    to rounding).

    Args:
        convolution: the :class:`~layerlab.layers.convolution.Convolution2d`.
        batchnorm_elu: the :class:`BatchNormELU` after it.

    Shape: ``(N, C, H, W)`` to ``(N, F, H', W')``. Learnables
    ``convolution.weights``, ``convolution.bias``, ``batchnorm.offset``,
    ``batchnorm.scale`` and (ELU) ``activation.alpha``.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "conv_batchnorm_elu"
    differs_in_training = True
    couples_observations = True
    backward_uses = ("X", "Z", "memory")

    def __init__(self, convolution: Convolution2d, batchnorm_elu: BatchNormELU,
                 name: str | None = None):
        super().__init__(name=name, type="Convolution + Batch Normalization + ELU")
        if type(convolution) is not Convolution2d:
            raise LayerError(f"ConvBatchNormELU convolution: expected a Convolution2d, "
                             f"got {type(convolution).__name__}")
        self._hold("convolution", convolution, batchnorm_elu)

    def initialize(self, input_sizes):
        conv = self.convolution
        conv.initialize(input_sizes)
        with torch.no_grad():   # the convolution's output size, from a probe
            size = tuple(conv.predict(conv.weights.new_zeros((1, *input_sizes[0]))).shape[1:])
        self._bn_elu.initialize([size])

    def predict(self, X):
        return self._bn_elu.predict(self.convolution.predict(X))

    def _channels_agree(self, X) -> torch.Tensor:
        """The ELU's alpha, once batch norm and the ELU are checked against
        the convolution's filters (the kernel indexes their per-channel
        values by filter): a mismatch is the parts' own LayerError."""
        channels = X.new_empty(0, self.convolution.num_filters)
        self.batchnorm._check(channels)
        return self._bn_elu._alpha(channels)

    def _fused_kernel(self, Xp, *more) -> bool:
        """Whether the compiled conv + batch norm + ELU kernel applies."""
        bn = self.batchnorm
        return (Xp.shape[0] > 0 and self.convolution._few_channels(Xp, *more)
                and _sizes_agree(bn)
                and kernels.usable(bn.scale, bn.offset, bn.trained_mean, bn.trained_variance,
                                   library="conv_batchnorm_elu"))

    def forward(self, X):
        conv, bn = self.convolution, self.batchnorm
        if X.dim() == 4 and X.shape[1] == conv.weights.shape[1]:
            Xp = conv._padded(X)
            kh, kw = conv.filter_size
            alpha = self._channels_agree(X)
            if Xp.shape[0] * (Xp.shape[2] - kh + 1) * (Xp.shape[3] - kw + 1) > 1 \
                    and self._fused_kernel(Xp, alpha):
                done = kernels.conv_batchnorm_elu_forward(
                    Xp, conv.weights, conv.bias, bn.scale, bn.offset, alpha, bn.epsilon,
                    bn.momentum, bn.trained_mean, bn.trained_variance)
                if done is not None:
                    Z, A, mean, invstd = done
                    return Z, (A, mean, invstd)
        A = conv.predict(X)
        Z, (mean, invstd) = self._bn_elu.training_forward(A)
        return Z, (A, mean, invstd)

    def backward(self, X, Z, dLdZ, memory):
        conv, bn = self.convolution, self.batchnorm
        A, mean, invstd = memory
        names = self.learnable_names
        needs = [self.needs_gradient(0)] + [self.needs_gradient(n) for n in names]
        if not needs[0]:
            Xp = conv._padded(X)
            alpha = self._channels_agree(A)
            if self._fused_kernel(Xp, A, dLdZ, alpha, mean, invstd):
                done = kernels.conv_batchnorm_elu_backward(
                    Xp, A, Z if Z is not None and kernels.usable(Z) else None,
                    dLdZ.contiguous(), tuple(conv.weights.shape), bn.scale, bn.offset, alpha,
                    mean, invstd)
                if done is not None:
                    dW, _, dscale, doffset, dalpha = done
                    grads = (None, dW, torch.zeros_like(conv.bias), doffset, dscale,
                             *self._bn_elu._alpha_gradient(dalpha))
                    return tuple(g if need else None for g, need in zip(grads, needs))
        # the parts' own backwards (each computes every derivative: outside
        # the bridge, a layer's needs_gradient says yes)
        dA, *bn_grads = self._bn_elu.backward(A, Z, dLdZ, (mean, invstd))
        dX, dW, _ = conv.backward(X, A, dA, None)
        grads = (dX, dW, torch.zeros_like(conv.bias), *bn_grads)
        return tuple(g if need else None for g, need in zip(grads, needs))


class DenseBatchNormELU(_ThenBatchNormELU):
    r"""A fully connected layer, batch normalization and an ELU (or ReLU) as
    one layer: what a network runs for :class:`~layerlab.FullyConnected`
    followed by a fused :class:`BatchNormELU` (see
    :meth:`FullyConnected.fused_with <layerlab.layers.dense.FullyConnected.fused_with>`),
    the block of the experiments' deep MLP.

    .. math::
        A = X W^\top + b, \qquad Z = \mathrm{ELU}_\alpha(\mathrm{BN}_{\gamma,\beta}(A))

    Backward, with :math:`\partial L / \partial A` from :class:`BatchNormELU`'s
    formulas:

    .. math::
        \frac{\partial L}{\partial X} = \frac{\partial L}{\partial A} W, \qquad
        \frac{\partial L}{\partial W} = \Big(\frac{\partial L}{\partial A}\Big)^\top X,
        \qquad \frac{\partial L}{\partial b} = 0

    The bias's derivative is zero exactly: batch normalization subtracts the
    batch mean, which ``b`` shifts as much as it shifts ``A`` (the separate
    layers compute it as a sum that is zero up to rounding); ``b`` still
    moves the running mean, so inference is unchanged. One autograd node
    and one bridge call per block instead of two; ``A`` is the only value
    kept besides X and Z.

    Args:
        dense: the :class:`~layerlab.FullyConnected` (without DropConnect).
        batchnorm_elu: the :class:`BatchNormELU` after it.

    Shape: ``(N, D)`` or ``(N, *S)`` with ``prod(S) = D`` to ``(N, K)``.
    Learnables ``dense.weights`` ``(K, D)``, ``dense.bias`` ``(K,)``,
    ``batchnorm.offset``, ``batchnorm.scale`` ``(K,)`` and (ELU)
    ``activation.alpha``; state: the batch normalization's.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "fc_batchnorm_elu"
    differs_in_training = True
    couples_observations = True
    backward_uses = ("X", "Z", "memory")

    def __init__(self, dense, batchnorm_elu: BatchNormELU, name: str | None = None):
        from .dense import FullyConnected
        super().__init__(name=name, type="Fully Connected + Batch Normalization + ELU")
        if type(dense) is not FullyConnected or dense.drop_connect > 0:
            raise LayerError(f"DenseBatchNormELU dense: expected a FullyConnected without "
                             f"DropConnect, got {getattr(dense, 'label', type(dense).__name__)}")
        self._hold("dense", dense, batchnorm_elu)

    def initialize(self, input_sizes):
        self.dense.initialize(input_sizes)
        self._bn_elu.initialize([(self.dense.output_size,)])

    def predict(self, X):
        return self._bn_elu.predict(self.dense.predict(X))

    def forward(self, X):
        fc = self.dense
        Xf = fc._features(X)
        A = F.linear(Xf, fc.weights, fc.bias)
        Z, (mean, invstd) = self._bn_elu.training_forward(A)
        return Z, (A, mean, invstd)

    def backward(self, X, Z, dLdZ, memory):
        fc = self.dense
        A, mean, invstd = memory
        needs = self.needed_gradients()
        # the pair's own backward computes dL/dA and its learnables'
        # derivatives (dL/dA is always needed here)
        dA, *bn_grads = self._bn_elu.backward(A, Z, dLdZ, (mean, invstd))
        W = fc.weights
        dX = dW = db = None
        if needs is None or needs[0]:
            dX = (dA @ W).view(X.shape)
        if needs is None or needs[1]:
            dW = dA.t() @ (X.flatten(1) if X.dim() > 2 else X)
        if needs is None or needs[2]:
            db = torch.zeros_like(fc.bias)
        grads = (dX, dW, db, *bn_grads)
        return grads if needs is None else tuple(g if n else None
                                                 for g, n in zip(grads, needs))

    def fused_with(self, following):
        """The next fully connected + batch norm + ELU block (or a chain of
        them), or a plain fully connected layer (a classifier), joins this
        one in a :class:`~layerlab.layers.fused_chain.DenseBatchNormELUChain`:
        one autograd node and one compiled call each way for the run."""
        from .dense import FullyConnected
        from .fused_chain import DenseBatchNormELUChain
        if type(following) in (DenseBatchNormELU, DenseBatchNormELUChain) or (
                type(following) is FullyConnected and following.drop_connect == 0):
            return DenseBatchNormELUChain([self, following])
        return None
