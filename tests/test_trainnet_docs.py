"""The README's trainnet example and examples/trainnet_digits.py run and
give numbers within bounds that can fail (one epoch each)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_readme_trainnet_example_runs(tmp_path, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    code = next(b for b in blocks if "ll.trainnet(" in b)
    assert "max_epochs=30" in code and 'log_dir="runs/seed"' in code
    code = code.replace("max_epochs=30", "max_epochs=1, verbose=False, seed=0")
    code = code.replace('log_dir="runs/seed"', f"log_dir={str(tmp_path / 'runs')!r}")
    # one epoch: the 5-epoch warm-up would leave the rate at 0 throughout
    assert 'learn_rate_schedule=["warmup", "cosine"]' in code
    code = code.replace('learn_rate_schedule=["warmup", "cosine"]', 'learn_rate_schedule="cosine"')
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    result = eval("ll.testnet(net, XTest, YTest, ['accuracy', 'fscore'])", ns)
    assert result["accuracy"] > 0.6 and result["fscore"] > 0.5      # chance: 0.1
    assert (ns["labels"] == ns["YTest"]).mean() == pytest.approx(result["accuracy"])
    assert (tmp_path / "runs" / "history.csv").exists()
    assert "'accuracy':" in capsys.readouterr().out


@pytest.mark.slow
def test_trainnet_digits_example_reports_its_test_accuracy():
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "trainnet_digits.py"),
                          "--max-epochs", "1"], capture_output=True, text=True, timeout=300,
                         env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    m = re.search(r"trainnet test accuracy ([\d.]+)%, fscore ([\d.]+)", run.stdout)
    assert m, run.stdout[-2000:]
    assert float(m.group(1)) > 70 and 0.6 < float(m.group(2)) <= 1.0
