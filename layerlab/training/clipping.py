"""Gradient clipping, MATLAB's ``GradientThreshold`` / ``GradientThresholdMethod``.

With threshold ``t`` and gradients ``g`` (of the loss, before the solver
adds L2 regularization):

* ``"l2norm"``: each learnable's gradient is rescaled on its own,
  ``g <- g * t / ||g||_2`` where ``||g||_2 > t``;
* ``"global-l2norm"``: all gradients are rescaled together by
  ``t / L`` where ``L = sqrt(sum_i ||g_i||_2^2) > t``;
* ``"absolute-value"``: each element is clipped to ``[-t, t]``.

Everything stays on the device (no host synchronisation).
"""

from __future__ import annotations

import math

import torch

__all__ = ["clip_gradients"]


def clip_gradients(params: list[torch.Tensor], threshold: float, method: str) -> None:
    """Clip the ``.grad`` of ``params`` in place (no-op for ``threshold`` inf)."""
    if math.isinf(threshold):
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if method == "absolute-value":
        torch._foreach_clamp_min_(grads, -threshold)
        torch._foreach_clamp_max_(grads, threshold)
        return
    norms = torch._foreach_norm(grads)
    if method == "global-l2norm":
        total = torch.linalg.vector_norm(torch.stack(norms))
        scale = torch.clamp(threshold / total, max=1.0)  # 1 where total <= t
        torch._foreach_mul_(grads, scale)
        return
    scales = [torch.clamp(threshold / n, max=1.0) for n in norms]
    torch._foreach_mul_(grads, scales)
