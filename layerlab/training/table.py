"""The verbose training table, in the layout MATLAB's trainNetwork prints."""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["VerboseTable"]

_W = 14  # every column is 14 characters wide, as in MATLAB's table


class VerboseTable:
    """Prints the header, one row per call to :meth:`row`, and the footer.

    Columns: Epoch, Iteration, Time Elapsed (seconds), Mini-batch Loss,
    Mini-batch Accuracy (or another metric), Base Learning Rate, plus any
    ``extra`` columns (e.g. validation loss and accuracy).
    """

    def __init__(self, metric_name: str = "Accuracy", percentage: bool = True,
                 extra: list[tuple[str, str]] | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.percentage = percentage
        heads = [("Epoch", ""), ("Iteration", ""), ("Time Elapsed", "(seconds)"),
                 ("Mini-batch", "Loss"), ("Mini-batch", metric_name),
                 ("Base Learning", "Rate")] + list(extra or [])
        self.ncols = len(heads)
        self.rule = "|" + "=" * (self.ncols * (_W + 1) - 1) + "|"
        self.header = ["|" + "|".join(h[0].center(_W) for h in heads) + "|",
                       "|" + "|".join(h[1].center(_W) for h in heads) + "|"]

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start(self) -> None:
        self._print(self.rule)
        for line in self.header:
            self._print(line)
        self._print(self.rule)

    def fmt_metric(self, value: float | None) -> str:
        if value is None:
            return ""
        return f"{100 * value:.2f}%" if self.percentage else f"{value:.4f}"

    def row(self, epoch: int, iteration: int, elapsed: float, loss: float,
            metric: float, learn_rate: float, extra: list[str] | None = None) -> None:
        cells = [str(epoch), str(iteration), f"{elapsed:.2f}", f"{loss:.4f}",
                 self.fmt_metric(metric), f"{learn_rate:.4f}"] + list(extra or [])
        cells += [""] * (self.ncols - len(cells))
        self._print("|" + "|".join(f"{c:>{_W - 1}} " for c in cells) + "|")

    def end(self) -> None:
        self._print(self.rule)
