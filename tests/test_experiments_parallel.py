"""Studies at scale: worker processes and Ray give the rows of a sequential
run; failed and killed runs are retried and reported; Ctrl-C keeps the
finished runs and resume skips them; the results folder is checked before a
study runs; reports never touch pyplot."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import layerlab as ll
from layerlab.cli import main
from layerlab.experiments import Metric, Study

TIMING = ("wall_s", "load_1min")   # the columns that may differ between executions


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def tiny_training(width, seed):
    """A few steps of least squares with torch: the numbers depend on the
    seed through the initial weights torch draws (seeded by the study)."""
    w = torch.randn(width, 1)
    x = torch.linspace(-1, 1, 64).reshape(-1, 1).repeat(1, width)
    y = torch.sin(3 * x[:, :1])
    losses = []
    for _ in range(20):
        w.requires_grad_(True)
        loss = ((x @ w - y) ** 2).mean()
        (g,) = torch.autograd.grad(loss, w)
        w = (w - 0.05 * g).detach()
        losses.append(float(loss.detach()))
    return {"loss": losses[-1], "first": losses[0], "curve": np.array(losses)}


def toy_study(run=tiny_training, repeats=3, **kw):
    # a closure-free module-level run by default; tests pass closures too
    return Study("toy", run, {"narrow": dict(width=2), "wide": dict(width=5)},
                 metrics=[Metric("loss", better="lower"), Metric("first", test=False)],
                 repeats=repeats, **kw)


def quiet():
    return open(os.devnull, "w")


@pytest.fixture
def forked_workers():
    """Workers that run closures are forked; once CUDA is initialised in
    this process (an earlier test on a GPU machine) they are spawned, and a
    closure cannot be sent to a spawned worker (tested below)."""
    if torch.cuda.is_initialized():
        pytest.skip("CUDA is initialised in this test process: workers are spawned")


# ---------------------------------------------------------------------------
# parallel runs
# ---------------------------------------------------------------------------
def test_two_workers_give_the_rows_of_a_sequential_run(tmp_path, capsys):
    seq = toy_study().run(out=str(tmp_path / "seq"), stream=quiet(), workers=1, threads=1)
    par = toy_study().run(out=str(tmp_path / "par"), workers=2, threads=1)
    progress = capsys.readouterr().out
    assert "in 2 worker processes, 1 PyTorch thread(s) each" in progress
    assert "[6/6]" in progress and "left ~" in progress          # runs done / total, ETA
    a, b = read_rows(tmp_path / "seq" / "runs.csv"), read_rows(tmp_path / "par" / "runs.csv")
    assert len(a) == 6 and without_timing(a) == without_timing(b)
    assert {r["threads"] for r in b} == {"1"}
    # in the sequential order (repeat-major), whatever order the workers finished in
    assert [(r["repeat"], r["configuration"]) for r in b] == [
        (str(r), c) for r in range(3) for c in ("narrow", "wide")]
    np.testing.assert_array_equal(par.curve("wide", "curve"), seq.curve("wide", "curve"))
    assert a[0]["loss"] != a[2]["loss"]                         # the seeds differ
    report = (tmp_path / "par" / "report.md").read_text()
    assert "in 2 worker processes, 1 PyTorch thread(s) each" in report


def test_after_cuda_workers_are_spawned_and_need_a_module_level_run(tmp_path, monkeypatch):
    """A forked child cannot run autograd once the parent used CUDA: the
    workers are spawned then (CUDA's use faked here), a module-level run
    works, and a closure is refused with a message that says why."""
    from layerlab.experiments.runner import WorkerProcesses
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert WorkerProcesses.start_method() == "fork"
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert WorkerProcesses.start_method() == "spawn"
    seq = toy_study(repeats=1).run(stream=quiet(), workers=1)
    par = toy_study(repeats=1).run(stream=quiet(), workers=2, threads=1)
    assert par.values("wide", "loss").tolist() == seq.values("wide", "loss").tolist()
    with pytest.raises(ll.OptionError, match=r"used CUDA .*spawned.*picklable run function"):
        toy_study(lambda width, seed: {"loss": 1.0, "first": 0.0}, repeats=1).run(
            stream=quiet(), workers=2, threads=1)


def test_workers_run_closures_and_auto_picks_one_per_core(tmp_path, forked_workers):
    offset = 10.0

    def run(width, seed):                   # a closure: workers inherit it
        return {"loss": offset + width + seed, "first": 0.0}

    result = toy_study(run).run(stream=quiet(), workers="auto")
    assert result.values("wide", "loss").tolist() == [15.0, 16.0, 17.0]
    cores = os.cpu_count()
    assert result.execution.startswith(
        "in one process" if cores == 1 else f"in {min(cores, 6)} worker processes")


def test_a_killed_worker_is_reported_and_its_run_retried(tmp_path, forked_workers):
    marker = tmp_path / "killed-once"

    def run(width, seed):
        if width == 5 and seed == 1 and not marker.exists():
            marker.write_text("")
            os.kill(os.getpid(), signal.SIGKILL)     # the worker dies mid-run
        return tiny_training(width, seed)

    stream = io.StringIO()
    result = toy_study(run).run(out=str(tmp_path / "out"), stream=stream, workers=2,
                                threads=1)
    assert len(result.rows) == 6 and not result.failed_runs()
    (failure,) = result.failures
    assert failure.task.key == ("wide", 1) and failure.will_retry
    assert "killed by signal 9" in failure.error
    assert "FAILED wide (repeat 2, seed 1) (attempt 1)" in stream.getvalue()
    assert "retrying it once" in stream.getvalue()
    # the retried run gives the numbers it would have given the first time
    fresh = toy_study().run(stream=quiet(), workers=1, threads=1)
    assert result.values("wide", "loss").tolist() == fresh.values("wide", "loss").tolist()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Failed runs" in report and "killed by signal 9" in report


@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_failing_twice_is_reported_missing_not_dropped(tmp_path, workers, forked_workers):
    calls = tmp_path / "calls"

    def run(width, seed):
        if width == 2 and seed == 0:
            with open(calls, "a") as f:
                f.write("x")
            raise RuntimeError("bad luck")
        return tiny_training(width, seed)

    result = toy_study(run).run(out=str(tmp_path / "out"), stream=quiet(), workers=workers,
                                threads=1)
    assert calls.read_text() == "xx"                        # tried, then retried once
    assert [t.key for t in result.failed_runs()] == [("narrow", 0)]
    assert [o.will_retry for o in result.failures] == [True, False]
    assert "RuntimeError: bad luck" in result.failures[-1].error
    assert len(result.rows) == 5
    # the comparison pairs only the seeds both configurations ran
    c = result.compare("narrow", "wide", "loss")
    both = [r for r in result.rows if r["repeat"] in (1, 2)]
    assert c.n == 2 and c.mean_diff == pytest.approx(np.mean(
        [both[i]["loss"] - both[i + 1]["loss"] for i in (0, 2)]))
    report = (tmp_path / "out" / "report.md").read_text()
    assert "missing from the results" in report and "1 run(s) missing" in report


# ---------------------------------------------------------------------------
# Ctrl-C and resume
# ---------------------------------------------------------------------------
def test_ctrl_c_keeps_finished_runs_and_resume_skips_them(tmp_path):
    out = str(tmp_path / "out")
    done = []

    def interrupted(width, seed):
        if len(done) == 3:
            raise KeyboardInterrupt
        done.append((width, seed))
        return tiny_training(width, seed)

    with pytest.raises(KeyboardInterrupt):
        toy_study(interrupted).run(out=out, stream=quiet(), threads=1)
    kept = read_rows(os.path.join(out, "runs.csv"))
    assert len(kept) == 3
    assert "Partial results" in open(os.path.join(out, "report.md")).read()

    again = []

    def counting(width, seed):
        again.append((width, seed))
        return tiny_training(width, seed)

    result = toy_study(counting).run(out=out, stream=quiet(), threads=1, resume=True)
    assert again == [(5, 1), (2, 2), (5, 2)]                 # only the runs not finished
    assert result.resumed == 3 and len(result.rows) == 6
    fresh = toy_study().run(out=str(tmp_path / "fresh"), stream=quiet(), threads=1)
    assert without_timing(read_rows(os.path.join(out, "runs.csv"))) == \
        without_timing(read_rows(tmp_path / "fresh" / "runs.csv"))
    np.testing.assert_allclose(result.curve("narrow", "curve"), fresh.curve("narrow", "curve"),
                               rtol=1e-5)                   # curves.csv keeps 6 digits
    report = open(os.path.join(out, "report.md")).read()
    assert "Partial" not in report and "3 of them kept from an earlier session" in report


@pytest.fixture
def interactive_ctrl_c():
    """Ctrl-C raises KeyboardInterrupt, as in an interactive program (tests
    started in the background by a non-interactive shell inherit SIGINT
    ignored, and would wait for the sleeping run instead)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_the_workers_and_keeps_their_finished_runs(tmp_path, interactive_ctrl_c, forked_workers):
    out = str(tmp_path / "out")
    pids = tmp_path / "sleeper"

    def run(width, seed):
        if (width, seed) == (2, 1):
            pids.write_text(str(os.getpid()))
            os.kill(os.getppid(), signal.SIGINT)      # Ctrl-C reaches the parent ...
            import time
            time.sleep(120)                           # ... while this run is still going
        return tiny_training(width, seed)

    with pytest.raises(KeyboardInterrupt):
        toy_study(run).run(out=out, stream=quiet(), workers=2, threads=1)
    sleeper = int(pids.read_text())
    with pytest.raises(ProcessLookupError):          # the worker was stopped, not left running
        os.kill(sleeper, 0)
    kept = read_rows(os.path.join(out, "runs.csv"))
    # runs go out repeat-major: narrow 0 and wide 0 first, and the worker that
    # finishes one of them first takes narrow 1, which presses Ctrl-C. So at
    # least that finished run is kept (which one depends on timing), the other
    # worker's run only if it finished too, and never the interrupted run.
    done = {(r["configuration"], r["repeat"]) for r in kept}
    assert 1 <= len(kept) <= 3 and len(done) == len(kept)
    assert done & {("narrow", "0"), ("wide", "0")}
    assert ("narrow", "1") not in done
    assert done <= {("narrow", "0"), ("wide", "0"), ("wide", "1")}
    result = toy_study().run(out=out, stream=quiet(), workers=2, threads=1, resume=True)
    assert len(result.rows) == 6 and result.resumed == len(kept)
    toy_study().run(out=str(tmp_path / "fresh"), stream=quiet(), threads=1)
    assert without_timing(read_rows(os.path.join(out, "runs.csv"))) == \
        without_timing(read_rows(tmp_path / "fresh" / "runs.csv"))


def test_report_only_rewrites_the_report_from_runs_csv(tmp_path, capsys):
    out = str(tmp_path / "out")
    toy_study(repeats=2).run(out=out, stream=quiet())
    os.remove(os.path.join(out, "report.md"))
    calls = []

    def never(width, seed):
        calls.append(1)
        return tiny_training(width, seed)

    result = toy_study(never, repeats=3).report(out, command="again")
    assert calls == [] and len(result.rows) == 4 and result.completed_repeats == 2
    report = open(os.path.join(out, "report.md")).read()
    assert "Partial results: 2 of 3 repeats" in report and "again" in report
    with pytest.raises(ll.OptionError, match="no runs.csv in"):
        toy_study().report(str(tmp_path / "empty"))


def test_resume_refuses_another_studys_file(tmp_path):
    out = str(tmp_path / "out")
    toy_study(repeats=1).run(out=out, stream=quiet())
    with pytest.raises(ll.OptionError, match="seed 0, this study gives it seed 7"):
        toy_study(repeats=1, seed=7).run(out=out, stream=quiet(), resume=True)
    other = Study("other", lambda seed: {"accuracy": 1.0}, ["narrow"], ["accuracy"], repeats=1)
    with pytest.raises(ll.OptionError, match=r"no column\(s\) \['accuracy'\]"):
        other.run(out=out, stream=quiet(), resume=True)


# ---------------------------------------------------------------------------
# the results folder is checked first; options are checked
# ---------------------------------------------------------------------------
def test_out_is_checked_before_the_study_runs(tmp_path, capsys):
    calls = []

    def run(width, seed):
        calls.append(1)
        return tiny_training(width, seed)

    afile = tmp_path / "a-file"
    afile.write_text("keep me")
    with pytest.raises(ll.OptionError, match="is a file, not a folder"):
        toy_study(run).run(out=str(afile), stream=quiet())
    with pytest.raises(ll.OptionError, match="cannot create the results folder"):
        toy_study(run).run(out="/proc/nope", stream=quiet())
    assert calls == [] and afile.read_text() == "keep me"
    assert main(["experiment", "activations", "--quick", "--out", "/proc/nope"]) == 2
    err = capsys.readouterr().err
    assert "cannot create the results folder '/proc/nope'" in err


def test_bad_workers_threads_and_cluster_are_named():
    with pytest.raises(ll.OptionError, match="workers: expected an integer >= 1 or 'auto'"):
        toy_study().run(stream=quiet(), workers=0)
    with pytest.raises(ll.OptionError, match="threads: expected an integer >= 1"):
        toy_study().run(stream=quiet(), threads=0)
    with pytest.raises(ll.OptionError, match="cluster: expected 'ray' or None"):
        toy_study().run(stream=quiet(), cluster="slurm")
    with pytest.raises(SystemExit):
        main(["experiment", "activations", "--workers", "none"])


def test_wilcoxon_as_the_primary_test():
    def shifted(width, seed):        # b is always 1 better: t says p = 0, Wilcoxon 2/2**5
        return {"loss": float(width + seed), "first": 0.0}

    s = toy_study(shifted, repeats=5, primary_test="wilcoxon")
    result = s.run(stream=quiet())
    (c,) = result.comparisons()
    assert c.p_t == 0.0 and c.p_holm == pytest.approx(0.0625) and not c.significant
    assert "Wilcoxon primary" in result.table()
    t = toy_study(shifted, repeats=5).run(stream=quiet()).comparisons()[0]
    assert t.significant and t.p_holm == 0.0
    with pytest.raises(ll.OptionError, match="primary_test must be 't' or 'wilcoxon'"):
        toy_study(primary_test="sign")


def test_reports_draw_without_pyplot(tmp_path):
    """plots.py's promise: a report leaves pyplot and the user's backend alone."""
    code = (
        "import sys, matplotlib\n"
        # read without resolving it (get_backend() itself imports pyplot)
        "backend = dict.__getitem__(matplotlib.rcParams, 'backend')\n"
        "from tests.test_experiments_parallel import toy_study, quiet\n"
        f"toy_study(repeats=2).run(out={str(tmp_path)!r}, stream=quiet())\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == backend\n"
        "print('ok')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
    with open(tmp_path / "metrics.png", "rb") as f:
        assert f.read(4) == b"\x89PNG"


# ---------------------------------------------------------------------------
# Ray (a local instance with 2 CPUs)
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install layerlab[ray])")
    # Ray's workers import this test module by name (cloudpickle sends
    # module-level functions by reference): give them pytest's import path
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join([here, os.path.dirname(here), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_rows_of_a_sequential_run(tmp_path, local_ray):
    offset = 0.5

    def run(width, seed):            # a closure: Ray ships it by cloudpickle
        out = tiny_training(width, seed)
        out["loss"] += offset
        return out

    ray_result = toy_study(run).run(out=str(tmp_path / "ray"), stream=quiet(), cluster="ray",
                                    threads=1)
    assert not ray_result.failures, ray_result.failures[0].error
    toy_study(run).run(out=str(tmp_path / "seq"), stream=quiet(), threads=1)
    assert without_timing(read_rows(tmp_path / "ray" / "runs.csv")) == \
        without_timing(read_rows(tmp_path / "seq" / "runs.csv"))
    assert "as Ray tasks on a local Ray instance (2 CPUs)" in ray_result.execution
    assert "as Ray tasks" in (tmp_path / "ray" / "report.md").read_text()


@pytest.mark.slow
def test_ray_retries_a_failed_run_once(tmp_path, local_ray):
    marker = tmp_path / "failed-once"

    def run(width, seed):
        if width == 2 and seed == 2 and not marker.exists():
            marker.write_text("")
            raise RuntimeError("a node went away")
        return tiny_training(width, seed)

    result = toy_study(run).run(stream=quiet(), cluster="ray", threads=1)
    assert len(result.rows) == 6 and not result.failed_runs()
    (failure,) = result.failures
    assert failure.task.key == ("narrow", 2) and "a node went away" in failure.error


def test_without_ray_the_error_says_how_to_install(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_ray(name, *args, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    with pytest.raises(ll.OptionError, match=r"pip install layerlab\[ray\]"):
        toy_study().run(stream=quiet(), cluster="ray")
