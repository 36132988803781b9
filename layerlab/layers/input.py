"""Input layers: where data enter a network, are checked and normalized.

Images are ``(N, C, H, W)`` and features ``(N, C)``; a layer's
``input_size`` is one observation's size, without ``N``.
"""

from __future__ import annotations

import torch

from ..data import row_chunks
from ..errors import DataError, LayerError
from ..layer import InputLayer, State
from ._util import size_tuple

__all__ = ["ImageInput", "FeatureInput"]



# The training set's statistics, in float64, summed a chunk of rows at a
# time: X.to(torch.float64) (or X.mean(dtype=torch.float64)) would first copy
# the whole data set at twice its size, which was the peak memory of a whole
# training run.
def column_mean(X: torch.Tensor) -> torch.Tensor:
    """The mean over the first dimension, float64: ``X.shape[1:]``."""
    total = torch.zeros(X.shape[1:], dtype=torch.float64, device=X.device)
    for chunk in row_chunks(X):
        total += chunk.sum(dim=0, dtype=torch.float64)
    return total / X.shape[0]


def column_std(X: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """The population standard deviation over the first dimension, float64,
    about ``mean`` (:func:`column_mean`; two passes, as torch.std)."""
    total = torch.zeros(X.shape[1:], dtype=torch.float64, device=X.device)
    for chunk in row_chunks(X):
        total += (chunk.to(torch.float64) - mean).square_().sum(dim=0)
    return (total / X.shape[0]).sqrt_()

class ImageInput(InputLayer):
    """Image input, MATLAB's ``imageInputLayer``.

    Args:
        input_size: ``(C, H, W)`` of one image, e.g. ``(1, 28, 28)``
            (MATLAB's ``[28 28 1]`` is refused with a hint: sizes are
            channel-first here).
        normalization: ``"zerocenter"`` (default) subtracts the mean image
            of the training set, computed when training starts;
            ``"none"`` passes images through.

    Shape: input ``(N, C, H, W)``, output the same.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "imageinput"

    NORMALIZATIONS = ("zerocenter", "none")

    def __init__(self, input_size, normalization: str = "zerocenter", name: str | None = None):
        super().__init__(name=name, type="Image Input")
        self.input_size = size_tuple(input_size, "ImageInput input_size")
        if len(self.input_size) != 3:
            raise LayerError(f"ImageInput input_size: expected (C, H, W), got {input_size!r}")
        h, w, c = self.input_size
        if c in (1, 3) and h > 4 and w > 4:       # MATLAB's imageInputLayer([28 28 1])
            raise LayerError(
                f"ImageInput input_size {self.input_size}: looks like MATLAB's order "
                f"(height, width, channels); layerlab's sizes are channel-first (C, H, W), "
                f"as in PyTorch: ImageInput({(c, h, w)}) for images of shape (N, {c}, {h}, {w})")
        if normalization not in self.NORMALIZATIONS:
            raise LayerError(f"ImageInput normalization: expected one of "
                             f"{self.NORMALIZATIONS}, got {normalization!r}")
        self.normalization = normalization
        self.description = f"{'x'.join(map(str, self.input_size))} images" + (
            " with 'zerocenter' normalization" if normalization == "zerocenter" else "")
        if normalization == "zerocenter":
            self.mean = State(torch.zeros(self.input_size))

    @property
    def needs_normalization_data(self) -> bool:
        return self.normalization != "none"

    def compute_normalization(self, X: torch.Tensor) -> None:
        """The mean image over the training set (MATLAB's 'Initializing
        image normalization')."""
        if self.normalization == "zerocenter":
            self.mean = column_mean(X).to(self.mean.dtype).to(self.mean.device)

    def check_size(self, X: torch.Tensor) -> None:
        if X.dim() != 4 or tuple(X.shape[1:]) != self.input_size:
            raise DataError(f"layer '{self.name}' (ImageInput): expected images of size "
                            f"(N, {', '.join(map(str, self.input_size))}), "
                            f"got {tuple(X.shape)}")

    def predict(self, X):
        self.check_size(X)
        if self.normalization == "zerocenter":
            return X - self.mean
        return X


class FeatureInput(InputLayer):
    r"""Feature input, MATLAB's ``featureInputLayer``: ``C`` numbers per
    observation.

    .. math::
        Z = \begin{cases} X & \text{"none"} \\ X - \mu & \text{"zerocenter"}
            \\ (X - \mu) / \sigma & \text{"zscore"} \end{cases}

    with :math:`\mu` and :math:`\sigma` the mean and (biased) standard
    deviation of each feature over the training set, computed when training
    starts. A feature with :math:`\sigma = 0` is only centered.

    Args:
        input_size: ``C`` (or ``(C,)``), the number of features.
        normalization: ``"none"`` (default, as in MATLAB), ``"zerocenter"``
            or ``"zscore"``.

    Shape: input ``(N, C)``, output the same. State ``mean`` and ``std``,
    ``(C,)``, when normalizing.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "featureinput"

    NORMALIZATIONS = ("none", "zerocenter", "zscore")

    def __init__(self, input_size, normalization: str = "none", name: str | None = None):
        super().__init__(name=name, type="Feature Input")
        self.input_size = size_tuple(input_size, "FeatureInput input_size")
        if len(self.input_size) != 1:
            raise LayerError(f"FeatureInput input_size: expected the number of features C "
                             f"(or (C,)), got {input_size!r}")
        if normalization not in self.NORMALIZATIONS:
            raise LayerError(f"FeatureInput normalization: expected one of "
                             f"{self.NORMALIZATIONS}, got {normalization!r}")
        self.normalization = normalization
        self.description = f"{self.input_size[0]} features" + (
            f" with '{normalization}' normalization" if normalization != "none" else "")
        if normalization != "none":
            self.mean = State(torch.zeros(self.input_size))
        if normalization == "zscore":
            self.std = State(torch.ones(self.input_size))

    @property
    def needs_normalization_data(self) -> bool:
        return self.normalization != "none"

    def compute_normalization(self, X: torch.Tensor) -> None:
        """Mean (and standard deviation) of each feature over the training set."""
        if self.normalization == "none":
            return
        mean = column_mean(X)
        self.mean = mean.to(self.mean.dtype).to(self.mean.device)
        if self.normalization == "zscore":
            std = column_std(X, mean)
            # a constant feature is only centered, never divided by zero
            std = torch.where(std > 0, std, torch.ones_like(std))
            self.std = std.to(self.std.dtype).to(self.std.device)

    def check_size(self, X: torch.Tensor) -> None:
        if X.dim() != 2 or tuple(X.shape[1:]) != self.input_size:
            raise DataError(f"layer '{self.name}' (FeatureInput): expected features of size "
                            f"(N, {self.input_size[0]}), got {tuple(X.shape)}")

    def predict(self, X):
        self.check_size(X)
        if self.normalization == "zerocenter":
            return X - self.mean
        if self.normalization == "zscore":
            return (X - self.mean) / self.std
        return X
