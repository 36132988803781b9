"""Convolution layers."""

from __future__ import annotations


import torch
import torch.nn.functional as F

from .. import kernels
from ..errors import LayerError
from ..layer import Layer, Learnable
from . import initializers
from ._util import int_pair, positive_int

__all__ = ["Convolution2d"]


class Convolution2d(Layer):
    r"""2-d convolution, MATLAB's ``convolution2dLayer(filter_size, num_filters)``.

    .. math::  Z_{n,f} = b_f + \sum_c W_{f,c} \star X_{n,c}

    Args:
        filter_size: ``k`` or ``(kh, kw)``.
        num_filters: ``F``, the number of output channels.
        stride: ``s`` or ``(sh, sw)``, default 1.
        padding: ``p``, ``(ph, pw)`` or ``"same"`` (output as large as the
            input for stride 1), default 0.
        num_channels: ``C``, inferred from the input when omitted.
        weights_initializer, bias_initializer: see :mod:`layerlab.layers.initializers`
            (default ``"glorot"`` and ``"zeros"``, as in MATLAB).

    Shape: input ``(N, C, H, W)``, output ``(N, F, H', W')`` with
    ``H' = floor((H + 2 ph - kh) / sh) + 1``. Learnables: ``weights``
    ``(F, C, kh, kw)`` and ``bias`` ``(F,)``.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "conv"

    def __init__(self, filter_size, num_filters: int, stride=1, padding=0,
                 num_channels: int | None = None, weights_initializer="glorot",
                 bias_initializer="zeros", name: str | None = None):
        super().__init__(name=name, type="Convolution")
        self.filter_size = int_pair(filter_size, "Convolution2d filter_size")
        self.num_filters = positive_int(num_filters, "Convolution2d num_filters")
        self.stride = int_pair(stride, "Convolution2d stride")
        if padding == "same":
            self.padding: tuple[int, int] | str = "same"
        else:
            self.padding = int_pair(padding, "Convolution2d padding", minimum=0)
        initializers.check_initializer(weights_initializer, "Convolution2d weights_initializer")
        initializers.check_initializer(bias_initializer, "Convolution2d bias_initializer")
        self.weights_initializer = weights_initializer
        self.bias_initializer = bias_initializer
        self.description = (f"{self.num_filters} {self.filter_size[0]}x{self.filter_size[1]} "
                            f"convolutions with stride {self.stride}")
        if num_channels is not None:
            self._create(positive_int(num_channels, "Convolution2d num_channels"))

    def _create(self, channels: int) -> None:
        kh, kw = self.filter_size
        shape = (self.num_filters, channels, kh, kw)
        what = f"layer {self.label}"
        self.weights = Learnable(initializers.initialize(
            self.weights_initializer, shape, kh * kw * channels, kh * kw * self.num_filters,
            what + " weights"))
        self.bias = Learnable(initializers.initialize(
            self.bias_initializer, (self.num_filters,), kh * kw * channels,
            kh * kw * self.num_filters, what + " bias"))

    def initialize(self, input_sizes):
        (size,) = input_sizes
        if len(size) != 3:
            raise LayerError(f"layer {self.label}: expected images (C, H, W), "
                             f"got input of size {size}")
        if not self.has_learnable("weights"):
            self._create(size[0])
        elif self.weights.shape[1] != size[0]:
            raise LayerError(f"layer {self.label}: weights expect "
                             f"{self.weights.shape[1]} input channels, got {size[0]} "
                             f"(input size {size})")
        top, bottom, left, right = (0, 0, 0, 0) if self.padding == "same" else self._pads()
        if size[1] + top + bottom < self.filter_size[0] or \
                size[2] + left + right < self.filter_size[1]:
            raise LayerError(f"layer {self.label}: filter {self.filter_size} is larger "
                             f"than the padded input {size[1:]} ")

    def _pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) zero padding, as ``predict`` applies it:
        ``padding`` on each side, or for ``"same"`` ``(k - 1) // 2`` (MATLAB
        pads so that the output is ``ceil(H / stride)``), any extra row or
        column of an even filter going to the bottom/right at stride 1, as
        PyTorch's ``padding="same"`` does."""
        if self.padding != "same":
            ph, pw = self.padding
            return (ph, ph, pw, pw)
        kh, kw = self.filter_size
        if self.stride == (1, 1):
            return ((kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2)
        return ((kh - 1) // 2, (kh - 1) // 2, (kw - 1) // 2, (kw - 1) // 2)

    #: at most this many input channels, the compiled few-channel kernel
    #: computes the forward and the weight gradient (see _few_channels)
    FEW_CHANNELS = 4

    def _few_channels(self, X, *more) -> bool:
        """Whether the compiled kernel for few input channels
        (:mod:`layerlab.kernels`, ``conv2d_few_channels.c``) computes on the
        (padded) input ``X``: stride 1, at most :data:`FEW_CHANNELS` input
        channels, filters at most 7 wide, output rows at least 8 wide (its
        vectors), one bias per filter (C reads it by filter), CPU float32. There it is 1.2-1.8x faster than PyTorch's
        oneDNN convolution (bench/README.md); elsewhere PyTorch's ops run."""
        kh, kw = self.filter_size
        return (self.stride == (1, 1) and X.shape[1] <= self.FEW_CHANNELS
                and kw <= kernels.CONV_MAX_FILTER_WIDTH and X.shape[3] - kw + 1 >= 8
                and X.shape[2] >= kh and self.bias.numel() == self.weights.shape[0]
                and kernels.usable(X, self.weights, self.bias, *more,
                                   library="conv2d_few_channels"))

    def fused_with(self, following):
        """A following :class:`~layerlab.layers.fused.BatchNormELU` (the
        network's fused batch normalization + ELU or ReLU) runs fused with
        this layer, as :class:`~layerlab.layers.fused.ConvBatchNormELU`, where
        the compiled few-channel kernel can apply (stride 1, at most
        :data:`FEW_CHANNELS` input channels, filters at most 7 wide)."""
        from .fused import BatchNormELU, ConvBatchNormELU
        if (type(following) is not BatchNormELU or self.stride != (1, 1)
                or "weights" not in self._parameters
                or self.weights.shape[1] > self.FEW_CHANNELS
                or self.filter_size[1] > kernels.CONV_MAX_FILTER_WIDTH):
            return None
        return ConvBatchNormELU(self, following)

    def _padded(self, X):
        """X with the zero padding applied, when the kernel takes it."""
        top, bottom, left, right = self._pads()
        return F.pad(X, (left, right, top, bottom)) if top or bottom or left or right else X

    def predict(self, X):
        if X.dim() != 4 or X.shape[1] != self.weights.shape[1]:
            raise LayerError(f"layer {self.label}: expected input (N, "
                             f"{self.weights.shape[1]}, H, W), got {tuple(X.shape)}")
        if X.shape[0] and self._few_channels(X):
            Z = kernels.conv2d_forward(self._padded(X), self.weights, self.bias)
            if Z is not None:
                return Z
        top, bottom, left, right = self._pads()
        if top != bottom or left != right:      # "same" with an even filter
            X = F.pad(X, (left, right, top, bottom))
            top = left = 0
        return F.conv2d(X, self.weights, self.bias, self.stride, (top, left))

    # The backward reads only X (not Z): training keeps nothing else alive.
    backward_uses = ("X",)

    def backward(self, X, Z, dLdZ, memory):
        r"""Derivatives of the convolution.

        .. math::
            \frac{\partial L}{\partial W_{f,c,i,j}} = \sum_{n,h,w}
                \frac{\partial L}{\partial Z_{n,f,h,w}} X^{pad}_{n,c,sh+i,sw+j},\qquad
            \frac{\partial L}{\partial b_f} = \sum_{n,h,w}
                \frac{\partial L}{\partial Z_{n,f,h,w}}

        and dL/dX is the transposed convolution of dL/dZ with W, all from
        PyTorch's ``convolution_backward`` (oneDNN on the CPU; with torch 2.13
        its weight gradient is faster than the earlier swapped-convolution
        form for 1-2 input channels too: bench/README.md). Each derivative is
        computed only when it is needed: the first layer's dL/dX never is.
        """
        need_x = self.needs_gradient(0)
        need_w = self.needs_gradient("weights")
        need_b = self.needs_gradient("bias")
        if (need_w or need_b) and X.shape[0] and self._few_channels(X, dLdZ):
            # the compiled kernel: both derivatives in one pass (the first
            # layer of a network needs no dL/dX)
            done = kernels.conv2d_weight_grad(self._padded(X), dLdZ, tuple(self.weights.shape))
            if done is not None:
                dLdW, dLdb = done
                dLdX = self._input_gradient(X, dLdZ) if need_x else None
                return dLdX, dLdW if need_w else None, dLdb if need_b else None
        top, bottom, left, right = self._pads()
        symmetric = top == bottom and left == right
        # an asymmetric ("same" with an even filter) padding is applied to X
        # here, as predict does; a symmetric one is the ops' own argument
        Xp = X if symmetric else F.pad(X, (left, right, top, bottom))
        padding = [top, left] if symmetric else [0, 0]
        dLdX = dLdW = None
        if need_x or need_w:
            dLdXp, dLdW, _ = torch.ops.aten.convolution_backward(
                dLdZ, Xp, self.weights, None, list(self.stride), padding, [1, 1], False,
                [0, 0], 1, [need_x, need_w, False])
            if need_x:
                dLdX = dLdXp if symmetric else \
                    dLdXp[:, :, top:dLdXp.shape[2] - bottom, left:dLdXp.shape[3] - right]
        dLdb = dLdZ.sum(dim=(0, 2, 3)) if need_b else None
        return dLdX, dLdW, dLdb

    def _input_gradient(self, X, dLdZ):
        """dL/dX alone, from PyTorch's ``convolution_backward``."""
        top, bottom, left, right = self._pads()
        symmetric = top == bottom and left == right
        Xp = X if symmetric else F.pad(X, (left, right, top, bottom))
        dLdXp = torch.ops.aten.convolution_backward(
            dLdZ, Xp, self.weights, None, list(self.stride),
            [top, left] if symmetric else [0, 0], [1, 1], False, [0, 0], 1,
            [True, False, False])[0]
        return dLdXp if symmetric else \
            dLdXp[:, :, top:dLdXp.shape[2] - bottom, left:dLdXp.shape[3] - right]
