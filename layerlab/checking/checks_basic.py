"""The checks of the layer's interface: signatures, that it runs, output
sizes, types, devices and the sizes of backward's derivatives.

Each check takes a :class:`~layerlab.checking.harness.Subject` and returns
a :class:`~layerlab.checking.report.CheckResult`; an exception raised by
the layer's code becomes a failure that quotes it and its line.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from ..errors import LayerError
from ..layer import Layer
from . import contract
from .harness import Subject, describe_exception
from .report import FAILED, PASSED, SKIPPED, CheckResult

__all__ = ["check_signatures", "check_runs", "check_output_size", "check_types",
           "check_device", "compare_devices", "check_backward_sizes", "NUM_OBSERVATIONS"]

#: "several observations", as in MATLAB's checkLayer
NUM_OBSERVATIONS = 2


def _result(name: str, problems: list[str], ok: str) -> CheckResult:
    if problems:
        return CheckResult(name, FAILED, "\n".join(problems))
    return CheckResult(name, PASSED, ok)


def _binds(fn, n: int) -> str | None:
    """``None`` if ``fn`` accepts ``n`` positional arguments, else why not."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None                     # builtins without a signature: trust them
    try:
        sig.bind(*range(n))
    except TypeError as exc:
        return f"{fn.__name__}{sig} cannot take {n} positional argument(s): {exc}"
    return None


def _count(values) -> int:
    return len(values) if isinstance(values, (tuple, list)) else 1


def check_signatures(s: Subject) -> CheckResult:
    """predict / forward / backward take and return what the contract says;
    backward returns one derivative per input and learnable, in order."""
    layer = s.copy()
    names = ", ".join(s.input_names)
    z_names = ["Z"] if s.num_outputs == 1 else [f"Z{i + 1}" for i in range(s.num_outputs)]
    zs = ", ".join(z_names)
    z_out = zs if s.num_outputs == 1 else f"({zs})"       # several outputs: a tuple
    problems = []
    if type(layer).predict is Layer.predict:
        problems.append("predict is not defined: every layer needs predict(self, X)")
    else:
        why = _binds(layer.predict, s.num_inputs)
        if why:
            problems.append(f"predict: {why}")
    if contract.defines_training_forward(layer):
        why = _binds(contract.training_forward(layer), s.num_inputs)
        if why:
            problems.append(f"forward: {why}")
    dz = ", ".join(f"dLd{z}" for z in z_names)
    want_back = f"backward({names}, {zs}, {dz}, memory) -> ({', '.join(s.derivative_names)})"
    n_back = s.num_inputs + 2 * s.num_outputs + 1
    if s.has_backward:
        why = _binds(layer.backward, n_back)
        if why:
            problems.append(f"backward: {why}")
    if problems:
        return CheckResult("signatures", FAILED, "\n".join(problems))
    X = s.inputs(NUM_OBSERVATIONS)
    try:
        s.predict(layer, X)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"predict: {describe_exception(exc)}")
    try:
        Zs, memory = s.forward(layer, X)
    except Exception as exc:  # noqa: BLE001
        return CheckResult("signatures", FAILED, "\n".join(
            problems + [f"forward: {describe_exception(exc)}"]))
    if s.has_backward:
        try:
            raw = s.backward_raw(layer, X, Zs, s.output_gradients(Zs), memory)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"backward: {describe_exception(exc)}")
        else:
            n = s.num_inputs + len(s.learnable_names)
            ok_type = isinstance(raw, (tuple, list)) or (n == 1 and isinstance(raw, torch.Tensor))
            if not ok_type or _count(raw) != n:
                got = (f"{_count(raw)} value(s)" if ok_type or isinstance(raw, (tuple, list))
                       else type(raw).__name__)
                problems.append(
                    f"backward returned {got}, expected {n}: ({', '.join(s.derivative_names)})"
                    f", one derivative per input, then one per learnable in the order they "
                    f"were declared")
    back = want_back if s.has_backward else "no backward (autograd differentiates forward)"
    return _result("signatures", problems,
                   f"predict({names}) -> {z_out}; forward({names}) -> ({z_out}, memory); "
                   f"{back}")


def _observations(n: int) -> str:
    return f"{n} observation{'s' if n != 1 else ''}"


def _first_non_finite(tensors) -> str | None:
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            flat = int(torch.nonzero(~torch.isfinite(t).flatten())[0])
            # np.unravel_index: torch's first call imports torch.fx (a second)
            idx = tuple(int(i) for i in np.unravel_index(flat, tuple(t.shape)))
            return f"{float(t.flatten()[flat])} at index {idx}"
    return None


