"""Validation during training and early stopping (MATLAB's
``ValidationData``, ``ValidationFrequency``, ``ValidationPatience``)."""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from ..network.network import Network

__all__ = ["evaluate", "evaluate_batches", "EarlyStopping"]


@torch.no_grad()
def evaluate_batches(net: Network, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
                     ) -> torch.Tensor:
    """Mean loss and mean metric over mini-batches ``(X, T)`` in inference
    mode (each weighted by its size), as a 2-element tensor on the device
    (read it when it is printed)."""
    was_training = net.training
    net.eval()
    out = net.output_layer
    total, count = None, 0
    try:
        for xb, tb in batches:
            logits = net(xb, logits=True)
            w = xb.shape[0]
            part = torch.stack([net.loss(logits, tb, from_logits=True) * w,
                                out.metric(logits, tb) * w])
            total = part if total is None else total + part
            count += w
    finally:
        net.train(was_training)
    return total / count


def evaluate(net: Network, X: torch.Tensor, T: torch.Tensor, batch: int) -> torch.Tensor:
    """:func:`evaluate_batches` over the tensors ``(X, T)`` in mini-batches of ``batch``."""
    return evaluate_batches(net, ((X[s:s + batch], T[s:s + batch])
                                  for s in range(0, X.shape[0], batch)))


class EarlyStopping:
    """Counts validations whose loss is not below the best so far; stops
    when that count reaches ``patience`` (MATLAB: "the number of times that
    the loss on the validation set can be larger than or equal to the
    previously smallest loss before network training stops").

    With ``keep_best``, a copy of the network's state at the best
    validation loss is kept (for ``output_network="best-validation-loss"``).

    Examples:
        >>> early = EarlyStopping(patience=2, keep_best=False)
        >>> [early.update(None, v, i) for i, v in enumerate([1.0, 0.9, 0.95, 0.97])]
        [False, False, False, True]
    """

    def __init__(self, patience: float, keep_best: bool):
        self.patience = patience
        self.keep_best = keep_best
        self.best_loss = math.inf
        self.best_iteration = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad = 0

    def update(self, net: Network | None, loss: float, iteration: int) -> bool:
        """Record a validation loss; True when training should stop."""
        if loss < self.best_loss:
            self.best_loss, self.best_iteration, self.bad = loss, iteration, 0
            if self.keep_best and net is not None:
                self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.bad += 1
        return self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """The counters and (with ``keep_best``) the best weights."""
        return {"best_loss": self.best_loss, "bad": self.bad,
                "best_iteration": self.best_iteration, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        self.best_loss = float(state["best_loss"])
        self.bad, self.best_iteration = int(state["bad"]), int(state["best_iteration"])
        best = state.get("best_state")
        self.best_state = None if not (self.keep_best and best) else {
            k: (v.to(device) if device is not None else v) for k, v in best.items()}
