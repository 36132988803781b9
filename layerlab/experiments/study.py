"""Studies: configurations x repeats x metrics, with statistics and a report.

A study trains (or measures) every configuration several times, with the
same seeds for every configuration, and reports each metric's mean and
standard deviation, paired tests between configurations, a CSV with one row
per run and a Markdown report with PNG figures::

    from layerlab.experiments import Study

    def run(activation, seed):                  # one run -> its metrics
        ...
        return {"accuracy": acc, "time_s": info.time_elapsed}

    study = Study("my-study", run,
                  configurations={"ReLU": dict(activation="relu"),
                                  "ELU": dict(activation="elu")},
                  metrics=["accuracy", "time_s"], repeats=5)
    result = study.run(out="results/my-study")
    print(result.table())

Why the seeds are shared: repeat ``r`` of every configuration runs with seed
``study.seed + r``, so the configurations of one repeat see the same random
stream (data shuffling; initial weights wherever the layers draw the same
numbers). Differences between configurations are then compared *within* a
repeat, which is what a paired test needs and which removes the
run-to-run variation common to both.

Which test and why: the differences ``d_r = a_r - b_r`` of a metric between
two configurations over the repeats are tested with a paired t-test
(:func:`scipy.stats.ttest_rel`) and a Wilcoxon signed-rank test
(:func:`scipy.stats.wilcoxon`, exact two-sided). The t-test is the primary
one, because with ``n`` pairs the smallest p-value the Wilcoxon test can give
is ``2 / 2**n``: 0.0625 for 5 repeats, so at the default 5 repeats it can
never reach 0.05 however large the effect. The t-test assumes roughly normal
differences, plausible for accuracies averaged over thousands of test
images; the Wilcoxon test (what the ELU paper used, with 10 runs) makes no
such assumption and is shown beside it. p-values of the t-test are corrected
for the number of comparisons made for a metric (Holm), and a difference is
called significant when the corrected p-value is below ``alpha`` (0.05).
Five repeats only detect differences that are large against the run-to-run
spread: "not significant" means "not shown", not "equal".
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import math
import os
import platform
import sys
import time
from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO

import numpy as np

from ..errors import OptionError
from .statistics import Comparison, holm, paired_test, wilcoxon_min_p

__all__ = ["Study", "StudyResult", "Metric", "Comparison", "paired_test",
           "wilcoxon_min_p", "holm"]


# ---------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Metric:
    """A scalar a run reports.

    Args:
        name: the key in the run's result dictionary and the CSV column.
        label: how tables and figures name it (default: ``name``).
        fmt: format of its values in tables, e.g. ``".4f"``.
        better: ``"higher"``, ``"lower"`` or ``None``; tables mark the best
            configuration and say which side of a comparison wins.
        test: whether configurations are compared on it with paired tests.
        plot: whether the default figure shows it.
    """

    name: str
    label: str | None = None
    fmt: str = ".4g"
    better: str | None = None
    test: bool = True
    plot: bool = True

    def __post_init__(self):
        if self.better not in ("higher", "lower", None):
            raise OptionError(f"Metric {self.name!r}: better must be 'higher', 'lower' or None, "
                              f"got {self.better!r}")

    @property
    def title(self) -> str:
        return self.label or self.name

    def format(self, value: float) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return format(value, self.fmt)


def _as_metric(m: Metric | str) -> Metric:
    if isinstance(m, Metric):
        return m
    if isinstance(m, str):
        return Metric(m)
    raise OptionError(f"Study metrics: expected names or Metric objects, got {type(m).__name__}")


# ---------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------
FigureFn = Callable[["StudyResult", str], Iterable[tuple[str, str]]]


class Study:
    """Configurations x repeats x metrics.

    Args:
        name: short name, used for the folder and the report's title.
        run: ``run(**params, seed=seed) -> dict``: one run of one
            configuration. The dictionary maps each metric's name to a number;
            other entries that are 1-d arrays (e.g. a training-loss curve) are
            kept as curves (``curves.csv``), other values are ignored.
        configurations: ``{name: params}``: the keyword arguments of ``run``
            for each configuration (a list of names means no parameters).
        metrics: the metrics (names or :class:`Metric`) every run reports.
        repeats: default number of repeats (seeds) per configuration.
        seed: the seed of repeat 0; repeat ``r`` uses ``seed + r``.
        comparisons: ``(a, b)`` pairs of configuration names to test;
            default: every configuration against the first one; ``"best"``:
            every configuration against the best one (by the first metric
            with ``better`` set), chosen after the runs, as for a sweep.
        reference: ``{configuration: {metric: value}}``: published figures
            shown beside ours (``reference_label`` says where they are from).
        figures: functions ``f(result, folder) -> [(file, caption), ...]``
            that draw the study's own figures into ``folder``; the default
            figure (each plotted metric per configuration) is drawn too
            unless ``default_figure=False``.
        title, description, settings: text for the report (``settings`` is
            a dict of the fixed experimental settings).
        notes: extra Markdown appended to the report; a function of the
            result, or a string.
        claim: the study's conclusion in one sentence, shown first in the
            report; a function of the result (the sentence follows from the
            numbers), or a string.
        parallel: ``False`` for a study that measures times: ``workers="auto"``
            then runs one run at a time, so that runs do not compete for
            the cores they are timing.
        primary_test: ``"t"`` (default: the paired t-test) or
            ``"wilcoxon"`` (the signed-rank test, e.g. at the ELU paper's 10
            runs): the test whose Holm-corrected p-value decides
            "significant".
    """

    def __init__(self, name: str, run: Callable[..., Mapping[str, Any]],
                 configurations: Mapping[str, Mapping[str, Any]] | Sequence[str],
                 metrics: Sequence[Metric | str], *, repeats: int = 5, seed: int = 0,
                 comparisons: Sequence[tuple[str, str]] | None = None,
                 reference: Mapping[str, Mapping[str, float]] | None = None,
                 reference_label: str = "reference",
                 figures: Sequence[FigureFn] = (), default_figure: bool = True,
                 title: str | None = None, description: str = "",
                 settings: Mapping[str, Any] | None = None,
                 notes: str | Callable[["StudyResult"], str] = "",
                 claim: str | Callable[["StudyResult"], str] = "",
                 primary_test: str = "t", parallel: bool = True):
        if not callable(run):
            raise OptionError(f"Study {name!r}: run must be a function, got {type(run).__name__}")
        if isinstance(configurations, Mapping):
            configs = {str(k): dict(v or {}) for k, v in configurations.items()}
        else:
            configs = {str(k): {} for k in configurations}
        if not configs:
            raise OptionError(f"Study {name!r}: needs at least one configuration")
        self.name = name
        self.run_fn = run
        self.configurations = configs
        self.metrics = [_as_metric(m) for m in metrics]
        if not self.metrics:
            raise OptionError(f"Study {name!r}: needs at least one metric")
        self.repeats = _positive(repeats, "repeats")
        self.seed = int(seed)
        names = list(configs)
        self.compare_to_best = isinstance(comparisons, str) and comparisons == "best"
        if self.compare_to_best:
            if not any(m.better and m.test for m in self.metrics):
                raise OptionError(f"Study {name!r}: comparisons='best' needs a tested metric "
                                  f"with better='higher' or 'lower'")
            comparisons = []
        elif isinstance(comparisons, str):
            raise OptionError(f"Study {name!r}: comparisons must be (a, b) pairs or 'best', "
                              f"got {comparisons!r}")
        if comparisons is None:
            comparisons = [(names[0], other) for other in names[1:]]
        for a, b in comparisons:
            for c in (a, b):
                if c not in configs:
                    raise OptionError(f"Study {name!r}: comparison names unknown configuration "
                                      f"{c!r}; the configurations are {names}")
        self.comparisons = [tuple(c) for c in comparisons]
        self.reference = {k: dict(v) for k, v in (reference or {}).items()}
        self.reference_label = reference_label
        self.figures = list(figures)
        self.default_figure = default_figure
        self.title = title or name
        self.description = description
        self.settings = dict(settings or {})
        self.notes = notes
        self.claim = claim
        if primary_test not in ("t", "wilcoxon"):
            raise OptionError(f"Study {name!r}: primary_test must be 't' or 'wilcoxon', "
                              f"got {primary_test!r}")
        self.primary_test = primary_test
        self.parallel = bool(parallel)

    def run(self, repeats: int | None = None, out: str | None = None,
            stream: TextIO | None = None, command: str | None = None, *,
            workers: int | str = 1, threads: int | None = None,
            cluster: str | None = None, address: str | None = None,
            resume: bool = False) -> "StudyResult":
        """Run every configuration ``repeats`` times, printing one progress
        line per run (runs done / total, ETA); write the report into ``out``
        when given.

        Args:
            workers: ``1`` (default): one run after another in this process;
                ``N``: N worker processes, each with ``threads`` PyTorch
                threads (default ``cores // N``, so workers x threads <=
                cores); ``"auto"``: one worker per core.
            cluster: ``"ray"``: submit the runs as Ray tasks to the cluster
                at ``address`` (``None``: start a local Ray instance;
                ``"auto"``: the cluster this machine is part of).
            resume: keep the finished runs found in ``out/runs.csv`` (and
                their curves) and run only the others.

        Per-run results do not depend on where a run is executed: each run
        is seeded with its own seed before it starts, so with the same
        PyTorch threads per run the rows are the same (apart from the timing
        columns) for every ``workers`` and ``cluster``. The thread count
        itself matters (PyTorch splits sums differently over threads, and
        training amplifies last-bit differences): it is a column of
        ``runs.csv``; ``threads=1`` makes sequential runs match 2 workers on
        2 cores. Runs finish in any order; the rows are kept in the sequential order
        (repeat-major: all configurations of repeat 0, then of repeat 1,
        ...), so a study stopped early still has complete pairs. A run that
        fails (or whose worker dies) is retried once, then reported in the
        result's ``failures`` and the report. ``runs.csv`` is rewritten
        after every finished run; on Ctrl-C the workers are stopped and the
        report of the finished runs is written before
        :class:`KeyboardInterrupt` propagates.
        """
        from . import runner

        repeats = self.repeats if repeats is None else _positive(repeats, "repeats")
        stream = stream if stream is not None else sys.stdout
        if out is not None:
            check_out_folder(out)
        result = StudyResult(self, repeats)
        if resume and out is None:
            raise OptionError(f"Study {self.name!r}: resume=True needs out, the folder whose "
                              f"runs.csv holds the finished runs")
        if resume:
            result.load_runs(out)
        done = {(r["configuration"], r["repeat"]) for r in result.rows}
        tasks = [runner.Task(c, r, self.seed + r, params) for r in range(repeats)
                 for c, params in self.configurations.items() if (c, r) not in done]
        if workers == "auto" and not self.parallel:
            workers = 1
        executor = _executor(workers, threads, cluster, address, len(tasks))
        result.execution = executor.describe()
        total = repeats * len(self.configurations)
        start = time.perf_counter()
        load = _load_average()
        result.load = [load, load]
        resumed = f" ({len(done)} finished before, kept)" if done else ""
        print(f"Study {self.name}: {len(self.configurations)} configurations x {repeats} "
              f"repeats = {total} runs{resumed}, {result.execution}",
              file=stream, flush=True)
        width = len(str(total))
        k = 0
        try:
            for o in executor.run(self.run_fn, tasks):
                if not o.ok:
                    result.failures.append(o)
                    last = o.error.strip().splitlines()[-1] if o.error.strip() else "?"
                    then = "retrying it once" if o.will_retry else "giving up on it"
                    print(f"FAILED {o.task} (attempt {o.attempt}): {last}; {then}",
                          file=stream, flush=True)
                    continue
                row = result._add(o.task.configuration, o.task.repeat, o.task.seed, o.output,
                                  o.wall, o.threads)
                k += 1
                result.load[1] = max(result.load[1], row["load_1min"])
                elapsed = time.perf_counter() - start
                eta = elapsed / k * (len(tasks) - k)
                shown = ", ".join(f"{m.title} {m.format(row[m.name])}" for m in self.metrics)
                print(f"[{len(result.rows):>{width}}/{total}] {o.task.configuration} (repeat "
                      f"{o.task.repeat + 1}/{repeats}, seed {o.task.seed}): {shown}  "
                      f"[{o.wall:.1f} s; elapsed {_clock(elapsed)}, left ~{_clock(eta)}]",
                      file=stream, flush=True)
                result.wall_time = elapsed
                if out is not None:
                    result.save_runs(out)
                    complete = result._complete_repeats()
                    if complete > result.completed_repeats and complete < repeats:
                        # a long study stopped early still leaves a report of its
                        # complete repeats (marked partial), not nothing
                        result.completed_repeats = complete
                        result.write(out, command=command)
                result.completed_repeats = result._complete_repeats()
        except KeyboardInterrupt:
            executor.close()
            result.interrupted = True
            result.wall_time = time.perf_counter() - start
            result.completed_repeats = result._complete_repeats()
            if out is not None:
                result.write(out, command=command)
                print(f"\nInterrupted: the {len(result.rows)} finished runs are kept in "
                      f"{os.path.join(out, 'runs.csv')}; run again with resume=True "
                      f"(--resume) to do only the others.", file=stream, flush=True)
            raise
        finally:
            executor.close()
        result.wall_time = time.perf_counter() - start
        result.completed_repeats = result._complete_repeats()
        if out is not None:
            result.write(out, command=command)
        return result


    def report(self, out: str, repeats: int | None = None,
               command: str | None = None) -> "StudyResult":
        """Rewrite the report of ``out`` from its ``runs.csv`` (and
        ``curves.csv``) without running anything: after a change of figures
        or notes, or to report the finished part of a study (marked partial
        when runs are missing)."""
        repeats = self.repeats if repeats is None else _positive(repeats, "repeats")
        if not os.path.exists(os.path.join(out, "runs.csv")):
            raise OptionError(f"Study {self.name!r} report: no runs.csv in {out!r}; run the "
                              f"study first")
        result = StudyResult(self, repeats)
        result.load_runs(out)
        result.resumed = 0
        result.execution = "report rewritten from runs.csv (threads per run: see its rows)"
        result.completed_repeats = result._complete_repeats()
        result.write(out, command=command)
        return result


def _executor(workers, threads, cluster, address, runs: int):
    from . import runner
    if cluster is not None:
        if cluster != "ray":
            raise OptionError(f"Study cluster: expected 'ray' or None, got {cluster!r}")
        return runner.RayCluster(address, threads=threads or 1)
    if workers == "auto":
        workers = runner.auto_workers(runs)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise OptionError(f"Study workers: expected an integer >= 1 or 'auto', got {workers!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise OptionError(f"Study threads: expected an integer >= 1, got {threads!r}")
    if workers == 1:
        return runner.InProcess(threads)
    return runner.WorkerProcesses(int(workers), threads)


def check_out_folder(out: str) -> None:
    """Fail before a study runs, not after, when its results could not be
    written: ``out`` must be a folder (or creatable as one) that we can
    write in."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise OptionError(f"Study out: {out!r} is a file, not a folder; give a folder for the "
                          f"report, runs.csv and figures")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise OptionError(f"Study out: cannot create the results folder {out!r} "
                          f"({e.strerror or e}); give a folder you can write to") from e
    probe = os.path.join(out, f".layerlab-write-test-{os.getpid()}")
    try:
        with open(probe, "w") as f:
            f.write("")
        os.remove(probe)
    except OSError as e:
        raise OptionError(f"Study out: cannot write in the results folder {out!r} "
                          f"({e.strerror or e}); give a folder you can write to") from e


