"""Reading mini-batches ahead in background threads, so that decoding,
gathering from disk and augmentation overlap with the training step.

Threads, not processes: Pillow's decoders, file reads and PyTorch's ops
release the GIL, nothing has to be pickled, and a worker's error reaches the
training loop as it was raised (e.g. a :class:`DataError` naming a file).
Each mini-batch depends only on its indices and its seed, so the result
does not depend on the threads' timing.
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

__all__ = ["read_ahead"]

J = TypeVar("J")
R = TypeVar("R")


def read_ahead(read: Callable[[J], R], jobs: Iterable[J], depth: int = 2,
               workers: int = 1) -> Iterator[R]:
    """``read(job)`` for each job, in order, with up to ``depth`` jobs
    running ahead in ``workers`` threads (``depth=0``: in the caller's
    thread). Memory: at most ``depth + 1`` results are held at a time.

    Examples:
        >>> list(read_ahead(lambda i: i * i, range(4), depth=2))
        [0, 1, 4, 9]
    """
    if depth <= 0:
        yield from map(read, jobs)
        return
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="layerlab-read")
    pending: collections.deque = collections.deque()
    todo = iter(jobs)
    try:
        for job in todo:
            pending.append(pool.submit(read, job))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        # the consumer stopped early (training stopped, an error): drop the rest
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True)
