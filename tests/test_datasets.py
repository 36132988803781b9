"""layerlab.datasets: the synthetic digits (shapes, ranges, balance, the
angles, determinism, the disk cache) and the disc toy set."""

import importlib
import os
from pathlib import Path

import numpy as np
import pytest

import layerlab.datasets as datasets
from layerlab.datasets import (digits_test, digits_train, disc, disc_train_test, make_digits,
                               show_digits)
from layerlab.datasets import digits as digits_mod

# the package's `disc` is the function; the module holds RADIUS and TEST_SEED_OFFSET
disc_mod = importlib.import_module("layerlab.datasets.disc")

# make_digits(3, seed=0) with the generator of VERSION, the fonts and the
# FreeType of the matplotlib it was recorded with (see test_pinned_bits).
PINNED = {
    "version": "v3",
    "freetype": "2.14.3",
    "fonts": ["DejaVuSans-Bold.ttf", "DejaVuSans-BoldOblique.ttf", "DejaVuSans-Oblique.ttf",
              "DejaVuSans.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-BoldOblique.ttf",
              "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf",
              "DejaVuSerif-BoldItalic.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif.ttf",
              "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralBolIta.ttf",
              "STIXGeneralItalic.ttf", "cmb10.ttf", "cmmi10.ttf", "cmr10.ttf", "cmss10.ttf",
              "cmti10.ttf", "cmtt10.ttf"],
    "X": "3ede218c55d923c7",
    "Y": "eaea4f014806b8a4",
    "angles": "4b40b4402b7949bd",
}


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder and an empty in-process cache (restored
    afterwards, so later tests do not see this folder's state)."""
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path))
    digits_mod._generate_or_load.cache_clear()
    yield tmp_path
    digits_mod._generate_or_load.cache_clear()


# --------------------------------------------------------------------------- digits

def test_package_exports():
    for name in ("digits_train", "digits_test", "make_digits", "show_digits", "disc",
                 "disc_train_test"):
        assert name in datasets.__all__ and callable(getattr(datasets, name))


def test_make_digits_shapes_dtypes_ranges_and_balance():
    X, Y, angles = make_digits(30, seed=11)
    assert X.shape == (300, 1, 28, 28) and X.dtype == np.float32 and X.flags.c_contiguous
    assert Y.shape == (300,) and Y.dtype == np.int64
    assert angles.shape == (300,) and angles.dtype == np.float32
    assert np.isfinite(X).all() and X.min() >= 0.0 and X.max() <= 1.0
    assert np.bincount(Y, minlength=10).tolist() == [30] * 10
    assert not np.array_equal(Y[:10], np.arange(10))              # shuffled, not in order
    # white digit on black: the border is background, every image has ink
    border = np.concatenate([X[:, 0, 0], X[:, 0, -1], X[:, 0, :, 0], X[:, 0, :, -1]], axis=1)
    assert np.median(border) == 0.0 and border.mean() < 0.02
    assert (X.reshape(300, -1).max(1) > 0.5).all()
    ink = (X > 0.3).reshape(300, -1).mean(1)
    assert 0.03 < ink.min() and ink.max() < 0.5
    assert np.abs(angles).max() <= digits_mod.MAX_ANGLE == 45.0
    assert angles.min() < -30 and angles.max() > 30


def test_make_digits_zero_and_bad_sizes():
    X, Y, A = make_digits(0, seed=0)
    assert X.shape == (0, 1, 28, 28) and Y.shape == (0,) and A.shape == (0,)
    with pytest.raises(ValueError):
        make_digits(-1, seed=0)


def test_angles_uniform_over_both_signs():
    _, _, angles = make_digits(200, seed=4)
    counts, _ = np.histogram(angles, bins=6, range=(-45, 45))
    assert counts.min() > 0.7 * counts.mean()                      # ~uniform over [-45, 45]
    assert abs(np.mean(angles > 0) - 0.5) < 0.05