def _load_average() -> float:
    """The 1-minute load average (NaN where the OS has none): times are
    comparable only while it stays below the number of cores."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def _positive(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise OptionError(f"Study {what}: expected an integer >= 1, got {v!r}")
    return int(v)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------
class StudyResult:
    """The runs of a study: ``rows`` (one dict per run: configuration,
    parameters, repeat, seed, metrics, wall time) and ``curves``
    (``{(configuration, repeat): {curve: array}}``)."""

    def __init__(self, study: Study, repeats: int):
        self.study = study
        self.repeats = repeats
        self.rows: list[dict[str, Any]] = []
        self.curves: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        self.wall_time = float("nan")
        self.completed_repeats = 0
        self.load = [float("nan"), float("nan")]   # 1-min load average: at start, highest
        self.execution = "in one process"           # where the runs ran (for the report)
        self.failures: list = []                    # runner.Outcome of each failed attempt
        self.resumed = 0                            # rows kept from an earlier session
        self.interrupted = False

    def _row_start(self, cname: str, repeat: int, seed: int) -> dict[str, Any]:
        """A run's row up to its metrics: the configuration, its parameters
        that are plain values, the repeat and the seed."""
        row: dict[str, Any] = {"configuration": cname}
        for k, v in self.study.configurations[cname].items():
            if isinstance(v, (int, float, str, bool, np.number)) or v is None:
                row[k] = v
        row.update(repeat=repeat, seed=seed)
        return row

    def _add(self, cname: str, repeat: int, seed: int, output: Mapping[str, Any],
             wall: float, threads: int = 0) -> dict[str, Any]:
        if not isinstance(output, Mapping):
            raise OptionError(f"Study {self.study.name!r}: run() must return a dict of metrics, "
                              f"got {type(output).__name__}")
        row = self._row_start(cname, repeat, seed)
        for m in self.study.metrics:
            if m.name not in output:
                raise OptionError(f"Study {self.study.name!r}: run() of {cname!r} returned no "
                                  f"metric {m.name!r}; it returned {sorted(output)}")
            row[m.name] = float(output[m.name])
        # PyTorch's threads: a run's numbers depend on them (see runner.execute_run)
        row["threads"] = threads
        row["wall_s"] = round(wall, 3)
        # the machine's load after the run: timings are comparable only
        # between runs made under a similar load (accuracies are not affected)
        row["load_1min"] = round(_load_average(), 2)
        self._insert(row)
        metric_names = {m.name for m in self.study.metrics}
        curves = {k: np.asarray(v, dtype=float) for k, v in output.items()
                  if k not in metric_names and isinstance(v, (list, tuple, np.ndarray))
                  and np.ndim(v) == 1}
        if curves:
            self.curves[(cname, repeat)] = curves
        return row

    def _insert(self, row: dict[str, Any]) -> None:
        """Keep the rows in the sequential order (repeat, then configuration
        as declared), whatever order the runs finished in."""
        order = {c: i for i, c in enumerate(self.study.configurations)}
        self.rows.append(row)
        self.rows.sort(key=lambda r: (r["repeat"], order[r["configuration"]]))

    def _complete_repeats(self) -> int:
        """How many leading repeats have every configuration's run."""
        have = {(r["configuration"], r["repeat"]) for r in self.rows}
        n = 0
        while n < self.repeats and all((c, n) in have for c in self.study.configurations):
            n += 1
        return n

    def load_runs(self, out: str) -> int:
        """Keep the finished runs of ``out/runs.csv`` (and their curves from
        ``curves.csv``) that belong to this study: same configuration name,
        a repeat below ``repeats`` and the seed this study gives it. Returns
        how many were kept. A file of another study is refused, not mixed in."""
        path = os.path.join(out, "runs.csv")
        if not os.path.exists(path):
            return 0
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        metric_names = [m.name for m in self.study.metrics]
        kept = 0
        for i, raw in enumerate(rows):
            where = f"{path}, row {i + 2}"
            missing = [k for k in ["configuration", "repeat", "seed"] + metric_names
                       if k not in raw]
            if missing:
                raise OptionError(f"Study {self.study.name!r} resume: {where} has no column(s) "
                                  f"{missing}; is it another study's file? Use another folder "
                                  f"or resume=False")
            cname = raw["configuration"]
            try:
                repeat, seed = int(raw["repeat"]), int(raw["seed"])
            except ValueError as e:
                raise OptionError(f"Study {self.study.name!r} resume: {where}: repeat and seed "
                                  f"must be integers, got {raw['repeat']!r}, "
                                  f"{raw['seed']!r}") from e
            if cname not in self.study.configurations or repeat >= self.repeats:
                continue
            if seed != self.study.seed + repeat:
                raise OptionError(f"Study {self.study.name!r} resume: {where} ran repeat "
                                  f"{repeat} with seed {seed}, this study gives it seed "
                                  f"{self.study.seed + repeat}; use another folder or "
                                  f"resume=False")
            row = self._row_start(cname, repeat, seed)
            for k in metric_names:
                row[k] = _float(raw[k])
            threads = _float(raw.get("threads", ""))
            row["threads"] = int(threads) if math.isfinite(threads) else 0
            row["wall_s"] = _float(raw.get("wall_s", ""))
            row["load_1min"] = _float(raw.get("load_1min", ""))
            if any(r["configuration"] == cname and r["repeat"] == repeat for r in self.rows):
                continue
            self._insert(row)
            kept += 1
        self._load_curves(os.path.join(out, "curves.csv"))
        self.resumed += kept
        return kept

    def _load_curves(self, path: str) -> None:
        if not os.path.exists(path):
            return
        have = {(r["configuration"], r["repeat"]) for r in self.rows}
        points: dict[tuple[str, int], dict[str, list[tuple[int, float]]]] = {}
        with open(path, newline="") as f:
            for raw in csv.DictReader(f):
                try:
                    key = (raw["configuration"], int(raw["repeat"]))
                    step, value = int(raw["step"]), _float(raw["value"])
                    name = raw["curve"]
                except (KeyError, ValueError) as e:
                    raise OptionError(f"Study {self.study.name!r} resume: {path} is not a "
                                      f"curves file of a study ({e})") from e
                if key in have:
                    points.setdefault(key, {}).setdefault(name, []).append((step, value))
        for key, curves in points.items():
            if key not in self.curves:
                self.curves[key] = {n: np.array([v for _, v in sorted(p)]) for n, p in
                                    curves.items()}

    def failed_runs(self) -> list:
        """The tasks that failed and are not in the results (after retry)."""
        have = {(r["configuration"], r["repeat"]) for r in self.rows}
        return [o.task for o in self.failures if not o.will_retry and o.task.key not in have]

    # -- queries ---------------------------------------------------------
    @property
    def configurations(self) -> list[str]:
        return list(self.study.configurations)

    def values(self, configuration: str, metric: str) -> np.ndarray:
        """The metric's values of a configuration, in repeat order."""
        rows = sorted((r for r in self.rows if r["configuration"] == configuration),
                      key=lambda r: r["repeat"])
        return np.array([r[metric] for r in rows], dtype=float)

    def mean(self, configuration: str, metric: str) -> float:
        v = self.values(configuration, metric)
        v = v[np.isfinite(v)]
        return float(v.mean()) if len(v) else float("nan")

    def std(self, configuration: str, metric: str) -> float:
        """Sample standard deviation over repeats (``ddof=1``; NaN for one)."""
        v = self.values(configuration, metric)
        v = v[np.isfinite(v)]
        return float(v.std(ddof=1)) if len(v) > 1 else float("nan")

    def curve(self, configuration: str, name: str) -> np.ndarray:
        """A curve of every repeat of a configuration, ``(repeats, length)``
        (cut to the shortest)."""
        cs = [c[name] for (cn, _), c in sorted(self.curves.items()) if cn == configuration
              and name in c]
        if not cs:
            raise OptionError(f"no curve {name!r} for configuration {configuration!r}")
        n = min(len(c) for c in cs)
        return np.stack([c[:n] for c in cs])

    def pairs(self) -> list[tuple[str, str]]:
        """The configurations compared: the study's pairs, or, with
        ``comparisons="best"``, the best configuration against each other."""
        if not self.study.compare_to_best:
            return list(self.study.comparisons)
        m = next(m for m in self.study.metrics if m.better and m.test)
        means = {c: self.mean(c, m.name) for c in self.configurations}
        finite = {c: v for c, v in means.items() if math.isfinite(v)}
        if not finite:
            return []
        best = (max if m.better == "higher" else min)(finite, key=finite.get)
        return [(best, c) for c in self.configurations if c != best]

    def compare(self, a: str, b: str, metric: str) -> Comparison:
        """Paired test of configurations ``a`` and ``b`` on ``metric``, over
        the repeats both have (a pair is one seed: with runs missing, as in
        a partial or resumed study, only the seeds both ran are paired)."""
        by = {c: {r["repeat"]: r[metric] for r in self.rows if r["configuration"] == c}
              for c in (a, b)}
        common = sorted(set(by[a]) & set(by[b]))
        return paired_test([by[a][r] for r in common], [by[b][r] for r in common], metric,
                           (a, b))

    def _has_pairs(self) -> bool:
        """Whether some comparison has at least two paired seeds to test."""
        if not self.pairs():
            return False
        have: dict[str, set] = {}
        for r in self.rows:
            have.setdefault(r["configuration"], set()).add(r["repeat"])
        return any(len(have.get(a, set()) & have.get(b, set())) >= 2 for a, b in self.pairs())

    def comparisons(self, alpha: float = 0.05) -> list[Comparison]:
        """Every comparison of the study on every tested metric, with Holm's
        correction within a metric."""
        out: list[Comparison] = []
        for m in self.study.metrics:
            if not m.test:
                continue
            cs = [self.compare(a, b, m.name) for a, b in self.pairs()]
            wilcoxon = self.study.primary_test == "wilcoxon"
            for c, p in zip(cs, holm([c.p_wilcoxon if wilcoxon else c.p_t for c in cs])):
                c.p_holm = p
                c.significant = bool(p < alpha)
            out += cs
        return out

    # -- text ------------------------------------------------------------
    def summary_rows(self) -> list[list[str]]:
        """Header and one row per configuration: mean ± std of each metric
        (and the reference value where given)."""
        metrics = self.study.metrics
        ref = self.study.reference
        header = ["configuration", "runs"]
        for m in metrics:
            header.append(f"{m.title} (mean ± std)")
            if any(m.name in v for v in ref.values()):
                header.append(f"{m.title}, {self.study.reference_label}")
        rows = [header]
        best = {}
        for m in metrics:
            if m.better:
                means = {c: self.mean(c, m.name) for c in self.configurations}
                finite = {c: v for c, v in means.items() if math.isfinite(v)}
                if finite and len(finite) > 1:
                    pick = max if m.better == "higher" else min
                    best[m.name] = pick(finite, key=finite.get)
        for c in self.configurations:
            n = len(self.values(c, metrics[0].name))
            row = [c, str(n)]
            for m in metrics:
                cell = f"{m.format(self.mean(c, m.name))} ± {m.format(self.std(c, m.name))}"
                if best.get(m.name) == c:
                    cell += " *"
                row.append(cell)
                if any(m.name in v for v in ref.values()):
                    rv = ref.get(c, {}).get(m.name)
                    row.append(m.format(rv) if rv is not None else "")
            rows.append(row)
        return rows

    def comparison_rows(self, alpha: float = 0.05) -> list[list[str]]:
        metrics = {m.name: m for m in self.study.metrics}
        primary = "Wilcoxon" if self.study.primary_test == "wilcoxon" else "t"
        rows = [["metric", "a", "b", "pairs", "mean a - b", "95% CI", "p (paired t)",
                 "p (Wilcoxon)", f"p ({primary}, Holm)", "significant"]]
        for c in self.comparisons(alpha):
            m = metrics[c.metric]
            rows.append([m.title, c.a, c.b, str(c.n), m.format(c.mean_diff),
                         f"[{m.format(c.ci_low)}, {m.format(c.ci_high)}]", _p(c.p_t),
                         f"{_p(c.p_wilcoxon)} (min {c.wilcoxon_floor:.3g})", _p(c.p_holm),
                         "yes" if c.significant else "no"])
        return rows

    def table(self) -> str:
        """The summary as aligned text, then the comparisons."""
        text = _text_table(self.summary_rows())
        if self._has_pairs():
            primary = "Wilcoxon" if self.study.primary_test == "wilcoxon" else "t-test"
            text += (f"\n\nPaired comparisons (same seeds; {primary} primary, "
                     f"Holm-corrected):\n")
            text += _text_table(self.comparison_rows())
        return text

    # -- files -----------------------------------------------------------
    def to_csv(self, path: str) -> str:
        """One row per run (written to a temporary file, then moved over
        ``path``: a study killed while writing keeps the previous file)."""
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        with _replacing(path) as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        return path

    def curves_to_csv(self, path: str) -> str | None:
        """Curves in long form: configuration, repeat, curve, step, value."""
        if not self.curves:
            return None
        with _replacing(path) as f:
            w = csv.writer(f)
            w.writerow(["configuration", "repeat", "curve", "step", "value"])
            for (cname, rep), cs in self.curves.items():
                for name, arr in cs.items():
                    for i, v in enumerate(arr):
                        w.writerow([cname, rep, name, i + 1, f"{v:.6g}"])
        return path

    def save_runs(self, out: str) -> None:
        """``runs.csv`` and ``curves.csv`` only (after every finished run)."""
        os.makedirs(out, exist_ok=True)
        self.to_csv(os.path.join(out, "runs.csv"))
        self.curves_to_csv(os.path.join(out, "curves.csv"))

    def write(self, out: str, command: str | None = None) -> str:
        """Write ``runs.csv``, ``curves.csv`` (if any), the figures and
        ``report.md`` into folder ``out``; return the report's path."""
        os.makedirs(out, exist_ok=True)
        self.to_csv(os.path.join(out, "runs.csv"))
        has_curves = self.curves_to_csv(os.path.join(out, "curves.csv")) is not None
        figures: list[tuple[str, str]] = []
        if self.study.default_figure:
            figures += _default_figure(self, out)
        for fn in self.study.figures:
            figures += list(fn(self, out))
        path = os.path.join(out, "report.md")
        with open(path, "w") as f:
            f.write(self.markdown(figures, command, has_curves))
        return path

    def markdown(self, figures: Sequence[tuple[str, str]] = (), command: str | None = None,
                 has_curves: bool = False) -> str:
        s = self.study
        import torch
        out = io.StringIO()
        w = out.write
        w(f"# {s.title}\n\n")
        claim = s.claim(self) if callable(s.claim) else s.claim
        if claim:
            w(f"**Claim:** {claim.strip()}\n\n")
        if s.description:
            w(s.description.strip() + "\n\n")
        if command:
            w(f"Made with:\n\n```\n{command}\n```\n\n")
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        from .. import __version__
        took = _clock(self.wall_time) if math.isfinite(self.wall_time) else "n/a"
        if self.completed_repeats < self.repeats:
            w(f"**Partial results: {self.completed_repeats} of {self.repeats} repeats "
              f"completed so far{' (interrupted)' if self.interrupted else ''}.**\n\n")
        resumed = (f" ({self.resumed} of them kept from an earlier session, resumed)"
                   if self.resumed else "")
        walls = [r.get("wall_s", float("nan")) for r in self.rows]
        summed = _clock(sum(w for w in walls if isinstance(w, float) and math.isfinite(w)))
        threads = sorted({r.get("threads") for r in self.rows if r.get("threads")})
        if len(threads) > 1:
            summed += (f"; the runs used {' and '.join(map(str, threads))} PyTorch threads "
                       f"(column `threads` of runs.csv), and a run's numbers depend on it")
        loads = [r.get("load_1min", float("nan")) for r in self.rows]
        loads = [v for v in loads if isinstance(v, float) and math.isfinite(v)]
        load = (f"1-minute load average after a run: median {np.median(loads):.2f}, at most "
                f"{max(loads):.2f}{_load_warning(max(loads))}" if loads else
                "1-minute load average not available")
        w(f"{len(s.configurations)} configurations x {self.completed_repeats} repeats (seeds "
          f"{s.seed}..{s.seed + self.completed_repeats - 1}, the same for every configuration), "
          f"{len(self.rows)} runs{resumed} (their wall times add up to {summed})"
          f"{f', this session {took}' if math.isfinite(self.wall_time) else ''}, "
          f"{self.execution}; "
          f"{when}; layerlab {__version__}, PyTorch {torch.__version__}, "
          f"{platform.machine()} {os.cpu_count()} CPU cores; {load}. Accuracies and losses "
          f"do not depend on the load or on where a run ran (each run is seeded alone); "
          f"times do.\n\n")
        failed = self.failed_runs()
        if self.failures:
            w("## Failed runs\n\n")
            for o in self.failures:
                last = o.error.strip().splitlines()[-1] if o.error.strip() else "?"
                then = ("retried" if o.will_retry else "failed again: **missing from the "
                        "results**; rerun with resume to try it again")
                w(f"- {o.task}, attempt {o.attempt}: `{last}`; {then}\n")
            w(f"\n{len(failed)} run(s) missing after the retry.\n\n")
        if s.settings:
            w("## Settings\n\n")
            for k, v in s.settings.items():
                w(f"- {k}: {v}\n")
            w("\n")
        w("## Results\n\n")
        w(_md_table(self.summary_rows()))
        w("\nmean ± sample standard deviation over the repeats; * marks the best mean.\n\n")
        if self._has_pairs():
            w("## Paired comparisons\n\n")
            if s.compare_to_best:
                w("Each configuration against the best one, chosen after the runs: choosing "
                  "the best first makes its p-values optimistic; confirm a winner with a fresh "
                  "study of the few best (new seeds).\n\n")
            w(_md_table(self.comparison_rows()))
            w(f"\n{_statistics_note(self.completed_repeats, s.primary_test)}\n\n")
        if figures:
            w("## Figures\n\n")
            for fname, caption in figures:
                w(f"![{caption}]({fname})\n\n*{caption}*\n\n")
        notes = s.notes(self) if callable(s.notes) else s.notes
        if notes:
            w("## Notes\n\n" + notes.strip() + "\n\n")
        w("## Files\n\n- `runs.csv`: one row per run (configuration, parameters, repeat, seed, "
          "metrics, wall time in seconds).\n")
        if has_curves:
            w("- `curves.csv`: per-run curves (configuration, repeat, curve, step, value).\n")
        return out.getvalue()


