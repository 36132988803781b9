"""The disc toy set of the lecture "Going deeper" (slides 44-45).

Points uniform in ``[-1, 1]^2``; the label is 1 inside the disc of radius
``sqrt(2 / pi)`` centred at 0 (area 2, half the square, so the classes are
balanced) and 0 outside.
"""

from __future__ import annotations

import numpy as np

__all__ = ["disc", "disc_train_test", "RADIUS"]

RADIUS = float(np.sqrt(2.0 / np.pi))


def disc(n: int = 1000, seed: int = 0, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points ``(X, Y)``: X float32 ``(n, 2)``, Y int64 ``(n,)`` (1 inside
    the disc). ``normalize`` standardises each feature to mean 0, variance 1
    with this set's own statistics."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, 2))
    Y = ((X ** 2).sum(1) < RADIUS ** 2).astype(np.int64)
    if normalize:
        X = (X - X.mean(0)) / X.std(0)
    return X.astype(np.float32), Y


def disc_train_test(n: int = 1000, seed: int = 0):
    """``((Xtrain, Ytrain), (Xtest, Ytest))``, ``n`` points each, from
    different seeds. Both are normalised with the TRAINING set's mean and
    standard deviation (the test set must not inform the preprocessing)."""
    Xtr, Ytr = disc(n, seed, normalize=False)
    Xte, Yte = disc(n, seed + 1_000_003, normalize=False)
    mu, sd = Xtr.mean(0), Xtr.std(0)
    return (((Xtr - mu) / sd).astype(np.float32), Ytr), (((Xte - mu) / sd).astype(np.float32), Yte)
