"""A one-line progress indicator within an epoch, for when the table's rows
are far apart. Written with carriage returns, so it is shown only on a
terminal (not when output goes to a file or a pipe). A dozen lines instead
of a dependency on tqdm."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["ProgressLine"]


class ProgressLine:
    """``epoch 3/30 [#######.............] 14/39``, refreshed at most every
    ``interval`` seconds (a clock read per iteration, no device sync)."""

    def __init__(self, stream: TextIO, epochs: int, per_epoch: int, interval: float = 0.25):
        self.stream, self.epochs, self.per_epoch = stream, epochs, per_epoch
        self.interval = interval
        self.last = time.perf_counter()
        self.shown = False

    def update(self, epoch: int, done_in_epoch: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.last = now
        width = 20
        filled = width * done_in_epoch // self.per_epoch
        text = (f"epoch {epoch}/{self.epochs} [{'#' * filled}{'.' * (width - filled)}] "
                f"{done_in_epoch}/{self.per_epoch}")
        self.stream.write("\r" + text)
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the line (before a table row is printed)."""
        if self.shown:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()
            self.shown = False


def is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
