"""On a GPU (skipped without one): training never waits for the GPU each
iteration, its non-finite guard still names the iteration, and it learns
what the CPU learns."""

import io
import sys
import os

import numpy as np
import pytest
import torch

import layerlab as ll

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))


def _data(n=640, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 8, 8, generator=g)
    Y = (X[:, 0, :4].sum((1, 2)) > X[:, 0, 4:].sum((1, 2))).long()
    return X, Y


def _layers():
    return [ll.ImageInput((1, 8, 8)), ll.Convolution2d(3, 4, name="conv"),
            ll.BatchNormalization(), ll.ELU(4), ll.FullyConnected(2), ll.Softmax(),
            ll.Classification()]


def _opts(**kw):
    base = dict(max_epochs=2, mini_batch_size=16, verbose=False, seed=0,
                execution_environment="gpu")
    base.update(kw)
    return ll.training_options("sgdm", **base)


@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_no_host_synchronisation_per_iteration(cuda_graphs):
    """Two more epochs (80 more iterations) add only the per-epoch and
    per-row reads, never one per iteration."""
    from gpu_sync_audit import sync_sites
    X, Y = _data()              # 40 iterations an epoch
    ll.train_network(X, Y, _layers(), _opts())   # warm-up (CUDA and cuDNN set-up)
    counts = []
    for epochs in (2, 4):
        sites = sync_sites(lambda: ll.train_network(X, Y, _layers(), _opts(
            max_epochs=epochs, verbose=True, verbose_frequency=50, cuda_graphs=cuda_graphs),
            stream=io.StringIO()))
        counts.append(sum(sites.values()))
    assert counts[1] - counts[0] < 16, (counts, sites)


def _run(layers, **kw):
    from layerlab.training.trainer import TrainingRun
    X, Y = _data()
    run = TrainingRun.create(X, Y, layers, _opts(**kw), stream=io.StringIO())
    net, info = run.run()
    return run, net, info


def test_cuda_graph_step_matches_the_eager_step(monkeypatch):
    """The recorded step against the eager one, over a learning rate that
    drops (piecewise, read from the device by the replay), L2, momentum,
    batch normalization's running statistics and a validation mid-run."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    Xv, Yv = _data(64, seed=1)
    kw = dict(max_epochs=3, learn_rate_schedule="piecewise", learn_rate_drop_period=2,
              learn_rate_drop_factor=0.3, l2_regularization=1e-3, shuffle="every-epoch",
              validation_data=(Xv, Yv), validation_frequency=30)
    g_run, g_net, g_info = _run(_layers(), **kw)
    e_run, e_net, e_info = _run(_layers(), cuda_graphs=False, **kw)
    assert g_info.step == f"CUDA graph ({120 - 3} replays)", g_info.step
    assert e_run.graph_status.startswith("eager: training_options(cuda_graphs=False)")
    for (k, a), b in zip(e_net.state_dict().items(), g_net.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)
    np.testing.assert_allclose(g_info.training_loss, e_info.training_loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g_info.training_accuracy, e_info.training_accuracy)
    np.testing.assert_allclose(g_info.validation_loss, e_info.validation_loss, rtol=1e-4,
                               equal_nan=True)


def test_a_user_layer_that_is_not_capturable_trains_eagerly():
    layers = _layers()
    layers.insert(4, NaNFrom(10**9, name="counting"))   # Python state per call
    run, _, _ = _run(layers, check_layers=False)
    assert "'counting'" in run.graph_status and run.graph_status.startswith("eager")


def test_graph_replays_draw_new_dropout_masks_and_stop_on_another_size():
    from layerlab.network.network import Network
    from layerlab.training.cuda_graph import GraphedStep, WARMUP_STEPS
    from layerlab.training.solvers import SGDM
    from layerlab.training.trainer import train_step
    torch.manual_seed(0)
    net = Network([ll.FeatureInput(32), ll.Dropout(0.5), ll.FullyConnected(4), ll.Softmax(),
                   ll.Classification()]).cuda().train()
    opt = SGDM(net.parameters(), lr=0.0, momentum=0.0)   # weights fixed: Y varies by dropout
    opts = ll.training_options()
    step = GraphedStep(opt, lambda x, t: train_step(net, net, opt, x, t, opts,
                                                    list(net.parameters()), False),
                       net.output_layer.metric)
    X, T = torch.randn(16, 32, device="cuda"), torch.randint(0, 4, (16,), device="cuda")
    outs = [step.step(X, T)[1].clone() for _ in range(WARMUP_STEPS + 3)]
    assert step.graph is not None and step.replays == 3
    assert not torch.equal(outs[-1], outs[-2]) and not torch.equal(outs[-2], outs[-3])
    assert step.step(X[:8], T[:8]) is None and not step.active   # another size: eager from now


class NaNFrom(ll.Layer):
    """Identity in inference; in training, NaN from its ``start``-th call on."""

    def __init__(self, start, name=None):
        super().__init__(name=name)
        self.start, self.calls = start, 0

    def predict(self, X):
        return X

    def forward(self, X):
        self.calls += 1
        return (X * float("nan") if self.calls >= self.start else X), None


def test_deferred_nonfinite_guard_on_gpu():
    X, Y = _data()              # 40 iterations an epoch: checked at its end
    layers = _layers()
    layers.insert(4, NaNFrom(19, name="bad"))
    with pytest.raises(ll.TrainingError, match=r"iteration 19 \(epoch 1\).*found at iteration 40"):
        ll.train_network(X, Y, layers, _opts(check_layers=False))


def test_gpu_training_matches_cpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)   # float32 as on the CPU
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    X, Y = _data()
    cpu, _ = ll.train_network(X, Y, _layers(), _opts(max_epochs=1, execution_environment="cpu"))
    gpu, info = ll.train_network(X, Y, _layers(), _opts(max_epochs=1))
    assert info.device.startswith("cuda")
    for (k, a), b in zip(cpu.state_dict().items(), gpu.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.cpu().numpy(), rtol=1e-3, atol=1e-4, err_msg=k)


def test_a_network_trained_on_the_gpu_builds_and_trains_on():
    """Its layers hold learnables on the GPU: a new network of them (with a
    new layer) is sized there, and training continues from its weights."""
    X, Y = _data()
    net, _ = ll.train_network(X, Y, _layers(), _opts(max_epochs=1))
    assert next(net.parameters()).is_cuda
    grown = ll.Network(list(net.layers)[:-3] + [ll.FullyConnected(2, name="new"), ll.Softmax(),
                                                ll.Classification()])
    assert grown.sizes["new"] == ((2,),) and grown.layer("new").weights.is_cuda
    more, info = ll.train_network(X, Y, net, _opts(max_epochs=1))
    assert info.iterations == 40 and info.step.startswith("CUDA graph")