def _refuses_one(s: Subject, exc: Exception, n: int) -> bool:
    """A layer that declares ``couples_observations`` (batch statistics) may
    refuse to train on a single observation, with a clear LayerError."""
    return n == 1 and s.base.couples_observations and isinstance(exc, LayerError)


def check_runs(s: Subject) -> CheckResult:
    """predict, forward and backward run without error on one observation
    and on several, with finite results (that they leave their inputs
    unchanged is ``inputs_unchanged``)."""
    problems, notes = [], []
    for n in (1, NUM_OBSERVATIONS):
        obs = _observations(n)
        layer = s.copy(torch.float32)
        X = s.inputs(n, torch.float32)
        for what, call in (("predict", lambda: s.predict(layer, X)),
                           ("forward", lambda: s.forward(layer, X)[0]),
                           ("backward" if s.has_backward else "autograd backward",
                            lambda: _derivative_list(s.derivatives(layer, X)[0]))):
            try:
                bad = _first_non_finite(call())
                if bad:
                    problems.append(f"{what} on {obs} gives {bad} for the test inputs (values "
                                    f"in [-2, -0.1] and [0.1, 2])")
                    break
            except Exception as exc:  # noqa: BLE001
                if what != "predict" and _refuses_one(s, exc, n):
                    notes.append(f"; training on {obs} refused, as a layer coupling "
                                 f"observations may: {exc}")
                else:
                    problems.append(f"{what} on {obs}: {describe_exception(exc)}")
                break
    return _result("runs", problems, f"predict, forward and backward on 1 and "
                                     f"{NUM_OBSERVATIONS} observations (float32)"
                   + "".join(notes))


def check_output_size(s: Subject) -> CheckResult:
    """The output size of one observation is the same for 1 and several
    observations, and the same from predict and forward."""
    problems, sizes = [], {}
    for n in (1, NUM_OBSERVATIONS):
        layer = s.copy(torch.float32)
        X = s.inputs(n, torch.float32)
        runs = [("predict", s.predict(layer, X))]
        try:
            runs.append(("forward", s.forward(layer, X)[0]))
        except LayerError as exc:
            if not _refuses_one(s, exc, n):
                raise
        for what, Zs in runs:
            for i, Z in enumerate(Zs):
                out = "output" if len(Zs) == 1 else f"output {i + 1}"
                if Z.dim() == 0 or Z.shape[0] != n:
                    problems.append(f"{what} on {_observations(n)} gave {out} of size "
                                    f"{tuple(Z.shape)}: its first dimension must be the "
                                    f"{_observations(n)}")
                sizes.setdefault((what, i), {})[n] = tuple(Z.shape[1:])
    for (what, i), by_n in sorted(sizes.items()):
        if len(by_n) > 1 and len(set(by_n.values())) > 1:
            problems.append(f"{what}'s output size per observation depends on the number of "
                            f"observations: {by_n[1]} for 1, {by_n[NUM_OBSERVATIONS]} for "
                            f"{NUM_OBSERVATIONS}")
    for i in range(s.num_outputs):
        p, f = sizes.get(("predict", i), {}), sizes.get(("forward", i), {})
        if p.get(NUM_OBSERVATIONS) != f.get(NUM_OBSERVATIONS):
            problems.append(f"predict and forward give outputs of different sizes: "
                            f"{p.get(NUM_OBSERVATIONS)} and {f.get(NUM_OBSERVATIONS)}")
    shown = ", ".join(str(sizes[("predict", i)][1]) for i in range(s.num_outputs)
                      if ("predict", i) in sizes)
    return _result("output_size", problems,
                   f"{shown} per observation for 1 and {NUM_OBSERVATIONS} observations, "
                   f"predict and forward alike")


def _derivative_list(raw) -> list:
    return list(raw) if isinstance(raw, (tuple, list)) else [raw]


def check_types(s: Subject) -> CheckResult:
    """float32 in gives float32 out, float64 in gives float64 out, for
    predict, forward and backward."""
    problems = []
    for dtype in (torch.float32, torch.float64):
        dt = str(dtype).replace("torch.", "")
        layer = s.copy(dtype)
        X = s.inputs(NUM_OBSERVATIONS, dtype)
        for what, Zs in (("predict", s.predict(layer, X)), ("forward", s.forward(layer, X)[0])):
            for Z in Zs:
                if Z.dtype != dtype:
                    problems.append(f"{what} returned {str(Z.dtype).replace('torch.', '')} "
                                    f"for {dt} input")
        raw, _ = s.derivatives(layer, X)
        params = list(layer.learnables().values())
        for name, g, like in zip(s.derivative_names, _derivative_list(raw),
                                 list(X) + params):
            if isinstance(g, torch.Tensor) and g.dtype != dtype:
                problems.append(f"backward returned {name} as {str(g.dtype).replace('torch.', '')}"
                                f" for {dt} input and learnables")
    return _result("types", problems, "float32 and float64 kept by predict, forward and "
                                      "backward")


