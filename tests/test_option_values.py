"""Option values: NumPy scalars accepted, paths checked before training,
the shared number check."""

import math

import numpy as np
import pytest

import layerlab as ll
from layerlab.errors import OptionError
from layerlab.validation import check_number


def test_numpy_scalars_are_accepted_as_option_values():
    o = ll.training_options("adam", initial_learn_rate=np.float32(0.5), max_epochs=np.int64(2),
                            mini_batch_size=np.int32(16), gradient_threshold=np.float64(1.5),
                            validation_patience=np.int64(3), l2_regularization=np.float16(0))
    assert type(o.max_epochs) is int and o.max_epochs == 2
    assert type(o.mini_batch_size) is int and type(o.validation_patience) is int
    assert type(o.initial_learn_rate) is float and o.initial_learn_rate == pytest.approx(0.5)
    assert o.gradient_threshold == 1.5


def test_check_number_ranges_and_kinds():
    assert check_number(np.int64(3), "x", lo=1, integer=True) == 3
    assert check_number(math.inf, "x", 1, integer=True, allow_inf=True) == math.inf
    for bad, kw in [(True, {}), (math.nan, {}), (math.inf, {}), (2.5, dict(integer=True)),
                    (0, dict(lo=0, lo_open=True)), (np.array([1.0]), {}), ("1", {})]:
        with pytest.raises(OptionError, match="opt: expected"):
            check_number(bad, "opt", **kw)


def test_paths_are_checked_before_training(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(OptionError, match="checkpoint_path.*is a file"):
        ll.training_options(checkpoint_path=str(f))
    with pytest.raises(OptionError, match="plots_path.*is a folder"):
        ll.training_options(plots="training-progress", plots_path=str(tmp_path))
    with pytest.raises(OptionError, match="log_dir.*is a file"):
        ll.training_options(log_dir=str(f / "sub"))
    with pytest.raises(OptionError, match="not writable"):
        ll.training_options(checkpoint_path="/proc/layerlab_nope")
    # a folder that does not exist yet is fine (created when training writes)
    ll.training_options(checkpoint_path=str(tmp_path / "new" / "deeper"))
    assert not (tmp_path / "new").exists()
