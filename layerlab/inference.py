"""Inference helpers: classify and predict with a trained network."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import NetworkError
from .network.network import Network

__all__ = ["classify", "predict"]


def _net(net: Any) -> Network:
    if not isinstance(net, Network):
        raise NetworkError(f"expected a trained layerlab Network, got {type(net).__name__}")
    return net


def classify(net: Network, X: Any, mini_batch_size: int = 1024) -> np.ndarray:
    """Predicted class labels for ``X`` (of the training labels' kind),
    MATLAB's ``classify``."""
    return _net(net).classify(X, mini_batch_size)


def predict(net: Network, X: Any, mini_batch_size: int = 1024):
    """The network's outputs for ``X`` (class scores ``(N, K)`` for a
    classifier), MATLAB's ``predict``."""
    return _net(net).predict(X, mini_batch_size)
