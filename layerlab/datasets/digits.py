"""Synthetic digits, a stand-in for MATLAB's ``digitTrain4DArrayData``.

5000 training and 5000 test grayscale images of the digits 0-9 (500 per
class), 28 x 28, white digits on black. Each image is a digit glyph from one
of the fonts matplotlib ships (DejaVu Sans / Serif / Mono and their bold and
oblique cuts, STIX, Computer Modern), with a random stroke thickness,
rotation (the angle is returned, as MATLAB's third output), scale, shear,
position and brightness. Generation is offline and deterministic (fixed
seeds, NumPy random numbers, single-threaded PyTorch resampling), so every
machine makes the same images; the result is cached on disk.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["digits_train", "digits_test", "make_digits", "show_digits", "cache_dir"]

VERSION = "v1"
_TRAIN_SEED, _TEST_SEED = 20171001, 20171002
_GLYPH = 56                 # glyphs are drawn on a 56 x 56 canvas, images are 28 x 28
MAX_ANGLE = 45.0

_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
          "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
          "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
          "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
          "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmss10.ttf",
          "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf")


def cache_dir() -> Path:
    """``$LAYERLAB_CACHE`` if set, else ``~/.cache/layerlab``."""
    return Path(os.environ.get("LAYERLAB_CACHE") or Path.home() / ".cache" / "layerlab")


@functools.lru_cache(maxsize=1)
def _glyphs() -> np.ndarray:
    """``(fonts, 10, 56, 56)`` float32 glyph images in [0, 1], each digit
    centred with its height scaled to 36 pixels."""
    import matplotlib
    from matplotlib.ft2font import FT2Font

    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts = [root / f for f in _FONTS if (root / f).exists()]
    out = np.zeros((len(fonts), 10, _GLYPH, _GLYPH), np.float32)
    for i, path in enumerate(fonts):
        font = FT2Font(str(path))
        for d in range(10):
            font.set_size(48, 72)
            font.set_text(str(d), 0.0)
            font.draw_glyphs_to_bitmap(antialiased=True)
            img = np.asarray(font.get_image(), np.float32) / 255.0
            rows, cols = np.nonzero(img > 0.05)
            img = img[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            # scale so the digit is 36 px high, keeping the aspect ratio
            t = torch.from_numpy(img)[None, None]
            h, w = img.shape
            s = 36.0 / h
            nh, nw = 36, max(1, min(_GLYPH - 4, round(w * s)))
            t = F.interpolate(t, size=(nh, nw), mode="area" if s < 1 else "bilinear",
                              **({} if s < 1 else {"align_corners": False}))[0, 0]
            top, left = (_GLYPH - nh) // 2, (_GLYPH - nw) // 2
            out[i, d, top:top + nh, left:left + nw] = t.clamp(0, 1).numpy()
    return out


def make_digits(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``10 * n_per_class`` images: ``(X, Y, angles)``.

    Returns:
        X: float32 ``(N, 1, 28, 28)``, values in [0, 1].
        Y: int64 ``(N,)``, the digits, ``n_per_class`` of each, in random order.
        angles: float32 ``(N,)``, each image's rotation in degrees
        (counter-clockwise), uniform in [-45, 45].
    """
    rng = np.random.default_rng(seed)
    glyphs = _glyphs()
    n = 10 * n_per_class
    Y = rng.permutation(np.repeat(np.arange(10), n_per_class)).astype(np.int64)
    font = rng.integers(0, glyphs.shape[0], n)
    angles = rng.uniform(-MAX_ANGLE, MAX_ANGLE, n)
    scale = rng.uniform(0.85, 1.1, n)
    aspect = rng.uniform(0.9, 1.1, n)
    shear = rng.uniform(-0.15, 0.15, n)
    shift = rng.uniform(-0.08, 0.08, (n, 2))
    thickness = rng.choice(3, n, p=[0.4, 0.5, 0.1])   # 0 as drawn, 1 and 2 bolder strokes
    brightness = rng.uniform(0.7, 1.0, n)

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)                 # identical results whatever the machine
    try:
        G = torch.from_numpy(glyphs[font, Y])[:, None]          # (N, 1, 56, 56)
        thick = torch.from_numpy(thickness)[:, None, None, None]
        G = torch.where(thick == 1, F.max_pool2d(G, 3, 1, 1),
                        torch.where(thick == 2, F.max_pool2d(G, 5, 1, 2), G))
        # inverse map output -> input coordinates for grid_sample, in [-1, 1] units:
        # input = A^-1 (output - shift), A = R(angle) @ Shear @ Scale
        a = np.deg2rad(angles)
        c, s = np.cos(a), np.sin(a)
        R = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)   # y axis points down
        Sh = np.zeros((n, 2, 2))
        Sh[:, 0, 0] = Sh[:, 1, 1] = 1.0
        Sh[:, 0, 1] = shear
        Sc = np.zeros((n, 2, 2))
        Sc[:, 0, 0] = scale * aspect
        Sc[:, 1, 1] = scale
        A = R @ Sh @ Sc
        Ainv = np.linalg.inv(A)
        theta = np.concatenate([Ainv, -(Ainv @ shift[:, :, None])], axis=2)
        grid = F.affine_grid(torch.from_numpy(theta).float(), (n, 1, _GLYPH, _GLYPH),
                             align_corners=False)
        W = F.grid_sample(G, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        X = F.avg_pool2d(W, 2)                                   # (N, 1, 28, 28)
        X = (X * torch.from_numpy(brightness).float()[:, None, None, None]).clamp_(0, 1)
    finally:
        torch.set_num_threads(prev_threads)
    return X.numpy().astype(np.float32), Y, angles.astype(np.float32)


def _cached(split: str, seed: int, cache: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(a.copy() for a in _generate_or_load(split, seed, cache))  # type: ignore


@functools.lru_cache(maxsize=4)
def _generate_or_load(split: str, seed: int, cache: bool):
    path = cache_dir() / f"digits-{split}-{VERSION}.npz"
    if cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                data = (z["X"], z["Y"], z["angles"])
            if data[0].shape == (5000, 1, 28, 28) and data[1].shape == (5000,):
                return data
        except Exception:  # noqa: BLE001 - a corrupt cache is regenerated
            pass
    data = make_digits(500, seed)
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, X=data[0], Y=data[1], angles=data[2])
            os.replace(tmp, path)            # atomic: never a half-written cache
        except OSError:
            pass                             # a read-only home still gets its data
    return data


def digits_train(cache: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 5000 training digits ``(X, Y, angles)``: X float32
    ``(5000, 1, 28, 28)`` in [0, 1], Y int64 labels 0-9 (500 each), angles
    float32 rotations in degrees. MATLAB's ``digitTrain4DArrayData``."""
    return _cached("train", _TRAIN_SEED, cache)


def digits_test(cache: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 5000 test digits, drawn independently of the training ones
    (another seed); as :func:`digits_train`."""
    return _cached("test", _TEST_SEED, cache)


def fingerprint(X: np.ndarray) -> str:
    """A short hash of an array's bytes (to compare data across machines)."""
    return hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest()[:16]


def show_digits(X, Y, path, n: int = 20, predicted=None) -> str:
    """Write a PNG grid of the first ``n`` images titled with their labels
    (and predictions, if given); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = min(n, len(X))
    cols = min(10, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(1.2 * cols, 1.4 * rows))
    FigureCanvasAgg(fig)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(np.asarray(X[i]).reshape(np.asarray(X[i]).shape[-2:]), cmap="gray",
                  vmin=0, vmax=1)
        title = str(Y[i]) if predicted is None else f"{Y[i]} -> {predicted[i]}"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return str(path)
