"""Input layers: where data enter a network, are checked and normalized.

Images are ``(N, C, H, W)`` and features ``(N, C)``; a layer's
``input_size`` is one observation's size, without ``N``.
"""

from __future__ import annotations

import torch

from ..errors import DataError, LayerError
from ..layer import InputLayer, State
from ._util import size_tuple

__all__ = ["ImageInput"]


class ImageInput(InputLayer):
    """Image input, MATLAB's ``imageInputLayer``.

    Args:
        input_size: ``(C, H, W)`` of one image, e.g. ``(1, 28, 28)``.
        normalization: ``"zerocenter"`` (default) subtracts the mean image
            of the training set, computed when training starts;
            ``"none"`` passes images through.

    Shape: input ``(N, C, H, W)``, output the same.
    """

    default_name = "imageinput"

    NORMALIZATIONS = ("zerocenter", "none")

    def __init__(self, input_size, normalization: str = "zerocenter", name: str | None = None):
        super().__init__(name=name, type="Image Input")
        self.input_size = size_tuple(input_size, "ImageInput input_size")
        if len(self.input_size) != 3:
            raise LayerError(f"ImageInput input_size: expected (C, H, W), got {input_size!r}")
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
            self.mean = X.mean(dim=0, dtype=torch.float64).to(self.mean.dtype).to(self.mean.device)

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
