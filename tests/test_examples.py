"""The example scripts run (one epoch each, to keep the suite quick) and
print what their docstrings promise."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=300, env=env, cwd=EXAMPLES.parent)


@pytest.mark.parametrize("name, expected", [
    ("defining_your_own_layer.py", ["accuracy"]),
    ("revisited.py", ["accuracy", "training time"]),
    ("regress_angles.py", ["Test RMSE", "within 10 degrees"]),
])
def test_training_examples_run_and_report(name, expected):
    run = run_example(name, "--max-epochs", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    for text in expected:
        assert text in run.stdout, run.stdout[-2000:]


def test_check_your_layer_fails_the_typo_and_passes_the_correction():
    run = run_example("check_your_layer.py")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "FAILED   gradients" in run.stdout
    assert "typo'd layer passed: False; corrected layer passed: True" in run.stdout


def _number_after(text, prefix):
    import re
    return float(re.search(re.escape(prefix) + r"\s*([0-9.e+-]+)", text).group(1))


def test_pytorch_citizen_example_matches_its_references():
    run = run_example("pytorch_citizen.py")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "hook (training)" in run.stdout and "hook (inference)" in run.stdout
    assert _number_after(run.stdout, "largest difference from a loop") < 1e-5
    assert _number_after(run.stdout, "within") < 1e-4


@pytest.mark.slow
def test_torch_modules_example_trains_and_round_trips():
    run = run_example("torch_modules_in_a_network.py", "--max-epochs", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "torch.nn Conv2d" in run.stdout
    assert _number_after(run.stdout, "train_network: test accuracy") > 0.5
    assert _number_after(run.stdout, "plain PyTorch epoch: test accuracy") > 0.5
    assert "100% of the test predictions unchanged" in run.stdout
