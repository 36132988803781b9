"""The checks of the layer's behaviour: training vs prediction, independent
observations, frozen learnables and state (saving: :mod:`.checks_saving`)."""

from __future__ import annotations

import numpy as np
import torch

from ..autograd_bridge import run_layer
from ..layer import InputLayer
from .checks_basic import NUM_OBSERVATIONS
from .harness import Subject, as_tuple, describe_exception
from .report import FAILED, PASSED, SKIPPED, CheckResult

__all__ = ["check_train_vs_predict", "check_independent_observations",
           "check_frozen_learnables", "check_state"]

# float64 results of the same computation reached in two ways (predict and
# forward, a batch and a single observation) agree to rounding, ~1e-15
_SAME_RTOL = 1e-9


def _largest_difference(a: torch.Tensor, b: torch.Tensor):
    """``(difference, index)`` of the largest ``|a - b|``, or ``None`` if
    they agree to :data:`_SAME_RTOL` (relative to the larger of 1 and max|a|)."""
    if a.shape != b.shape:
        return float("inf"), None
    if a.numel() == 0:
        return None
    d = (a - b).abs()
    scale = max(1.0, float(a.abs().max()))
    flat = int(torch.argmax(torch.nan_to_num(d, nan=float("inf"))))
    worst = float(d.flatten()[flat])
    if worst <= _SAME_RTOL * scale:
        return None
    return worst, tuple(int(i) for i in np.unravel_index(flat, tuple(a.shape)))


def check_train_vs_predict(s: Subject) -> CheckResult:
    """forward and predict agree, unless the layer declares
    ``differs_in_training``."""
    name = "train_vs_predict"
    if s.base.differs_in_training:
        return CheckResult(name, SKIPPED, "the layer declares differs_in_training = True "
                                          "(forward may differ from predict)")
    layer = s.copy()
    X = s.inputs(NUM_OBSERVATIONS)
    snap = s.snapshot(layer)
    # copies: a layer working in place on its input fails inputs_unchanged
    P = s.predict(layer, [x.clone() for x in X])
    s.restore(layer, snap)
    F = s.forward(layer, [x.clone() for x in X])[0]
    problems = []
    for i, (p, f) in enumerate(zip(P, F)):
        diff = _largest_difference(p, f)
        if diff is not None:
            d, idx = diff
            out = "" if len(P) == 1 else f" (output {i + 1})"
            at = (f" at index {idx}: predict {float(p[idx]):.6g}, forward {float(f[idx]):.6g}"
                  if idx is not None else f": sizes {tuple(p.shape)} and {tuple(f.shape)}")
            problems.append(f"forward and predict differ{out}: largest difference {d:.3g}{at}. "
                            f"A layer meant to behave differently in training (dropout, batch "
                            f"normalization) declares differs_in_training = True")
    if problems:
        return CheckResult(name, FAILED, "\n".join(problems))
    return CheckResult(name, PASSED, "forward and predict agree (float64)")


def check_independent_observations(s: Subject) -> CheckResult:
    """One observation's output does not change when another in the batch
    changes, nor when it is run alone: always for predict, and for forward
    unless the layer declares ``couples_observations``."""
    name = "independent_observations"
    layer = s.copy()
    snap = s.snapshot(layer)
    X = s.inputs(NUM_OBSERVATIONS)
    other = s.inputs(NUM_OBSERVATIONS, variant=1)
    Xc = tuple(torch.cat([x[:1], o[1:]]) for x, o in zip(X, other))   # 2nd observation changed
    X1 = tuple(x[:1] for x in X)

    # copies: a layer working in place on its input fails inputs_unchanged
    def predict(inputs):
        s.restore(layer, snap)
        return s.predict(layer, [x.clone() for x in inputs])

    def forward(inputs):
        s.restore(layer, snap)
        return s.forward(layer, [x.clone() for x in inputs])[0]

    modes = [("predict", predict)]
    coupled = s.base.couples_observations
    if not coupled:
        modes.append(("forward", forward))
    problems = []
    for mode, run in modes:
        Z, Zc = run(X), run(Xc)
        for i, (z, zc) in enumerate(zip(Z, Zc)):
            diff = _largest_difference(z[:1], zc[:1])
            if diff is not None:
                d, idx = diff
                problems.append(
                    f"{mode}: the first observation's output changed when the second "
                    f"observation changed (largest change {d:.3g} at index {idx}). A layer "
                    + ("whose training output depends on the other observations (batch "
                       "normalization) declares couples_observations = True"
                       if mode == "forward" else
                       "must predict each observation on its own (prediction runs in "
                       "mini-batches of any composition)"))
        # alone vs in a batch; a random forward draws differently for
        # another batch size, so only a deterministic one is compared
        if mode == "predict" or not getattr(layer, "is_stochastic", False):
            Z1 = run(X1)
            for z, z1 in zip(Z, Z1):
                diff = _largest_difference(z1, z[:1])
                if diff is not None:
                    d, idx = diff
                    problems.append(f"{mode}: the first observation's output differs run alone "
                                    f"and in a batch of {NUM_OBSERVATIONS} (largest difference "
                                    f"{d:.3g} at index {idx})")
    if problems:
        return CheckResult(name, FAILED, "\n".join(problems))
    if coupled:
        return CheckResult(name, PASSED, "predict treats observations independently; forward "
                                         "not checked: the layer declares "
                                         "couples_observations = True")
    return CheckResult(name, PASSED, "predict and forward treat observations independently")


