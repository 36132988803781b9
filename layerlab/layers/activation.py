"""Activation layers: the rectifiers of the lecture "Going deeper" and the
classic squashing functions.

Element-wise ones (ReLU, LeakyReLU, PReLU, ELU, Tanh, Sigmoid) map
``(N, C, *)`` to the same shape; CReLU doubles the channels. Maxout, which
divides them, has its own module (:mod:`layerlab.layers.maxout`). Per-channel parameters have shape
``(C,)``; a single shared parameter has shape ``(1,)``.

The hand-written backwards avoid ``torch.where`` and comparisons where a
cheaper exact form exists (e.g. ``[X > 0]`` as ``sign(X)`` clamped at 0):
on CPU those are several times slower than arithmetic (``bench/layers.py``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..errors import LayerError
from ..validation import check_number
from ..layer import Layer, Learnable
from ._util import may_work_in_place, per_channel, positive_int, sum_per_channel

__all__ = ["ReLU", "ELU", "LeakyReLU", "PReLU", "CReLU", "Tanh", "Sigmoid"]

_LOG2_E = 1.4426950408889634  # log2(e): exp(x) = exp2(x * log2(e))


class ReLU(Layer):
    r"""Rectified linear unit: :math:`Z = \max(0, X)`."""

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

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
            [0, 1) as in the seed post (drawn again when the network is
            built, so ``training_options(seed=...)`` fixes it), learnable by
            default. Omitted: one
            alpha shared by all channels.
        alpha: the initial (or fixed) value when ``num_channels`` is omitted,
            default 1.0.
        learnable: whether alpha is trained; default True with
            ``num_channels``, False without (``ELU(alpha=1.0,
            learnable=False)`` is the Revisited post's fixed-alpha ELU).

    Shape: ``(N, C, *)`` to the same. Learnable ``alpha``: ``(C,)`` or ``(1,)``.
    The training forward keeps ``exp(min(X, 0)) - 1`` as its memory (the
    reader's faster variant in the seed post); backward reads X and the
    memory only (``backward_uses``), so Z is not kept for it. Forward plus
    backward is about 3x faster than the autograd composite written with
    clamp and exp, and keeps 2/3 of its bytes (``bench/layers.py``).
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "elu"
    # backward reads X (its sign) and the memory, never Z: Z is not kept
    backward_uses = ("X", "memory")

    def __init__(self, num_channels: int | None = None, alpha: float = 1.0,
                 learnable: bool | None = None, name: str | None = None):
        super().__init__(name=name, type="Exponential Linear Unit")
        if num_channels is not None:
            c = positive_int(num_channels, "ELU num_channels")
            # drawn again when the network is built (under the training seed)
            spec = Learnable(draw=functools.partial(torch.rand, c))
            self.description = f"Exponential linear unit with {c} channels"
        else:
            alpha = check_number(alpha, "ELU alpha", error=LayerError, expected="a number")
            spec = Learnable(torch.tensor([float(alpha)]))
            self.description = f"Exponential linear unit with alpha: {alpha}"
        if learnable is None:
            learnable = num_channels is not None
        spec.learnable = bool(learnable)
        self.alpha = spec

    def _a(self, X):
        if X.dim() < 2 or self.alpha.numel() not in (1, X.shape[1]):
            raise LayerError(f"layer {self.label}: alpha has {self.alpha.numel()} "
                             f"channels, got input of size {tuple(X.shape)}")
        return per_channel(self.alpha, X)

    # Speed (bench/seed_network.py, bench/layers.py): every pass over a
    # 128x20x24x24 tensor costs about as much as the arithmetic, so the
    # kernels below are few, mostly in place, and avoid boolean masks and
    # torch.where, which are several times slower than float arithmetic on
    # CPU (F.elu is too: it costs more than clamp + exp).
    def _exp_min_0_minus_1(self, X):
        """``exp(min(X, 0)) - 1``: exactly 0 where X > 0, never overflows.
        ``exp(x)`` is computed as ``exp2(x log2(e))``: the same to rounding and
        about 3x faster than ``exp`` on this CPU (bench/README.md); ONNX has
        no exp2, so an export traces ``exp``. In place (one new tensor) only
        where autograd does not record it: ``exp2_`` would overwrite the
        output that ``exp2``'s derivative needs."""
        if torch.onnx.is_in_onnx_export():
            return X.clamp(max=0).exp() - 1
        if may_work_in_place(X, self.alpha):
            return X.clamp(max=0).mul_(_LOG2_E).exp2_().sub_(1)
        return (X.clamp(max=0) * _LOG2_E).exp2() - 1

    def predict(self, X):
        return torch.addcmul(torch.relu(X), self._a(X), self._exp_min_0_minus_1(X))

    def forward(self, X):
        m = self._exp_min_0_minus_1(X)
        return torch.addcmul(torch.relu(X), self._a(X), m), m

    def backward(self, X, Z, dLdZ, memory):
        a = self._a(X)
        need_x, need_alpha = self.needs_gradient(0), self.needs_gradient("alpha")
        gm = dLdZ * memory if need_x or need_alpha else None    # dL/dZ (e^min(X,0) - 1)
        dLdalpha = None
        if need_alpha:
            g = sum_per_channel(gm)
            dLdalpha = g.sum().reshape(1) if self.alpha.numel() == 1 else g
        dLdX = None
        if need_x:
            # With T = dL/dZ where X > 0 (else 0; ReLU's derivative, a float
            # kernel) and G e^min(X,0) = G + G m:
            #   dL/dX = T + alpha (G + G m - T)
            # is G where X > 0 (m = 0 there) and alpha G e^X where X <= 0.
            T = torch.ops.aten.threshold_backward(dLdZ, X, 0)
            dLdX = T.addcmul_(a, gm.add_(dLdZ).sub_(T))
        return dLdX, dLdalpha


