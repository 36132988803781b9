"""The synthetic digits and the disc set: shapes, balance, determinism,
caching."""

import numpy as np

from layerlab.datasets import digits as digits_mod
from layerlab.datasets import disc, disc_train_test, make_digits, show_digits


def test_digits_shapes_ranges_and_balance():
    X, Y, angles = make_digits(20, seed=3)
    assert X.shape == (200, 1, 28, 28) and X.dtype == np.float32
    assert Y.dtype == np.int64 and np.bincount(Y).tolist() == [20] * 10
    assert 0.0 <= X.min() and X.max() <= 1.0 and X.max() > 0.5
    assert angles.dtype == np.float32 and np.abs(angles).max() <= 45.0
    assert angles.min() < -20 and angles.max() > 20


def test_digits_are_deterministic_and_splits_differ():
    a = make_digits(5, seed=1)
    b = make_digits(5, seed=1)
    c = make_digits(5, seed=2)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_rotation_angle_is_visible_in_the_image():
    """Mirror-free check that the angle is the image's: the principal axis of
    a '1' (a near-vertical stroke) turns with the returned angle."""
    X, Y, angles = make_digits(60, seed=5)
    ones = np.where(Y == 1)[0]
    measured = []
    for i in ones:
        img = X[i, 0]
        ys, xs = np.nonzero(img > 0.3)
        cov = np.cov(np.stack([xs - xs.mean(), -(ys - ys.mean())]))
        w, v = np.linalg.eigh(cov)
        vx, vy = v[:, -1]
        tilt = np.degrees(np.arctan2(-vx, vy)) if vy >= 0 else np.degrees(np.arctan2(vx, -vy))
        measured.append(tilt)
    r = np.corrcoef(measured, angles[ones])[0, 1]
    assert r > 0.8


def test_cache_round_trip_and_corrupt_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(digits_mod, "make_digits",
                        lambda n, seed: (np.zeros((5000, 1, 28, 28), np.float32) + seed % 7,
                                         np.arange(5000) % 10, np.zeros(5000, np.float32)))
    digits_mod._generate_or_load.cache_clear()
    X1, _, _ = digits_mod.digits_train()
    path = tmp_path / f"digits-train-{digits_mod.VERSION}.npz"
    assert path.exists()
    X1[:] = -1                                   # callers get copies
    digits_mod._generate_or_load.cache_clear()
    X2, _, _ = digits_mod.digits_train()
    assert X2.min() >= 0
    path.write_bytes(b"not an npz file")
    digits_mod._generate_or_load.cache_clear()
    X3, Y3, _ = digits_mod.digits_train()       # regenerated, not a crash
    assert X3.shape == (5000, 1, 28, 28) and np.load(path)["X"].shape == (5000, 1, 28, 28)
    digits_mod._generate_or_load.cache_clear()


def test_show_digits_writes_a_png(tmp_path):
    X, Y, _ = make_digits(2, seed=0)
    path = show_digits(X, Y, tmp_path / "d.png", n=12)
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_disc_balance_radius_and_normalization():
    X, Y = disc(20000, seed=0, normalize=False)
    assert abs(Y.mean() - 0.5) < 0.02
    inside = (X ** 2).sum(1) < 2 / np.pi
    assert np.array_equal(inside.astype(np.int64), Y)
    Xn, Yn = disc(20000, seed=0)
    np.testing.assert_allclose(Xn.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(Xn.var(0), 1, rtol=1e-4)
    (Xtr, Ytr), (Xte, Yte) = disc_train_test(500)
    assert Xtr.shape == Xte.shape == (500, 2) and not np.array_equal(Xtr, Xte)
