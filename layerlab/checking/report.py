"""What :func:`~layerlab.check_layer` returns: one :class:`CheckResult` per
test, gathered in a :class:`CheckReport` that prints like MATLAB's
``checkLayer``::

    Checking layer 'elu' (TypoELU), input size (20, 24, 24)
      passed   signatures          predict(X) -> Z; forward(X) -> (Z, memory); ...
      FAILED   gradients           dLdalpha differs from finite differences at ...
      skipped  device              no GPU: torch.cuda.is_available() is False

    Test Summary: 11 Passed, 1 Failed, 1 Skipped.
    Time elapsed: 0.31 seconds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from ..errors import LayerError

__all__ = ["CheckResult", "CheckReport", "LayerCheckError", "PASSED", "FAILED", "SKIPPED"]

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
STATUSES = (PASSED, FAILED, SKIPPED)

_TAG = {PASSED: "passed", FAILED: "FAILED", SKIPPED: "skipped"}
_NAME_WIDTH = 25


@dataclasses.dataclass
class CheckResult:
    """The outcome of one test.

    Attributes:
        name: the test, e.g. ``"gradients"``.
        status: ``"passed"``, ``"failed"`` or ``"skipped"``.
        message: what was checked, or what differed and where, or why the
            test was skipped.
        seconds: the time the test took.
        details: machine-readable findings; for ``"gradients"``, one
            :class:`~layerlab.checking.gradients.Mismatch` per wrong
            derivative.
    """

    name: str
    status: str
    message: str = ""
    seconds: float = 0.0
    details: list[Any] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def skipped(self) -> bool:
        return self.status == SKIPPED

    def line(self) -> str:
        """One line per test (continuation lines indented under the message)."""
        head = f"  {_TAG[self.status]:<8} {self.name:<{_NAME_WIDTH}} "
        lines = (self.message or "").splitlines() or [""]
        pad = "\n" + " " * len(head)
        return head + pad.join(lines)


class CheckReport:
    """Every test's result for one layer.

    Attributes:
        layer: how the layer is named, e.g. ``"'elu' (TypoELU)"``.
        input_sizes: the size of one observation of each input.
        results: the :class:`CheckResult` of every test, in the order run.
        seconds: the time the whole check took.

    ``report.passed`` is True when no test failed (skipped tests do not
    count against a layer); ``report["gradients"]`` is one test's result;
    ``report.text`` is the whole report (``str(report)`` is one line, so
    that ``print(check_layer(...))`` does not repeat what ``verbose``
    printed).
    """

    def __init__(self, layer: str, input_sizes: list[tuple[int, ...]],
                 results: list[CheckResult] | None = None, seconds: float = 0.0):
        self.layer = layer
        self.input_sizes = [tuple(s) for s in input_sizes]
        self.results: list[CheckResult] = list(results or [])
        self.seconds = seconds
        #: findings that fail no test (e.g. random numbers drawn in __init__)
        self.warnings: list[str] = []

    # -- queries --------------------------------------------------------
    @property
    def passed(self) -> bool:
        """No test failed."""
        return not any(r.failed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed]

    @property
    def failed_tests(self) -> list[str]:
        """The names of the failed tests."""
        return [r.name for r in self.results if r.failed]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def __getitem__(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no test named {name!r}; the tests are {[r.name for r in self.results]}")

    def __contains__(self, name: object) -> bool:
        return any(r.name == name for r in self.results)

    def __iter__(self) -> Iterator[CheckResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    # -- text -----------------------------------------------------------
    def header(self) -> str:
        sizes = ", ".join(str(s) for s in self.input_sizes)
        what = "input size" if len(self.input_sizes) == 1 else "input sizes"
        return f"Checking layer {self.layer}, {what} {sizes}"

    @property
    def summary(self) -> str:
        """``"Test Summary: N Passed, N Failed, N Skipped."``"""
        return (f"Test Summary: {self.count(PASSED)} Passed, {self.count(FAILED)} Failed, "
                f"{self.count(SKIPPED)} Skipped.")

    def footer(self) -> str:
        return f"{self.summary}\nTime elapsed: {self.seconds:.2f} seconds."

    @staticmethod
    def warning_line(text: str) -> str:
        head = f"  {'warning':<8} "
        return head + text.replace("\n", "\n" + " " * len(head))

    @property
    def text(self) -> str:
        """The whole report, as ``check_layer`` prints it with ``verbose``."""
        return "\n".join([self.header(), *(self.warning_line(w) for w in self.warnings),
                          *(r.line() for r in self.results), "", self.footer()])

    def __str__(self) -> str:
        # short: check_layer has printed the whole report already (verbose),
        # so print(check_layer(...)) adds one line, not the report again
        failed = f"; failed: {', '.join(self.failed_tests)}" if self.failed_tests else ""
        return (f"check_layer report for {self.layer}: {self.summary}{failed} "
                f"(report.text for the whole report)")

    def __repr__(self) -> str:
        return (f"CheckReport(layer={self.layer}, passed={self.passed}, "
                f"failed={self.failed_tests})")


class LayerCheckError(LayerError):
    """A layer failed :func:`~layerlab.check_layer` where passing was
    required (``train_network`` with the option ``check_layers``).
    ``error.reports`` holds the failing layers' reports."""

    def __init__(self, message: str, reports: list[CheckReport]):
        super().__init__(message)
        self.reports = reports
