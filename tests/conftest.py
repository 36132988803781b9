"""Shared test fixtures: small deterministic data, quiet training options."""

import numpy as np
import pytest
import torch

# Two cores: keep PyTorch from oversubscribing when tests run in parallel.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(autouse=True, scope="session")
def _auto_trains_on_the_cpu():
    """The suite's expectations are the CPU's (hand computations compared
    with CPU tensors, bit-exact resumes, "Training on CPU."): on a machine
    with a GPU, execution_environment="auto" trains on the CPU in tests
    (session-wide, so module-scoped fixtures that train see it too).
    tests/test_gpu.py asks for the GPU by name ("gpu"); subprocesses (the
    demo, the examples) use the GPU as a user's run would."""
    if not torch.cuda.is_available():
        yield
        return
    from layerlab.training import trainer
    chosen = trainer.select_device
    trainer.select_device = lambda env: chosen("cpu" if env == "auto" else env)
    yield
    trainer.select_device = chosen


@pytest.fixture
def one_thread():
    """One PyTorch thread for a test that trains many tiny ops: two threads
    waiting on each other cost more than they gain there, and on a busy
    2-core machine far more (seconds instead of milliseconds an iteration)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def digits_small():
    """1000 training and 500 test digits (a slice of the standard sets)."""
    from layerlab.datasets import digits_test, digits_train
    Xtr, Ytr, _ = digits_train()
    Xte, Yte, _ = digits_test()
    return Xtr[:1000], Ytr[:1000], Xte[:500], Yte[:500]
