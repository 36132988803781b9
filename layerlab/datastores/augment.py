"""Random image augmentation, MATLAB's ``imageDataAugmenter``, and the
``AugmentedImageDatastore`` that resizes and augments mini-batches.

The geometry is PyTorch's: one affine matrix per observation, applied to
the whole mini-batch with ``affine_grid`` / ``grid_sample`` (bilinear).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from .image import ImageDatastore
from .sources import DataSource

__all__ = ["ImageDataAugmenter", "AugmentedImageDatastore"]


def _range(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DataError(f"ImageDataAugmenter {name}: expected a range (low, high), "
                        f"got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise DataError(f"ImageDataAugmenter {name}: expected finite low <= high, got {value!r}")
    return lo, hi


class ImageDataAugmenter:
    r"""Random geometric augmentation, drawn per observation (MATLAB's
    ``imageDataAugmenter``).

    Each observation gets its own affine map about the image centre, in
    pixels (``x`` to the right, ``y`` down):

    .. math::  p_{out} = R(\theta)\, H_y(\psi)\, H_x(\phi)\, s\, F\, p_{in} + t

    with :math:`\theta` uniform in ``rand_rotation`` (degrees, positive turns
    the image counter-clockwise as displayed), shears
    :math:`H_x = [[1, \tan\phi], [0, 1]]`, :math:`H_y = [[1, 0], [\tan\psi, 1]]`
    (``rand_x_shear``, ``rand_y_shear``, degrees), scale ``s`` uniform in
    ``rand_scale``, ``F`` a reflection with probability 1/2 for each of
    ``rand_x_reflection`` (left-right) and ``rand_y_reflection`` (up-down),
    and translation ``t`` uniform in ``rand_x_translation`` /
    ``rand_y_translation`` (pixels). Pixels mapped from outside the image are
    ``fill_value``.

    Args: as MATLAB's, in snake case. Defaults: no augmentation.

    Shape: :meth:`augment` ``(N, C, H, W)`` to ``(N, C, H, W)``.

    Examples:
        >>> aug = ImageDataAugmenter(rand_rotation=(-20, 20), rand_x_translation=(-3, 3))
        >>> X = torch.rand(8, 1, 28, 28)
        >>> aug.augment(X, torch.Generator().manual_seed(0)).shape
        torch.Size([8, 1, 28, 28])
    """

    def __init__(self, rand_rotation: Sequence[float] = (0, 0), rand_x_reflection: bool = False,
                 rand_y_reflection: bool = False, rand_x_translation: Sequence[float] = (0, 0),
                 rand_y_translation: Sequence[float] = (0, 0),
                 rand_scale: Sequence[float] = (1, 1), rand_x_shear: Sequence[float] = (0, 0),
                 rand_y_shear: Sequence[float] = (0, 0), fill_value: float = 0.0):
        self.rand_rotation = _range("rand_rotation", rand_rotation)
        self.rand_x_translation = _range("rand_x_translation", rand_x_translation)
        self.rand_y_translation = _range("rand_y_translation", rand_y_translation)
        self.rand_scale = _range("rand_scale", rand_scale)
        if self.rand_scale[0] <= 0:
            raise DataError(f"ImageDataAugmenter rand_scale: expected scales > 0, "
                            f"got {rand_scale!r}")
        self.rand_x_shear = _range("rand_x_shear", rand_x_shear)
        self.rand_y_shear = _range("rand_y_shear", rand_y_shear)
        for name, lim in (("rand_x_shear", self.rand_x_shear), ("rand_y_shear", self.rand_y_shear)):
            if max(abs(lim[0]), abs(lim[1])) >= 90:
                raise DataError(f"ImageDataAugmenter {name}: expected angles in (-90, 90) "
                                f"degrees, got {lim}")
        for name, flag in (("rand_x_reflection", rand_x_reflection),
                           ("rand_y_reflection", rand_y_reflection)):
            if not isinstance(flag, bool):
                raise DataError(f"ImageDataAugmenter {name}: expected True or False, "
                                f"got {flag!r}")
        self.rand_x_reflection, self.rand_y_reflection = rand_x_reflection, rand_y_reflection
        if not (isinstance(fill_value, (int, float)) and math.isfinite(fill_value)):
            raise DataError(f"ImageDataAugmenter fill_value: expected a number, got {fill_value!r}")
        self.fill_value = float(fill_value)

    def _uniform(self, lim, n, gen):
        lo, hi = lim
        return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)

    def matrices(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random forward maps ``(n, 2, 3)`` in centred pixel
        coordinates: ``[A | t]`` with ``p_out = A p_in + t``. Every draw is
        made, whether its range is empty or not, so that one option changes
        no other option's randomness."""
        theta = torch.deg2rad(self._uniform(self.rand_rotation, n, generator))
        phi = torch.deg2rad(self._uniform(self.rand_x_shear, n, generator))
        psi = torch.deg2rad(self._uniform(self.rand_y_shear, n, generator))
        s = self._uniform(self.rand_scale, n, generator)
        fx = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
        fy = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
        tx = self._uniform(self.rand_x_translation, n, generator)
        ty = self._uniform(self.rand_y_translation, n, generator)
        one, zero = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)

        def mat(a, b, c, d):
            return torch.stack([torch.stack([a, b], -1), torch.stack([c, d], -1)], -2)

        c, sn = torch.cos(theta), torch.sin(theta)
        R = mat(c, sn, -sn, c)     # y down: counter-clockwise on screen
        Hx = mat(one, torch.tan(phi), zero, one)
        Hy = mat(one, zero, torch.tan(psi), one)
        flip = mat(torch.where(fx & self.rand_x_reflection, -one, one), zero, zero,
                   torch.where(fy & self.rand_y_reflection, -one, one))
        A = R @ Hy @ Hx @ (s[:, None, None] * flip)
        return torch.cat([A, torch.stack([tx, ty], -1)[..., None]], -1)

    def augment(self, X: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``X`` ``(N, C, H, W)`` with a random map drawn for each observation."""
        n, _, h, w = X.shape
        M = self.matrices(n, generator)
        A, t = M[..., :2], M[..., 2]
        Ainv = torch.linalg.inv(A)
        # grid_sample's normalised coordinates (align_corners=False): p = S q,
        # S = diag(W/2, H/2); the output-to-input map in them is
        # q_in = S^-1 A^-1 S q_out - S^-1 A^-1 t
        S = torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64)
        lin = Ainv * S[None, None, :] / S[None, :, None]
        off = -(Ainv @ t[..., None])[..., 0] / S
        theta = torch.cat([lin, off[..., None]], -1).to(X.dtype)
        grid = F.affine_grid(theta, list(X.shape), align_corners=False)
        fill = self.fill_value
        out = F.grid_sample(X - fill, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return out + fill if fill else out

    def __repr__(self) -> str:
        keys = ("rand_rotation", "rand_x_reflection", "rand_y_reflection", "rand_x_translation",
                "rand_y_translation", "rand_scale", "rand_x_shear", "rand_y_shear", "fill_value")
        return "ImageDataAugmenter(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"


class AugmentedImageDatastore(DataSource):
    """Images resized to ``output_size`` and, in training, augmented afresh
    each epoch (MATLAB's ``augmentedImageDatastore``).

    Args:
        output_size: ``(H, W)`` of the observations.
        source: an :class:`ImageDatastore`, or an array ``(N, C, H, W)``
            (with ``labels``).
        augmenter: an :class:`ImageDataAugmenter`, or None (resizing only).
        color_preprocessing: ``"none"``, ``"gray2rgb"`` (1 channel repeated
            to 3) or ``"rgb2gray"`` (ITU-R 601 luma).
        labels: the labels of an array ``source``.

    Resizing is bilinear with antialiasing (``F.interpolate``), image by
    image (images may differ in size). The augmentation of a mini-batch is
    drawn from a generator seeded by the run's seed, the epoch and the
    mini-batch: reproducible under ``seed``, different each epoch, the same
    after a resume. Prediction and validation read without augmentation.

    Examples:
        >>> aug = ImageDataAugmenter(rand_rotation=(-20, 20))
        >>> auimds = AugmentedImageDatastore((28, 28), ImageDatastore("digits/"),
        ...                                  augmenter=aug)              # doctest: +SKIP
    """

    workers = 2

    def __init__(self, output_size: Sequence[int], source: Any,
                 augmenter: ImageDataAugmenter | None = None,
                 color_preprocessing: str = "none", labels: Any = None):
        size = tuple(int(s) for s in output_size)
        if len(size) != 2 or min(size) < 1:
            raise DataError(f"AugmentedImageDatastore output_size: expected (H, W), "
                            f"got {output_size!r}")
        if color_preprocessing not in ("none", "gray2rgb", "rgb2gray"):
            raise DataError(f"AugmentedImageDatastore color_preprocessing: expected 'none', "
                            f"'gray2rgb' or 'rgb2gray', got {color_preprocessing!r}")
        if augmenter is not None and not isinstance(augmenter, ImageDataAugmenter):
            raise DataError(f"AugmentedImageDatastore augmenter: expected an "
                            f"ImageDataAugmenter, got {type(augmenter).__name__}")
        if isinstance(source, ImageDatastore):
            self.images, self.array, self._labels = source, None, source.labels
        else:
            arr = np.asarray(source) if not isinstance(source, torch.Tensor) else source
            if arr.ndim != 4:
                raise DataError(f"AugmentedImageDatastore source: expected an ImageDatastore "
                                f"or images (N, C, H, W), got {type(source).__name__} of "
                                f"size {tuple(arr.shape)}")
            self.images, self.array = None, torch.as_tensor(arr, dtype=torch.float32)
            self._labels = None if labels is None else np.asarray(labels)
        self.output_size, self.augmenter = size, augmenter
        self.color_preprocessing = color_preprocessing

    def __len__(self):
        return len(self.images) if self.images is not None else int(self.array.shape[0])

    @property
    def labels(self):
        return self._labels

    @property
    def classes(self) -> list:
        return [] if self._labels is None else np.unique(self._labels).tolist()

    @property
    def files(self) -> list[str] | None:
        return self.images.files if self.images is not None else None

    def targets(self):
        if self._labels is None:
            raise DataError("AugmentedImageDatastore: no labels to train on (give an "
                            "ImageDatastore with labels, or labels= with an array)")
        return self._labels

    def check_for_training(self, classification):
        if self.images is not None:
            self.images.check_for_training(classification)

    def _image(self, i: int) -> torch.Tensor:
        im = self.images.read_image(i) if self.images is not None else self.array[i]
        if self.color_preprocessing == "gray2rgb" and im.shape[0] == 1:
            im = im.expand(3, -1, -1)
        elif self.color_preprocessing == "rgb2gray" and im.shape[0] == 3:
            im = (0.2989 * im[0] + 0.5870 * im[1] + 0.1140 * im[2])[None]
        if tuple(im.shape[1:]) != self.output_size:
            im = F.interpolate(im[None], size=self.output_size, mode="bilinear",
                               align_corners=False, antialias=True)[0]
        return im

    def read(self, indices, seed=None):
        X = torch.stack([self._image(int(i)) for i in indices])
        if self.input_size is not None and tuple(X.shape[1:]) != self.input_size:
            raise DataError(f"AugmentedImageDatastore: observations of size "
                            f"{tuple(X.shape[1:])}, the network's input layer expects "
                            f"{self.input_size}; check output_size and "
                            f"color_preprocessing")
        if self.augmenter is not None and seed is not None:
            X = self.augmenter.augment(X, torch.Generator().manual_seed(seed))
        return X

    def __repr__(self) -> str:
        return (f"AugmentedImageDatastore({self.output_size}, {len(self)} images, "
                f"augmenter={self.augmenter!r})")
