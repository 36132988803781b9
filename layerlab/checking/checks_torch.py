"""The checks of PyTorch's program transforms: ``torch.func.vmap`` (per-sample
outputs and gradients, ``vmap``) and ``torch.compile`` (``compile``).

Both run the layer as PyTorch code sees it: ``layer(X)`` in training or
inference mode, through the autograd bridge for a hand-written backward.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..autograd_bridge import run_layer
from ..layer import Layer
from .checks_repeat import first_difference
from .harness import Subject, as_tuple, describe_exception
from .report import FAILED, PASSED, SKIPPED, CheckResult
from . import contract

__all__ = ["check_vmap", "check_compile", "COMPILE_BACKEND", "VMAP_OBSERVATIONS"]

#: the backend of the ``compile`` test: TorchDynamo's tracing and
#: AOTAutograd's joint forward and backward graph, where layers go wrong
#: under ``torch.compile`` (graph capture, the autograd.Function, in-place
#: ops, state updates); ``"inductor"`` adds code generation (about 40 s on
#: two CPU cores for a first layer, hence not the default)
COMPILE_BACKEND = "aot_eager"
VMAP_OBSERVATIONS = 3
_SAME_RTOL = 1e-9


def _compare(problems: list[str], what: str, names: Sequence[str], got, ref,
             rtol: float = _SAME_RTOL) -> None:
    for n, a, b in zip(names, got, ref):
        if a is None and b is None:
            continue
        if (a is None) != (b is None):
            problems.append(f"{what}: {n} is {'missing' if a is None else 'present'} "
                            f"(the reference has {'none' if b is None else 'one'})")
            continue
        diff = first_difference(b, a, rtol)
        if diff is not None:
            problems.append(f"{what}: {n} differs by up to {diff[0]:.3g} (at index {diff[1]})")


# ---------------------------------------------------------------------------
# vmap
# ---------------------------------------------------------------------------
def check_vmap(s: Subject) -> CheckResult:
    """Under ``torch.func.vmap`` over the observations, predict and the
    input gradient of the training forward (``vmap(grad(...))``, per-sample
    gradients) equal a loop over the observations. Skipped for a layer
    that declares ``couples_observations``; the gradient part is left out
    for one that declares ``is_stochastic`` (vmap draws its random numbers
    differently from a loop)."""
    name = "vmap"
    if s.base.couples_observations:
        return CheckResult(name, SKIPPED, "the layer declares couples_observations = True: "
                                          "an observation's training output depends on the "
                                          "others, so vmap over observations cannot equal a "
                                          "loop")
    if s.has_backward and not contract.bridge_supports_torch_func():
        return CheckResult(name, SKIPPED, "the autograd bridge does not support torch.func "
                                          "for a hand-written backward yet (no setup_context)")
    from torch.func import vmap
    layer = s.copy()
    snap = s.snapshot(layer)
    n, no = VMAP_OBSERVATIONS, s.num_outputs
    X = s.inputs(n)
    z_names = ["Z"] if no == 1 else [f"Z{i + 1}" for i in range(no)]
    problems = []

    def predict_one(*xs):
        Zs = s.predict(layer, tuple(x.unsqueeze(0) for x in xs))
        return tuple(z.squeeze(0) for z in Zs)

    loop = [s.predict(layer, tuple(x[i:i + 1] for x in X)) for i in range(n)]
    ref = tuple(torch.cat([row[k] for row in loop]) for k in range(no))
    try:
        got = vmap(predict_one)(*X)
    except Exception as exc:  # noqa: BLE001 - the finding
        return CheckResult(name, FAILED, f"vmap of predict raised {describe_exception(exc)}")
    _compare(problems, "vmap of predict", [f"{z}" for z in z_names], got, ref)
    part = "predict"
    if not getattr(s.base, "is_stochastic", False):
        outcome = _per_sample_gradients(s, layer, snap, X, ref, problems)
        if isinstance(outcome, CheckResult):
            return outcome
        part = outcome
    if problems:
        return CheckResult(name, FAILED, "\n".join(problems))
    extra = "" if "grad" in part else "; gradients not compared: the layer declares " \
                                      "is_stochastic"
    if part.startswith("predict;"):
        part, extra = "predict", part[len("predict"):]
    return CheckResult(name, PASSED, f"{part} under torch.func.vmap over {n} observations "
                                     f"equal a loop over them{extra}")


def _per_sample_gradients(s: Subject, layer, snap, X, ref, problems: list[str]):
    """``vmap(grad(loss))`` over the observations: per-sample derivatives
    of the training forward with respect to the inputs and (through
    ``torch.func.functional_call``) the learnables, against a loop over
    the observations. Returns what was compared, or a CheckResult that
    ends the test."""
    from torch.func import functional_call, grad, vmap
    ni = s.num_inputs
    dLdZ = s.output_gradients(ref)
    # the Module's forward runs the layer (the new contract): learnables
    # can be passed in, as per-sample gradient code does
    with_params = hasattr(Layer, "training_forward")
    # by their paths in the module tree (a wrapped module's parameters are
    # learnables under shorter names)
    paths = {id(p): path for path, p in layer.named_parameters()}
    params = {paths[id(p)]: p.detach() for p in layer.learnables().values()} \
        if with_params else {}

    def loss_one(weights, *args):
        xs, gs = args[:ni], args[ni:]
        xs = tuple(x.unsqueeze(0) for x in xs)
        if with_params:
            Zs = as_tuple(functional_call(layer, weights, xs))
        else:
            Zs = as_tuple(run_layer(layer, xs, training=True))
        return sum((g.unsqueeze(0) * z).sum() for g, z in zip(gs, Zs))

    n = X[0].shape[0]
    loop = []
    for i in range(n):
        s.restore(layer, snap)
        g, _ = s.training_gradients(layer, tuple(x[i:i + 1] for x in X),
                                    tuple(d[i:i + 1] for d in dLdZ))
        loop.append(g)
    ref_grads = [torch.cat([row[k] for row in loop]) for k in range(ni)]
    ref_grads += [None if loop[0][ni + k] is None else
                  torch.stack([row[ni + k] for row in loop]) for k in range(len(params))]
    argnums = tuple(range(ni + 1))
    in_dims = (None,) + (0,) * (ni + len(dLdZ))
    try:
        got = vmap(grad(loss_one, argnums=argnums), in_dims=in_dims)(params, *X, *dLdZ)
    except Exception as exc:  # noqa: BLE001
        text = str(exc)
        if "randomness" in text and "vmap" in text:
            # a random training forward not declared: determinism reports it
            return "predict; gradients not compared: the training forward draws random " \
                   "numbers (see determinism)"
        if "mutate a captured Tensor" in text and s.state_names:
            return "predict; gradients not compared: the training forward updates State " \
                   "in place, which torch.func cannot transform"
        return CheckResult("vmap", FAILED, "\n".join(problems + [
            f"vmap(grad(...)) of the training forward (per-sample gradients) raised "
            f"{describe_exception(exc)}"]))
    got_grads = list(got[1:]) + [got[0].get(k) for k in params]
    names = s.derivative_names[:ni] + [s.derivative_names[ni + k] for k in range(len(params))]
    _compare(problems, "vmap(grad(...)) of the training forward", names, got_grads, ref_grads)
    what = "inputs and learnables" if params else "inputs"
    return f"predict and per-sample gradients with respect to the {what} (vmap(grad(...)))"


# ---------------------------------------------------------------------------
# compile
# ---------------------------------------------------------------------------
def _fresh_caller():
    """``call(layer, *X) -> layer(*X)`` with a code object of its own:
    TorchDynamo caches compiled code per code object, so each check gets
    its own cache (no recompile limit shared between layers)."""
    namespace: dict = {}
    exec("def call(layer, *X):\n    return layer(*X)\n", namespace)  # noqa: S102 - fixed text
    return namespace["call"]


def check_compile(s: Subject, backend: str = COMPILE_BACKEND) -> CheckResult:
    """``torch.compile`` of the layer agrees with eager PyTorch: in
    inference (``layer.eval()``) the output, in training the output, the
    derivatives and the State after the step (running statistics), in
    float64. A stochastic layer's training output is compared only under
    the same random stream, so it is left out."""
    name = "compile"
    layer, eager = s.copy(), s.copy()
    X = s.inputs(2)
    call = torch.compile(_fresh_caller(), backend=backend)
    z_names = ["Z"] if s.num_outputs == 1 else [f"Z{i + 1}" for i in range(s.num_outputs)]
    problems = []
    try:
        layer.eval(), eager.eval()
        with torch.no_grad():
            got = as_tuple(call(layer, *X))
            ref = as_tuple(eager(*X))
        _compare(problems, "inference", z_names, got, ref)
        if not getattr(s.base, "is_stochastic", False):
            layer.train(), eager.train()
            dLdZ = s.output_gradients(ref)
            results = []
            for fn, l in ((lambda *x: call(layer, *x), layer), (eager, eager)):
                s.reseed()
                Xg = [x.clone().requires_grad_(True) for x in X]
                params = [p for p in l.learnables().values() if p.requires_grad]
                with torch.enable_grad():
                    Zs = as_tuple(fn(*Xg))
                    L = sum((g * z).sum() for g, z in zip(dLdZ, Zs))
                    grads = torch.autograd.grad(L, Xg + params, allow_unused=True)
                results.append((tuple(z.detach() for z in Zs), grads,
                                list(s.snapshot(l).values())))
            (Zc, gc, sc), (Ze, ge, se) = results
            _compare(problems, "training", z_names, Zc, Ze)
            _compare(problems, "training", s.derivative_names, gc, ge)
            _compare(problems, "training", [f"State '{n}' after the step"
                                            for n in s.state_names], sc, se)
    except Exception as exc:  # noqa: BLE001 - the finding
        text = describe_exception(exc)
        return CheckResult(name, FAILED, f"torch.compile (backend {backend!r}) raised {text}")
    if problems:
        problems.append(f"(torch.compile with backend {backend!r} against eager PyTorch, "
                        f"float64)")
        return CheckResult(name, FAILED, "\n".join(problems))
    what = "inference output" if getattr(s.base, "is_stochastic", False) else \
        "inference and training outputs, derivatives and State"
    return CheckResult(name, PASSED, f"torch.compile (backend {backend!r}) agrees with eager: "
                                     f"{what}")
