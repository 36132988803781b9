"""Sweeps: grids and random samples over named options, as a study's
configurations, compared with the best one; the example script."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import layerlab as ll
from layerlab.experiments import (IntUniform, LogUniform, Metric, Study, Uniform, grid,
                                  random_sample)

ROOT = Path(__file__).resolve().parents[1]


def test_grid_is_every_combination_named_by_its_values():
    g = grid(learn_rate=[0.01, 0.1, 0.3], batch_norm=[False, True])
    assert len(g) == 6
    assert list(g)[:2] == ["learn_rate=0.01, batch_norm=False", "learn_rate=0.01, batch_norm=True"]
    assert g["learn_rate=0.3, batch_norm=True"] == {"learn_rate": 0.3, "batch_norm": True}
    assert {(p["learn_rate"], p["batch_norm"]) for p in g.values()} == {
        (lr, bn) for lr in (0.01, 0.1, 0.3) for bn in (False, True)}
    assert list(grid(activation=[ll.ReLU, ll.ELU])) == ["activation=ReLU", "activation=ELU"]


def test_random_sample_is_reproducible_and_draws_from_its_distributions():
    a = random_sample(40, seed=3, lr=LogUniform(1e-3, 1e-1), momentum=Uniform(0.8, 0.99),
                      width=IntUniform(8, 10), bn=[False, True], epochs=5)
    assert a == random_sample(40, seed=3, lr=LogUniform(1e-3, 1e-1), momentum=Uniform(0.8, 0.99),
                              width=IntUniform(8, 10), bn=[False, True], epochs=5)
    assert a != random_sample(40, seed=4, lr=LogUniform(1e-3, 1e-1),
                              momentum=Uniform(0.8, 0.99), width=IntUniform(8, 10),
                              bn=[False, True], epochs=5)
    ps = list(a.values())
    lr = np.log10([p["lr"] for p in ps])
    assert lr.min() >= -3 and lr.max() < -1
    assert (lr < -2).sum() > 8 and (lr > -2).sum() > 8         # log-uniform: both decades
    assert {p["width"] for p in ps} == {8, 9, 10}               # both ends included
    assert {p["bn"] for p in ps} == {False, True} and {p["epochs"] for p in ps} == {5}
    assert all(0.8 <= p["momentum"] < 0.99 for p in ps)


def test_sweep_errors_name_the_option():
    with pytest.raises(ll.OptionError, match="grid option 'lr': expected a non-empty list"):
        grid(lr=[])
    with pytest.raises(ll.OptionError, match="name at least one option"):
        grid()
    with pytest.raises(ll.OptionError, match="LogUniform: low must be > 0"):
        LogUniform(0, 1)
    with pytest.raises(ll.OptionError, match="expected low < high"):
        Uniform(1, 1)
    with pytest.raises(ll.OptionError, match="random_sample n"):
        random_sample(0, lr=[0.1])


def test_a_sweep_is_a_study_compared_with_its_best_configuration():
    def run(lr, bn, seed):
        # the error is smallest at lr 0.1 with bn; the seed adds shared noise
        return {"error": abs(math.log10(lr) + 1) * 10 + (0 if bn else 3) + seed % 3}

    study = Study("sweep", run, grid(lr=[0.01, 0.1, 1.0], bn=[False, True]),
                  [Metric("error", better="lower")], repeats=3, comparisons="best")
    result = study.run(stream=open(os.devnull, "w"))
    pairs = result.pairs()
    assert pairs[0][0] == "lr=0.1, bn=True" and len(pairs) == 5
    assert {b for _, b in pairs} == set(study.configurations) - {"lr=0.1, bn=True"}
    diffs = {c.b: c.mean_diff for c in result.comparisons()}
    assert diffs["lr=0.1, bn=False"] == pytest.approx(-3.0)
    assert "chosen after the runs" in result.markdown()
    with pytest.raises(ll.OptionError, match="needs a tested metric with better"):
        Study("s", run, grid(lr=[0.1], bn=[True]), ["error"], comparisons="best")


@pytest.mark.slow
def test_the_sweep_example_runs(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "my_sweep.py"), "--random",
                          "3", "--max-epochs", "1", "--repeats", "2", "--out",
                          str(tmp_path / "sweep")], capture_output=True, text=True,
                         timeout=300, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Best: learn_rate=" in run.stdout
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "Each configuration against the best one" in report
    assert report.count("| learn_rate=") >= 3