class LeakyReLU(Layer):
    r"""Leaky rectified linear unit with a fixed or a learnable scale
    (Maas et al. 2013; learnable per channel: PReLU, He et al. 2015).

    .. math::
        Z = \max(0, X) + a \min(0, X) =
            \begin{cases} X & X > 0 \\ a X & X \le 0 \end{cases}

    Hand-written backward:

    .. math::
        \frac{\partial L}{\partial X} = \frac{\partial L}{\partial Z}
            \begin{cases} 1 & X > 0 \\ a & X \le 0 \end{cases},
        \qquad
        \frac{\partial L}{\partial a} = \sum_{n,h,w}
            \frac{\partial L}{\partial Z} \min(0, X)

    (summed over the channels too when ``a`` is shared).

    Args:
        scale: ``a``, the slope for negative inputs, default 0.01 (MATLAB's
            ``leakyReluLayer``); the initial value when learnable.
        learnable: whether ``a`` is trained (default False: a fixed slope).
            Changeable later with ``freeze`` / ``unfreeze``.
        num_channels: ``C``: one slope per channel. Omitted: one slope shared
            by all channels.

    Shape: ``(N, C, *)`` to the same. Learnable ``scale``: ``(C,)`` or ``(1,)``.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "leakyrelu"
    # PReLU creates one slope per channel once it knows the channels
    _per_channel = False

    def __init__(self, scale: float = 0.01, learnable: bool = False,
                 num_channels: int | None = None, name: str | None = None):
        super().__init__(name=name, type="Leaky ReLU")
        self.initial_scale = float(check_number(scale, f"{type(self).__name__} scale",
                                                error=LayerError, expected="a number"))
        self.learnable = bool(learnable)
        self.description = (f"Leaky ReLU with {'learnable' if learnable else 'fixed'} "
                            f"scale {scale}")
        if num_channels is not None:
            self._create(positive_int(num_channels, f"{type(self).__name__} num_channels"))
        elif not self._per_channel:
            self._create(1)

    def _create(self, c: int) -> None:
        self.scale = Learnable(torch.full((c,), self.initial_scale), learnable=self.learnable)

    def initialize(self, input_sizes):
        (size,) = input_sizes
        if not self.has_learnable("scale"):
            if len(size) < 1:
                raise LayerError(f"layer {self.label}: expected input (C, ...) with "
                                 f"channels, got input of size {tuple(size)}")
            self._create(size[0])
        elif self.scale.numel() not in (1, size[0] if size else -1):
            raise LayerError(f"layer {self.label}: scale has {self.scale.numel()} "
                             f"channels, got input of size {tuple(size)}")

    def _check(self, X):
        if not self.has_learnable("scale"):
            raise LayerError(f"layer {self.label}: the number of channels is not known "
                             f"yet; give num_channels or put the layer in a network")
        if X.dim() < 2 or self.scale.numel() not in (1, X.shape[1]):
            raise LayerError(f"layer {self.label}: scale has {self.scale.numel()} "
                             f"channels, got input of size {tuple(X.shape)}")

    def predict(self, X):
        self._check(X)
        # F.prelu is max(0, X) + a * min(0, X) with a of size (1,) or (C,)
        return F.prelu(X, self.scale)

    def forward(self, X):
        Z = self.predict(X)
        if self.is_learnable("scale"):
            return Z, None
        # a fixed scale needs only the mask [X > 0]: one byte per element (a
        # bool tensor: torch.func's vmap has no rule for viewing it as uint8
        # before PyTorch 2.12)
        return Z, torch.gt(X, 0)

    @property
    def backward_uses(self):
        """What training keeps for backward: X when the scale is learned
        (dL/da needs min(0, X)), else only forward's 1-byte mask [X > 0]."""
        return ("X",) if self.is_learnable("scale") else ("memory",)

    def backward(self, X, Z, dLdZ, memory):
        a = per_channel(self.scale, dLdZ)
        dLdX = None
        if self.needs_gradient(0):
            # slope = 1 where X > 0, a elsewhere: a + (1 - a) [X > 0]. The
            # mask [X > 0] as sign(X) clamped at 0 is exact (0 at X = 0) and,
            # on CPU, much faster than torch.where or a comparison.
            # in place: each new large tensor costs about a pass itself
            mask = memory.to(dLdZ.dtype) if X is None else X.sign().clamp_(min=0)
            slope = mask.mul_(1 - a).add_(a)
            dLdX = slope.mul_(dLdZ) if may_work_in_place(dLdZ) else slope * dLdZ
        dLdscale = None
        if self.needs_gradient("scale"):
            g = sum_per_channel(X.clamp(max=0).mul_(dLdZ))
            dLdscale = g.sum().reshape(1) if self.scale.numel() == 1 else g
        return dLdX, dLdscale


