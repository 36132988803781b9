r"""The gradient checks: the layer's derivatives against finite differences.

In float64, with the loss :math:`L = \sum dLdZ \odot Z` (``dLdZ`` from a
low-discrepancy sequence) and the training ``forward``, the derivative of
``L`` along a perturbation ``e`` (one element, or a dense direction) is
estimated by 5-point central differences,

.. math::
    \frac{dL}{dt} \approx \frac{8\,(L(h) - L(-h)) - (L(2h) - L(-2h))}{12\,h},
    \qquad h = \epsilon^{1/3} \max|x|

(:math:`\epsilon` the float64 machine epsilon, ``x`` the tensor perturbed:
an input or a learnable), and compared with the derivative the layer gives
(its own ``backward`` through the autograd bridge, or autograd's derivative
of ``forward`` for a layer without one). An element passes when the
absolute **or** the relative error is at most ``1e-6`` (MATLAB's
``checkLayer`` tolerances). The differences are taken output element by
output element before summing, so the outputs a perturbation does not reach
cancel exactly and add no rounding error. Every evaluation runs the whole
batch of 2 observations, so a layer that couples them (batch
normalization) is differentiated jointly: the derivative with respect to
one observation includes its effect through the batch statistics on the
other's output.

Elements are checked one by one: all of them when a tensor has at most
``max_elements``, otherwise ``max_elements`` spread evenly over it (first
and last included), plus the elements where the layer's ``backward``
disagrees most with autograd's derivative of its ``forward`` (when
autograd can differentiate it), plus one dense direction that involves
every element.

Kinks: the test inputs keep away from 0 (see
:mod:`~layerlab.checking.testdata`), but a kink may still fall inside the
stencil (a near-tie in a max, a pre-activation near 0 inside the layer).
There the left and right one-sided differences disagree; such an element
passes when the layer's derivative lies between them (it is a one-sided
derivative, as autograd gives at a kink), and the report counts them.

Stochastic layers are re-seeded before every evaluation (the same dropout
mask each time), and State (running statistics) is restored before every
evaluation, so only the perturbation changes the output.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
import torch

from .harness import Subject, as_tuple, describe_exception
from .report import FAILED, PASSED, SKIPPED, CheckResult
from . import contract, testdata

__all__ = ["Mismatch", "check_gradients", "check_second_derivatives", "RTOL", "ATOL",
           "MAX_ELEMENTS"]

EPS = float(torch.finfo(torch.float64).eps)
STEP = EPS ** (1.0 / 3.0)            # about 6.06e-6
RTOL = 1e-6
ATOL = 1e-6
MAX_ELEMENTS = 256
SUSPECTS = 8
# one-sided differences agree to about h^2 |f'''| (1e-10) where the function
# is smooth; a kink in the stencil makes them differ by a fraction of the
# jump in slope
_KINK_RTOL, _KINK_ATOL = 1e-4, 1e-6


@dataclasses.dataclass
class Mismatch:
    """A derivative that differs from finite differences.

    Attributes:
        derivative: ``"dLdX"`` or ``"dLd<learnable>"``.
        wrong: how many of the ``checked`` elements are wrong (of ``total``).
        index: the index of the largest error, or ``None`` when it is the
            dense direction that differs.
        expected: finite differences at that index.
        got: the layer's derivative there.
        error: the absolute error there; ``relative``: divided by ``|expected|``.
        source: ``"backward"`` or ``"autograd"``.
    """

    derivative: str
    wrong: int
    checked: int
    total: int
    index: tuple[int, ...] | None
    expected: float
    got: float
    error: float
    relative: float
    source: str

    def describe(self) -> str:
        where = (f"at index {self.index}" if self.index is not None else
                 "along a dense direction through every element")
        count = (f"{self.wrong} of {self.checked} checked elements"
                 + (f" (of {self.total})" if self.checked < self.total else ""))
        if self.index is None:
            count = "its directional derivative"
        rel = f"; relative error {self.relative:.3g}" if math.isfinite(self.relative) else ""
        return (f"{self.derivative} differs from finite differences at {count}: largest "
                f"error {self.error:.3g} {where}: expected {self.expected:.6g} (finite "
                f"differences), got {self.got:.6g} ({self.source}){rel}")


@dataclasses.dataclass
class _Stencil:
    central: float
    left: float
    right: float


def _stencil(evaluate: Callable[[], tuple], set_offset: Callable[[float], None],
             Z0: Sequence[torch.Tensor], dLdZ: Sequence[torch.Tensor], h: float) -> _Stencil:
    """Differences of ``L`` along one perturbation: ``set_offset(t)`` moves
    the perturbed tensor to ``x + t e``; ``evaluate()`` runs the layer.

    ``D[k] = sum(dLdZ * (Z(k h) - Z(0)))``: the output differences are
    taken element by element before the sum, so the outputs that the
    perturbation does not reach contribute exact zeros (no rounding error
    from the rest of the layer)."""
    D = {}
    try:
        for k in (-2, -1, 1, 2):
            set_offset(k * h)
            Zk = evaluate()
            D[k] = sum(float(torch.vdot(g.reshape(-1), (z - z0).reshape(-1)))
                       for g, z, z0 in zip(dLdZ, Zk, Z0))
    finally:
        set_offset(0.0)
    return _Stencil(central=(8.0 * (D[1] - D[-1]) - (D[2] - D[-2])) / (12 * h),
                    left=(-4.0 * D[-1] + D[-2]) / (2 * h),
                    right=(4.0 * D[1] - D[2]) / (2 * h))


def _judge(got: float, s: _Stencil) -> tuple[float, float, bool]:
    """``(error, reference, at_kink)``: the error of ``got`` against the
    central difference, or, at a kink, its distance from the interval
    between the one-sided differences."""
    kink = abs(s.left - s.right) > _KINK_ATOL + _KINK_RTOL * max(abs(s.left), abs(s.right))
    if not kink:
        return abs(got - s.central), abs(s.central), False
    lo, hi = min(s.left, s.right), max(s.left, s.right)
    err = max(lo - got, got - hi, 0.0)
    return err, max(abs(lo), abs(hi)), True


def _ok(err: float, ref: float, rtol: float = RTOL, atol: float = ATOL) -> bool:
    return err <= atol or err <= rtol * ref


def _ratio(err: float, ref: float) -> float:
    """The error as a fraction of what the tolerance allows (< 1 passes)."""
    return err / max(ATOL, RTOL * ref)


def _elements(numel: int, max_elements: int, suspects: Sequence[int]) -> list[int]:
    if numel <= max_elements:
        return list(range(numel))
    spread = np.floor(testdata.van_der_corput(max_elements - 2, 2) * numel).astype(np.int64)
    chosen = set(int(i) for i in spread) | {0, numel - 1} | set(int(i) for i in suspects)
    return sorted(chosen)


def _suspects(got: torch.Tensor, reference: torch.Tensor | None) -> list[int]:
    """Flat indices where ``got`` differs most from ``reference``."""
    if reference is None or reference.shape != got.shape:
        return []
    diff = (got - reference).abs().flatten()
    scale = 1e-9 * (1.0 + reference.abs().flatten())
    bad = torch.nonzero(diff > scale).flatten()
    if bad.numel() == 0:
        return []
    order = torch.argsort(diff[bad], descending=True)[:SUSPECTS]
    return [int(i) for i in bad[order]]


def _autograd_reference(subject: Subject, layer, X, dLdZ):
    """Autograd's derivatives of the raw ``forward`` (bypassing the layer's
    ``backward``), used only to point the element checks at suspicious
    elements; ``None`` when autograd cannot differentiate the forward
    (in-place tricks, NumPy, ``no_grad``)."""
    try:
        subject.reseed(X[0].device)
        Xg = [x.detach().clone().requires_grad_(True) for x in X]
        params = list(layer.learnables().values())
        with torch.enable_grad():
            result = contract.training_forward(layer)(*Xg)
            Zs = as_tuple(result[0]) if subject.num_outputs > 1 else (result[0],)
            L = sum((g * z).sum() for g, z in zip(dLdZ, Zs))
            return list(torch.autograd.grad(L, Xg + params, allow_unused=True))
    except Exception:  # noqa: BLE001 - a reference only; nothing to report
        return None


@dataclasses.dataclass
class _TargetOutcome:
    """The checks of one derivative."""
    mismatch: Mismatch | None
    coverage: str
    worst_ratio: float
    kinks: int


def _check_target(name: str, target: torch.Tensor, g: torch.Tensor, reference, k: int,
                  evaluate, Z0, dLdZ, subject: Subject, max_elements: int,
                  source: str) -> _TargetOutcome:
    """Check derivative ``g`` of ``L`` with respect to ``target`` (an input,
    or a learnable's data), element by element and along a dense direction.
    ``target`` is perturbed in place and restored."""
    scale = float(target.abs().max()) if target.numel() else 0.0
    h = STEP * (scale if scale > 0 else 1.0)
    orig = target.clone()
    numel, shape = target.numel(), tuple(target.shape)
    chosen = _elements(numel, max_elements, _suspects(g, reference))
    # element access through flat views and Python floats: indexing with
    # tuples costs more than evaluating a small layer
    flat_target = target.view(-1) if target.is_contiguous() else None
    flat_orig, flat_g = orig.reshape(-1), g.reshape(-1)
    wrong, worst, worst_ratio, kinks = 0, None, 0.0, 0
    for flat in chosen:
        idx = tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()
        x0 = float(flat_orig[flat])

        def set_offset(t, idx=idx, flat=flat, x0=x0):
            if flat_target is not None:
                flat_target[flat] = x0 + t
            else:
                target[idx] = x0 + t

        s = _stencil(evaluate, set_offset, Z0, dLdZ, h)
        value = float(flat_g[flat])
        err, ref_mag, kink = _judge(value, s)
        kinks += kink
        if _ok(err, ref_mag):
            worst_ratio = max(worst_ratio, _ratio(err, ref_mag))
            continue
        wrong += 1
        if worst is None or err > worst.error:
            # at a kink, the nearer one-sided difference is what was expected
            expected = s.central if not kink else min((s.left, s.right),
                                                      key=lambda d: abs(d - value))
            worst = Mismatch(name, 0, len(chosen), numel, idx, expected, value, err,
                             err / ref_mag if ref_mag else float("inf"), source)
    # one dense direction through every element
    V = testdata.direction_values(shape, offset=k, seed=subject.seed)

    def set_direction(t):
        target.copy_(orig + t * V)

    s = _stencil(evaluate, set_direction, Z0, dLdZ, h / float(V.abs().max()))
    target.copy_(orig)
    value = float((g * V).sum())
    err, ref_mag, kink = _judge(value, s)
    kinks += kink
    if worst is not None:
        worst.wrong = wrong
    elif not _ok(err, ref_mag):
        worst = Mismatch(name, 1, 1, numel, None, s.central, value, err,
                         err / ref_mag if ref_mag else float("inf"), source)
    else:
        worst_ratio = max(worst_ratio, _ratio(err, ref_mag))
    n = len(chosen)
    coverage = f"{name} ({f'all {n}' if n == numel else f'{n} of {numel}'} elements)"
    return _TargetOutcome(worst, coverage, worst_ratio, kinks)


def check_gradients(subject: Subject, max_elements: int = MAX_ELEMENTS) -> CheckResult:
    """The ``gradients`` test (see the module documentation)."""
    layer = subject.copy(torch.float64)
    X = subject.inputs(2)
    snap = subject.snapshot(layer)

    def evaluate():
        subject.restore(layer, snap)
        # copies: an output may be its input itself (an identity layer),
        # which the element checks then perturb in place
        return tuple(z.clone() for z in subject.forward(layer, X)[0])

    Z0 = evaluate()
    dLdZ = subject.output_gradients(Z0)
    subject.restore(layer, snap)
    got, _ = subject.training_gradients(layer, X, dLdZ)
    source = "backward" if subject.has_backward else "autograd"
    subject.restore(layer, snap)
    reference = _autograd_reference(subject, layer, X, dLdZ) if subject.has_backward else None
    subject.restore(layer, snap)

    targets = list(X) + [p.data for p in layer.learnables().values()]
    notes, outcomes = [], []
    for k, (name, target) in enumerate(zip(subject.derivative_names, targets)):
        g = got[k]
        if g is None:
            notes.append(f"{name} is None ({source} gave no derivative): taken as 0")
            g = torch.zeros_like(target)
        outcomes.append(_check_target(name, target, g,
                                      reference[k] if reference is not None else None, k,
                                      evaluate, Z0, dLdZ, subject, max_elements, source))
    mismatches = [o.mismatch for o in outcomes if o.mismatch is not None]
    kinks = sum(o.kinks for o in outcomes)
    kink_note = (f"; {kinks} perturbations met a kink and were checked against one-sided "
                 f"differences" if kinks else "")
    if mismatches:
        lines = [m.describe() for m in mismatches] + notes
        lines.append(f"(5-point central differences in float64; an element passes with "
                     f"absolute or relative error <= {RTOL:g}{kink_note})")
        return CheckResult("gradients", FAILED, "\n".join(lines), details=mismatches)
    worst = max((o.worst_ratio for o in outcomes), default=0.0)
    msg = (f"{source} matches 5-point finite differences in float64 for "
           f"{', '.join(o.coverage for o in outcomes)} and a dense direction each; largest "
           f"error {worst:.1g} of the tolerance (absolute or relative {RTOL:g}){kink_note}")
    return CheckResult("gradients", PASSED, "\n".join([msg] + notes))


def check_second_derivatives(subject: Subject) -> CheckResult:
    """Second derivatives, with respect to the first input along one
    direction: the derivative of the first derivative (autograd's, or the
    hand-written backward differentiated again through the bridge) against
    finite differences of the first derivative, in float64. A failure
    fails, unless the layer declares ``backward_is_differentiable = False``
    (its backward is then differentiated once only, and a second
    derivative raises a clear error instead of giving a wrong number)."""
    name = "second_derivatives"
    if subject.has_backward and not getattr(subject.base, "backward_is_differentiable", True):
        return CheckResult(name, SKIPPED, "the layer declares backward_is_differentiable = "
                                          "False (first derivatives only)")
    if subject.has_backward and not contract.bridge_supports_double_backward():
        return CheckResult(name, SKIPPED, "the autograd bridge differentiates a hand-written "
                                          "backward once only (once_differentiable)")
    from ..autograd_bridge import run_layer   # local: keeps this module's imports light
    from .checks_repeat import backward_modifies_memory
    if backward_modifies_memory(subject):
        return CheckResult(name, SKIPPED, "not run: backward modifies its memory in place "
                                          "(see backward_twice), which a second derivative "
                                          "through it cannot survive")
    layer = subject.copy(torch.float64)
    X = subject.inputs(2)
    snap = subject.snapshot(layer)
    Z0 = subject.forward(layer, X)[0]
    dLdZ = subject.output_gradients(Z0)
    V = testdata.direction_values(tuple(X[0].shape), offset=99, seed=subject.seed)

    def first(x0: torch.Tensor, create_graph: bool = False):
        """dL/dX1 at X1 = x0 (x0 a leaf that requires grad)."""
        subject.restore(layer, snap)
        subject.reseed()
        with torch.enable_grad():
            Zs = as_tuple(run_layer(layer, (x0,) + tuple(X[1:]), training=True))
            L = sum((g * z).sum() for g, z in zip(dLdZ, Zs))
            (g,) = torch.autograd.grad(L, [x0], create_graph=create_graph, allow_unused=True)
        return torch.zeros_like(x0) if g is None else g

    source = "the hand-written backward differentiated" if subject.has_backward \
        else "autograd"
    base = X[0]
    x0 = base.clone().requires_grad_(True)
    try:
        g = first(x0, create_graph=True)
        if not g.requires_grad:
            hv = torch.zeros_like(base)          # dLdX does not depend on X
        else:
            with torch.enable_grad():
                (hv,) = torch.autograd.grad((g * V).sum(), [x0], allow_unused=True)
            hv = torch.zeros_like(base) if hv is None else hv.detach()
    except Exception as exc:  # noqa: BLE001 - the finding
        return CheckResult(name, FAILED, f"the second derivative (create_graph=True, then "
                                         f"backward again) raised {describe_exception(exc)}; a "
                                         f"layer whose backward cannot be differentiated "
                                         f"declares backward_is_differentiable = False")

    h = STEP * float(base.abs().max()) / float(V.abs().max())
    G = {k: first((base + k * h * V).requires_grad_(True)).detach() for k in (-2, -1, 1, 2)}
    G0 = first(base.clone().requires_grad_(True)).detach()
    central = (8 * (G[1] - G[-1]) - (G[2] - G[-2])) / (12 * h)
    left = (4 * (G0 - G[-1]) - (G0 - G[-2])) / (2 * h)
    right = (4 * (G[1] - G0) - (G[2] - G0)) / (2 * h)
    kink = (left - right).abs() > _KINK_ATOL + _KINK_RTOL * torch.maximum(left.abs(),
                                                                          right.abs())
    lo, hi = torch.minimum(left, right), torch.maximum(left, right)
    err = torch.where(kink, torch.clamp(torch.maximum(lo - hv, hv - hi), min=0),
                      (hv - central).abs())
    ref = torch.where(kink, torch.maximum(lo.abs(), hi.abs()), central.abs())
    bad = ~((err <= ATOL) | (err <= RTOL * ref))
    what = subject.derivative_names[0]
    if bad.any():
        flat = int(torch.argmax(torch.where(bad, err, torch.zeros_like(err))))
        idx = tuple(int(i) for i in np.unravel_index(flat, tuple(base.shape)))
        return CheckResult(name, FAILED,
                           f"the derivative of {what} along a direction differs from finite "
                           f"differences at {int(bad.sum())} of {bad.numel()} elements: largest "
                           f"error {float(err[idx]):.3g} at index {idx}: expected "
                           f"{float(central[idx]):.6g}, got {float(hv[idx]):.6g} ({source}). "
                           f"Does backward detach a tensor, or compute with .item() or NumPy? "
                           f"Then declare backward_is_differentiable = False")
    return CheckResult(name, PASSED, f"the second derivative of L with respect to X along a "
                                     f"direction ({source}) matches finite differences of "
                                     f"{what} (all {base.numel()} elements)")
