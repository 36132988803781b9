"""The checks that run the layer again on the same data: its inputs stay as
they were (``inputs_unchanged``), a second backward over the same graph
gives the same derivatives (``backward_twice``), and a second run gives the
same results (``determinism``).

What a call may not touch: ``predict`` and ``forward`` their input ``X``;
``backward`` its ``X``, ``Z`` and ``dLdZ`` (``inputs_unchanged``) and its
``memory`` (``backward_twice``: memory is what a second backward over the
same graph reads again, with ``retain_graph=True``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..autograd_bridge import run_layer
from .checks_basic import NUM_OBSERVATIONS
from .harness import Subject, as_tuple, describe_exception
from .report import FAILED, PASSED, SKIPPED, CheckResult

__all__ = ["check_inputs_unchanged", "check_backward_twice", "check_determinism",
           "memory_tensors", "first_difference", "backward_modifies_memory"]

# float64 results of the same computation done twice agree to rounding
_SAME_RTOL = 1e-9


def memory_tensors(memory: Any) -> list[torch.Tensor]:
    """The tensors in a memory value (any nesting of tuples, lists, dicts)."""
    if isinstance(memory, torch.Tensor):
        return [memory]
    if isinstance(memory, (tuple, list)):
        return [t for m in memory for t in memory_tensors(m)]
    if isinstance(memory, dict):
        return [t for m in memory.values() for t in memory_tensors(m)]
    return []


def _clones(tensors: Sequence[Any]) -> list[Any]:
    return [t.detach().clone() if isinstance(t, torch.Tensor) else t for t in tensors]


def _changed(names: Sequence[str], before: Sequence[Any], after: Sequence[Any]) -> list[str]:
    out = []
    for name, b, a in zip(names, before, after):
        if isinstance(b, torch.Tensor) and not torch.equal(a, b):
            out.append(name)
    return out


def first_difference(a: torch.Tensor, b: torch.Tensor, rtol: float = 0.0):
    """``(largest difference, index)`` when ``a`` and ``b`` differ by more
    than ``rtol`` relative to max(1, max|a|) (exactly, for 0), else
    ``None``; NaNs in the same places count as equal."""
    if a.shape != b.shape:
        return float("inf"), None
    if a.numel() == 0:
        return None
    both_nan = torch.isnan(a) & torch.isnan(b)
    d = torch.where(both_nan, torch.zeros_like(a), (a - b).abs())
    d = torch.nan_to_num(d, nan=float("inf"))
    flat = int(torch.argmax(d))
    worst = float(d.detach().flatten()[flat])
    scale = max(1.0, float(torch.nan_to_num(a.abs(), nan=0.0, posinf=0.0).max()))
    if worst <= rtol * scale:
        return None
    return worst, tuple(int(i) for i in np.unravel_index(flat, tuple(a.shape)))


def differences(names: Sequence[str], reference: Sequence, other: Sequence, rtol: float,
                how: str, prefix: str = "") -> list[str]:
    """One line per pair of tensors that differ by more than ``rtol``
    (:func:`first_difference`): ``"<prefix><name> differs <how> by up to
    <d> (at index <i>)"``; a pair with a missing (``None``) side is skipped."""
    lines = []
    for name, a, b in zip(names, reference, other):
        if a is None or b is None:
            continue
        diff = first_difference(a, b, rtol)
        if diff is not None:
            lines.append(f"{prefix}{name} differs {how} by up to {diff[0]:.3g} "
                         f"(at index {diff[1]})")
    return lines


def check_inputs_unchanged(s: Subject) -> CheckResult:
    """predict and forward leave X unchanged; backward leaves X, Z and dLdZ
    unchanged (a layer that works in place on them corrupts what the
    previous layer or another branch of the graph still uses)."""
    name = "inputs_unchanged"
    layer = s.copy()
    X = s.inputs(NUM_OBSERVATIONS)
    problems = []
    x_names = s.input_names
    X0 = _clones(X)
    s.predict(layer, X)
    for n in _changed(x_names, X0, X):
        problems.append(f"predict modified its input {n} in place")
    X = s.inputs(NUM_OBSERVATIONS)
    Zs, memory = s.forward(layer, X)
    for n in _changed(x_names, X0, X):
        problems.append(f"forward modified its input {n} in place")
    X = s.inputs(NUM_OBSERVATIONS)
    if s.has_backward:
        Zs, memory = s.forward(layer, X)
        dLdZ = s.output_gradients(Zs)
        before = _clones(list(X) + list(Zs) + list(dLdZ))
        z_names = ["Z"] if len(Zs) == 1 else [f"Z{i + 1}" for i in range(len(Zs))]
        names = list(x_names) + z_names + [f"dLd{z}" for z in z_names]
        s.backward_raw(layer, X, Zs, dLdZ, memory)
        for n in _changed(names, before, list(X) + list(Zs) + list(dLdZ)):
            problems.append(f"backward modified its argument {n} in place")
        what = "predict, forward and backward leave X, Z and dLdZ unchanged"
    else:
        dLdZ = s.output_gradients(s.forward(layer, [x.clone() for x in X])[0])
        before = _clones(list(X) + list(dLdZ))
        try:
            s.training_gradients(layer, X, dLdZ)
        except RuntimeError as exc:
            if "in-place operation" not in str(exc):
                raise
            problems.append(f"the training forward works in place on its input, which "
                            f"autograd refuses: {describe_exception(exc)}")
        names = list(x_names) + [f"dLdZ{i + 1}" if len(dLdZ) > 1 else "dLdZ"
                                 for i in range(len(dLdZ))]
        for n in _changed(names, before, list(X) + list(dLdZ)):
            problems.append(f"training (forward and autograd's backward) modified {n} in place")
        what = "predict, forward and autograd's backward leave X and dLdZ unchanged"
    if problems:
        problems.append("work on a copy (X.clone(), or out-of-place ops such as X * 2 "
                        "instead of X.mul_(2))")
        return CheckResult(name, FAILED, "\n".join(problems))
    return CheckResult(name, PASSED, what)


