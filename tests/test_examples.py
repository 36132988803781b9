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
