"""Where a study's runs are executed: in this process, in local worker
processes, or as Ray tasks on a cluster.

Every executor takes the same :class:`Task` list and yields
:class:`Outcome` objects as runs finish (in completion order; the study
sorts them). A run is always executed by :func:`execute_run`: seed Python,
NumPy and PyTorch with the run's seed, set PyTorch's thread count, call the
study's run function. That one function is why a run gives the same result
wherever it is executed.

A run that raises, or whose worker dies (killed, out of memory), is retried
once on a fresh worker; a second failure is reported as a failed run, never
dropped silently. Worker processes ignore Ctrl-C: the parent decides, stops
them and keeps what has finished.

Examples:
    >>> tasks = [Task("a", 0, 0, {})]
    >>> [o.ok for o in InProcess().run(lambda seed: {"x": seed}, tasks)]
    [True]
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import time
import traceback
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import OptionError

__all__ = ["Task", "Outcome", "InProcess", "WorkerProcesses", "RayCluster", "execute_run",
           "threads_per_worker", "auto_workers"]

RETRIES = 1   # a failed run is tried once more, then reported as failed


@dataclasses.dataclass(frozen=True)
class Task:
    """One run: configuration ``configuration``, repeat ``repeat`` (seed
    ``seed``), called with keyword arguments ``params``."""

    configuration: str
    repeat: int
    seed: int
    params: Mapping[str, Any]

    @property
    def key(self) -> tuple[str, int]:
        return (self.configuration, self.repeat)

    def __str__(self) -> str:
        return f"{self.configuration} (repeat {self.repeat + 1}, seed {self.seed})"


@dataclasses.dataclass
class Outcome:
    """What became of one attempt at a task: its output and wall time, or
    the error (``error``: a traceback or how the worker died).
    ``will_retry`` says whether the task is queued again."""

    task: Task
    attempt: int
    output: Mapping[str, Any] | None = None
    wall: float = float("nan")
    threads: int = 0
    error: str | None = None
    will_retry: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch, so a configuration's layers (whose
    constructors may draw initial values) are the same in every rerun."""
    import torch
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def execute_run(run_fn: Callable[..., Mapping[str, Any]], task: Task,
                threads: int | None = None) -> tuple[Mapping[str, Any], float, int]:
    """Run one task: set ``threads`` PyTorch threads (unless None), seed
    everything with the task's seed, call ``run_fn(**params, seed=seed)``;
    return its output, wall time in seconds and the threads it ran with.

    The thread count is part of a run's identity: PyTorch splits sums
    (batch normalization's statistics, matrix products) differently over
    different numbers of threads, and a long training amplifies those
    last-bit differences. With the same seed *and* threads a run gives the
    same numbers to the last digit, wherever it runs."""
    import torch
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    seed_everything(task.seed)
    t0 = time.perf_counter()
    output = run_fn(**task.params, seed=task.seed)
    return output, time.perf_counter() - t0, torch.get_num_threads()


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """PyTorch threads for each of ``workers`` processes so that
    ``workers x threads <= cores`` (at least 1)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // workers)


def auto_workers(runs: int, cores: int | None = None) -> int:
    """The default number of workers: one per core (capped at the number of
    runs). The studies' networks are small: one thread cannot keep a core's
    vector units and memory busy between PyTorch's many small operations
    better than two independent runs can (measured in the README)."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(cores, runs))


class _Retrier:
    """Counts attempts and decides about retries (shared by the executors)."""

    def __init__(self, tasks: Sequence[Task]):
        self.queue = collections.deque(tasks)
        self.attempts: collections.Counter = collections.Counter()

    def next(self) -> tuple[Task, int]:
        task = self.queue.popleft()
        self.attempts[task.key] += 1
        return task, self.attempts[task.key]

    def failed(self, task: Task, attempt: int, error: str) -> Outcome:
        retry = attempt <= RETRIES
        if retry:
            self.queue.appendleft(task)     # first in line, on a fresh worker
        return Outcome(task, attempt, error=error, will_retry=retry)