def test_returned_angle_is_the_rotation_in_the_image(monkeypatch):
    """With rotations switched off the random stream is the same (same draws
    for every other parameter), so each image differs from its unrotated
    twin by the returned angle: rotating the twin by +angle (counter-clockwise
    on screen, as scipy does) reproduces it, rotating by -angle does not."""
    from scipy.ndimage import rotate

    X, Y, angles = make_digits(4, seed=9)
    monkeypatch.setattr(digits_mod, "MAX_ANGLE", 0.0)
    X0, Y0, angles0 = make_digits(4, seed=9)
    assert np.array_equal(Y, Y0) and not angles0.any()
    big = np.where(np.abs(angles) > 15)[0]
    assert len(big) >= 15
    right = wrong = 0
    for i in big:
        plus = rotate(X0[i, 0], float(angles[i]), reshape=False, order=1)
        minus = rotate(X0[i, 0], -float(angles[i]), reshape=False, order=1)
        e_plus = np.abs(plus - X[i, 0]).sum()
        e_minus = np.abs(minus - X[i, 0]).sum()
        e_none = np.abs(X0[i, 0] - X[i, 0]).sum()
        right += e_plus < 0.6 * min(e_minus, e_none)
        wrong += e_plus >= min(e_minus, e_none)
    assert wrong == 0 and right >= 0.9 * len(big), (right, wrong, len(big))


def test_angle_turns_the_principal_axis_of_a_one():
    """A second, independent check of the angle: the principal axis of a '1'
    (a near-vertical stroke) turns with the returned angle (merged from the
    former tests/test_core_datasets.py)."""
    X, Y, angles = make_digits(60, seed=5)
    ones = np.where(Y == 1)[0]
    measured = []
    for i in ones:
        ys, xs = np.nonzero(X[i, 0] > 0.3)
        cov = np.cov(np.stack([xs - xs.mean(), -(ys - ys.mean())]))
        vx, vy = np.linalg.eigh(cov)[1][:, -1]
        measured.append(np.degrees(np.arctan2(-vx, vy)) if vy >= 0
                        else np.degrees(np.arctan2(vx, -vy)))
    assert np.corrcoef(measured, angles[ones])[0, 1] > 0.8


def test_fonts_are_matplotlibs_own():
    import matplotlib

    fonts = digits_mod._fonts()
    root = Path(matplotlib.get_data_path()).resolve()
    assert len(fonts) >= 10
    assert all(root in Path(f).resolve().parents for f in fonts)
    names = digits_mod.font_names()
    assert {"DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"} <= set(names)
    assert not any(n.startswith(("cmsy", "cmex", "STIXSiz", "LastResort")) for n in names)
    g = digits_mod._glyphs()
    assert g.shape == (len(fonts), 10, 56, 56) and g.min() >= 0 and g.max() <= 1
    assert (g.reshape(len(fonts) * 10, -1).max(1) > 0.9).all()     # every glyph drawn


def test_same_seed_same_bits_other_seed_other_images(monkeypatch):
    import torch

    a = make_digits(8, seed=123)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)                  # nothing may depend on thread counts
        b = make_digits(8, seed=123)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(digits_mod, "_CHUNK", 7)  # nor on how the work is split
    c = make_digits(8, seed=123)
    for u, v, w in zip(a, b, c):
        assert u.dtype == v.dtype and u.tobytes() == v.tobytes() == w.tobytes()
    d = make_digits(8, seed=124)
    assert not np.array_equal(a[0], d[0]) and not np.array_equal(a[2], d[2])


def test_pinned_bits():
    """The generator's output is pinned: the same on every machine with this
    matplotlib's fonts and FreeType. If this fails after an intended change
    of the generator, bump digits.VERSION (stale caches) and re-pin."""
    import matplotlib.ft2font as ft

    if digits_mod.font_names() != PINNED["fonts"] or \
            ft.__freetype_version__ != PINNED["freetype"]:
        pytest.skip("another matplotlib (other fonts or FreeType): other glyphs")
    X, Y, A = make_digits(3, seed=0)
    assert digits_mod.VERSION == PINNED["version"]
    assert (digits_mod.fingerprint(X), digits_mod.fingerprint(Y), digits_mod.fingerprint(A)) \
        == (PINNED["X"], PINNED["Y"], PINNED["angles"])


