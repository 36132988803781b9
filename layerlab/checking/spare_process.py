"""New Python processes for ``save_load_fresh_process``, without paying for
``import torch`` each time.

A new interpreter that imports PyTorch and layerlab takes 2-4 s on two
cores, most of it ``import torch`` (1.9 s) and the import of
``torch._dynamo`` that the first ``load`` triggers (building on the
``meta`` device, 1.5 s): more than all the other tests of ``check_layer``
together. So one *spare* process is started from a clean interpreter the
first time it is needed, imports those modules and nothing of the running
program, and then forks one child per job. A child is as new as a fresh
interpreter with respect to the program that asked: it has never seen that
program's ``__main__``, classes made at run time or module-level settings
changed at run time; it imports the modules the job names anew, with the
asking program's current ``sys.path``, working folder and environment. Where
``os.fork`` does not exist (Windows), or the spare is busy with another job or
dead, a job is a plain new process (:class:`PlainJob`), as before.

A job runs a piece of Python source with ``sys.argv`` set, as ``python -c
CODE ARGS...`` would; what it writes to stdout and stderr is collected, and
its exit status reported (``wait``). The spare exits when the program that
started it exits (its stdin closes).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time

__all__ = ["start_job", "PlainJob", "SpareJob", "SpareProcess", "SpareDied", "can_fork"]

# Runs in the spare: warm the imports, then fork a child per job line.
_SPARE = r"""
import json, os, sys, traceback
import torch
import layerlab
try:
    import torch._dynamo        # imported by the first build on the meta device
except Exception:
    pass
torch.set_num_threads(1)
reply = os.fdopen(os.dup(1), "w")
sys.stdout.flush()
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 1); os.dup2(fd, 2)
            os.environ.clear(); os.environ.update(job["env"])
            os.chdir(job["cwd"])
            sys.path[:] = job["path"]
            sys.argv = ["-c", *job["argv"]]
            exec(compile(job["code"], "<string>", "exec"), {"__name__": "__main__"})
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush(); sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    reply.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n"); reply.flush()
"""


def _search_path() -> list[str]:
    """This program's ``sys.path``, its empty entry (the current folder) made
    explicit: a new process finds modules as this one does, so what fails
    there is what only this program's run time created."""
    return [p if p else os.getcwd() for p in sys.path if p is not None]


def _environment() -> dict[str, str]:
    """This program's environment, with its module search path and one
    thread (the jobs are small)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(_search_path()), OMP_NUM_THREADS="1")


class PlainJob:
    """A job as a plain new process: ``python -c code *argv``."""

    def __init__(self, code: str, argv: list[str]):
        self.proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=os.getcwd(),
                                     env=_environment(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def wait(self, timeout: float) -> tuple[int, str] | None:
        """The exit status and output, or ``None`` (and the process
        killed) if it did not finish within ``timeout`` seconds."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            return None
        return self.proc.returncode, out or ""

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


class SpareProcess:
    """The spare interpreter (see the module doc); one job at a time."""

    def __init__(self):
        self.owner = os.getpid()
        self.busy = False
        self._buffer = b""
        self.proc = subprocess.Popen([sys.executable, "-c", _SPARE], cwd=os.getcwd(),
                                     env=_environment(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     start_new_session=True)    # its children die with it

    def usable(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None

    def submit(self, code: str, argv: list[str], log: str) -> None:
        job = {"code": code, "argv": argv, "log": log, "cwd": os.getcwd(),
               "path": _search_path(),
               "env": dict(os.environ)}
        self.busy = True
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.flush()

    def _line(self, deadline: float) -> str | None:
        """The spare's next reply line, ``None`` at the deadline; raises
        :class:`SpareDied` if the spare's output ended."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise SpareDied
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def result(self, timeout: float) -> int | None:
        """The job's exit status, or ``None`` if it did not finish in time
        (the spare and the job are then killed); :class:`SpareDied` if the
        spare died (killed from outside, or it could not start)."""
        deadline = time.monotonic() + timeout
        try:
            line = self._line(deadline)
        except SpareDied:
            self.kill()
            raise
        if line is None:
            self.kill()
            return None
        self.busy = False
        return int(json.loads(line)["rc"])

    def kill(self) -> None:
        self.busy = False
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        """End the spare: it exits when its stdin closes."""
        if self.owner != os.getpid():
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


class SpareDied(Exception):
    """The spare process ended while a job was waiting for it."""


class SpareJob:
    """A job run by a child of the spare process; if the spare dies (it
    could not start in this environment, or something killed it), the job
    is run again as a plain new process, whose output then says what went
    wrong."""

    def __init__(self, spare: SpareProcess, code: str, argv: list[str]):
        self.spare, self.code, self.argv = spare, code, argv
        fd, self.log = tempfile.mkstemp(prefix="layerlab-job-", suffix=".log")
        os.close(fd)
        self.done = False
        spare.submit(code, argv, self.log)

    def wait(self, timeout: float) -> tuple[int, str] | None:
        start = time.monotonic()
        try:
            try:
                rc = self.spare.result(timeout)
            except SpareDied:
                self.done = True
                return PlainJob(self.code, self.argv).wait(max(1.0, timeout - (time.monotonic() - start)))
            self.done = True
            if rc is None:
                return None
            with open(self.log, errors="replace") as f:
                return rc, f.read()
        finally:
            self._remove_log()

    def cancel(self) -> None:
        if not self.done:
            self.spare.kill()      # the job cannot be taken back from the pipe
            self.done = True
        self._remove_log()

    def _remove_log(self) -> None:
        try:
            os.remove(self.log)
        except OSError:
            pass


_spare: SpareProcess | None = None
_spare_lock = threading.Lock()      # one job at a time, also across threads


def can_fork() -> bool:
    """Whether a spare can fork its jobs (not on Windows)."""
    return hasattr(os, "fork") and sys.platform != "win32"


def _get_spare() -> SpareProcess | None:
    """The spare process, started if need be; ``None`` where there is no
    ``fork`` or it is busy."""
    global _spare
    if not can_fork():
        return None
    if _spare is not None and _spare.usable():
        return None if _spare.busy else _spare
    try:
        _spare = SpareProcess()
    except OSError:
        _spare = None
    return _spare


def start_job(code: str, argv: list[str]) -> PlainJob | SpareJob:
    """Run ``code`` as ``python -c code *argv`` would, in a new process (a
    child of the spare where possible); collect it with ``wait``."""
    with _spare_lock:
        spare = _get_spare()
        if spare is not None:
            try:
                return SpareJob(spare, code, argv)      # marks the spare busy
            except OSError:      # the spare died (broken pipe): a plain process
                spare.kill()
    return PlainJob(code, argv)


@atexit.register
def _close_spare() -> None:
    if _spare is not None:
        _spare.close()
