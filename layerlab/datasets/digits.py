"""Synthetic digits, a stand-in for MATLAB's ``digitTrain4DArrayData`` and
``digitTest4DArrayData``.

5000 training and 5000 test grayscale images of the digits 0-9 (500 per
class), 28 x 28, a white digit on a black background. Each image is a digit
glyph from one of the fonts that matplotlib ships in its ``mpl-data`` folder
(DejaVu Sans / Serif / Sans Mono and their bold and oblique cuts, STIX,
Computer Modern), never a system font, with a random stroke thickness,
rotation (the angle is returned, like MATLAB's third output), scale, aspect,
shear, position and brightness, drawn on a 56 x 56 grid and averaged down to
28 x 28 (antialiasing).

Reproducibility: the random numbers come from ``np.random.default_rng(seed)``
(uniform draws only); the glyphs come from FreeType's fixed-point rasteriser
(through ``matplotlib.ft2font``) and are exact 8-bit images; everything after
that is NumPy element-wise arithmetic (``+ - * /``, ``floor``, gathers), with
sine and cosine computed by a fixed polynomial rather than the platform's
maths library, and no BLAS, threads or SIMD-dependent reductions. So the same
NumPy and matplotlib give the same bits on every machine, whatever its thread
count. The two standard splits are cached on disk (see :func:`cache_dir`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["digits_train", "digits_test", "make_digits", "show_digits", "cache_dir",
           "font_names", "fingerprint", "MAX_ANGLE", "VERSION"]

#: Generator version, part of the cache file name: change it whenever the
#: images a seed produces change, so that stale caches are not used.
VERSION = "v3"
_TRAIN_SEED, _TEST_SEED = 20171001, 20171002
_N_PER_CLASS = 500
MAX_ANGLE = 45.0            # rotations are uniform in [-MAX_ANGLE, MAX_ANGLE] degrees

_G = 56                     # glyphs and warped images live on a 56 x 56 grid (2x supersampling)
_P = _G + 2                 # the glyph bank is zero padded by one pixel on each side
_HEIGHT = 38                # glyph height on the 56 grid (19 px in the 28 x 28 image)
_OUT = 28
_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                "nine")
_CHUNK = 500                # images warped at a time (bounds memory; results do not depend on it)


def cache_dir() -> Path:
    """The on-disk cache folder: ``$LAYERLAB_CACHE`` if set, else
    ``~/.cache/layerlab``."""
    env = os.environ.get("LAYERLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "layerlab"


# --------------------------------------------------------------------------- glyphs

def _font_dir() -> Path:
    import matplotlib
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=1)
def _fonts() -> tuple[Path, ...]:
    """The fonts in matplotlib's own font folder whose characters '0'-'9' are
    real digit glyphs (their glyph names start with 'zero' ... 'nine'; this
    drops the symbol, size-variant and fallback fonts), sorted by file name."""
    from matplotlib.ft2font import FT2Font

    found = []
    for path in sorted(_font_dir().iterdir(), key=lambda p: p.name):
        if path.suffix.lower() not in (".ttf", ".otf"):
            continue
        try:
            font = FT2Font(str(path))
            names = [font.get_glyph_name(font.get_char_index(ord(str(d)))) for d in range(10)]
        except Exception:  # noqa: BLE001 - an unreadable font is just not used
            continue
        if all(n.startswith(want) for n, want in zip(names, _DIGIT_NAMES)):
            found.append(path)
    if not found:
        raise RuntimeError(f"no font with digit glyphs in matplotlib's {_font_dir()}")
    return tuple(found)


def font_names() -> list[str]:
    """File names of the fonts the digits are drawn from (matplotlib's own)."""
    return [p.name for p in _fonts()]


def _render(font, digit: int, size: float) -> np.ndarray:
    """The digit's antialiased bitmap, cropped to its ink, float64 in [0, 1]."""
    font.set_size(size, 72)
    font.set_text(str(digit), 0.0)
    font.draw_glyphs_to_bitmap(antialiased=True)
    img = np.asarray(font.get_image(), dtype=np.float64) / 255.0
    rows = np.flatnonzero(img.max(1) > 0)
    cols = np.flatnonzero(img.max(0) > 0)
    if len(rows) == 0:
        raise RuntimeError(f"{font.fname}: no ink for the digit {digit}")
    return img[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


@functools.lru_cache(maxsize=1)
def _glyphs() -> np.ndarray:
    """``(fonts, 10, 56, 56)`` float64 glyphs in [0, 1]: each digit rendered
    by FreeType at the point size that makes it about 38 pixels high (at most
    50 wide), centred on the 56 x 56 grid. Exact (8-bit) values."""
    from matplotlib.ft2font import FT2Font

    fonts = _fonts()
    out = np.zeros((len(fonts), 10, _G, _G))
    for i, path in enumerate(fonts):
        font = FT2Font(str(path))
        for d in range(10):
            first = _render(font, d, 48.0)
            h, w = first.shape
            size = 48.0 * min(_HEIGHT / h, 50.0 / w)
            img = _render(font, d, round(size * 64) / 64)    # FreeType sizes are 26.6 fixed point
            h, w = min(img.shape[0], _G), min(img.shape[1], _G)
            top, left = (_G - h) // 2, (_G - w) // 2
            out[i, d, top:top + h, left:left + w] = img[:h, :w]
    return out


def _shifts(img: np.ndarray, radius: int, reduce) -> np.ndarray:
    """Grey-level dilation (``np.maximum``) or erosion (``np.minimum``) of a
    stack of images over the disc of the given radius (exact: comparisons
    only). The border counts as background."""
    pad = np.pad(img, [(0, 0)] * (img.ndim - 2) + [(radius, radius)] * 2)
    out = img.copy()
    n, m = img.shape[-2:]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dy or dx) and dy * dy + dx * dx <= radius * radius + radius:
                out = reduce(out, pad[..., radius + dy:radius + dy + n, radius + dx:radius + dx + m])
    return out


@functools.lru_cache(maxsize=1)
def _glyph_bank() -> tuple[np.ndarray, np.ndarray]:
    """All stroke variants of all glyphs, zero padded, flattened for gathers:
    ``(bank, bold)`` with ``bank`` float32 ``(fonts * 10 * 4 * 58 * 58,)``,
    index ``((font * 10 + digit) * 4 + thickness)``, thickness 0 = eroded by
    a pixel (thinner), 1 = as drawn, 2 and 3 = dilated by one and two pixels
    (bolder); ``bold[font]`` says whether the font's strokes are thick enough
    to be eroded (bold cuts)."""
    g = _glyphs()
    variants = np.stack([_shifts(g, 1, np.minimum), g, _shifts(g, 1, np.maximum),
                         _shifts(g, 2, np.maximum)], axis=2)          # (F, 10, 4, 56, 56)
    bank = np.pad(variants, [(0, 0)] * 3 + [(1, 1), (1, 1)]).astype(np.float32)
    bold = np.array([("Bol" in n or n.startswith("cmb")) for n in font_names()])
    return bank.reshape(-1), bold


# --------------------------------------------------------------------------- warps

def _sin_cos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sine and cosine of ``|x| <= pi / 2`` (radians) by their Taylor series
    to the 23rd/22nd power (error below 1e-16 there), evaluated with plain
    float64 multiply-adds so every platform gives the same bits (the maths
    library's ``sin``/``cos`` need not)."""
    x2 = x * x
    s = np.zeros_like(x)
    c = np.zeros_like(x)
    for k in range(11, 0, -1):              # Horner: 1 - x2/(2*3) (1 - x2/(4*5) (...))
        s = 1.0 - x2 / ((2 * k) * (2 * k + 1)) * s
        c = 1.0 - x2 / ((2 * k - 1) * (2 * k)) * c
    return x * s, c


def _warp(bank: np.ndarray, glyph: np.ndarray, inv: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Bilinear resampling of glyphs on the 56 grid then 2 x 2 averaging:
    ``(n, 28, 28)`` float32. Output pixel ``(y, x)`` (coordinates relative to
    the grid centre) reads the glyph at ``inv @ (x, y) + off`` (same frame)."""
    t = np.arange(_G, dtype=np.float64) - (_G - 1) / 2.0
    xo, yo = t[None, None, :], t[None, :, None]
    a, b, c, d = (inv[:, i, j, None, None] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    cx = (_G - 1) / 2.0 + off[:, 0, None, None]
    cy = (_G - 1) / 2.0 + off[:, 1, None, None]
    xi = np.clip(a * xo + b * yo + cx, -1.0, float(_G))      # (n, 56, 56) glyph pixel coords
    yi = np.clip(c * xo + d * yo + cy, -1.0, float(_G))
    x0 = np.minimum(np.floor(xi), _G - 1)
    y0 = np.minimum(np.floor(yi), _G - 1)
    fx = (xi - x0).astype(np.float32)
    fy = (yi - y0).astype(np.float32)
    idx = (glyph[:, None, None] * (_P * _P) + (y0.astype(np.int64) + 1) * _P
           + (x0.astype(np.int64) + 1))
    v00 = bank[idx]
    v01 = bank[idx + 1]
    v10 = bank[idx + _P]
    v11 = bank[idx + _P + 1]
    top = v00 + fx * (v01 - v00)
    bot = v10 + fx * (v11 - v10)
    s = top + fy * (bot - top)                                 # (n, 56, 56)
    return ((s[:, 0::2, 0::2] + s[:, 0::2, 1::2]) + (s[:, 1::2, 0::2] + s[:, 1::2, 1::2])) \
        * np.float32(0.25)


def make_digits(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``10 * n_per_class`` digit images: ``(X, Y, angles)``.

    Each image takes a random font (of :func:`font_names`), stroke thickness
    (on the 56 grid: bold fonts as drawn or one pixel thinner, the others as
    drawn or one or two pixels bolder, so that the stroke widths overlap
    without hairlines vanishing or counters filling in), rotation, scale
    (0.85-1.1 of a 19-pixel-high digit), aspect ratio (0.9-1.1), shear
    (-0.15 to 0.15), shift (up to a pixel each way) and brightness (peak
    0.75-1).

    Args:
        n_per_class: images of each digit.
        seed: seed of ``np.random.default_rng``; the same seed gives the
            same bits on every machine.

    Returns:
        X: float32 ``(N, 1, 28, 28)``, values in [0, 1], white digit on black.
        Y: int64 ``(N,)``, the digits 0-9, exactly ``n_per_class`` of each, in
        random order.
        angles: float32 ``(N,)``, each image's rotation in degrees,
        counter-clockwise as displayed (row 0 at the top), uniform in
        ``[-45, 45]``.
    """
    n_per_class = int(n_per_class)
    if n_per_class < 0:
        raise ValueError(f"n_per_class must be >= 0, got {n_per_class}")
    bank, bold = _glyph_bank()
    nfont = len(bold)
    n = 10 * n_per_class
    rng = np.random.default_rng(seed)
    Y = rng.permutation(np.repeat(np.arange(10, dtype=np.int64), n_per_class))
    font = rng.integers(0, nfont, n)
    angles = rng.uniform(-MAX_ANGLE, MAX_ANGLE, n)
    scale = rng.uniform(0.85, 1.1, n)
    aspect = rng.uniform(0.9, 1.1, n)
    shear = rng.uniform(-0.15, 0.15, n)
    shift = rng.uniform(-2.0, 2.0, (n, 2))            # pixels of the 56 grid
    u = rng.uniform(0.0, 1.0, n)
    thick = np.where(bold[font],
                     np.searchsorted(np.array([0.4]), u, side="right"),           # 0, 1
                     1 + np.searchsorted(np.array([0.5, 0.85]), u, side="right"))  # 1, 2, 3
    bright = rng.uniform(0.75, 1.0, n)

    # forward map (glyph -> image, y down): p' = R(angle) @ Shear @ Scale @ p + shift, with
    # R = [[cos, sin], [-sin, cos]] (counter-clockwise on screen), Shear = [[1, k], [0, 1]],
    # Scale = diag(scale * aspect, scale). Its inverse, written out (no LAPACK):
    # p = diag(1/sx, 1/sy) @ [[1, -k], [0, 1]] @ [[cos, -sin], [sin, cos]] @ (p' - shift)
    sn, cs = _sin_cos(angles * (np.pi / 180.0))
    sx, sy = scale * aspect, scale
    inv = np.empty((n, 2, 2))
    inv[:, 0, 0] = (cs - shear * sn) / sx
    inv[:, 0, 1] = (-sn - shear * cs) / sx
    inv[:, 1, 0] = sn / sy
    inv[:, 1, 1] = cs / sy
    off = -np.stack([inv[:, 0, 0] * shift[:, 0] + inv[:, 0, 1] * shift[:, 1],
                     inv[:, 1, 0] * shift[:, 0] + inv[:, 1, 1] * shift[:, 1]], axis=1)
    glyph = (font * 10 + Y) * 4 + thick

    X = np.empty((n, 1, _OUT, _OUT), np.float32)
    for i in range(0, n, _CHUNK):
        j = slice(i, i + _CHUNK)
        X[j, 0] = _warp(bank, glyph[j], inv[j], off[j]) * bright[j, None, None].astype(np.float32)
    np.clip(X, 0.0, 1.0, out=X)
    return X, Y, angles.astype(np.float32)


# --------------------------------------------------------------------------- cache

def _meta() -> str:
    """What the cached images depend on besides the seed."""
    return f"{VERSION}|{','.join(font_names())}"


def _load(path: Path):
    """The cached ``(X, Y, angles)`` at ``path`` if it is a complete, valid
    file of this generator, else None (corrupt files are ignored)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            X, Y, A, meta = z["X"], z["Y"], z["angles"], str(z["meta"])
    except Exception:  # noqa: BLE001 - missing, truncated, not an npz, wrong keys...
        return None
    n = 10 * _N_PER_CLASS
    ok = (meta == _meta() and X.shape == (n, 1, _OUT, _OUT) and X.dtype == np.float32
          and Y.shape == (n,) and Y.dtype == np.int64 and A.shape == (n,)
          and A.dtype == np.float32 and np.all(np.isfinite(X)) and X.min() >= 0.0
          and X.max() <= 1.0 and Y.min() >= 0 and Y.max() <= 9)
    return (X, Y, A) if ok else None


def _save(path: Path, data) -> None:
    """Write atomically (a temporary file in the same folder, then
    ``os.replace``); failures (read-only home, full disk) are not errors."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, X=data[0], Y=data[1], angles=data[2], meta=np.array(_meta()))
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


@functools.lru_cache(maxsize=4)
def _generate_or_load(split: str, seed: int, cache: bool):
    """The split's arrays, from the disk cache when valid, else generated
    (and then cached). Kept in memory too: callers get copies."""
    path = cache_dir() / f"digits-{split}-{VERSION}.npz"
    data = _load(path) if cache else None
    if data is None:
        data = make_digits(_N_PER_CLASS, seed)
        if cache:
            _save(path, data)
    for a in data:
        a.setflags(write=False)
    return data


def _cached(split: str, seed: int, cache: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(a.copy() for a in _generate_or_load(split, seed, bool(cache)))  # type: ignore


def digits_train(cache: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 5000 training digits, MATLAB's ``digitTrain4DArrayData``:
    ``(X, Y, angles)``.

    X: float32 ``(5000, 1, 28, 28)`` (N, C, H, W), values in [0, 1], white
    digits on black; Y: int64 ``(5000,)`` labels 0-9, 500 of each; angles:
    float32 ``(5000,)`` rotation of each digit in degrees, uniform in
    [-45, 45] (counter-clockwise positive).

    Generated by :func:`make_digits` with a fixed seed (a second or so) and
    cached in :func:`cache_dir` unless ``cache=False``; also kept in memory,
    each call returning fresh copies.
    """
    return _cached("train", _TRAIN_SEED, cache)


def digits_test(cache: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 5000 test digits, MATLAB's ``digitTest4DArrayData``: as
    :func:`digits_train` but an independent draw (another seed)."""
    return _cached("test", _TEST_SEED, cache)


def fingerprint(X: np.ndarray) -> str:
    """A short hash of an array's bytes (to compare data across machines)."""
    return hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest()[:16]


# --------------------------------------------------------------------------- plot

def show_digits(X, Y, path, n: int = 20, predicted=None) -> str:
    """Write a PNG grid of the first ``n`` images (``(N, 1, H, W)`` or
    ``(N, H, W)``, values in [0, 1]) titled with their labels ``Y`` (and
    ``"label -> prediction"`` if ``predicted`` is given); returns the path as
    a string. Uses matplotlib's Agg canvas directly (no pyplot, no change of
    the global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    X = np.asarray(X)
    Y = np.asarray(Y).reshape(-1)
    n = max(0, min(int(n), len(X)))
    cols = max(1, min(10, n))
    rows = max(1, (n + cols - 1) // cols)
    fig = Figure(figsize=(1.2 * cols, 1.4 * rows))
    FigureCanvasAgg(fig)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        img = X[i].reshape(X[i].shape[-2:])
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        title = str(Y[i]) if predicted is None else f"{Y[i]} -> {np.asarray(predicted)[i]}"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return str(path)
