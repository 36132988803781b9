"""Each learning-rate schedule against its formula (as written in
layerlab/training/schedules.py), lists run in sequence, callables."""

import math

import pytest

from layerlab.errors import OptionError
from layerlab.training.schedules import (CosineSchedule, ExponentialSchedule, PiecewiseSchedule,
                                         PolynomialSchedule, WarmupSchedule, bind_schedule)

E, P = 12, 4  # epochs, iterations per epoch


def _per_epoch(spec, **kw):
    s = bind_schedule(spec, E, P, **kw)
    return [s.factor(e, (e - 1) * P + 1) for e in range(1, E + 1)]


def test_piecewise_rate_at_each_epoch_across_two_drop_periods():
    got = _per_epoch("piecewise", drop_factor=0.5, drop_period=3)
    want = [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125, 0.125]
    assert got == pytest.approx(want)
    # constant within an epoch
    s = bind_schedule("piecewise", E, P, drop_factor=0.5, drop_period=3)
    assert [s.factor(4, i) for i in range(13, 17)] == [0.5] * 4


def test_none_is_constant():
    assert _per_epoch("none") == [1.0] * E


def test_warmup_alone_then_holds_its_final_factor():
    got = _per_epoch(WarmupSchedule(initial_factor=0.2, final_factor=1.0, num_steps=4))
    want = [0.2 + 0.8 * s / 4 for s in range(4)] + [1.0] * (E - 4)
    assert got == pytest.approx(want)


def test_polynomial_defaults_to_the_whole_training():
    got = _per_epoch(PolynomialSchedule(initial_factor=1.0, final_factor=0.1, power=2))
    want = [0.1 + 0.9 * (1 - s / E) ** 2 for s in range(E)]
    assert got == pytest.approx(want)


def test_exponential():
    got = _per_epoch(ExponentialSchedule(initial_factor=0.8, decay=0.3, period=2))
    assert got == pytest.approx([0.8 * math.exp(-0.3 * s / 2) for s in range(E)])


def test_cosine_over_the_training_and_with_warm_restarts():
    got = _per_epoch("cosine")
    assert got == pytest.approx([0.5 * (1 + math.cos(math.pi * s / E)) for s in range(E)])
    got = _per_epoch(CosineSchedule(initial_factor=1, final_factor=0.1, period=2,
                                    period_multiplier=2))
    # cycles of 2, 4, 8 epochs: t restarts at s = 2 and s = 6
    cycles = [(0, 2), (1, 2), (0, 4), (1, 4), (2, 4), (3, 4)] + [(t, 8) for t in range(6)]
    want = [0.1 + 0.45 * (1 + math.cos(math.pi * t / T)) for t, T in cycles]
    assert got == pytest.approx(want)


def test_a_list_runs_its_schedules_one_after_another():
    got = _per_epoch(["warmup", "cosine"])   # warmup 5 epochs from 0, then cosine over 7
    want = [s / 5 for s in range(5)] + [0.5 * (1 + math.cos(math.pi * s / 7)) for s in range(7)]
    assert got == pytest.approx(want)


def test_iteration_unit_schedules_change_within_an_epoch():
    s = bind_schedule([WarmupSchedule(num_steps=6, frequency_unit="iteration"),
                       PiecewiseSchedule(0.5, 1)], E, P)
    assert s.per_iteration
    got = [s.factor((i - 1) // P + 1, i) for i in range(1, 13)]
    # iterations 1-6 warm up; the piecewise part starts at iteration 7 (mid epoch 2),
    # counting whole epochs from there
    want = [0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1, 1, 1, 1, 0.5, 0.5]
    assert got == pytest.approx(want)


def test_callable_gets_epoch_and_iteration_and_is_checked():
    seen = []
    s = bind_schedule(lambda e, i: seen.append((e, i)) or 1 / e, E, P)
    assert s.factor(3, 9) == pytest.approx(1 / 3) and seen == [(3, 9)]
    bad = bind_schedule(lambda e, i: float("nan"), E, P)
    with pytest.raises(OptionError, match="returned nan at epoch 2, iteration 5"):
        bad.factor(2, 5)


def test_bad_schedules_are_named():
    with pytest.raises(OptionError, match="did you mean 'cosine'"):
        bind_schedule("cosin", E, P)
    with pytest.raises(OptionError, match="drop_factor"):
        PiecewiseSchedule(drop_factor=2)
    with pytest.raises(OptionError, match="frequency_unit"):
        WarmupSchedule(frequency_unit="batch")
