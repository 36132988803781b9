"""The checks of inputs the ordinary test data never contain: extreme values
(``extreme_inputs``), other memory layouts (``memory_layouts``), other
batch sizes and the empty batch (``observations``), and half precision
(``low_precision``).

Each runs predict, the training forward and the derivatives (through the
autograd bridge, so a hand-written backward is what is checked) and
compares them with the ordinary case or checks them for NaN and infinity.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..autograd_bridge import run_layer
from ..errors import LayerError
from .checks_basic import NUM_OBSERVATIONS, _first_non_finite
from .checks_repeat import differences
from .harness import Subject, as_tuple, describe_exception
from .report import FAILED, PASSED, SKIPPED, CheckResult

__all__ = ["check_extreme_inputs", "check_memory_layouts", "check_observations",
           "check_low_precision", "EXTREME_MAGNITUDES", "LOW_PRECISION_RTOL"]

#: the magnitudes of the large inputs (each in both signs)
EXTREME_MAGNITUDES = (1e2, 1e4)
#: agreement with float32 asked of each format, relative to the largest
#: magnitude of the float32 result: about 20x the format's rounding error
#: (float16 keeps 11 significant bits, bfloat16 8), room for a few
#: roundings and short sums, far less than an overflow or a lost term
LOW_PRECISION_RTOL = {torch.float16: 2e-2, torch.bfloat16: 1e-1}
# float64 results of the same values in another layout agree to rounding
_SAME_RTOL = 1e-9


def _gradients(s: Subject, layer, X: Sequence[torch.Tensor], dLdZ=None):
    """``(Zs, derivatives)`` of the training forward through the bridge;
    ``dLdZ`` (default: the test values) is handed to autograd as the output
    gradient itself, so the layer's backward receives it as it is (layout
    included)."""
    s.reseed(X[0].device)
    Xg = [x.detach().requires_grad_(True) for x in X]     # same layout as X
    params = [p for p in layer.learnables().values() if p.requires_grad]
    with torch.enable_grad():
        Zs = as_tuple(run_layer(layer, tuple(Xg), training=True))
        if dLdZ is None:
            dLdZ = s.output_gradients([z.detach() for z in Zs])
        L = sum(_Inject.apply(z, g).sum() for z, g in zip(Zs, dLdZ))
        grads = torch.autograd.grad(L, Xg + params, allow_unused=True)
    return tuple(z.detach() for z in Zs), grads


class _Inject(torch.autograd.Function):
    """Identity on ``Z`` whose backward hands on ``dLdZ`` exactly as given
    (layout included). ``torch.autograd.grad(..., grad_outputs=)`` would do
    the same but imports SymPy on first use (2 s)."""

    @staticmethod
    def forward(ctx, z, g):  # type: ignore[override]
        ctx.g = g                   # not an input that needs a gradient
        return z.view_as(z)

    @staticmethod
    def backward(ctx, _):  # type: ignore[override]
        return ctx.g, None


# ---------------------------------------------------------------------------
# extreme_inputs
# ---------------------------------------------------------------------------
def _extreme_sets(s: Subject, dtype) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
    base = s.inputs(NUM_OBSERVATIONS, torch.float64)
    sets = [(f"+-{m:g}", tuple((x * (m / 2)).to(dtype) for x in base))
            for m in EXTREME_MAGNITUDES]
    sets.append(("exact zeros", tuple(torch.zeros_like(x, dtype=dtype) for x in base)))
    kinks = sorted({0.0, *(float(k) for k in getattr(s.base, "kinks", ()) or ())})
    if kinks != [0.0]:
        values = torch.tensor(kinks, dtype=dtype)
        sets.append((f"the declared kinks {kinks}",
                     tuple(values[torch.arange(x.numel()) % len(kinks)].reshape(x.shape)
                           for x in base)))
    return sets


def check_extreme_inputs(s: Subject) -> CheckResult:
    """Inputs of large magnitude (plus and minus 1e2 and 1e4, in float32 and
    float64), exact zeros and the layer's declared ``kinks``: the outputs
    hold no NaN, and the derivatives are finite wherever every output is
    (an infinite output, an overflow of the format, may have infinite but
    never NaN derivatives). The classic failure: ``torch.where(X > 0, X,
    exp(X) - 1)``, whose unselected branch overflows and makes the gradient
    ``inf * 0 = NaN`` for large positive inputs."""
    name = "extreme_inputs"
    problems = []
    for dtype in (torch.float32, torch.float64):
        dt = str(dtype).replace("torch.", "")
        layer = s.copy(dtype)
        snap = s.snapshot(layer)
        for what, X in _extreme_sets(s, dtype):
            where = f"inputs at {what} ({dt})"
            try:
                s.restore(layer, snap)
                P = s.predict(layer, X)
                s.restore(layer, snap)
                Zs, grads = _gradients(s, layer, X)
            except LayerError as exc:
                if s.base.couples_observations and what == "exact zeros":
                    continue                 # batch statistics of a constant batch
                problems.append(f"{where}: {describe_exception(exc)}")
                continue
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{where}: {describe_exception(exc)}")
                continue
            for method, outs in (("predict", P), ("forward", Zs)):
                nan = [torch.isnan(z).any().item() for z in outs]
                if any(nan):
                    problems.append(f"{where}: {method} gives NaN at "
                                    f"{_first_non_finite([outs[nan.index(True)]])}")
            finite_out = all(torch.isfinite(z).all() for z in Zs)
            for dname, g in zip(s.derivative_names, grads):
                if g is None:
                    continue
                bad = (~torch.isfinite(g)) if finite_out else torch.isnan(g)
                if bad.any():
                    problems.append(f"{where}: {dname} is {_first_non_finite([g])} although "
                                    f"{'every output is finite' if finite_out else 'no output is NaN'}"
                                    f" (an unselected branch of torch.where that overflows "
                                    f"gives inf * 0 = NaN in the gradient: clamp its input)")
    if problems:
        return CheckResult(name, FAILED, "\n".join(problems[:6]))
    kinks = getattr(s.base, "kinks", ())
    return CheckResult(name, PASSED, f"inputs +-1e2, +-1e4, exact zeros"
                                     f"{' and the declared kinks' if kinks else ''} in float32 "
                                     f"and float64: outputs and derivatives finite")


# ---------------------------------------------------------------------------
# memory_layouts
# ---------------------------------------------------------------------------
def _strided(x: torch.Tensor) -> torch.Tensor:
    """``x``'s values in a non-contiguous tensor: a slice of a wider one
    (its rows padded by one element), so that no view flattens it."""
    wide = torch.zeros(*x.shape[:-1], x.shape[-1] + 1, dtype=x.dtype, device=x.device)
    wide[..., :-1] = x
    return wide[..., :-1]


def _layouts(x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    out = [("non-contiguous", _strided(x))]
    if x.dim() == 4:
        out.append(("channels-last", x.contiguous(memory_format=torch.channels_last)))
    out.append(("expanded (stride 0 over the observations)",
                x[:1].expand(x.shape)))
    return out


def _compare(problems: list[str], what: str, got, ref, names: Sequence[str]) -> None:
    problems += differences(names, ref, got, _SAME_RTOL, "from the contiguous case",
                            prefix=f"{what}: ")


def check_memory_layouts(s: Subject) -> CheckResult:
    """Non-contiguous, channels-last (4-d) and expanded (broadcast, stride
    0) inputs give the same outputs and derivatives as contiguous ones, and
    output gradients in those layouts the same derivatives (autograd hands
    a layer an expanded ``dLdZ`` after ``Z.sum()``, a channels-last one
    after a channels-last convolution)."""
    name = "memory_layouts"
    layer = s.copy()
    snap = s.snapshot(layer)
    X = s.inputs(NUM_OBSERVATIONS)
    z_names = ["Z"] if s.num_outputs == 1 else [f"Z{i + 1}" for i in range(s.num_outputs)]
    problems, notes = [], []
    cases = 0
    # a random training output may depend on the layout (torch.rand_like
    # follows it): only predict is compared for a stochastic layer
    stochastic = bool(getattr(s.base, "is_stochastic", False))

    def run(inputs, dLdZ=None):
        s.restore(layer, snap)
        P = s.predict(layer, inputs)
        if stochastic:
            return P, (), ()
        s.restore(layer, snap)
        Zs, grads = _gradients(s, layer, inputs, dLdZ)
        return P, Zs, grads

    def failed(what: str, exc: Exception) -> None:
        if "written-to tensor refers to a single memory location" in str(exc):
            # an in-place op on its argument: inputs_unchanged reports it
            notes.append(f"{what}: the layer works in place on it (see inputs_unchanged)")
        else:
            problems.append(f"{what}: {describe_exception(exc)}")

    for i in range(s.num_inputs):
        for layout, xv in _layouts(X[i]):
            what = f"{layout} {s.input_names[i]}"
            plain = tuple(x if k != i else xv.contiguous() for k, x in enumerate(X))
            varied = tuple(x if k != i else xv for k, x in enumerate(X))
            cases += 1
            try:
                ref = run(plain)
                got = run(varied)
            except Exception as exc:  # noqa: BLE001 - the finding
                failed(what, exc)
                continue
            _compare(problems, what, got[0], ref[0], [f"predict's {z}" for z in z_names])
            _compare(problems, what, got[1], ref[1], [f"forward's {z}" for z in z_names])
            _compare(problems, what, got[2], ref[2], s.derivative_names)
    dLdZ = () if stochastic else s.output_gradients(run(X)[1])
    for j, g in enumerate(dLdZ):
        for layout, gv in _layouts(g):
            what = f"{layout} dLd{z_names[j]}"
            cases += 1
            try:
                ref = run(X, tuple(d if k != j else gv.contiguous() for k, d in enumerate(dLdZ)))
                got = run(X, tuple(d if k != j else gv for k, d in enumerate(dLdZ)))
            except Exception as exc:  # noqa: BLE001
                failed(what, exc)
                continue
            _compare(problems, what, got[2], ref[2], s.derivative_names)
    if problems:
        problems.append("(a .view() of a tensor that is not contiguous fails or reads the "
                        "wrong elements: use .reshape(), or .contiguous() first)")
        return CheckResult(name, FAILED, "\n".join(problems[:6]))
    what = "inputs" + ("" if stochastic else " and output gradients")
    extra = "; predict only: the layer declares is_stochastic" if stochastic else ""
    return CheckResult(name, PASSED, f"non-contiguous, "
                                     f"{'channels-last, ' if X[0].dim() == 4 else ''}expanded "
                                     f"{what} ({cases} cases) agree with contiguous ones"
                       + extra + "".join(f"; {n}" for n in notes))


# ---------------------------------------------------------------------------
# observations
# ---------------------------------------------------------------------------
#: "several" here differs from the other tests' 2, an odd size
OTHER_BATCH_SIZES = (1, 3)


def check_observations(s: Subject) -> CheckResult:
    """Batch sizes 1 and 3 and an empty batch (0 observations): predict,
    forward and the derivatives run, the outputs have as many observations
    as the input and the size per observation of 2 observations, and an
    empty batch gives learnable derivatives of zero (a sum over no
    observations). A layer that couples observations (batch statistics)
    may refuse to train on 1 or 0 observations with a clear LayerError."""
    name = "observations"
    layer = s.copy()
    snap = s.snapshot(layer)
    ref = s.predict(layer, s.inputs(NUM_OBSERVATIONS))
    per_obs = [tuple(z.shape[1:]) for z in ref]
    problems, notes = [], []
    for n in (*OTHER_BATCH_SIZES, 0):
        obs = f"{n} observation{'s' if n != 1 else ''}" if n else "an empty batch"
        X = s.inputs(max(n, 1))
        X = tuple(x[:n] for x in X)
        s.restore(layer, snap)
        try:
            P = s.predict(layer, X)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"predict on {obs}: {describe_exception(exc)}")
            continue
        s.restore(layer, snap)
        try:
            Zs, grads = _gradients(s, layer, X)
        except Exception as exc:  # noqa: BLE001
            if s.base.couples_observations and n <= 1:
                notes.append(f"training on {obs} refused ({type(exc).__name__}), as a layer "
                             f"coupling observations may")
                Zs, grads = None, None
            else:
                problems.append(f"training on {obs}: {describe_exception(exc)}")
                continue
        for method, outs in (("predict", P), ("forward", Zs)):
            if outs is None:
                continue
            for i, z in enumerate(outs):
                want = (n, *per_obs[i])
                if tuple(z.shape) != want:
                    problems.append(f"{method} on {obs} gave an output of size "
                                    f"{tuple(z.shape)}, expected {want}")
                elif n and not torch.isfinite(z).all():
                    problems.append(f"{method} on {obs} gives {_first_non_finite([z])}")
        if grads is None:
            continue
        for k, (dname, g) in enumerate(zip(s.derivative_names, grads)):
            if g is None:
                continue
            if not torch.isfinite(g).all():
                problems.append(f"{dname} on {obs} is {_first_non_finite([g])}"
                                + (" (a mean over no observations is 0/0: learnable "
                                   "derivatives are sums)" if n == 0 else ""))
            elif n == 0 and k >= s.num_inputs and g.abs().max() > 0:
                problems.append(f"{dname} on an empty batch is {float(g.abs().max()):.3g}, "
                                f"expected 0 (a sum over no observations)")
    if problems:
        return CheckResult(name, FAILED, "\n".join(problems))
    return CheckResult(name, PASSED, "predict, forward and backward on 1, 3 and 0 "
                                     "observations: sizes, finite values, zero learnable "
                                     "derivatives for an empty batch"
                       + ("".join(f"; {n}" for n in notes)))


# ---------------------------------------------------------------------------
# low_precision
# ---------------------------------------------------------------------------
def _missing_kernel(exc: BaseException) -> bool:
    """PyTorch's "not implemented for 'Half'" (a kernel missing on this
    device), as opposed to an error of the layer."""
    text = str(exc)
    return "not implemented for" in text and ("Half" in text or "BFloat16" in text)


def check_low_precision(s: Subject) -> CheckResult:
    """float16 and bfloat16: predict, forward and the derivatives run, keep
    the format and agree with float32 on the same values within
    :data:`LOW_PRECISION_RTOL` of the largest float32 magnitude; a format
    PyTorch's kernels lack on this device is skipped, naming the op."""
    name = "low_precision"
    X64 = s.inputs(NUM_OBSERVATIONS)
    problems, ran, skipped = [], [], []
    # a stochastic layer's draws depend on the format on a GPU (the same seed
    # gives other numbers in float16): its training output and derivatives are
    # checked for format and finiteness, predict's output for its values too
    stochastic = bool(getattr(s.base, "is_stochastic", False))
    for dtype, rtol in LOW_PRECISION_RTOL.items():
        dt = str(dtype).replace("torch.", "")
        X = tuple(x.to(dtype) for x in X64)
        X32 = tuple(x.float() for x in X)
        try:
            low, ref = s.copy(dtype), s.copy(torch.float32)
            with torch.no_grad():               # the same learnable values in both
                for p, q in zip(low.learnables().values(), ref.learnables().values()):
                    q.copy_(p.float())
            P, P32 = s.predict(low, X), s.predict(ref, X32)
            # the same dLdZ values in both formats
            dLdZ = tuple(g.to(dtype) for g in s.output_gradients(P32))
            Zs32, grads32 = _gradients(s, ref, X32, tuple(g.float() for g in dLdZ))
            Zs, grads = _gradients(s, low, X, dLdZ)
        except Exception as exc:  # noqa: BLE001
            if _missing_kernel(exc):
                skipped.append(f"{dt}: {str(exc).strip().splitlines()[0]}")
            else:
                problems.append(f"{dt}: {describe_exception(exc)}")
            continue
        ran.append(dt)
        pairs = [("predict's output", a, b) for a, b in zip(P, P32)] + \
                [("forward's output", a, b) for a, b in zip(Zs, Zs32)] + \
                [(d, a, b) for d, a, b in zip(s.derivative_names, grads, grads32)
                 if a is not None and b is not None]
        for what, a, b in pairs:
            if a.dtype != dtype:
                problems.append(f"{dt} in: {what} is {str(a.dtype).replace('torch.', '')}")
                continue
            if not torch.isfinite(a).all():
                problems.append(f"{dt} in: {what} is {_first_non_finite([a])} (float32: "
                                f"finite)")
                continue
            if stochastic and what != "predict's output":
                continue
            scale = float(b.abs().max()) if b.numel() else 0.0
            err = float((a.float() - b).abs().max()) if b.numel() else 0.0
            if err > rtol * max(scale, 1e-3):
                problems.append(f"{dt} in: {what} differs from float32 by up to {err:.3g} "
                                f"(largest float32 magnitude {scale:.3g}; tolerance "
                                f"{rtol:g} of it)")
    if problems:
        return CheckResult(name, FAILED, "\n".join(problems[:6]))
    if not ran:
        return CheckResult(name, SKIPPED, "PyTorch lacks kernels on this device: "
                                          + "; ".join(skipped))
    msg = (f"{' and '.join(ran)}: outputs and derivatives keep the format and agree with "
           f"float32 (" + ", ".join(f"{str(d).replace('torch.', '')} within {r:g}"
                                   for d, r in LOW_PRECISION_RTOL.items()
                                   if str(d).replace('torch.', '') in ran) + ")")
    if stochastic:
        msg += ("; the training output and derivatives for format and finiteness only: "
                "the layer declares is_stochastic")
    if skipped:
        msg += "; skipped " + "; ".join(skipped)
    return CheckResult(name, PASSED, msg)
