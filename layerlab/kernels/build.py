"""Builds layerlab's C kernels once per machine and loads them with ctypes.

A kernel's source (``<name>.c`` beside this file, which may include the
others) is compiled with the
system C compiler (``$CC``, else ``cc``/``gcc``) for this CPU
(``-O3 -march=native -ffp-contract=fast -fopenmp``), into layerlab's cache folder
(``$LAYERLAB_CACHE/kernels`` or ``~/.cache/layerlab/kernels``). The file's
name carries a hash of the sources, the compiler, the flags and the CPU's
feature flags, so a changed source, compiler or machine (a cache folder
shared over a network) gets its own build and never runs code built for
another CPU. Building takes about half a second, once; it is written to a
temporary name and renamed, so processes that build at the same time (a
study's workers) never load a half-written file.

Without a compiler, on a platform other than Linux, or with
``LAYERLAB_KERNELS=0`` in the environment, :func:`load` returns ``None``
and the layers compute with PyTorch ops instead (the same values);
:func:`status` says why.

The kernels are built with OpenMP and use the OpenMP runtime that PyTorch
has already loaded (the same ``libgomp.so.1``), so they share its threads;
each call takes ``torch.get_num_threads()`` threads.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

__all__ = ["load", "status", "FLAGS"]

# -ffp-contract=fast: a * b + c as one fused multiply-add (ISO C's default,
# -std=c11, would keep them apart: twice the instructions in the kernels' inner loops)
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fopenmp", "-fPIC", "-shared",
         "-std=c11")
_HERE = Path(__file__).resolve().parent
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}
_why_not: dict[str, str] = {}


def _cache_dir() -> Path:
    env = os.environ.get("LAYERLAB_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "layerlab") / "kernels"


@functools.lru_cache(maxsize=None)
def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> str:
    """This CPU's feature flags (the build is for this CPU: -march=native)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def _compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _disabled() -> str | None:
    if os.environ.get("LAYERLAB_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        return "disabled by LAYERLAB_KERNELS=0"
    if not sys.platform.startswith("linux"):
        return f"built only on Linux (this is {sys.platform})"
    return None


def _build(name: str) -> ctypes.CDLL:
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc)")
    # every source of the folder: a kernel may include another's
    source = b"\0".join(f.read_bytes() for f in sorted(_HERE.glob("*.c")))
    key = hashlib.sha256(b"\0".join([
        source, cc.encode(), _compiler_version(cc).encode(), " ".join(FLAGS).encode(),
        _cpu_flags().encode(), platform.machine().encode()])).hexdigest()[:16]
    folder = _cache_dir()
    target = folder / f"{name}-{key}.so"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=folder)
        os.close(fd)
        try:
            done = subprocess.run([cc, *FLAGS, "-o", tmp, str(_HERE / f"{name}.c"), "-lm"],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"{cc} failed: {done.stderr.strip()[-2000:]}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return ctypes.CDLL(str(target))


def load(name: str) -> ctypes.CDLL | None:
    """The compiled kernel library ``name`` (built on first use), or ``None``
    when it cannot be had here (see :func:`status`)."""
    if name in _loaded:
        return _loaded[name]
    with _lock:
        if name not in _loaded:
            why = _disabled()
            lib = None
            if why is None:
                try:
                    lib = _build(name)
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    why = f"could not build: {exc}"
            if why is not None:
                _why_not[name] = why
            _loaded[name] = lib
    return _loaded[name]


def status(name: str) -> str:
    """Whether kernel ``name`` is in use, and if not, why."""
    lib = load(name)
    return "compiled (in use)" if lib is not None else f"not in use: {_why_not.get(name, '?')}"
