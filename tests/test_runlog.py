"""TensorBoard event files and the CSV history, read back."""

import csv
import json

import numpy as np
import pytest

from layerlab.training.runlog import RunLogger, write_info


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_scalars_read_back_from_tensorboard_and_csv(tmp_path):
    log = RunLogger(tmp_path / "run", metric_names=["accuracy"])
    log.log(1, 1, {"train/loss": 2.5, "train/accuracy": 0.25, "train/learn_rate": 0.1,
                   "validation/loss": 2.0, "validation/accuracy": 0.5})
    log.log(2, 1, {"train/loss": 1.5, "train/accuracy": 0.5, "train/learn_rate": 0.1,
                   "validation/loss": float("nan")})
    log.close()
    ev = _events(tmp_path / "run")
    assert ev["train/loss"] == [(1, 2.5), (2, 1.5)]
    assert ev["validation/loss"] == [(1, 2.0)]            # NaN (not validated) not written
    assert ev["train/accuracy"] == [(1, 0.25), (2, 0.5)]
    rows = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    assert [r["train/loss"] for r in rows] == ["2.5", "1.5"]
    assert rows[1]["validation/loss"] == "" and rows[0]["validation/accuracy"] == "0.5"


def test_write_info_csv_and_json(tmp_path):
    class Info:   # any object with per-iteration arrays
        def __init__(self):
            self.iterations = 3
            self.training_loss = np.array([3.0, 2.0, 1.0])
            self.validation_loss = np.array([np.nan, 1.5, np.nan])
            self.epoch = np.array([1, 1, 2])
            self.stop_reason = "max-epochs"
    write_info(Info(), tmp_path / "i.csv")
    rows = list(csv.DictReader(open(tmp_path / "i.csv")))
    assert [r["training_loss"] for r in rows] == ["3.0", "2.0", "1.0"]
    assert [r["validation_loss"] for r in rows] == ["", "1.5", ""]
    assert [r["epoch"] for r in rows] == ["1", "1", "2"]
    write_info(Info(), tmp_path / "i.json")
    d = json.load(open(tmp_path / "i.json"))
    assert d["validation_loss"] == [None, 1.5, None] and d["stop_reason"] == "max-epochs"


def test_missing_tensorboard_says_how_to_install(monkeypatch, tmp_path):
    import builtins
    real = builtins.__import__

    def no_tb(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_tb)
    from layerlab.errors import OptionError
    with pytest.raises(OptionError, match=r"pip install layerlab\[tensorboard\]"):
        RunLogger(tmp_path / "x")