def test_standard_splits_and_their_disk_cache(fresh_cache, monkeypatch):
    Xtr, Ytr, Atr = digits_train()
    path = fresh_cache / f"digits-train-{digits_mod.VERSION}.npz"
    assert path.is_file()
    assert Xtr.shape == (5000, 1, 28, 28) and Xtr.dtype == np.float32
    assert 0.0 <= Xtr.min() and Xtr.max() <= 1.0
    assert Ytr.dtype == np.int64 and np.bincount(Ytr).tolist() == [500] * 10
    assert Atr.dtype == np.float32 and np.abs(Atr).max() <= 45 and Atr.min() < -40 < 40 < Atr.max()
    with np.load(path) as z:                        # the file holds exactly these arrays
        assert np.array_equal(z["X"], Xtr) and np.array_equal(z["Y"], Ytr)
        assert np.array_equal(z["angles"], Atr)

    Xte, Yte, Ate = digits_test()                   # an independent draw
    assert (fresh_cache / f"digits-test-{digits_mod.VERSION}.npz").is_file()
    assert Xte.shape == Xtr.shape and np.bincount(Yte).tolist() == [500] * 10
    assert not np.array_equal(Xtr, Xte) and not np.array_equal(Atr, Ate)
    flat_tr = {x.tobytes() for x in Xtr}
    assert not any(x.tobytes() in flat_tr for x in Xte)

    # callers get copies: scribbling on one does not reach the next call
    Xtr[:] = -1.0
    Ytr[:] = 0
    X2, Y2, _ = digits_train()
    assert X2.min() >= 0.0 and np.bincount(Y2).tolist() == [500] * 10

    # a new process (empty memory cache) reads the file instead of generating
    def no_generation(*args, **kwargs):
        raise AssertionError("regenerated although the cache file is valid")

    digits_mod._generate_or_load.cache_clear()
    monkeypatch.setattr(digits_mod, "make_digits", no_generation)
    X3, Y3, A3 = digits_train()
    assert np.array_equal(X3, X2) and np.array_equal(Y3, Y2)
    assert not [p for p in os.listdir(fresh_cache) if p.endswith(".tmp")]   # no temp files left


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong_arrays"])
def test_corrupt_cache_is_regenerated(fresh_cache, monkeypatch, damage):
    calls = []
    real = digits_mod.make_digits

    def small(n_per_class, seed):          # the cache logic, fast: 500 per class of a cheap fake
        calls.append(seed)
        X, Y, A = real(1, seed)
        return (np.repeat(X, 500, axis=0), np.repeat(Y, 500), np.repeat(A, 500))

    monkeypatch.setattr(digits_mod, "make_digits", small)
    X1, Y1, A1 = digits_train()
    path = fresh_cache / f"digits-train-{digits_mod.VERSION}.npz"
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"this is not an npz file")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.savez(path, X=np.zeros((3, 28, 28), np.float32), Y=np.zeros(3, np.int64))
    digits_mod._generate_or_load.cache_clear()
    X2, Y2, A2 = digits_train()                 # no crash: regenerated and re-cached
    assert len(calls) == 2
    assert np.array_equal(X1, X2) and np.array_equal(Y1, Y2) and np.array_equal(A1, A2)
    with np.load(path) as z:
        assert np.array_equal(z["X"], X1)


def test_cache_false_writes_nothing(fresh_cache, monkeypatch):
    monkeypatch.setattr(digits_mod, "make_digits", lambda n, seed: (
        np.zeros((10 * n, 1, 28, 28), np.float32), np.repeat(np.arange(10), n),
        np.zeros(10 * n, np.float32)))
    X, Y, A = digits_test(cache=False)
    assert X.shape == (5000, 1, 28, 28) and os.listdir(fresh_cache) == []


def test_unwritable_cache_still_returns_data(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("LAYERLAB_CACHE", str(blocker / "sub"))
    monkeypatch.setattr(digits_mod, "make_digits", lambda n, seed: (
        np.zeros((10 * n, 1, 28, 28), np.float32), np.repeat(np.arange(10), n),
        np.zeros(10 * n, np.float32)))
    digits_mod._generate_or_load.cache_clear()
    try:
        X, _, _ = digits_train()
    finally:
        digits_mod._generate_or_load.cache_clear()
    assert X.shape == (5000, 1, 28, 28)


def test_cache_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("LAYERLAB_CACHE", raising=False)
    assert digits_mod.cache_dir() == Path.home() / ".cache" / "layerlab"
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path))
    assert digits_mod.cache_dir() == tmp_path


