"""Finding where a non-finite loss came from, after the fact.

The training loop only checks the loss; when it is NaN or Inf, the failed
mini-batch is run again layer by layer (same weights: the check happens
before the update) to name the first layer whose output is not finite.
"""

from __future__ import annotations

import torch

from ..network.network import Network

__all__ = ["first_nonfinite_layer"]


@torch.no_grad()
def first_nonfinite_layer(net: Network, xb: torch.Tensor) -> str | None:
    """The name and class of the first layer whose output on ``xb`` (in
    training mode) has a NaN or Inf, or of a layer with a non-finite
    learnable; ``None`` when every output is finite (the loss itself
    overflowed)."""
    for layer, z in zip(net.layers, net.layer_outputs(xb)):   # one pass, every output
        for pname, p in layer.learnables().items():
            if not torch.isfinite(p).all():
                return f"{layer.label} (its learnable '{pname}' is not finite)"
        zs = z if isinstance(z, tuple) else (z,)
        if not all(bool(torch.isfinite(t).all()) for t in zs):
            return layer.label
    return None
