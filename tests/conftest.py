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
