"""``check_layer``: prove a layer correct before it trains, as MATLAB's
``checkLayer`` does, and the checks ``train_network`` runs on a network's
user-defined layers."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable, TextIO

import torch

from ..errors import LayerError
from ..layer import InputLayer, Layer
from . import checks_basic as basic
from . import checks_behaviour as behaviour
from . import checks_repeat as repeat
from . import checks_robustness as robust
from . import checks_saving as saving
from . import checks_torch as pytorch
from . import contract
from .gradients import MAX_ELEMENTS, check_gradients, check_second_derivatives
from .harness import Subject, describe_exception
from .report import FAILED, SKIPPED, CheckReport, CheckResult, LayerCheckError
from .subjects import FunctionLayer, as_layer

__all__ = ["check_layer", "check_function", "TEST_NAMES", "TRAINING_TESTS",
           "FUNCTION_TESTS", "is_user_layer", "check_network_layers"]

# (name, check, the tests it needs to have passed to mean anything)
_TESTS: list[tuple[str, Callable[..., CheckResult], tuple[str, ...]]] = [
    ("signatures", basic.check_signatures, ()),
    ("runs", basic.check_runs, ()),
    ("output_size", basic.check_output_size, ("runs",)),
    ("types", basic.check_types, ("runs",)),
    ("device", basic.check_device, ("runs",)),
    ("backward_sizes", basic.check_backward_sizes, ("signatures", "runs")),
    ("gradients", check_gradients, ("signatures", "runs", "backward_sizes")),
    ("inputs_unchanged", repeat.check_inputs_unchanged, ("signatures", "runs")),
    ("backward_twice", repeat.check_backward_twice, ("runs", "backward_sizes")),
    ("train_vs_predict", behaviour.check_train_vs_predict, ("runs", "output_size")),
    ("independent_observations", behaviour.check_independent_observations,
     ("runs", "output_size")),
    ("observations", robust.check_observations, ("runs", "output_size", "backward_sizes")),
    ("frozen_learnables", behaviour.check_frozen_learnables,
     ("signatures", "runs", "backward_sizes")),
    ("state", behaviour.check_state, ("runs",)),
    ("memory_layouts", robust.check_memory_layouts, ("runs", "backward_sizes")),
    ("extreme_inputs", robust.check_extreme_inputs, ("runs", "backward_sizes")),
    ("determinism", repeat.check_determinism, ("runs", "backward_sizes")),
    ("vmap", pytorch.check_vmap, ("runs", "output_size", "backward_sizes")),
    ("second_derivatives", check_second_derivatives, ("runs", "backward_sizes", "gradients")),
    ("low_precision", robust.check_low_precision, ("runs", "types", "backward_sizes")),
    ("save_load", saving.check_save_load, ("runs", "types")),
    ("compile", pytorch.check_compile, ("runs", "backward_sizes")),
    # a network of the layer (saving builds one) refuses an output of another type,
    # so both saving tests need "types". Last: its new process starts before the
    # first test and runs meanwhile
    ("save_load_fresh_process", saving.check_save_load_fresh_process, ("runs", "types")),
]

#: the tests, in the order they run
TEST_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _TESTS)

#: the fast subset ``train_network`` runs before training (``check_layers``):
#: what training in float32 relies on. Left out: the seconds-long ones
#: (``compile``, the save/load round trips: a layer class defined inside a
#: function trains fine but cannot be loaded back) and the PyTorch features
#: training does not use (``vmap``, ``second_derivatives``, ``low_precision``,
#: ``extreme_inputs``, ``memory_layouts``, ``determinism``, ``observations``)
TRAINING_TESTS: tuple[str, ...] = (
    "signatures", "runs", "output_size", "types", "device", "backward_sizes", "gradients",
    "inputs_unchanged", "backward_twice", "train_vs_predict", "independent_observations",
    "frozen_learnables", "state")

#: the tests ``check_function`` runs (and those they need)
FUNCTION_TESTS: tuple[str, ...] = (
    "runs", "output_size", "types", "backward_sizes", "gradients", "inputs_unchanged",
    "backward_twice", "memory_layouts", "extreme_inputs", "determinism", "vmap",
    "second_derivatives")


def _size(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    ok = isinstance(value, (tuple, list, torch.Size)) and len(value) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    if not ok:
        raise LayerError(f"{what}: expected one observation's size, positive integers such "
                         f"as (20, 24, 24), got {value!r}")
    return tuple(int(v) for v in value)


def _input_sizes(layer: Layer, input_size: Any) -> list[tuple[int, ...]]:
    """One size per input: a size, or (for several inputs) a list of sizes;
    a single size is used for every input."""
    n = layer.num_inputs
    nested = isinstance(input_size, (tuple, list)) and len(input_size) > 0 and all(
        isinstance(s, (tuple, list, torch.Size)) for s in input_size)
    if not nested:
        return [_size(input_size, "check_layer input_size")] * n
    if len(input_size) != n:
        raise LayerError(f"check_layer input_size: layer {contract.label(layer)} takes {n} "
                         f"input(s), got {len(input_size)} sizes {list(input_size)!r}")
    return [_size(s, f"check_layer input_size[{i}]") for i, s in enumerate(input_size)]


def _names(value, what: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    unknown = [t for t in names if t not in TEST_NAMES]
    if unknown:
        raise LayerError(f"check_layer {what}: unknown test(s) {unknown}; the tests are "
                         f"{list(TEST_NAMES)}")
    return names


def _rng_in_constructor(layer: Layer) -> str | None:
    """A warning when constructing the layer again (with the arguments it
    was made with) draws from PyTorch's global random generator: its initial
    values then escape ``training_options(seed=...)``."""
    if "_config" not in layer.__dict__ or not is_user_layer(layer):
        return None
    with torch.random.fork_rng(devices=[]):
        before = torch.get_rng_state()
        try:
            again = type(layer)(**layer.config)
        except Exception:  # noqa: BLE001 - not constructible again: nothing to say
            return None
        after = torch.get_rng_state()
        # draws declared with Learnable(draw=...) are redrawn under the seed
        # when a network is built: what they consume is fine
        torch.set_rng_state(before)
        for draw in again.pending_draws().values():
            draw()
        drew = not torch.equal(after, torch.get_rng_state())
    if not drew:
        return None
    return (f"{type(layer).__name__}.__init__ draws random numbers (torch.rand & co.), so its "
            f"initial values are not reproducible with training_options(seed=...): declare "
            f"them with ll.Learnable(draw=lambda: torch.rand(...)), or draw them in "
            f"initialize(self, input_sizes), which the network calls under the seed")


def check_layer(layer: Layer | torch.nn.Module, input_size, *,
                tests: Iterable[str] | None = None, skip: Iterable[str] = (),
                verbose: bool = True, stream: TextIO | None = None, seed: int = 0,
                max_elements: int = MAX_ELEMENTS, initialize: bool = True,
                compile_backend: str = pytorch.COMPILE_BACKEND) -> CheckReport:
    """Check a layer (or any ``torch.nn.Module``) against the layer
    contract, its own derivatives and PyTorch's transforms.

    Args:
        layer: a :class:`layerlab.Layer`, or a ``torch.nn.Module`` (wrapped
            as a layer with ``layerlab.ModuleLayer``). Left unchanged: the
            tests run on copies, after ``initialize([input_size])``.
        input_size: one observation's size, e.g. ``(20, 24, 24)`` for
            ``(C, H, W)`` images or ``(10,)`` for features; for a layer with
            several inputs, a list of sizes (one size is used for all).
            Observations are always the first dimension.
        tests: the names of the tests to run (default: all, see
            :data:`TEST_NAMES`); ``skip``: tests to leave out.
        verbose: print the report while the tests run, one line per test
            (default). The returned report's ``str()`` is a single summary
            line, so ``print(check_layer(...))`` does not print it twice;
            ``report.text`` is the whole report (for ``verbose=False``).
        stream: where to print (default standard output).
        seed: fixes the order of the test data and the randomness of a
            stochastic layer. The caller's random state is left as it was.
        max_elements: the gradient test checks every element of a tensor
            with at most this many, otherwise this many spread over it
            (plus the suspicious ones and a dense direction).
        initialize: call ``initialize([input_size])`` on the copy first
            (default); False for a layer a network has already initialised
            (``initialize`` is meant to run once).
        compile_backend: the ``torch.compile`` backend of the ``compile``
            test (default ``"aot_eager"``: graph capture and AOTAutograd;
            ``"inductor"`` also generates code, tens of seconds on a CPU).

    Returns:
        A :class:`~layerlab.checking.report.CheckReport`: ``report.passed``,
        ``report.results`` (name, status, message, seconds of each test),
        ``report["gradients"]``, ``report.warnings``, ``report.text``.

    Examples:
        >>> report = check_layer(layerlab.ELU(3), (3, 4, 4), verbose=False)
        >>> report.passed
        True

    The tests (each passed, failed or skipped, with the reason); a test
    whose prerequisite failed is skipped, naming it:

    * ``signatures``: predict / forward / backward take and return what the
      contract says; backward returns one derivative per input and per
      learnable, in declaration order.
    * ``runs``: predict, forward and backward run on 1 and 2 observations
      (float32) with finite results.
    * ``output_size``: the same output size per observation for 1 and 2
      observations, from predict and forward.
    * ``types``: float32 and float64 kept by predict, forward and backward.
    * ``device``: the same on a GPU, agreeing with the CPU (skipped without).
    * ``backward_sizes``: each derivative has the size of its input or
      learnable.
    * ``gradients``: in float64, the derivatives (the layer's backward, or
      autograd's for a layer without one) against 5-point central finite
      differences of the training forward, for every input and learnable:
      absolute or relative error at most 1e-6 (see
      :mod:`layerlab.checking.gradients`).
    * ``inputs_unchanged``: predict and forward leave X, backward X, Z and
      dLdZ unchanged.
    * ``backward_twice``: two backward passes over one graph
      (``retain_graph=True``) agree; backward leaves its memory unchanged.
    * ``train_vs_predict``: forward and predict agree, unless the layer
      declares ``differs_in_training``.
    * ``independent_observations``: one observation's output does not
      depend on the others (predict always; forward unless the layer
      declares ``couples_observations``).
    * ``observations``: batch sizes 1 and 3 and an empty batch.
    * ``frozen_learnables``: a frozen learnable gets no gradient and no
      update, and the other derivatives are unchanged.
    * ``state``: predict leaves State unchanged; forward updates it (when
      the layer declares ``differs_in_training``) keeping size and type.
    * ``memory_layouts``: non-contiguous, channels-last and expanded inputs
      and output gradients give the contiguous results.
    * ``extreme_inputs``: +-1e2, +-1e4 (float32 and float64), exact zeros
      and the declared ``kinks``: no NaN outputs, finite derivatives.
    * ``determinism``: two runs give identical results, unless the layer
      declares ``is_stochastic`` (or a ``determinism_tolerance``).
    * ``vmap``: ``torch.func.vmap`` of predict and of the input gradient
      equals a loop over the observations (skipped for
      ``couples_observations``).
    * ``second_derivatives``: the derivative of the first derivative
      against its finite differences; fails unless the layer declares
      ``backward_is_differentiable = False``.
    * ``low_precision``: float16 and bfloat16 keep their type and agree
      with float32 within the format's tolerance (for a stochastic layer,
      whose draws differ between formats on a GPU, predict only).
    * ``save_load``: a round trip through :func:`layerlab.save` and
      :func:`layerlab.load`.
    * ``compile``: ``torch.compile`` agrees with eager in training and
      inference.
    * ``save_load_fresh_process``: the round trip into a new Python
      process.

    A ``warning`` line notes what fails no test: a user layer whose
    constructor draws random numbers (its initial values escape the
    training seed; draw them in ``initialize``).
    """
    layer = as_layer(layer)
    sizes = _input_sizes(layer, input_size)
    selected = set(_names(tests, "tests")) if tests is not None else set(TEST_NAMES)
    selected -= set(_names(skip, "skip"))
    if not isinstance(max_elements, int) or isinstance(max_elements, bool) or max_elements < 2:
        raise LayerError(f"check_layer max_elements: expected an integer >= 2, "
                         f"got {max_elements!r}")
    out = stream if stream is not None else sys.stdout
    report = CheckReport(contract.label(layer), sizes)

    def emit(text: str) -> None:
        if verbose:
            print(text, file=out, flush=True)

    emit(report.header())
    start = time.perf_counter()
    rng = torch.get_rng_state()       # the checks re-seed; the caller's stream stays
    # The checks run thousands of evaluations of small tensors, where
    # intra-op threads cost more than they give (on a busy 2-core machine
    # 10x more: 14 s instead of 1.3 s for the seed's ELU); restored after.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    subject = None
    try:
        warning = _rng_in_constructor(layer)
        if warning:
            report.warnings.append(warning)
            emit(report.warning_line(warning))
        try:
            subject = Subject(layer, sizes, seed, initialize=initialize)
        except Exception as exc:  # noqa: BLE001 - the layer's own initialize failed
            report.results.append(CheckResult(
                "initialize", FAILED, f"initialize({sizes}) raised {describe_exception(exc)}"))
            emit(report.results[-1].line())
        if subject is not None and "save_load_fresh_process" in selected:
            subject.background["fresh_process"] = saving.start_fresh_process(subject)
        status: dict[str, str] = {}
        for name, check, requires in _TESTS if subject is not None else []:
            if name not in selected:
                continue
            t0 = time.perf_counter()
            # a prerequisite failed, or was itself not run for that reason
            blocked = [r for r in requires if status.get(r) in (FAILED, "blocked")]
            if blocked:
                why = [r if status[r] == FAILED else f"{r} (not run)" for r in blocked]
                result = CheckResult(name, SKIPPED, f"not run: {', '.join(why)} failed")
            else:
                try:
                    if check is check_gradients:
                        result = check(subject, max_elements=max_elements)
                    elif check is pytorch.check_compile:
                        result = check(subject, backend=compile_backend)
                    else:
                        result = check(subject)
                except Exception as exc:  # noqa: BLE001 - the layer's code raised
                    result = CheckResult(name, FAILED, describe_exception(exc))
            result.seconds = time.perf_counter() - t0
            status[name] = "blocked" if blocked else result.status
            report.results.append(result)
            emit(result.line())
    finally:
        if subject is not None:
            for handle in subject.background.values():
                handle.close()
        torch.set_rng_state(rng)
        torch.set_num_threads(threads)
    report.seconds = time.perf_counter() - start
    emit("\n" + report.footer())
    return report


def check_function(fn: Callable[..., Any], *example_inputs: torch.Tensor,
                   tests: Iterable[str] | None = None, skip: Iterable[str] = (),
                   verbose: bool = True, stream: TextIO | None = None,
                   seed: int = 0) -> CheckReport:
    """Check a function of tensors (``MyFunction.apply`` of a
    ``torch.autograd.Function``, or any PyTorch code): its derivatives
    (the Function's ``backward``) against finite differences, second
    derivatives, ``vmap``, memory layouts, extreme inputs and determinism
    (:data:`FUNCTION_TESTS`).

    Args:
        fn: the function; called as ``fn(*inputs)``, it returns a tensor or
            a tuple of tensors.
        example_inputs: one tensor per argument, giving the shapes; the
            first dimension of each is the observations (the batch). The
            checks draw their own values in those shapes (see
            :mod:`~layerlab.checking.testdata`).
        tests, skip, verbose, stream, seed: as for :func:`check_layer`.

    Examples:
        >>> report = check_function(torch.tanh, torch.zeros(2, 5), verbose=False)
        >>> report.passed
        True
    """
    if not example_inputs or not all(isinstance(x, torch.Tensor) and x.dim() >= 1
                                     for x in example_inputs):
        raise LayerError("check_function: give one example tensor per argument, each with "
                         "the observations as first dimension, e.g. "
                         "check_function(fn, torch.zeros(2, 5))")
    with torch.no_grad():
        out = fn(*(torch.zeros_like(x, dtype=torch.float64) for x in example_inputs))
    n_out = len(out) if isinstance(out, (tuple, list)) else 1
    layer = FunctionLayer(fn, num_inputs=len(example_inputs), num_outputs=n_out)
    chosen = set(_names(tests, "tests")) if tests is not None else set(FUNCTION_TESTS)
    sizes = [tuple(x.shape[1:]) or (1,) for x in example_inputs]
    if any(x.dim() == 1 for x in example_inputs):
        raise LayerError("check_function: each example input needs a dimension after the "
                         "observations (e.g. torch.zeros(2, 1) for scalars per observation)")
    return check_layer(layer, sizes if len(sizes) > 1 else sizes[0],
                       tests=[t for t in TEST_NAMES if t in chosen], skip=skip,
                       verbose=verbose, stream=stream, seed=seed)


def is_user_layer(layer: Layer) -> bool:
    """Whether the layer's class comes from outside the layerlab package."""
    module = type(layer).__module__ or ""
    return module != "layerlab" and not module.startswith("layerlab.")


def _network_input_sizes(net, layer: Layer) -> list[tuple[int, ...]]:
    if isinstance(layer, InputLayer):
        return [tuple(layer.input_size)]
    return [tuple(net.sizes[src][k]) for src, k in net.graph.sources(layer.name)]


def check_network_layers(net, include_builtin: bool = False, *,
                         stream: TextIO | None = None, verbose: bool = False,
                         raise_on_failure: bool = True) -> list[CheckReport]:
    """Check the layers of a sized :class:`~layerlab.Network` with their
    input sizes in it: the user-defined ones (classes from outside
    layerlab), or all with ``include_builtin``. Raises a
    :class:`~layerlab.checking.report.LayerCheckError` carrying the failing
    reports (unless ``raise_on_failure`` is False).

    The tests are the fast subset :data:`TRAINING_TESTS` (what training in
    float32 relies on); ``check_layer`` runs them all."""
    tests = list(TRAINING_TESTS)
    reports = []
    for layer in net.layers:
        if include_builtin or is_user_layer(layer):
            reports.append(check_layer(layer, _network_input_sizes(net, layer), tests=tests,
                                       verbose=verbose, stream=stream, initialize=False))
    failed = [r for r in reports if not r.passed]
    if failed and raise_on_failure:
        names = ", ".join(f"{r.layer} ({', '.join(r.failed_tests)})" for r in failed)
        text = "\n\n".join(r.text for r in failed)
        raise LayerCheckError(
            f"layer check failed before training for {names}; fix the layer, or skip the "
            f"check with training_options(..., check_layers=False). The tests run before "
            f"training: {', '.join(TRAINING_TESTS)} (ll.check_layer runs all "
            f"{len(TEST_NAMES)})\n\n{text}", failed)
    return reports
