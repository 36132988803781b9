"""DistributedDataParallel on CPUs: 2 processes under torchrun reach the
weights of 1 process trained on the same global mini-batches."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import layerlab as ll

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_processes_match_one(tmp_path):
    single = tmp_path / "single.safetensors"
    double = tmp_path / "double.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(WORKER), str(single), "cpu"], check=True, env=env,
                   timeout=120)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(WORKER), str(double), "parallel"]
    run = subprocess.run(command, env=env, timeout=180, capture_output=True, text=True)
    if run.returncode != 0:
        # one retry: launching can fail for reasons outside layerlab (the
        # free port torchrun picked taken meanwhile; seen once in ~20 runs).
        # A failure of layerlab's own repeats, and wrong weights are never
        # retried: they fail the comparison below.
        first = run.stderr[-3000:]
        run = subprocess.run(command, env=env, timeout=180, capture_output=True, text=True)
        assert run.returncode == 0, (f"torchrun failed twice; first:\n{first}\nsecond:\n"
                                     f"{run.stdout[-3000:]}\n{run.stderr[-6000:]}")
    a, b = load_file(single), load_file(double)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    # the running ELU alphas moved away from their initial values in both runs
    # (so the comparison is of trained weights, not of two untouched copies)
    alpha = [k for k in a if k.endswith("alpha")][0]
    torch.manual_seed(0)
    assert not torch.equal(a[alpha], torch.rand_like(a[alpha]))


def test_parallel_without_torchrun_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    opts = ll.training_options(execution_environment="parallel", verbose=False,
                               mini_batch_size=2, max_epochs=1)
    X = torch.rand(4, 1, 4, 4)
    layers = [ll.ImageInput((1, 4, 4)), ll.FullyConnected(2), ll.Softmax(), ll.Classification()]
    with pytest.raises(ll.OptionError, match="launch the script with torchrun"):
        ll.train_network(X, [0, 1, 0, 1], layers, opts)
