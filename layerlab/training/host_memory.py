"""Keeping freed memory in the process while training on the CPU.

glibc hands a freed block larger than its trim threshold back to the
operating system, and the next allocation of that size faults it back in,
page by page. A training step frees and allocates the same activation-sized
tensors every iteration, so by default each step pays page faults for them:
on the seed network 560-1200 page faults and 1.5-3 ms of system time per
step here, a fifth of layerlab's step (bench/README.md). Asking glibc once to
keep freed memory (``mallopt``: no trimming, large blocks from the heap
rather than ``mmap``, and the heap grown 64 MB at a time) makes the steps
reuse it: 0.2-4 faults per step.

The process then keeps its high-water mark of memory until it exits (the
peak itself does not grow). Nothing is changed when the environment already
sets glibc's own variables (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``: the user chose), when
``LAYERLAB_KEEP_FREED_MEMORY=0``, or off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (once per process); whether
    the settings are in force."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or any(v in os.environ for v in _GLIBC_VARIABLES) \
            or os.environ.get("LAYERLAB_KEEP_FREED_MEMORY", "1").strip().lower() in (
                "0", "false", "no", "off"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False          # not glibc (musl has no mallopt)
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30) and mallopt(_M_TRIM_THRESHOLD, 1 << 30)
                 and mallopt(_M_TOP_PAD, 64 << 20))
    return _done
