"""The solvers: MATLAB's SGDM update, and PyTorch's Adam and RMSprop.

SGDM as in MATLAB (velocities start at 0; ``lr`` and ``l2`` already include
each parameter's learn-rate and L2 factors):

.. math::
    v \\leftarrow m\\,v - \\mathrm{lr}\\,(\\nabla L + \\mathrm{l2}\\,W), \\qquad W \\leftarrow W + v

The velocity holds the learning rate, so after a drop in the learning rate
the momentum still carries the earlier steps at their old size (PyTorch's
SGD instead rescales them); with a constant learning rate both agree.
Adam and RMSprop are PyTorch's, whose ``weight_decay`` adds ``l2 * W`` to the
gradient as MATLAB's L2 regularization does.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.optim.optimizer as _optim

from ..network.network import Network
from .options import TrainingOptions

__all__ = ["SGDM", "make_optimizer", "set_base_learn_rate"]


class SGDM(torch.optim.Optimizer):
    """Stochastic gradient descent with momentum, MATLAB's convention."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        # one 0-d tensor per group holding -lr, on the parameters' device,
        # once a CUDA graph records the step (see use_learn_rate_tensors)
        self.negative_lr: list[torch.Tensor] | None = None

    def use_learn_rate_tensors(self) -> None:
        """Read each group's learning rate from a device tensor rather than
        a Python float, so that a step recorded as a CUDA graph follows the
        schedule: :func:`set_base_learn_rate` writes the tensors (no host
        synchronisation), and a replay reads them."""
        self.negative_lr = [torch.full((), -float(g["lr"]), device=g["params"][0].device)
                            for g in self.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch.optim.Optimizer.zero_grad, without its profiler label and
        the guard that keeps torch.compile out (about 20 us a step on the
        deep MLP's 42 learnables, more than the loop itself)."""
        if not set_to_none:
            super().zero_grad(set_to_none=False)
            return
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self, closure=None):  # type: ignore[override]
        """One update. torch.optim wraps every optimizer's step in a
        profiler label and its step hooks (about 35 us a step, as much as
        the update of the deep MLP's 42 learnables itself); here that
        wrapper runs only when it has something to do: a step hook is
        registered (on this optimizer or globally) or a profiler is on."""
        if (self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                or _optim._global_optimizer_pre_hooks or _optim._global_optimizer_post_hooks
                or torch.autograd.profiler._is_profiler_enabled):
            return self._hooked_step(closure)
        return self._step(closure)

    # torch.optim.Optimizer adds its wrapper to a class's step unless it is
    # marked as wrapped: step above calls the wrapper itself when needed
    step.hooked = True  # type: ignore[attr-defined]

    @torch.no_grad()
    def _step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for k, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["momentum"] == 0 and self.negative_lr is None:
                # plain SGD: v = -lr (g + l2 W) is all there is, so W moves by
                # it directly (one multi-tensor kernel; no velocity is kept,
                # as none would be read)
                lr, l2 = group["lr"], group["weight_decay"]
                if l2:
                    torch._foreach_mul_(params, 1.0 - lr * l2)
                torch._foreach_add_(params, grads, alpha=-lr)
                continue
            vel = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                vel.append(state["velocity"])
            # v = m v - lr g - lr l2 W, W = W + v: four in-place multi-tensor
            # kernels, no temporary (the L2 term is added to v, not to g)
            torch._foreach_mul_(vel, group["momentum"])
            if self.negative_lr is None:
                torch._foreach_add_(vel, grads, alpha=-group["lr"])
                if group["weight_decay"]:
                    torch._foreach_add_(vel, params, alpha=-group["lr"] * group["weight_decay"])
            else:   # v += (-lr) (g + l2 W), -lr read from the device
                step = (torch._foreach_add(grads, params, alpha=group["weight_decay"])
                        if group["weight_decay"] else grads)
                torch._foreach_add_(vel, torch._foreach_mul(step, self.negative_lr[k]))
            torch._foreach_add_(params, vel)
        return loss

    _hooked_step = torch.optim.Optimizer.profile_hook_step(_step)


def make_optimizer(net: Network, opts: TrainingOptions) -> torch.optim.Optimizer | None:
    """One parameter group per (learn-rate factor, L2 factor); frozen
    learnables are left out. Each group keeps its ``lr_factor`` so that
    :func:`set_base_learn_rate` can apply a schedule. ``None`` when every
    learnable is frozen."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = defaultdict(list)
    for layer in net.layers:
        for name, p in layer.learnables().items():
            if p.requires_grad:
                groups[(layer.learn_rate_factor(name), layer.l2_factor(name))].append(p)
    lr = opts.initial_learn_rate
    param_groups = [dict(params=ps, lr=lr * lrf, lr_factor=lrf,
                         weight_decay=opts.l2_regularization * l2f)
                    for (lrf, l2f), ps in groups.items()]
    if not param_groups:
        return None  # nothing to learn (every learnable frozen)
    if opts.solver == "sgdm":
        return SGDM(param_groups, lr=lr, momentum=opts.momentum)
    if opts.solver == "adam":
        return torch.optim.Adam(param_groups, lr=lr, eps=opts.epsilon, foreach=True,
                                betas=(opts.gradient_decay_factor,
                                       opts.squared_gradient_decay_factor))
    return torch.optim.RMSprop(param_groups, lr=lr, alpha=opts.squared_gradient_decay_factor,
                               eps=opts.epsilon, foreach=True)


def set_base_learn_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    negative_lr = getattr(optimizer, "negative_lr", None)
    for k, group in enumerate(optimizer.param_groups):
        new = lr * group.get("lr_factor", 1.0)
        if negative_lr is not None and new != group["lr"]:
            negative_lr[k].fill_(-new)   # a kernel launch, no host synchronisation
        group["lr"] = new
