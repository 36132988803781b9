"""``ImageDatastore``: a folder of images read on demand, MATLAB's ``imageDatastore``."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import DataError
from .sources import DataSource

__all__ = ["ImageDatastore", "decode_image", "decode_pixels"]

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def decode_pixels(path: str, color: str) -> np.ndarray:
    """One image file's pixels as uint8 ``(C, H, W)``: ``C`` is 1 for
    ``color="gray"``, 3 for ``"rgb"``. A file Pillow cannot decode is a
    :class:`DataError` naming it. Pillow only decodes pixels: nothing in a
    file is executed."""
    from PIL import Image, UnidentifiedImageError
    mode = "L" if color == "gray" else "RGB"
    try:
        with Image.open(path) as im:
            if im.mode != mode:
                im = im.convert(mode)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"image file {path!r} could not be read ({type(exc).__name__}: {exc}); "
                        f"is it a valid image? Remove or replace it") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def to_float(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels as float32 in ``[0, 1]`` (MATLAB's ``im2single``)."""
    if not pixels.flags.writeable:     # Pillow's buffer: torch wants its own
        pixels = pixels.copy()
    return torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32).div_(255.0)


def decode_image(path: str, color: str) -> torch.Tensor:
    """One image file as a float32 tensor ``(C, H, W)`` with values in
    ``[0, 1]`` (MATLAB's ``im2single``); see :func:`decode_pixels`."""
    return to_float(decode_pixels(path, color))


