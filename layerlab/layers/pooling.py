"""Pooling layers over the spatial dimensions of images ``(N, C, H, W)``."""

from __future__ import annotations

import torch.nn.functional as F

from ..errors import LayerError
from ..layer import Layer
from ._util import int_pair

__all__ = ["MaxPooling2d", "AveragePooling2d", "GlobalAveragePooling2d"]


class _Pooling2d(Layer):
    """Pool size, stride and padding, and the size checks."""

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    def __init__(self, pool_size, stride, padding, name, kind_name):
        super().__init__(name=name, type=kind_name)
        kind = self.__class__.__name__
        self.pool_size = int_pair(pool_size, f"{kind} pool_size")
        self.stride = self.pool_size if stride is None else int_pair(stride, f"{kind} stride")
        self.padding = int_pair(padding, f"{kind} padding", minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.pool_size)):
            raise LayerError(f"{kind} padding: at most half the pool size {self.pool_size}, "
                             f"got {self.padding}")

    def _check_size(self, size) -> None:
        if len(size) != 3:
            raise LayerError(f"layer {self.label}: expected images (C, H, W), got "
                             f"input of size {tuple(size)}")
        for s, p, k in zip(size[1:], self.padding, self.pool_size):
            if s + 2 * p < k:
                raise LayerError(f"layer {self.label}: pool {self.pool_size} is larger "
                                 f"than the padded input {tuple(size[1:])}")

    def initialize(self, input_sizes):
        (size,) = input_sizes
        self._check_size(tuple(size))

    def _check(self, X):
        if X.dim() != 4:
            raise LayerError(f"layer {self.label}: expected input (N, C, H, W), "
                             f"got {tuple(X.shape)}")
        self._check_size(tuple(X.shape[1:]))


class MaxPooling2d(_Pooling2d):
    r"""2-d max pooling, MATLAB's ``maxPooling2dLayer``.

    .. math::  Z_{n,c,i,j} = \max_{0 \le u < k_h,\, 0 \le v < k_w}
        X_{n,c,\, s_h i + u - p_h,\, s_w j + v - p_w}

    (padding with :math:`-\infty`).

    Args:
        pool_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``; default the pool size
            (non-overlapping, as in PyTorch and Keras; MATLAB's default is 1).
        padding: ``p`` or ``(ph, pw)``, at most half the pool size; default 0.

    Shape: ``(N, C, H, W)`` to ``(N, C, H', W')`` with
    ``H' = floor((H + 2 ph - kh) / sh) + 1``.
    """

    default_name = "maxpool"

    def __init__(self, pool_size, stride=None, padding=0, name: str | None = None):
        super().__init__(pool_size, stride, padding, name, "Max Pooling")
        self.description = f"{self.pool_size[0]}x{self.pool_size[1]} max pooling with " \
                           f"stride {self.stride}"

    def predict(self, X):
        self._check(X)
        return F.max_pool2d(X, self.pool_size, self.stride, self.padding)


class AveragePooling2d(_Pooling2d):
    r"""2-d average pooling, MATLAB's ``averagePooling2dLayer``.

    .. math::  Z_{n,c,i,j} = \frac{1}{k_h k_w} \sum_{u < k_h,\, v < k_w}
        X_{n,c,\, s_h i + u - p_h,\, s_w j + v - p_w}

    (padding with zeros, which count in the average, as in MATLAB).

    Args:
        pool_size, stride, padding: as for :class:`MaxPooling2d`.

    Shape: ``(N, C, H, W)`` to ``(N, C, H', W')``.
    """

    default_name = "avgpool"

    def __init__(self, pool_size, stride=None, padding=0, name: str | None = None):
        super().__init__(pool_size, stride, padding, name, "Average Pooling")
        self.description = f"{self.pool_size[0]}x{self.pool_size[1]} average pooling with " \
                           f"stride {self.stride}"

    def predict(self, X):
        self._check(X)
        return F.avg_pool2d(X, self.pool_size, self.stride, self.padding,
                            count_include_pad=True)


class GlobalAveragePooling2d(Layer):
    r"""Global average pooling, MATLAB's ``globalAveragePooling2dLayer``:
    the mean of each channel over all positions.

    .. math::  Z_{n,c,1,1} = \frac{1}{HW} \sum_{i,j} X_{n,c,i,j}

    Shape: ``(N, C, H, W)`` to ``(N, C, 1, 1)`` (a following
    :class:`~layerlab.layers.dense.FullyConnected` flattens it).
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "gap"

    def __init__(self, name: str | None = None):
        super().__init__(name=name, type="Global Average Pooling")
        self.description = "global average pooling"

    def initialize(self, input_sizes):
        (size,) = input_sizes
        if len(size) != 3:
            raise LayerError(f"layer {self.label}: expected images (C, H, W), got "
                             f"input of size {tuple(size)}")

    def predict(self, X):
        if X.dim() != 4:
            raise LayerError(f"layer {self.label}: expected input (N, C, H, W), "
                             f"got {tuple(X.shape)}")
        return X.mean(dim=(2, 3), keepdim=True)