def _statistics_note(repeats: int, primary: str = "t") -> str:
    power = ("cannot reach 0.05 at this number of repeats" if wilcoxon_min_p(repeats) >= 0.05
             else "can reach 0.05 only when (nearly) all pairs agree in sign")
    if primary == "wilcoxon":
        which = ("The exact Wilcoxon signed-rank test (`scipy.stats.wilcoxon`, what the ELU "
                 "paper used) is the primary test, Holm-corrected over this table's "
                 "comparisons of a metric; \"significant\" means corrected p < 0.05. The "
                 "paired t-test (`scipy.stats.ttest_rel`) and its 95% interval are shown "
                 "beside it. ")
    else:
        which = ("The paired t-test (`scipy.stats.ttest_rel`) is the primary test, "
                 "Holm-corrected over this table's comparisons of a metric; \"significant\" "
                 "means corrected p < 0.05. The exact Wilcoxon signed-rank test "
                 "(`scipy.stats.wilcoxon`) is shown as the assumption-free check. ")
    return (f"Tests pair the runs of two configurations that share a seed. {which}"
            f"With {repeats} pairs the Wilcoxon test's smallest possible p-value is "
            f"{wilcoxon_min_p(repeats):.3g}, so it "
            f"{power}. "
            f"With {repeats} repeats only differences that are large against the run-to-run "
            f"spread are detected: \"no\" means \"not shown\", not \"equal\".")


