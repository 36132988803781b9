"""The disc toy set of the lecture "Going deeper" (slides 44-45).

Points uniform in the square ``[-1, 1]^2``; the label is 1 inside the disc of
radius ``sqrt(2 / pi)`` centred at 0 (area 2, half the square's area 4, so
the classes are balanced) and 0 outside. Deterministic: the points come from
``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["disc", "disc_train_test", "RADIUS", "TEST_SEED_OFFSET"]

#: Radius of the class-1 disc: ``pi * r^2 = 2``, half of the square.
RADIUS = float(np.sqrt(2.0 / np.pi))
#: ``disc_train_test(n, seed)`` draws its test points with ``seed + TEST_SEED_OFFSET``.
TEST_SEED_OFFSET = 1_000_003


def _draw(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised float64 points and their int64 labels."""
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, 2))
    Y = ((X ** 2).sum(1) < RADIUS ** 2).astype(np.int64)
    return X, Y


def _stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = X.mean(0), X.std(0)
    if np.any(sd == 0):
        raise ValueError("cannot standardise: a feature has zero variance (n too small)")
    return mu, sd


def disc(n: int = 1000, seed: int = 0, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled points of the disc problem: ``(X, Y)``.

    Returns:
        X: float32 ``(n, 2)``: uniform in ``[-1, 1]^2`` if ``normalize`` is
        False; with ``normalize`` (the default) each feature standardised to
        mean 0 and variance 1 with THIS set's own mean and (population)
        standard deviation.
        Y: int64 ``(n,)``: 1 where the raw point lies strictly inside the
        disc of radius :data:`RADIUS` centred at 0, else 0 (about half each).

    The raw points depend only on ``seed`` (``np.random.default_rng(seed)``),
    not on ``normalize``. For a train/test pair use :func:`disc_train_test`,
    which normalises the test set with the training statistics.
    """
    X, Y = _draw(n, seed)
    if normalize:
        mu, sd = _stats(X)
        X = (X - mu) / sd
    return X.astype(np.float32), Y


def disc_train_test(n: int = 1000, seed: int = 0):
    """A training and a test set of ``n`` points each:
    ``((Xtrain, Ytrain), (Xtest, Ytest))``, X float32 ``(n, 2)``, Y int64.

    The training points are those of ``disc(n, seed)``; the test points are
    an independent draw, ``disc(n, seed + TEST_SEED_OFFSET)``. BOTH are
    standardised with the TRAINING set's per-feature mean and standard
    deviation (the test set must not inform the preprocessing), so the
    training features have mean 0 and variance 1 exactly and the test
    features only approximately.
    """
    Xtr, Ytr = _draw(n, seed)
    Xte, Yte = _draw(n, seed + TEST_SEED_OFFSET)
    mu, sd = _stats(Xtr)
    return ((((Xtr - mu) / sd).astype(np.float32), Ytr),
            (((Xte - mu) / sd).astype(np.float32), Yte))