# ---------------------------------------------------------------------------
# in this process
# ---------------------------------------------------------------------------
class InProcess:
    """Runs one after another in this process, with PyTorch's current
    thread count (``threads=None``) or the one given."""

    workers = 1

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def describe(self) -> str:
        import torch
        return (f"in one process, one run at a time, "
                f"{self.threads or torch.get_num_threads()} PyTorch thread(s)")

    def run(self, run_fn, tasks: Sequence[Task]) -> Iterator[Outcome]:
        import torch
        self._restore = torch.get_num_threads()
        retrier = _Retrier(tasks)
        while retrier.queue:
            task, attempt = retrier.next()
            try:
                output, wall, used = execute_run(run_fn, task, self.threads)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception:  # noqa: BLE001 - a failing run is reported, not fatal
                yield retrier.failed(task, attempt, traceback.format_exc(limit=8))
                continue
            yield Outcome(task, attempt, output, wall, used)

    def close(self) -> None:
        """Give this process back the thread count it had."""
        restore = getattr(self, "_restore", None)
        if restore is not None:
            import torch
            torch.set_num_threads(restore)
            self._restore = None


# ---------------------------------------------------------------------------
# local worker processes
# ---------------------------------------------------------------------------
def _worker_main(conn, run_fn, threads: int) -> None:
    """A worker's loop: receive a task, send back ("ok", output, wall) or
    ("error", traceback); ``None`` ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C
    import torch
    torch.set_num_threads(threads)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            output, wall, used = execute_run(run_fn, task, threads)
            conn.send(("ok", dict(output), wall, used))
        except Exception:  # noqa: BLE001 - sent to the parent, which retries
            conn.send(("error", traceback.format_exc(limit=8), float("nan"), 0))


class _Worker:
    def __init__(self, ctx, run_fn, threads: int):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, run_fn, threads),
                                   daemon=True)
        self.process.start()
        child.close()
        self.task: Task | None = None
        self.attempt = 0

    def stop(self, wait: float = 2.0) -> None:
        try:
            if self.process.is_alive() and self.task is None:
                self.conn.send(None)
                self.process.join(wait)
        except (OSError, BrokenPipeError):
            pass
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(wait)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class WorkerProcesses:
    """``workers`` local processes, each with ``threads`` PyTorch threads
    (default: ``cores // workers``). Workers are forked where the platform
    can (they inherit the study, so its run function need not be
    picklable); elsewhere, and once this process has used CUDA (a forked
    child cannot run autograd after that: PyTorch raises in it), they are
    spawned and the run function must be picklable (a module-level
    function)."""

    def __init__(self, workers: int, threads: int | None = None):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise OptionError(f"Study workers: expected an integer >= 1, got {workers!r}")
        self.workers = workers
        self.threads = threads or threads_per_worker(workers)
        self._pool: list[_Worker] = []

    @staticmethod
    def start_method() -> str:
        """"fork" where the platform has it and CUDA is not initialised
        in this process, else "spawn" (decided when the workers start)."""
        import torch
        if "fork" in multiprocessing.get_all_start_methods() and \
                not torch.cuda.is_initialized():
            return "fork"
        return "spawn"

    def describe(self) -> str:
        return (f"in {self.workers} worker processes, {self.threads} PyTorch thread(s) each "
                f"({os.cpu_count()} cores)")

    def run(self, run_fn, tasks: Sequence[Task]) -> Iterator[Outcome]:
        retrier = _Retrier(tasks)
        n = min(self.workers, len(tasks))
        method = self.start_method()
        self.ctx = multiprocessing.get_context(method)
        try:
            for _ in range(n):
                self._pool.append(_Worker(self.ctx, run_fn, self.threads))
        except Exception as exc:  # noqa: BLE001 - spawn pickles the run function
            self.close()
            if method != "spawn":
                raise
            why = ("this process has used CUDA (a forked child cannot run autograd after "
                   "that), so they are spawned" if "fork" in
                   multiprocessing.get_all_start_methods() else "this platform spawns them")
            raise OptionError(f"Study workers: {why}, and a spawned worker needs a picklable "
                              f"run function (a module-level function, not a lambda or a "
                              f"local function): {type(exc).__name__}: {exc}") from exc
        try:
            while retrier.queue or any(w.task for w in self._pool):
                for w in self._pool:
                    if w.task is None and retrier.queue:
                        w.task, w.attempt = retrier.next()
                        w.conn.send(w.task)
                busy = [w for w in self._pool if w.task is not None]
                ready = multiprocessing.connection.wait(
                    [w.conn for w in busy] + [w.process.sentinel for w in busy])
                for w in busy:
                    if w.conn not in ready and w.process.sentinel not in ready:
                        continue
                    yield from self._collect(w, run_fn, retrier)
        finally:
            self.close()

    def _collect(self, w: _Worker, run_fn, retrier: _Retrier) -> Iterator[Outcome]:
        task, attempt = w.task, w.attempt
        message = None
        try:
            if w.conn.poll():
                message = w.conn.recv()
        except (EOFError, OSError):
            message = None
        if message is None:
            # no answer: the worker died while running the task
            w.process.join(1.0)
            code = w.process.exitcode
            how = (f"killed by signal {-code}" if code is not None and code < 0
                   else f"exited with code {code}")
            w.task = None
            w.stop()
            self._pool[self._pool.index(w)] = _Worker(self.ctx, run_fn, self.threads)
            yield retrier.failed(task, attempt, f"worker process {w.process.pid} {how} "
                                                f"while running this run")
            return
        w.task = None
        kind, payload, wall, used = message
        if kind == "ok":
            yield Outcome(task, attempt, payload, wall, used)
        else:
            yield retrier.failed(task, attempt, payload)

    def close(self) -> None:
        for w in self._pool:
            w.task = None if not w.process.is_alive() else w.task
            w.stop(wait=0.5 if w.task is not None else 2.0)
        self._pool = []


# ---------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------
def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise OptionError("Study cluster='ray': Ray is not installed; install it with "
                          "`pip install layerlab[ray]` (or `pip install ray`), or run the "
                          "study locally with workers=N") from e
    return ray


def _ray_task(run_fn, task: Task, threads: int):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    output, wall, used = execute_run(run_fn, task, threads)
    return dict(output), wall, used


class RayCluster:
    """Runs as Ray tasks, each reserving ``threads`` CPUs and running with
    that many PyTorch threads. ``address``: a running cluster's address
    (``"auto"``: the one this machine belongs to; ``"ray://host:10001"``:
    Ray Client); ``None`` starts a local Ray instance (``num_cpus``: its
    CPUs, default all). The run function travels to the workers by
    cloudpickle (closures work); layerlab must be installed on every node."""

    def __init__(self, address: str | None = None, threads: int = 1,
                 num_cpus: int | None = None):
        self.ray = _import_ray()
        self.address = address
        self.threads = threads
        self.num_cpus = num_cpus
        self._started = False
        self._refs: list = []

    def describe(self) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
        cpus = ""
        if self.ray.is_initialized():
            cpus = f" ({int(self.ray.cluster_resources().get('CPU', 0))} CPUs)"
        return f"as Ray tasks on {where}{cpus}, {self.threads} PyTorch thread(s) per task"

    @property
    def workers(self) -> int:
        if self.ray.is_initialized():
            return max(1, int(self.ray.cluster_resources().get("CPU", 1)) // self.threads)
        return 1

    def _init(self) -> None:
        if self.ray.is_initialized():
            return
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=True,
                                      configure_logging=False)
        if self.address:
            kwargs["address"] = self.address
        elif self.num_cpus:
            kwargs["num_cpus"] = self.num_cpus
        try:
            self.ray.init(**kwargs)
        except Exception as e:  # noqa: BLE001 - Ray's many connection errors
            raise OptionError(f"Study cluster='ray': could not connect to Ray at "
                              f"{self.address or 'a new local instance'}: {e}") from e
        self._started = True

    def run(self, run_fn, tasks: Sequence[Task]) -> Iterator[Outcome]:
        ray = self.ray
        self._init()
        remote = ray.remote(num_cpus=self.threads, max_retries=0)(_ray_task)
        fn_ref = ray.put(run_fn)
        retrier = _Retrier(tasks)
        running: dict = {}
        try:
            while retrier.queue or running:
                while retrier.queue:
                    task, attempt = retrier.next()
                    running[remote.remote(fn_ref, task, self.threads)] = (task, attempt)
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    task, attempt = running.pop(ref)
                    try:
                        output, wall, used = ray.get(ref)
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except Exception as e:  # noqa: BLE001 - RayTaskError, WorkerCrashedError
                        yield retrier.failed(task, attempt, f"{type(e).__name__}: {e}")
                        continue
                    yield Outcome(task, attempt, output, wall, used)
        finally:
            for ref in running:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or gone
                    pass

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False
