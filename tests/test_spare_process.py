"""The spare process behind save_load_fresh_process: each job runs in a new
child that has not seen the asking program (nor the jobs before it), with the
program's current folder, environment and sys.path; exit status and output
come back; a job past its time is killed with the spare, and the next job
gets a new spare; a second job while one runs gets a plain new process."""

from __future__ import annotations

import json
import os

import pytest

from layerlab.checking import spare_process
from layerlab.checking.spare_process import PlainJob, SpareJob, start_job

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

REPORT = r"""
import json, os, sys, layerlab
print(json.dumps(dict(pid=os.getpid(), parent=os.getppid(), cwd=os.getcwd(),
                      poked=getattr(layerlab, "_poked", None), argv=sys.argv[1:],
                      env=os.environ.get("LAYERLAB_SPARE_TEST"), path=sys.path)))
layerlab._poked = "yes"          # a change the next job must not see
"""


def run(code, *argv, timeout=120.0):
    job = start_job(code, list(argv))
    done = job.wait(timeout)
    return job, done


def test_jobs_are_fresh_children_of_one_spare(tmp_path, monkeypatch):
    job1, (rc1, out1) = run(REPORT, "a", "b")
    assert isinstance(job1, SpareJob) and rc1 == 0, out1
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAYERLAB_SPARE_TEST", "set later")
    monkeypatch.syspath_prepend(str(tmp_path / "first"))
    job2, (rc2, out2) = run(REPORT, "c")
    assert rc2 == 0, out2
    a, b = json.loads(out1), json.loads(out2)
    assert a["parent"] == b["parent"] == job1.spare.proc.pid    # one spare ...
    assert a["pid"] != b["pid"] and a["pid"] != os.getpid()     # ... a new child each time
    assert a["poked"] is None and b["poked"] is None            # nothing left from job 1
    assert a["argv"] == ["a", "b"] and b["argv"] == ["c"]
    # the program's state when the job starts, not when the spare did
    assert b["cwd"] == str(tmp_path) and b["env"] == "set later"
    assert b["path"][0] == str(tmp_path / "first") and str(tmp_path / "first") not in a["path"]


def test_exit_status_and_output_come_back():
    _, (rc, out) = run("import sys; print('hello'); sys.exit(3)")
    assert rc == 3 and "hello" in out
    _, (rc, out) = run("raise ValueError('the layer is wrong')")
    assert rc == 1 and "ValueError: the layer is wrong" in out
    _, (rc, _) = run("import sys; sys.exit()")
    assert rc == 0


def test_a_job_past_its_time_is_killed_and_the_next_gets_a_new_spare():
    job, done = run("import time; time.sleep(60)", timeout=1.0)
    assert isinstance(job, SpareJob) and done is None
    assert job.spare.proc.poll() is not None                    # killed, child and all
    job2, (rc, _) = run("pass")
    assert rc == 0 and job2.spare is not job.spare


def test_a_second_job_while_one_runs_is_a_plain_process():
    first = start_job("import time; time.sleep(0.5)", [])
    second = start_job("import sys; print(sys.argv[1])", ["plain"])
    assert isinstance(first, SpareJob) and isinstance(second, PlainJob)
    assert second.wait(120) == (0, "plain\n")
    assert first.wait(120)[0] == 0


def test_without_fork_jobs_are_plain_processes(monkeypatch):
    monkeypatch.setattr(spare_process, "can_fork", lambda: False)
    job, (rc, out) = run("import sys; print(sys.argv[1:])", "x")
    assert isinstance(job, PlainJob) and rc == 0 and out.strip() == "['x']"


def test_a_job_whose_spare_dies_runs_again_as_a_plain_process():
    import signal
    job = start_job("import time, sys; time.sleep(1); print('done', sys.argv[1])", ["x"])
    assert isinstance(job, SpareJob)
    os.killpg(job.spare.proc.pid, signal.SIGKILL)      # the spare and its child
    assert job.wait(120) == (0, "done x\n")
    assert job.spare.proc.poll() is not None
    job2, (rc, _) = run("pass")
    assert rc == 0 and isinstance(job2, SpareJob) and job2.spare is not job.spare


def test_a_spare_that_cannot_start_falls_back_with_the_real_error(monkeypatch):
    # a spare whose interpreter dies at once, as when its imports fail there
    monkeypatch.setattr(spare_process, "_SPARE", "raise SystemExit(5)")
    monkeypatch.setattr(spare_process, "_spare", None)
    job, (rc, out) = run("raise ImportError('no module named my_layers')")
    assert isinstance(job, SpareJob)
    assert rc == 1 and "ImportError: no module named my_layers" in out
