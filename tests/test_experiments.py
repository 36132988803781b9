"""Studies: the statistics against hand computations, the machinery with a
toy study, the command line, and the quick forms of the seeds' studies
(their files and that their numbers are sane)."""

from __future__ import annotations

import csv
import io
import math
import os

import numpy as np
import pytest
import torch

import layerlab as ll
from layerlab.cli import main
from layerlab.experiments import (Metric, Study, holm, make_study, paired_test,
                                  wilcoxon_min_p)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_report(out, configurations, repeats, figures):
    """The report names every configuration and embeds figures that exist."""
    report = open(os.path.join(out, "report.md")).read()
    assert "## Results" in report
    for c in configurations:
        assert f"| {c} |" in report
    for fname in figures:
        assert f"]({fname})" in report
        with open(os.path.join(out, fname), "rb") as f:
            assert f.read(8) == PNG_MAGIC
    rows = read_rows(os.path.join(out, "runs.csv"))
    assert len(rows) == len(configurations) * repeats
    assert {r["configuration"] for r in rows} == set(configurations)
    return report, rows


# ---------------------------------------------------------------------------
# statistics against hand computations
# ---------------------------------------------------------------------------
def test_paired_t_test_matches_hand_computation():
    a = np.array([0.91, 0.95, 0.93, 0.97, 0.94])
    b = np.array([0.90, 0.92, 0.93, 0.93, 0.90])
    c = paired_test(a, b, "acc", ("A", "B"))
    d = a - b                                   # 0.01, 0.03, 0, 0.04, 0.04
    mean, sd = d.mean(), d.std(ddof=1)
    t = mean / (sd / math.sqrt(5))
    # two-sided p from the t distribution with 4 degrees of freedom; its CDF
    # has the closed form 1/2 + t (t^2 + 6) / (2 (t^2 + 4)^(3/2)) for nu = 4
    cdf = 0.5 + t * (t * t + 6) / (2 * (t * t + 4) ** 1.5)
    assert c.mean_diff == pytest.approx(0.024)
    assert c.p_t == pytest.approx(2 * (1 - cdf), rel=1e-9)
    half = 2.7764451051977987 * sd / math.sqrt(5)   # t_{0.975, 4}
    assert (c.ci_low, c.ci_high) == pytest.approx((mean - half, mean + half))
    # Wilcoxon: the zero is dropped; 4 positive differences -> all 16 sign
    # patterns equally likely, only the all-positive and all-negative ones
    # are as extreme: p = 2/16
    assert c.p_wilcoxon == pytest.approx(2 / 16)
    assert c.wilcoxon_floor == pytest.approx(2 / 16)


def test_wilcoxon_floor_at_five_repeats_is_0_0625():
    assert wilcoxon_min_p(5) == pytest.approx(0.0625)
    c = paired_test([5, 6, 7, 8, 9], [1, 1, 1, 1, 1])   # the largest possible effect
    assert c.p_wilcoxon == pytest.approx(0.0625)
    assert c.p_wilcoxon > 0.05                           # why the t-test is primary


def test_paired_test_degenerate_cases():
    same = paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.p_t == 1.0 and same.p_wilcoxon == 1.0 and same.mean_diff == 0
    shift = paired_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])    # constant difference
    assert shift.p_t == 0.0 and shift.ci_low == shift.ci_high == 1.0
    one = paired_test([1.0], [0.0])
    assert math.isnan(one.p_t) and math.isnan(one.p_wilcoxon)
    with pytest.raises(ll.OptionError, match="equal length"):
        paired_test([1, 2], [1, 2, 3])


def test_holm_matches_hand_computation():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.5, float("nan"), 0.01])
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


# ---------------------------------------------------------------------------
# the machinery, with a user-defined toy study
# ---------------------------------------------------------------------------
def toy_run(offset, seed):
    # the seeds are set before every run: torch draws the same numbers for
    # every configuration of a repeat, different ones across repeats
    noise = float(torch.rand(()))
    return {"score": offset + noise, "noise": noise, "curve": np.arange(4) * offset}


def test_user_study_rows_statistics_and_files(tmp_path):
    study = Study("toy", toy_run,
                  configurations={"zero": dict(offset=0.0), "one": dict(offset=1.0),
                                  "two": dict(offset=2.0)},
                  metrics=[Metric("score", better="higher"), Metric("noise", test=False)],
                  repeats=4, seed=10,
                  reference={"one": {"score": 1.5}}, reference_label="paper")
    stream = io.StringIO()
    result = study.run(out=str(tmp_path), stream=stream, command="python toy.py")
    progress = stream.getvalue()
    assert "[12/12] two (repeat 4/4, seed 13)" in progress

    noise = result.values("zero", "noise")
    assert len(set(noise.tolist())) == 4                       # differs across repeats
    np.testing.assert_array_equal(noise, result.values("two", "noise"))   # shared within
    assert result.mean("two", "score") == pytest.approx(2 + noise.mean())
    assert result.std("two", "score") == pytest.approx(noise.std(ddof=1))

    comps = result.comparisons()
    assert [(c.a, c.b) for c in comps] == [("zero", "one"), ("zero", "two")]  # default
    assert comps[1].mean_diff == pytest.approx(-2.0)
    assert comps[1].significant                   # a constant paired shift
    np.testing.assert_allclose(result.curve("two", "curve"), np.tile([0, 2, 4, 6], (4, 1)))

    report, rows = check_report(str(tmp_path), ["zero", "one", "two"], 4, ["metrics.png"])
    assert "python toy.py" in report and "paper" in report and "| 1.5 |" in report
    assert rows[0]["offset"] == "0.0" and rows[0]["seed"] == "10"
    curves = read_rows(tmp_path / "curves.csv")
    assert len(curves) == 3 * 4 * 4
    assert "score" in result.table() and "Holm" in result.table()


