"""bench/roofline.py counts the seed step's work from the shapes: checked
against a hand count (no timing is asserted)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import roofline  # noqa: E402


def test_seed_step_flops_and_bytes_by_hand():
    ops = {name: (flops, nbytes) for name, flops, nbytes, _ in roofline.seed_step_ops()}
    act = 128 * 20 * 24 * 24                         # conv output values
    assert ops["conv forward"][0] == 2 * act * 25    # one multiply-add per tap
    assert ops["FC forward"][0] == 2 * 128 * 11520 * 10
    assert ops["batch norm backward"][1] == 5 * act * 4
    total = sum(f for f, _ in ops.values())
    assert abs(total / 1e9 - 0.272) < 0.001


def test_floor_is_the_sum_of_each_ops_bound():
    rates = dict(matmul_gflops=100.0, bandwidth_activation_gbs=50.0, bandwidth_dram_gbs=10.0,
                 exp2_gelements_per_s=2.0)
    rows, total = roofline.floor(rates, "bandwidth_activation_gbs")
    conv = next(r for r in rows if r[0] == "conv forward")
    assert abs(conv[3] - 73.728e6 / 100e9 * 1e3) < 1e-9          # compute ms
    assert abs(total - sum(r[5] for r in rows)) < 1e-9
    assert all(r[5] == max(r[3], r[4]) for r in rows)