def check_device(s: Subject) -> CheckResult:
    """On a GPU: outputs and derivatives stay on it, in the same type, and
    (for a deterministic layer) agree with the CPU's."""
    if not torch.cuda.is_available():
        return CheckResult("device", SKIPPED, "no GPU: torch.cuda.is_available() is False")
    device = torch.device("cuda", torch.cuda.current_device())
    with torch.random.fork_rng(devices=[device.index]):
        problems = compare_devices(s, device)
    return _result("device", problems, f"predict, forward and backward on {device} "
                                       f"({torch.cuda.get_device_name(device)}) in float32 "
                                       f"and float64, agreeing with the CPU")


def compare_devices(s: Subject, device: torch.device) -> list[str]:
    """Run predict, forward and backward on ``device`` and on the CPU, in
    float32 and float64; the problems found (wrong device or type; in
    float64, for a deterministic layer, values that differ)."""
    problems = []
    for dtype in (torch.float32, torch.float64):
        dt = str(dtype).replace("torch.", "")
        there, cpu = s.copy(dtype, device), s.copy(dtype)
        X_there = s.inputs(NUM_OBSERVATIONS, dtype, device)
        X_cpu = s.inputs(NUM_OBSERVATIONS, dtype)
        outs = {}
        for what, fn in (("predict", lambda l, X: s.predict(l, X)),
                         ("forward", lambda l, X: s.forward(l, X)[0]),
                         ("backward", lambda l, X: tuple(
                             g for g in _derivative_list(s.derivatives(l, X)[0])
                             if isinstance(g, torch.Tensor)))):
            got = fn(there, X_there)
            for t in got:
                if t.device != device or t.dtype != dtype:
                    problems.append(f"{what} on {device} ({dt} input) returned a "
                                    f"{str(t.dtype).replace('torch.', '')} tensor on {t.device}")
            outs[what] = (got, fn(cpu, X_cpu))
        if dtype == torch.float64 and not getattr(there, "is_stochastic", False):
            for what, (g, c) in outs.items():
                for a, b in zip(g, c):
                    if a.numel() == 0 or a.shape != b.shape:
                        continue
                    err = float((a.cpu() - b).abs().max())
                    if err > 1e-8 * max(1.0, float(b.abs().max())):
                        problems.append(f"{what} on {device} differs from the CPU by {err:.3g}")
    return problems


def check_backward_sizes(s: Subject) -> CheckResult:
    """dLdX has the size of X and each parameter derivative the size of its
    parameter."""
    layer = s.copy()
    X = s.inputs(NUM_OBSERVATIONS)
    raw, _ = s.derivatives(layer, X)
    grads = _derivative_list(raw)
    params = layer.learnables()
    likes = list(zip(s.input_names, X)) + list(params.items())
    problems = []
    if len(grads) != len(likes):
        return CheckResult("backward_sizes", FAILED,
                           f"backward returned {len(grads)} value(s), expected {len(likes)}: "
                           f"({', '.join(s.derivative_names)})")
    for name, g, (what, like) in zip(s.derivative_names, grads, likes):
        want = tuple(like.shape)
        if g is None:
            if s.has_backward:
                problems.append(f"{name} is None although it is needed (needs_gradient is "
                                f"True outside training's bridge): return a tensor of size "
                                f"{want}")
            continue
        if not isinstance(g, torch.Tensor):
            problems.append(f"{name} is a {type(g).__name__}, expected a tensor of size {want}")
            continue
        got = tuple(g.shape)
        if got != want:
            hint = ""
            if what not in s.input_names and got[1:] == want and got[:1] == (X[0].shape[0],):
                hint = (f": it looks like it was not summed over the {X[0].shape[0]} "
                        f"observations (parameter derivatives are sums over the mini-batch)")
            elif what not in s.input_names and g.numel() == like.numel():
                hint = f": same number of elements, reshape it to {want}"
            kind = "input" if what in s.input_names else "learnable"
            problems.append(f"{name} has size {got}, expected {want}, the size of "
                            f"{kind} {what}{hint}")
    return _result("backward_sizes", problems,
                   ", ".join(f"{n} {tuple(l.shape)}" for n, (_, l) in
                             zip(s.derivative_names, likes)))