def test_study_errors_name_the_problem():
    with pytest.raises(ll.OptionError, match="unknown configuration 'c'"):
        Study("s", toy_run, {"a": dict(offset=0)}, ["score"], comparisons=[("a", "c")])
    with pytest.raises(ll.OptionError, match="repeats"):
        Study("s", toy_run, {"a": dict(offset=0)}, ["score"], repeats=0)
    study = Study("s", toy_run, {"a": dict(offset=0)}, ["accuracy"], repeats=1)
    with pytest.raises(ll.OptionError, match="returned no metric 'accuracy'"):
        study.run(stream=open(os.devnull, "w"))
    with pytest.raises(ll.OptionError, match="unknown study 'nope'"):
        make_study("nope")


def test_cli_rejects_an_unknown_study(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["experiment", "nope"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# the seeds' studies, quick forms
# ---------------------------------------------------------------------------
def test_activations_quick_from_the_command_line(tmp_path, capsys, one_thread):
    out = str(tmp_path / "act")
    assert main(["experiment", "activations", "--quick", "--out", out]) == 0
    text = capsys.readouterr().out
    assert "forward + backward (ms)" in text and "Report:" in text
    names = list(make_study("activations", quick=True).configurations)
    assert {"ReLU", "ELU", "Sigmoid", "Tanh", "LeakyReLU"} <= set(names)
    report, rows = check_report(out, names, 2,
                                ["seed_plot.png", "activations.png", "metrics.png"])
    assert "layerlab experiment activations --quick --out" in report
    assert "in one process, one run at a time" in report    # a timing study: never parallel
    # every layer's training derivative agrees with finite differences
    assert max(float(r["derivative_error"]) for r in rows) < 1e-6


@pytest.mark.slow
def test_elu_batchnorm_quick(tmp_path, one_thread):
    study = make_study("elu-batchnorm", quick=True)
    result = study.run(out=str(tmp_path), stream=open(os.devnull, "w"))
    report, _ = check_report(str(tmp_path), list(study.configurations), 2,
                             ["metrics.png", "training_loss.png"])
    assert "0.9878" in report                              # the seed post beside ours
    acc = {c: result.mean(c, "accuracy") for c in study.configurations}
    assert all(a > 0.5 for a in acc.values()), acc         # far above chance (0.1)
    # batch normalization trains the seed network faster (after 2 epochs)
    assert acc["BN + learnable ELU"] > acc["learnable ELU, no BN"] + 0.02, acc
    assert acc["BN + ReLU"] > acc["ReLU, no BN"] + 0.02, acc
    assert all(result.mean(c, "time_s") > 0 for c in study.configurations)
    assert "Wilcoxon primary" in result.table()            # the ELU paper's test


@pytest.mark.slow
def test_disc_init_quick(tmp_path, one_thread):
    study = make_study("disc-init", quick=True)
    result = study.run(out=str(tmp_path), stream=open(os.devnull, "w"))
    report, _ = check_report(str(tmp_path), list(study.configurations), 2,
                             ["test_error_vs_std.png"])
    assert "**Claim:** The slide's batch normalization fails at small initial std" in report
    err = {c: result.mean(c, "test_error") for c in study.configurations}
    # at std 1 the plain network is at chance, batch normalization learns
    assert abs(err["baseline, std 1"] - 50) < 10, err
    assert err["batch norm, std 1"] < err["baseline, std 1"] - 25, err
    # at std 0.01 the slide's BN (scale and offset drawn N(0, 0.01^2)) is at
    # chance; kept at scale 1 and offset 0 it learns
    assert abs(err["batch norm, std 0.01"] - 50) < 10, err
    assert err["BN 1/0, std 0.01"] < err["batch norm, std 0.01"] - 25, err
    # each error counts misclassified points of the 1000: a multiple of 0.1%
    errors = np.array([float(r["test_error"]) for r in result.rows])
    np.testing.assert_allclose(errors * 10, np.round(errors * 10), atol=1e-6)


@pytest.mark.slow
def test_deep_mlp_batchnorm_quick(tmp_path, one_thread):
    study = make_study("deep-mlp-batchnorm", quick=True)
    result = study.run(out=str(tmp_path), stream=open(os.devnull, "w"))
    check_report(str(tmp_path), list(study.configurations), 2, ["curves.png", "metrics.png"])
    acc = {c: result.mean(c, "test_accuracy") for c in study.configurations}
    # ten sigmoid layers do not train without batch normalization; with it they do
    assert acc["sigmoid, no BN"] < 0.3, acc
    assert acc["sigmoid + BN"] > acc["sigmoid, no BN"] + 0.4, acc
    assert acc["ReLU + BN"] > 0.8, acc
    # test accuracy recorded after each of the 3 epochs
    assert result.curve("ReLU + BN", "test_accuracy_curve").shape == (2, 3)
    assert result.curve("ReLU + BN", "training_loss").shape == (2, 150)
