"""Checkpoints at each epoch's end, resume after SIGKILL, corrupted checkpoints."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import layerlab as ll
from layerlab.persistence import network_file

SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    import layerlab as ll
    sys.path.insert(0, {tests!r})
    from test_training_checkpoint import data, layers, options

    def killer(info):
        # die hard in the middle of epoch 3, as a crash or `kill -9` would
        if info.state == "iteration" and info.epoch == 3 and info.iteration == 2 * 8 + 5:
            os.kill(os.getpid(), signal.SIGKILL)

    X, Y = data()
    ll.train_network(X, Y, layers(), options(checkpoint_path={ckpt!r}, output_fn=killer))
""")


def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(128, 1, 6, 6, generator=g)
    Y = (X.mean(dim=(1, 2, 3)) > 0).long()
    return X, Y


def layers():
    # batch norm (State statistics), dropout (global RNG), adam (optimizer state)
    return [ll.ImageInput((1, 6, 6)), ll.Convolution2d(3, 4), ll.BatchNormalization(),
            ll.ReLU(), ll.Dropout(0.2), ll.FullyConnected(2), ll.Softmax(), ll.Classification()]


def options(**kw):
    # on the CPU, where a resumed run is bit-exact (a GPU's atomic adds are not)
    base = dict(max_epochs=5, mini_batch_size=16, seed=7, verbose=False, shuffle="every-epoch",
                execution_environment="cpu")
    return ll.training_options("adam", **{**base, **kw})


def test_resume_after_sigkill_gives_the_uninterrupted_weights(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    script = SCRIPT.format(tests=os.path.dirname(__file__), ckpt=ckpt)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    tensors, meta = network_file.read_file(os.path.join(ckpt, "checkpoint.safetensors"))
    assert meta["checkpoint"]["epoch"] == 2 and meta["checkpoint"]["iteration"] == 16

    X, Y = data()
    ran = []
    resumed, info_r = ll.train_network(
        X, Y, layers(), options(output_fn=lambda i: ran.append(i.iteration)), resume_from=ckpt)
    assert ran[1] == 17 and len(ran) == 2 + 24   # start, iterations 17..40, done
    straight, info_s = ll.train_network(X, Y, layers(), options())
    for (k, a), b in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.equal(a, b), k
    assert info_r.iterations == info_s.iterations == 40
    assert (info_r.training_loss == info_s.training_loss).all()


def test_checkpoint_holds_the_network_and_loads_as_one(tmp_path):
    X, Y = data()
    net, _ = ll.train_network(X, Y, layers(), options(max_epochs=1, checkpoint_path=str(tmp_path)))
    loaded = ll.load(tmp_path / "checkpoint.safetensors")
    for (k, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k   # includes the batch-norm statistics and input mean


def test_corrupted_or_truncated_checkpoint_gives_persistence_error(tmp_path):
    X, Y = data()
    ll.train_network(X, Y, layers(), options(max_epochs=1, checkpoint_path=str(tmp_path)))
    file = tmp_path / "checkpoint.safetensors"
    raw = bytearray(file.read_bytes())
    bad = tmp_path / "bad.safetensors"
    raw[-20] ^= 0xFF   # a flipped byte in the tensor data
    bad.write_bytes(bytes(raw))
    with pytest.raises(ll.PersistenceError, match="corrupted"):
        ll.train_network(X, Y, layers(), options(), resume_from=bad)
    bad.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(ll.PersistenceError, match="truncated"):
        ll.train_network(X, Y, layers(), options(), resume_from=bad)
    with pytest.raises(ll.PersistenceError, match="no such file"):
        ll.train_network(X, Y, layers(), options(), resume_from=tmp_path / "nothing.safetensors")


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    X, Y = data()
    ll.train_network(X, Y, layers(), options(max_epochs=1, checkpoint_path=str(tmp_path)))
    file = tmp_path / "checkpoint.safetensors"
    before = file.read_bytes()

    def crash(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(ll.PersistenceError, match="cannot save to .*checkpoint.safetensors"):
        ll.train_network(X, Y, layers(), options(max_epochs=1, checkpoint_path=str(tmp_path)))
    assert file.read_bytes() == before
    assert os.listdir(tmp_path) == ["checkpoint.safetensors"]   # no temporary left behind