def test_show_digits_writes_a_png(tmp_path):
    X, Y, _ = make_digits(2, seed=0)
    out = show_digits(X, Y, tmp_path / "sub" / "grid.png", n=12)
    assert isinstance(out, str) and Path(out) == tmp_path / "sub" / "grid.png"
    assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out2 = show_digits(X[:, 0], Y, tmp_path / "few.png", n=50)        # (N, H, W), n > N
    assert Path(out2).stat().st_size > 0


# --------------------------------------------------------------------------- disc

def test_disc_raw_points_and_radius_rule():
    X, Y = disc(10000, seed=3, normalize=False)
    assert X.shape == (10000, 2) and X.dtype == np.float32 and Y.dtype == np.int64
    assert X.min() >= -1 and X.max() <= 1 and X.min() < -0.99 and X.max() > 0.99
    r2 = (X.astype(np.float64) ** 2).sum(1)
    clear = np.abs(r2 - 2 / np.pi) > 1e-6               # away from the rim (float32 rounding)
    assert clear.mean() > 0.99
    assert np.array_equal(Y[clear], (r2[clear] < 2 / np.pi).astype(np.int64))
    assert set(np.unique(Y)) == {0, 1}
    assert abs(Y.mean() - 0.5) < 0.02                   # balanced: sd of the mean is 0.005
    assert disc_mod.RADIUS == pytest.approx(np.sqrt(2 / np.pi))


def test_disc_normalisation_and_determinism():
    X, Y = disc(10000, seed=3)
    Xraw, Yraw = disc(10000, seed=3, normalize=False)
    assert X.dtype == np.float32 and np.array_equal(Y, Yraw)
    np.testing.assert_allclose(X.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(X.var(0, dtype=np.float64), 1, rtol=1e-5)
    np.testing.assert_allclose(X, (Xraw - Xraw.mean(0)) / Xraw.std(0), atol=1e-5)
    X2, Y2 = disc(10000, seed=3)
    assert X.tobytes() == X2.tobytes() and np.array_equal(Y, Y2)
    X3, _ = disc(10000, seed=4)
    assert not np.array_equal(X, X3)
    assert len(disc()) == 2 and disc()[0].shape == (1000, 2)


def test_disc_train_test_uses_the_training_statistics():
    (Xtr, Ytr), (Xte, Yte) = disc_train_test(2000, seed=5)
    assert Xtr.shape == Xte.shape == (2000, 2) and Xtr.dtype == Xte.dtype == np.float32
    assert Ytr.dtype == Yte.dtype == np.int64
    # training set: standardised exactly, and the same as disc(n, seed)
    np.testing.assert_allclose(Xtr.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(Xtr.var(0, dtype=np.float64), 1, rtol=1e-5)
    Xd, Yd = disc(2000, seed=5)
    np.testing.assert_allclose(Xtr, Xd, atol=1e-6)
    assert np.array_equal(Ytr, Yd)
    # test set: another draw, shifted and scaled with the TRAINING mean/std
    Rtr, _ = disc(2000, seed=5, normalize=False)
    Rte, Rye = disc(2000, seed=5 + disc_mod.TEST_SEED_OFFSET, normalize=False)
    assert not np.array_equal(Rtr, Rte) and np.array_equal(Yte, Rye)
    mu, sd = Rtr.astype(np.float64).mean(0), Rtr.astype(np.float64).std(0)
    np.testing.assert_allclose(Xte, (Rte - mu) / sd, atol=1e-5)
    own = (Rte - Rte.mean(0)) / Rte.std(0)
    assert not np.allclose(Xte, own, atol=1e-4)         # not its own statistics
    assert np.abs(Xte.mean(0)).max() < 0.1 and np.abs(Xte.var(0) - 1).max() < 0.1
    assert abs(Yte.mean() - 0.5) < 0.05


def test_disc_rejects_empty():
    with pytest.raises(ValueError):
        disc(0)