def _load_warning(load: float) -> str:
    cores = os.cpu_count() or 1
    if math.isfinite(load) and load > cores + 0.5:
        return (f" (above the {cores} cores: other work shared the CPU, so times are "
                f"inflated and noisy)")
    return ""


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


class _replacing:
    """``with _replacing(path) as f``: write a temporary file beside
    ``path`` and move it over ``path`` only when the block succeeds."""

    def __init__(self, path: str):
        self.path = path
        self.tmp = f"{path}.tmp-{os.getpid()}"

    def __enter__(self):
        self.f = open(self.tmp, "w", newline="")
        return self.f

    def __exit__(self, kind, value, tb):
        self.f.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            os.remove(self.tmp)
        return False


def _p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_table(rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    out = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(esc[0])]
    out += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(out) + "\n"


def _default_figure(result: StudyResult, out: str) -> list[tuple[str, str]]:
    """Each plotted metric per configuration: every run as a dot, mean ±
    std as a bar with error bar, the reference value as a red cross."""
    from matplotlib.figure import Figure   # no pyplot: the user's backend is left alone

    metrics = [m for m in result.study.metrics if m.plot]
    if not metrics:
        return []
    names = result.configurations
    fig = Figure(figsize=(max(4.5, 1.1 * len(names) + 2) * len(metrics), 4.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, m in zip(axes[0], metrics):
        x = np.arange(len(names))
        means = [result.mean(c, m.name) for c in names]
        stds = [result.std(c, m.name) for c in names]
        ax.bar(x, means, yerr=[0 if math.isnan(s) else s for s in stds], color="#9ecae1",
               edgecolor="#3182bd", capsize=4, label="mean ± std")
        for i, c in enumerate(names):
            v = result.values(c, m.name)
            ax.plot(i + rng.uniform(-0.15, 0.15, len(v)), v, "o", color="#08519c", ms=3.5,
                    label="runs" if i == 0 else None)
            rv = result.study.reference.get(c, {}).get(m.name)
            if rv is not None:
                ax.plot(i, rv, "x", color="#d62728", ms=9, mew=2,
                        label=result.study.reference_label if not any(
                            result.study.reference.get(cc, {}).get(m.name) is not None
                            for cc in names[:i]) else None)
        finite = [v for c in names for v in result.values(c, m.name) if np.isfinite(v)]
        refs = [result.study.reference.get(c, {}).get(m.name) for c in names]
        finite += [r for r in refs if r is not None]
        if finite and m.better == "higher" and min(finite) > 0:
            lo, hi = min(finite), max(finite)
            pad = (hi - lo) * 0.3 + 1e-9
            ax.set_ylim(max(0.0, lo - pad), hi + pad)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
        ax.set_title(m.title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{result.study.title}: {result.completed_repeats} repeats per configuration",
                 fontsize=10)
    fig.tight_layout()
    fname = "metrics.png"
    fig.savefig(os.path.join(out, fname), dpi=110)
    return [(fname, "Each configuration's metrics: dots are runs, bars mean ± std"
             + (f", crosses {result.study.reference_label}" if result.study.reference else ""))]
