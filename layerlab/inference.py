"""Inference helpers: classify and predict with a trained network, on
arrays or on any data source (memmap, torch Dataset or DataLoader, layerlab
datastore), read a mini-batch at a time."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from .datastores.sources import as_data_source, is_data_source, is_lazy_array
from .errors import NetworkError
from .network.network import Network

__all__ = ["classify", "predict", "source_batches", "reads_by_batch"]


def _net(net: Any) -> Network:
    if not isinstance(net, Network):
        raise NetworkError(f"expected a trained layerlab Network, got {type(net).__name__}")
    return net


def reads_by_batch(X: Any) -> bool:
    """Whether ``X`` is read a mini-batch at a time (a data source or a
    memmap / array-like), not converted whole."""
    return is_data_source(X) or is_lazy_array(X)


def source_batches(net: Network, X: Any, mini_batch_size: int, what: str
                   ) -> Iterator[torch.Tensor]:
    """The observations of data source ``X`` in order, ``mini_batch_size`` at
    a time, checked against ``net``'s input layer (no augmentation)."""
    source = as_data_source(X, need_targets=False)
    source.bind(net.input_size, net.dtype, what)
    return source.inference_batches(mini_batch_size)


def classify(net: Network, X: Any, mini_batch_size: int = 1024) -> np.ndarray:
    """Predicted class labels for ``X`` (of the training labels' kind:
    folder names for a network trained on an ``ImageDatastore``), MATLAB's
    ``classify``. ``X``: an array, a tensor or any data source."""
    net = _net(net)
    if not reads_by_batch(X):
        return net.classify(X, mini_batch_size)
    parts = [net.classify(xb, mini_batch_size)
             for xb in source_batches(net, X, mini_batch_size, "classify X")]
    return np.concatenate(parts) if parts else np.asarray(net.classes)[:0]


def predict(net: Network, X: Any, mini_batch_size: int = 1024):
    """The network's outputs for ``X`` (class scores ``(N, K)`` for a
    classifier), MATLAB's ``predict``. A tensor for tensor input, else a
    NumPy array (also for data sources)."""
    net = _net(net)
    if not reads_by_batch(X):
        return net.predict(X, mini_batch_size)
    parts = [net.predict(xb, mini_batch_size)
             for xb in source_batches(net, X, mini_batch_size, "predict X")]
    return torch.cat(parts).cpu().numpy() if parts else np.zeros((0,))