class ImageDatastore(DataSource):
    """Image files in a folder, listed once, decoded with Pillow when a
    mini-batch needs them (MATLAB's ``imageDatastore``).

    Args:
        folder: the folder (or a list of files).
        labels: ``"foldernames"`` (default: each image's label is the name of
            its folder), a sequence of labels (one per file, in ``files``
            order) or ``None`` (no labels: for prediction).
        include_subfolders: look in subfolders too (default True).
        extensions: the file endings read (case-insensitive).
        color: ``"gray"`` (1 channel) or ``"rgb"`` (3 channels).

    Observations are ``(C, H, W)`` float32 in ``[0, 1]``; every image must
    have the input layer's size (a :class:`DataError` names the first that
    has not): wrap the datastore in :class:`AugmentedImageDatastore` to
    resize. Memory: the file names and labels, and up to
    ``ImageDatastore.cache_bytes`` (256 MB) of decoded images: images are
    decoded per mini-batch, ``prefetch`` mini-batches ahead in ``workers``
    threads, and the first ``cache_bytes`` worth are kept, so later epochs
    of a folder that fits read them without decoding again (set
    ``cache_bytes = 0`` on the datastore for files that change while it is
    used). A folder larger than that streams the rest from disk every epoch.

    Examples:
        >>> imds = ImageDatastore("digits/")                        # doctest: +SKIP
        >>> train, test = imds.split_each_label(0.8, seed=0)        # doctest: +SKIP
        >>> net, info = ll.train_network(train, layers, opts)       # doctest: +SKIP
    """

    workers = 2
    #: decoded images kept in memory (uint8, bytes); 0 decodes every read
    cache_bytes = 256 * 2**20

    def __init__(self, folder: str | os.PathLike | Sequence[str], labels: Any = "foldernames",
                 include_subfolders: bool = True, extensions: Sequence[str] = EXTENSIONS,
                 color: str = "gray"):
        if color not in ("gray", "rgb"):
            raise DataError(f"ImageDatastore color: expected 'gray' or 'rgb', got {color!r}")
        self.color = color
        self.extensions = tuple(e.lower() for e in extensions)
        if isinstance(folder, (str, os.PathLike)):
            self.folder = os.fspath(folder)
            if not os.path.isdir(self.folder):
                raise DataError(f"ImageDatastore: {self.folder!r} is not a folder")
            files = self._list(self.folder, include_subfolders)
            if not files:
                raise DataError(f"ImageDatastore: no images ({', '.join(self.extensions)}) in "
                                f"{self.folder!r}" + ("" if include_subfolders else
                                                      " (include_subfolders=False)"))
        else:
            self.folder, files = None, [os.fspath(f) for f in folder]
        self.files = files
        if isinstance(labels, str) and labels == "foldernames":
            self.labels_ = np.asarray([os.path.basename(os.path.dirname(f)) for f in files])
        elif labels is None:
            self.labels_ = None
        else:
            arr = np.asarray(labels)
            if arr.ndim != 1 or len(arr) != len(files):
                raise DataError(f"ImageDatastore labels: expected one label per file "
                                f"({len(files)}), got {arr.shape}")
            self.labels_ = arr

    def _list(self, folder: str, recursive: bool) -> list[str]:
        out = []
        for root, dirs, names in os.walk(folder):
            dirs.sort()
            out += [os.path.join(root, n) for n in sorted(names)
                    if n.lower().endswith(self.extensions)]
            if not recursive:
                break
        return out

    def _subset(self, idx: Sequence[int]) -> "ImageDatastore":
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.pop("_decoded", None)            # each subset keeps its own images
        new.__dict__.pop("_decoded_bytes", None)
        new.files = [self.files[i] for i in idx]
        new.labels_ = None if self.labels_ is None else self.labels_[list(idx)]
        return new

    # -- MATLAB's datastore functions ------------------------------------
    def __len__(self) -> int:
        return len(self.files)

    @property
    def labels(self) -> np.ndarray | None:
        """The label of every file (a NumPy array), or None."""
        return self.labels_

    def targets(self):
        self._need_labels("training")
        return self.labels_

    @property
    def classes(self) -> list:
        """The distinct labels, sorted (the classes a network trained on it has)."""
        return [] if self.labels_ is None else np.unique(self.labels_).tolist()

    def count_each_label(self) -> dict[Any, int]:
        """``{label: number of files}``, MATLAB's ``countEachLabel``."""
        self._need_labels("count_each_label")
        values, counts = np.unique(self.labels_, return_counts=True)
        return {v: int(c) for v, c in zip(values.tolist(), counts.tolist())}

    def split_each_label(self, fraction_or_count: float | int, seed: int | None = None
                         ) -> tuple["ImageDatastore", "ImageDatastore"]:
        """Two datastores: the first ``fraction_or_count`` of each label's files
        (a fraction in (0, 1) or a count) and the rest, MATLAB's
        ``splitEachLabel``. With a ``seed`` each label's files are drawn at
        random ("randomized"), else taken in file order."""
        self._need_labels("split_each_label")
        p = fraction_or_count
        if not (isinstance(p, (int, float)) and not isinstance(p, bool) and p > 0
                and (p < 1 or float(p).is_integer())):
            raise DataError(f"split_each_label: expected a fraction in (0, 1) or a count >= 1, "
                            f"got {p!r}")
        rng = np.random.default_rng(seed) if seed is not None else None
        first, rest = [], []
        for c in self.classes:
            idx = np.flatnonzero(self.labels_ == c)
            if rng is not None:
                idx = rng.permutation(idx)
            k = int(round(p * len(idx))) if p < 1 else int(p)
            if k > len(idx):
                raise DataError(f"split_each_label: label {c!r} has only {len(idx)} files, "
                                f"fewer than {k}")
            first += idx[:k].tolist()
            rest += idx[k:].tolist()
        return self._subset(sorted(first)), self._subset(sorted(rest))

    def _need_labels(self, what: str) -> None:
        if self.labels_ is None:
            raise DataError(f"ImageDatastore {what}: this datastore has no labels "
                            f"(labels=None)")

    # -- the DataSource interface ----------------------------------------
    def check_for_training(self, classification: bool) -> None:
        """A classifier needs labels and at least two classes."""
        if not classification:
            return
        self._need_labels("training")
        if len(self.classes) < 2:
            where = f" in {self.folder!r}" if self.folder else ""
            raise DataError(f"ImageDatastore{where}: found one class only ({self.classes[0]!r}); "
                            f"a classifier needs images of two classes or more, each class in "
                            f"its own subfolder (labels='foldernames')")

    def read_image(self, i: int) -> torch.Tensor:
        """Image ``i`` as ``(C, H, W)`` float32 in [0, 1], at its own size."""
        return to_float(self._pixels(int(i)))

    def _pixels(self, i: int) -> np.ndarray:
        """Image ``i`` decoded (uint8 ``(C, H, W)``), from the cache when it is
        there. Read-ahead threads call this at once: a dict's item assignment
        is atomic, and the byte count may overshoot by a mini-batch at most."""
        path = self.files[i]
        cache = self.__dict__.setdefault("_decoded", {})      # by file, not by index
        im = cache.get(path)
        if im is None:
            im = decode_pixels(path, self.color)
            used = self.__dict__.get("_decoded_bytes", 0)
            if used + im.nbytes <= self.cache_bytes:
                cache[path] = im
                self._decoded_bytes = used + im.nbytes
        return im

    def read(self, indices, seed=None):
        # decoded as uint8 and converted once per mini-batch (cheaper than per image)
        images = [self._pixels(int(i)) for i in indices]
        if self.input_size is not None:
            for i, im in zip(indices, images):
                if tuple(im.shape) != self.input_size:
                    raise DataError(
                        f"image {self.files[int(i)]!r} has size {tuple(im.shape)} (C, H, W), "
                        f"the network's input layer expects {self.input_size}; resize with "
                        f"AugmentedImageDatastore({self.input_size[1:]}, datastore)"
                        + (" or use color='rgb'" if im.shape[0] == 1 and
                           self.input_size[0] == 3 else ""))
        if len({im.shape for im in images}) > 1:
            return torch.stack([to_float(im) for im in images])   # sizes differ: no input layer
        return to_float(np.stack(images))

    def __repr__(self) -> str:
        return (f"ImageDatastore({len(self)} images, {len(self.classes)} classes"
                + (f", folder {self.folder!r}" if self.folder else "") + ")")