def check_frozen_learnables(s: Subject, rtol: float = _SAME_RTOL) -> CheckResult:
    """Freeze each learnable (and all together): it gets no gradient and no
    update from a training step, and backward still gives the other
    derivatives, unchanged."""
    name = "frozen_learnables"
    names = s.learnable_names
    if not names:
        return CheckResult(name, SKIPPED, "the layer has no learnables")
    X = s.inputs(NUM_OBSERVATIONS)
    # every learnable trainable: the derivatives to compare with
    reference, Z = s.training_gradients(s.copy(), X)
    dLdZ = s.output_gradients(Z)          # the same dLdZ as the reference used
    groups = [[n] for n in names] + ([list(names)] if len(names) > 1 else [])
    problems = []
    for frozen in groups:
        what = f"with {', '.join(frozen)} frozen"
        layer = s.copy()
        layer.freeze(*frozen)
        params = layer.learnables()
        before = {n: p.detach().clone() for n, p in params.items()}
        s.reseed()
        Xg = [x.clone().requires_grad_(True) for x in X]
        try:
            with torch.enable_grad():
                Zs = as_tuple(run_layer(layer, tuple(Xg), training=True))
                sum((g * z).sum() for g, z in zip(dLdZ, Zs)).backward()
            # one gradient step on what is trainable, as the trainer's
            # optimizer does (it is built without the frozen learnables;
            # the first torch.optim step costs seconds of imports)
            with torch.no_grad():
                for p in params.values():
                    if p.requires_grad and p.grad is not None:
                        p.sub_(0.1 * p.grad)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{what}: training step raised {describe_exception(exc)}")
            continue
        for n in frozen:
            if params[n].grad is not None:
                problems.append(f"{what}: {n} received a gradient")
            if not torch.equal(params[n].detach(), before[n]):
                problems.append(f"{what}: {n} changed in a training step")
        got = [x.grad for x in Xg] + [params[n].grad for n in names]
        for dname, g, ref, n in zip(s.derivative_names, got, reference,
                                    list(s.input_names) + list(names)):
            if n in frozen or ref is None:
                continue
            if g is None:
                problems.append(f"{what}: backward no longer gives {dname}")
                continue
            diff = _largest_difference(ref, g)
            if diff is not None and diff[0] > rtol * max(1.0, float(ref.abs().max())):
                problems.append(f"{what}: {dname} changed by up to {diff[0]:.3g} "
                                f"(at index {diff[1]})")
    if problems:
        return CheckResult(name, FAILED, "\n".join(problems))
    each = "each learnable in turn" + (" and all together" if len(names) > 1 else "")
    return CheckResult(name, PASSED, f"froze {each} ({', '.join(names)}): no gradient, no "
                                     f"update, the other derivatives unchanged")


def check_state(s: Subject) -> CheckResult:
    """A layer with State updates it in forward (if it declares
    ``differs_in_training``, as running statistics make it) and never in
    predict; forward keeps each State's size and type and finite values."""
    name = "state"
    if not s.state_names:
        return CheckResult(name, SKIPPED, "the layer has no State")
    layer = s.copy()
    X = s.inputs(NUM_OBSERVATIONS)
    before = s.snapshot(layer)
    s.predict(layer, X)
    problems = [f"predict changed State '{n}': predict must only read the state"
                for n, t in s.snapshot(layer).items() if not torch.equal(t, before[n])]
    s.restore(layer, before)
    s.forward(layer, X)
    after = s.snapshot(layer)
    changed = []
    for n, t in before.items():
        a = after.get(n)
        if a is None:
            problems.append(f"forward removed State '{n}'")
            continue
        if a.shape != t.shape or a.dtype != t.dtype:
            problems.append(f"forward changed State '{n}' from {tuple(t.shape)} {t.dtype} to "
                            f"{tuple(a.shape)} {a.dtype}")
        elif not torch.equal(a, t):
            changed.append(n)
            if not torch.isfinite(a).all():
                problems.append(f"forward made State '{n}' non-finite")
    names = ", ".join(s.state_names)
    if not changed and s.base.differs_in_training and not isinstance(s.base, InputLayer):
        problems.append(f"forward did not update the State ({names}): a layer with running "
                        f"statistics updates them in forward")
    if problems:
        return CheckResult(name, FAILED, "\n".join(problems))
    if changed:
        return CheckResult(name, PASSED, f"forward updated {', '.join(changed)}; predict left "
                                         f"the State unchanged")
    return CheckResult(name, PASSED, f"predict and forward leave the State ({names}) unchanged")