def backward_modifies_memory(s: Subject) -> bool:
    """Whether the layer's backward changes its memory in place."""
    if not s.has_backward:
        return False
    layer = s.copy()
    X = s.inputs(NUM_OBSERVATIONS)
    Zs, memory = s.forward(layer, X)
    mem = memory_tensors(memory)
    before = _clones(mem)
    s.backward_raw(layer, X, Zs, s.output_gradients(Zs), memory)
    return any(not torch.equal(a, b) for a, b in zip(mem, before))


def _bridge_grads(s: Subject, layer, X, dLdZ, twice: bool):
    """Derivatives of L = sum(dLdZ * Z) through the training forward (the
    bridge), once, or twice over the same graph (``retain_graph``)."""
    s.reseed(X[0].device)
    Xg = [x.detach().clone().requires_grad_(True) for x in X]
    params = [p for p in layer.learnables().values() if p.requires_grad]
    with torch.enable_grad():
        Zs = as_tuple(run_layer(layer, tuple(Xg), training=True))
        L = sum((g * z).sum() for g, z in zip(dLdZ, Zs))
        first = torch.autograd.grad(L, Xg + params, allow_unused=True, retain_graph=twice)
        if not twice:
            return first, None
        second = torch.autograd.grad(L, Xg + params, allow_unused=True)
    return first, second


def check_backward_twice(s: Subject) -> CheckResult:
    """backward run twice over one graph (``retain_graph=True``, as a
    gradient penalty or two losses sharing a network do) gives the same
    derivatives both times; backward leaves its memory unchanged."""
    name = "backward_twice"
    layer = s.copy()
    X = s.inputs(NUM_OBSERVATIONS)
    snap = s.snapshot(layer)
    problems = []
    dLdZ = s.output_gradients(s.forward(layer, X)[0])
    if backward_modifies_memory(s):
        problems.append("backward modified its memory in place, so a second backward over "
                        "the same graph reads wrong values: compute on a copy")
    s.restore(layer, snap)
    try:
        first, second = _bridge_grads(s, layer, X, dLdZ, twice=True)
    except Exception as exc:  # noqa: BLE001 - the finding
        problems.append(f"a second backward over the same graph (retain_graph=True) raised "
                        f"{describe_exception(exc)}")
        first = second = None
    if first is not None:
        problems += differences(s.derivative_names, first, second, _SAME_RTOL,
                                "between the first and the second backward over the same graph")
    if problems:
        return CheckResult(name, FAILED, "\n".join(problems))
    kept = " and backward left its memory unchanged" if s.has_backward else ""
    return CheckResult(name, PASSED, f"two backward passes over one graph (retain_graph=True) "
                                     f"gave the same derivatives{kept}")


def check_determinism(s: Subject) -> CheckResult:
    """The same input twice gives the same predict output, training output
    and derivatives (bit for bit, or within the relative
    ``determinism_tolerance`` a layer declares), unless the layer declares
    ``is_stochastic``. The random generator is not re-seeded between the
    two runs, so a layer that draws random numbers without declaring it
    fails here."""
    name = "determinism"
    if getattr(s.base, "is_stochastic", False):
        return CheckResult(name, SKIPPED, "the layer declares is_stochastic = True (its "
                                          "training output is random)")
    tol = float(getattr(s.base, "determinism_tolerance", 0.0) or 0.0)
    layer = s.copy()
    X = s.inputs(NUM_OBSERVATIONS)
    snap = s.snapshot(layer)
    runs = []
    for _ in range(2):
        s.restore(layer, snap)
        P = s.predict(layer, X)
        s.restore(layer, snap)
        with torch.enable_grad():
            Xg = [x.clone().requires_grad_(True) for x in X]
            Zs = as_tuple(run_layer(layer, tuple(Xg), training=True))
            dLdZ = s.output_gradients([z.detach() for z in Zs])
            params = [p for p in layer.learnables().values() if p.requires_grad]
            L = sum((g * z).sum() for g, z in zip(dLdZ, Zs))
            grads = torch.autograd.grad(L, Xg + params, allow_unused=True)
        runs.append((P, tuple(z.detach() for z in Zs), grads))
    problems = []
    how = "between two runs on the same input"
    for label, a, b in zip(["predict output", "training output"], runs[0][:2], runs[1][:2]):
        names = [f"the {label}" + ("" if len(a) == 1 else f" {i + 1}") for i in range(len(a))]
        problems += differences(names, a, b, tol, how)
    problems += differences(s.derivative_names, runs[0][2], runs[1][2], tol, how)
    if problems:
        problems.append("a layer whose training output is random declares is_stochastic = "
                        "True; one with a bounded nondeterminism (atomic adds on a GPU) "
                        "declares determinism_tolerance = <relative tolerance>")
        return CheckResult(name, FAILED, "\n".join(problems))
    how = "identical" if tol == 0 else f"within the declared relative tolerance {tol:g}"
    return CheckResult(name, PASSED, f"two runs on the same input: predict, training output "
                                     f"and derivatives {how}")
