"""``check_layer``: prove a layer correct before it trains, as MATLAB's
``checkLayer`` does, and the checks ``train_network`` runs on a network's
user-defined layers."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable, TextIO

import torch

from ..autograd_bridge import layer_label
from ..errors import LayerError
from ..layer import InputLayer, Layer
from . import checks_basic as basic
from . import checks_behaviour as behaviour
from .gradients import MAX_ELEMENTS, check_gradients, check_second_derivatives
from .harness import Subject, describe_exception
from .report import FAILED, SKIPPED, CheckReport, CheckResult, LayerCheckError

__all__ = ["check_layer", "TEST_NAMES", "is_user_layer", "check_network_layers"]

# (name, check, the tests it needs to have passed to mean anything)
_TESTS: list[tuple[str, Callable[..., CheckResult], tuple[str, ...]]] = [
    ("signatures", basic.check_signatures, ()),
    ("runs", basic.check_runs, ()),
    ("output_size", basic.check_output_size, ("runs",)),
    ("types", basic.check_types, ("runs",)),
    ("device", basic.check_device, ("runs",)),
    ("backward_sizes", basic.check_backward_sizes, ("signatures", "runs")),
    ("gradients", check_gradients, ("signatures", "runs", "backward_sizes")),
    ("train_vs_predict", behaviour.check_train_vs_predict, ("runs", "output_size")),
    ("independent_observations", behaviour.check_independent_observations,
     ("runs", "output_size")),
    ("frozen_learnables", behaviour.check_frozen_learnables,
     ("signatures", "runs", "backward_sizes")),
    ("state", behaviour.check_state, ("runs",)),
    ("save_load", behaviour.check_save_load, ("runs",)),
    ("second_derivatives", check_second_derivatives, ("runs", "gradients")),
]

#: the tests, in the order they run
TEST_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _TESTS)


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
        raise LayerError(f"check_layer input_size: layer {layer_label(layer)} takes {n} "
                         f"input(s), got {len(input_size)} sizes {list(input_size)!r}")
    return [_size(s, f"check_layer input_size[{i}]") for i, s in enumerate(input_size)]


def check_layer(layer: Layer, input_size, *, tests: Iterable[str] | None = None,
                verbose: bool = True, stream: TextIO | None = None, seed: int = 0,
                max_elements: int = MAX_ELEMENTS, initialize: bool = True) -> CheckReport:
    """Check a layer against the layer contract and its own derivatives.

    Args:
        layer: the layer (left unchanged: the tests run on copies, after
            ``initialize([input_size])``).
        input_size: one observation's size, e.g. ``(20, 24, 24)`` for
            ``(C, H, W)`` images or ``(10,)`` for features; for a layer with
            several inputs, a list of sizes (one size is used for all).
            Observations are always the first dimension, so the tests run on
            1 and on 2 observations.
        tests: the names of the tests to run (default: all, see
            :data:`TEST_NAMES`).
        verbose: print each test's line and the summary.
        stream: where to print (default standard output).
        seed: fixes the order of the test data and the randomness of a
            stochastic layer. The caller's random state is left as it was.
        max_elements: the gradient test checks every element of a tensor
            with at most this many, otherwise this many spread over it
            (plus the suspicious ones and a dense direction).
        initialize: call ``initialize([input_size])`` on the copy first
            (default); False for a layer a network has already initialised
            (``initialize`` is meant to run once).

    Returns:
        A :class:`~layerlab.checking.report.CheckReport`: ``report.passed``,
        ``report.results`` (name, status, message of each test),
        ``report["gradients"]``; printing it gives the summary
        ``"Test Summary: N Passed, N Failed, N Skipped."``.

    The tests (each passed, failed or skipped, with the reason):

    * ``signatures``: predict / forward / backward take and return what the
      contract says; backward returns one derivative per input and per
      learnable, in declaration order.
    * ``runs``: predict, forward and backward run on 1 and 2 observations
      (float32) and leave their input unchanged.
    * ``output_size``: the same output size per observation for 1 and 2
      observations, from predict and forward.
    * ``types``: float32 in, float32 out, and float64 likewise, for predict,
      forward and backward.
    * ``device``: the same on a GPU, agreeing with the CPU (skipped without).
    * ``backward_sizes``: each derivative has the size of its input or
      learnable.
    * ``gradients``: in float64, the derivatives (the layer's backward, or
      autograd's for a layer without one) against 5-point central finite
      differences of the training forward, for every input and learnable:
      absolute or relative error at most 1e-6 (see
      :mod:`layerlab.checking.gradients`).
    * ``train_vs_predict``: forward and predict agree, unless the layer
      declares ``differs_in_training``.
    * ``independent_observations``: one observation's output does not
      depend on the others (predict always; forward unless the layer
      declares ``couples_observations``).
    * ``frozen_learnables``: a frozen learnable gets no gradient and no
      update, and the other derivatives are unchanged.
    * ``state``: predict leaves State unchanged; forward updates it (when
      the layer declares ``differs_in_training``) keeping size and type.
    * ``save_load``: a round trip through :mod:`layerlab.persistence`
      (skipped until it provides ``save_layer`` / ``load_layer``).
    * ``second_derivatives``: autograd's second derivative against finite
      differences; skipped (not failed) for a hand-written backward, which
      is differentiated once only.

    Every check except ``runs`` and ``types`` works in float64 on copies
    with every learnable unfrozen. A test whose prerequisite failed (e.g.
    ``gradients`` after ``backward_sizes``) is skipped, naming it.
    """
    if not isinstance(layer, Layer):
        raise LayerError(f"check_layer: expected a layerlab.Layer, got {type(layer).__name__}")
    sizes = _input_sizes(layer, input_size)
    selected = None
    if tests is not None:
        selected = [tests] if isinstance(tests, str) else list(tests)
        unknown = [t for t in selected if t not in TEST_NAMES]
        if unknown:
            raise LayerError(f"check_layer tests: unknown test(s) {unknown}; the tests are "
                             f"{list(TEST_NAMES)}")
    if not isinstance(max_elements, int) or isinstance(max_elements, bool) or max_elements < 2:
        raise LayerError(f"check_layer max_elements: expected an integer >= 2, "
                         f"got {max_elements!r}")
    out = stream if stream is not None else sys.stdout
    report = CheckReport(layer_label(layer), sizes)

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
    try:
        try:
            subject = Subject(layer, sizes, seed, initialize=initialize)
        except Exception as exc:  # noqa: BLE001 - the layer's own initialize failed
            report.results.append(CheckResult(
                "initialize", FAILED, f"initialize({sizes}) raised {describe_exception(exc)}"))
            emit(report.results[-1].line())
            subject = None
        status: dict[str, str] = {}
        for name, check, requires in _TESTS if subject is not None else []:
            if selected is not None and name not in selected:
                continue
            t0 = time.perf_counter()
            blocked = [r for r in requires if status.get(r) == FAILED]
            if blocked:
                result = CheckResult(name, SKIPPED, f"not run: {', '.join(blocked)} failed")
            else:
                try:
                    result = (check(subject, max_elements=max_elements)
                              if check is check_gradients else check(subject))
                except Exception as exc:  # noqa: BLE001 - the layer's code raised
                    result = CheckResult(name, FAILED, describe_exception(exc))
            result.seconds = time.perf_counter() - t0
            status[name] = result.status
            report.results.append(result)
            emit(result.line())
    finally:
        torch.set_rng_state(rng)
        torch.set_num_threads(threads)
    report.seconds = time.perf_counter() - start
    emit("\n" + report.footer())
    return report


def is_user_layer(layer: Layer) -> bool:
    """Whether the layer's class comes from outside the layerlab package."""
    module = type(layer).__module__ or ""
    return module != "layerlab" and not module.startswith("layerlab.")


def _network_input_sizes(net, layer: Layer) -> list[tuple[int, ...]]:
    if isinstance(layer, InputLayer):
        return [tuple(layer.input_size)]
    return [tuple(net.sizes[src][k]) for src, k in net.graph.sources_of(layer.name)]


def check_network_layers(net, include_builtin: bool = False, *,
                         stream: TextIO | None = None, verbose: bool = False,
                         raise_on_failure: bool = True) -> list[CheckReport]:
    """Check the layers of a sized :class:`~layerlab.Network` with their
    input sizes in it: the user-defined ones (classes from outside
    layerlab), or all with ``include_builtin``. Raises a
    :class:`~layerlab.checking.report.LayerCheckError` carrying the failing
    reports (unless ``raise_on_failure`` is False).

    Every test runs except ``save_load``: training does not need the layer
    to be saveable, and a layer class defined inside a function (fine to
    train) cannot be loaded back."""
    tests = [t for t in TEST_NAMES if t != "save_load"]
    reports = []
    for layer in net.layers:
        if include_builtin or is_user_layer(layer):
            reports.append(check_layer(layer, _network_input_sizes(net, layer), tests=tests,
                                       verbose=verbose, stream=stream, initialize=False))
    failed = [r for r in reports if not r.passed]
    if failed and raise_on_failure:
        names = ", ".join(f"{r.layer} ({', '.join(r.failed_tests)})" for r in failed)
        text = "\n\n".join(str(r) for r in failed)
        raise LayerCheckError(
            f"layer check failed before training for {names}; fix the layer, or skip the "
            f"check with training_options(..., check_layers=False)\n\n{text}", failed)
    return reports