class PReLU(LeakyReLU):
    r"""Parametric ReLU (He et al. 2015): a :class:`LeakyReLU` with one
    learnable slope per channel,
    :math:`Z_{n,c} = \max(0, X_{n,c}) + a_c \min(0, X_{n,c})`.

    Args:
        num_channels: ``C``, inferred from the input when omitted.
        scale: the initial slope of every channel, default 0.25 (He et al.).

    Shape: ``(N, C, *)`` to the same. Learnable ``scale``: ``(C,)``.
    """

    default_name = "prelu"
    _per_channel = True

    def __init__(self, num_channels: int | None = None, scale: float = 0.25,
                 name: str | None = None):
        super().__init__(scale=scale, learnable=True, num_channels=num_channels, name=name)
        self.type = "PReLU"
        self.description = f"PReLU, one learnable scale per channel (initially {scale})"


class CReLU(Layer):
    r"""Concatenated ReLU (Shang et al. 2016): the positive and the negative
    part side by side, doubling the channels.

    .. math::  Z = [\max(0, X), \max(0, -X)] \quad\text{(along the channels)}

    Hand-written backward, with :math:`G = [G^+, G^-] = \partial L / \partial Z`:

    .. math::
        \frac{\partial L}{\partial X} = G^+ [X > 0] - G^- [X < 0]

    (0 at the kink ``X = 0``, as autograd of the composite gives).

    Shape: ``(N, C, *)`` to ``(N, 2C, *)``; channel ``c`` of the output is
    ``max(0, X_c)`` and channel ``C + c`` is ``max(0, -X_c)``.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "crelu"

    def __init__(self, name: str | None = None):
        super().__init__(name=name, type="CReLU")
        self.description = "concatenated ReLU [max(0, X), max(0, -X)]"

    def predict(self, X):
        if X.dim() < 2:
            raise LayerError(f"layer {self.label}: expected input (N, C, ...), "
                             f"got {tuple(X.shape)}")
        if not may_work_in_place(X):
            return torch.cat([torch.relu(X), torch.relu(X.neg())], dim=1)
        # write both halves in place: max(0, -X) = max(0, X) - X
        Z = X.new_empty((X.shape[0], 2 * X.shape[1], *X.shape[2:]))
        Zpos, Zneg = Z.chunk(2, dim=1)
        torch.clamp(X, min=0, out=Zpos)
        torch.sub(Zpos, X, out=Zneg)
        return Z

    # backward reads only X, half the size of Z: Z is not kept
    backward_uses = ("X",)

    def backward(self, X, Z, dLdZ, memory):
        if not self.needs_gradient(0):
            return (None,)
        Gpos, Gneg = dLdZ.chunk(2, dim=1)
        # [X > 0] = max(0, sign X) and -[X < 0] = min(0, sign X): exact masks,
        # cheaper on CPU than comparisons or torch.where; in place, since
        # each new large tensor costs about a pass itself
        s = X.sign()
        dLdX = Gneg * s.clamp(max=0)
        if may_work_in_place(X, dLdZ):
            return dLdX.addcmul_(Gpos, s.clamp_(min=0))
        # differentiated (second derivatives): clamp_ would overwrite the
        # sign that clamp's derivative keeps
        return dLdX + Gpos * s.clamp(min=0)


class Tanh(Layer):
    r"""Hyperbolic tangent: :math:`Z = \tanh(X) = (e^X - e^{-X}) / (e^X + e^{-X})`.

    Shape: ``(N, *)`` to the same.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "tanh"

    def __init__(self, name: str | None = None):
        super().__init__(name=name, type="Tanh")
        self.description = "hyperbolic tangent"

    def predict(self, X):
        return torch.tanh(X)


class Sigmoid(Layer):
    r"""Logistic sigmoid: :math:`Z = 1 / (1 + e^{-X})`.

    Shape: ``(N, *)`` to the same.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "sigmoid"

    def __init__(self, name: str | None = None):
        super().__init__(name=name, type="Sigmoid")
        self.description = "logistic sigmoid"

    def predict(self, X):
        return torch.sigmoid(X)
