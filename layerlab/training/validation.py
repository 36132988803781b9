"""Validation during training and early stopping (MATLAB's
``ValidationData``, ``ValidationFrequency``, ``ValidationPatience``)."""

from __future__ import annotations

import math

import torch

from ..network.network import Network

__all__ = ["evaluate", "EarlyStopping"]


@torch.no_grad()
def evaluate(net: Network, X: torch.Tensor, T: torch.Tensor, batch: int) -> torch.Tensor:
    """Mean loss and mean metric over ``(X, T)`` in inference mode, as a
    2-element tensor on the device (read it when it is printed)."""
    was_training = net.training
    net.eval()
    out = net.output_layer
    total = torch.zeros(2, device=X.device)
    try:
        for start in range(0, X.shape[0], batch):
            xb, tb = X[start:start + batch], T[start:start + batch]
            logits = net(xb, logits=True)
            w = xb.shape[0]
            total[0] += net.loss(logits, tb, from_logits=True) * w
            total[1] += out.metric(logits, tb) * w
    finally:
        net.train(was_training)
    return total / X.shape[0]


class EarlyStopping:
    """Counts validations whose loss is not below the best so far; stops
    when that count reaches ``patience`` (MATLAB: "the number of times that
    the loss on the validation set can be larger than or equal to the
    previously smallest loss before network training stops").

    With ``keep_best``, a copy of the network's state at the best
    validation loss is kept (for ``output_network="best-validation-loss"``).
    """

    def __init__(self, patience: float, keep_best: bool):
        self.patience = patience
        self.keep_best = keep_best
        self.best_loss = math.inf
        self.best_iteration = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad = 0

    def update(self, net: Network, loss: float, iteration: int) -> bool:
        """Record a validation loss; True when training should stop."""
        if loss < self.best_loss:
            self.best_loss, self.best_iteration, self.bad = loss, iteration, 0
            if self.keep_best:
                self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.bad += 1
        return self.bad >= self.patience
