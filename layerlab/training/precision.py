"""Mixed precision (``training_options(precision=...)``), as Lightning
names it:

* ``"32"``: everything in the network's dtype (the default).
* ``"bf16-mixed"``: the forward pass and the loss under
  ``torch.autocast(dtype=torch.bfloat16)`` on the CPU or a GPU: matrix
  products and convolutions run in bfloat16, the learnables, their
  gradients, the optimizer's state and the update stay float32. bfloat16
  has float32's range, so no gradient scaling is needed.
* ``"16-mixed"``: the same with float16, on a GPU only, with a
  ``torch.amp.GradScaler`` (float16 gradients underflow without it): the
  loss is scaled before ``backward``, the gradients unscaled before
  clipping, and a step whose gradients are not finite is skipped.

A layer with a hand-written ``backward`` runs in full precision, as
``torch.amp.custom_fwd(cast_inputs=torch.float32)`` runs a custom autograd
Function: its inputs are cast to its learnables' dtype (float32) and
autocast is off inside it, so its ``forward`` and ``backward`` see float32
``X``, ``Z`` and ``dLdZ`` exactly as without mixed precision; the layers
around it (and layers differentiated by autograd) run under autocast.

Examples:
    >>> p = Precision("bf16-mixed", torch.device("cpu"))
    >>> with p.autocast():
    ...     y = torch.ones(2, 2) @ torch.ones(2, 2)
    >>> y.dtype
    torch.bfloat16
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import OptionError

__all__ = ["Precision"]


class Precision:
    """The autocast context and the gradient scaler for one run."""

    def __init__(self, mode: str, device: torch.device):
        self.mode = mode
        self.device_type = device.type
        self.dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(mode)
        if mode == "16-mixed" and device.type != "cuda":
            raise OptionError("training option 'precision': '16-mixed' (float16) needs a GPU; "
                              "on the CPU use 'bf16-mixed'")
        self.scaler = torch.amp.GradScaler(device.type) if mode == "16-mixed" else None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients back to their true size (before clipping)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
