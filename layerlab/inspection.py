"""``activations(net, X, layer_name)``: a layer's outputs, for looking at features."""

from __future__ import annotations

from typing import Any

import torch

from .inference import reads_by_batch, source_batches
from .network.network import Network, as_network

__all__ = ["activations"]


def activations(net: Network | Any, X: Any, layer_name: str, mini_batch_size: int = 1024):
    """The outputs of layer ``layer_name`` for inputs ``X`` (inference mode),
    of size ``(N, *net.sizes[layer_name][0])``, e.g. ``(N, 20, 24, 24)`` after
    a 5x5 convolution with 20 filters on 28x28 images. MATLAB's
    ``activations(net, X, layer)``. A NumPy array for NumPy input (and for
    data sources: memmaps, Datasets, DataLoaders, datastores, read a
    mini-batch at a time), a tensor for tensor input; a tuple for a layer
    with several outputs.
    """
    net = as_network(net)
    index = [l.name for l in net.layers].index(net.layer(layer_name).name)
    was_tensor = isinstance(X, torch.Tensor)
    if reads_by_batch(X):
        outs = [o for xb in source_batches(net, X, mini_batch_size, "activations X")
                for o in net.infer_in_batches(xb, mini_batch_size, until=index,
                                              what="activations X")]
    else:
        outs = net.infer_in_batches(X, mini_batch_size, until=index, what="activations X")
    cols = [torch.cat(parts) for parts in zip(*outs)] if outs else [torch.empty(0)]
    if not was_tensor:
        cols = [c.cpu().numpy() for c in cols]
    return cols[0] if len(cols) == 1 else tuple(cols)
