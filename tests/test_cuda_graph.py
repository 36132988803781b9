"""The CUDA-graph training step (layerlab/training/cuda_graph.py): when it
applies, and the parts of it that run on the CPU too (the solver reading
its learning rate from the device). The recording itself is checked on a
GPU in tests/test_gpu.py."""

import copy

import pytest
import torch

import layerlab as ll
from layerlab.network.network import Network
from layerlab.training.cuda_graph import why_not_graphed
from layerlab.training.solvers import make_optimizer, set_base_learn_rate


def _net():
    torch.manual_seed(0)
    return Network([ll.FeatureInput(4), ll.FullyConnected(8), ll.BatchNormalization(),
                    ll.ELU(8), ll.FullyConnected(3), ll.Softmax(), ll.Classification()])


@pytest.mark.parametrize("l2", [0.0, 1e-2])
def test_sgdm_with_learn_rate_tensors_matches_the_float_path(l2):
    """The graph's solver path (-lr read from a tensor) against the eager
    one, over a schedule that changes the rate, velocities included."""
    a = _net()
    b = copy.deepcopy(a)
    opts = ll.training_options("sgdm", l2_regularization=l2, initial_learn_rate=0.05)
    oa, ob = make_optimizer(a, opts), make_optimizer(b, opts)
    ob.use_learn_rate_tensors()
    X, T = torch.randn(16, 4), torch.randint(0, 3, (16,))
    for it, lr in enumerate([0.05, 0.05, 0.01, 0.02]):
        for net, opt in ((a, oa), (b, ob)):
            set_base_learn_rate(opt, lr)
            opt.zero_grad()
            net.loss(net(X, logits=True), T, from_logits=True).backward()
            opt.step()
        for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7, msg=f"{k} at step {it}")
    assert [float(t) for t in ob.negative_lr] == pytest.approx([-g["lr"] for g in ob.param_groups])
    assert ob.param_groups[0]["lr"] == 0.02


def _reason(net, optimizer=None, **kw):
    base = dict(device=torch.device("cuda"), enabled=True, distributed=False,
                mixed_precision=False, step_listeners=[])
    base.update(kw)
    opt = optimizer if optimizer is not None else make_optimizer(net, ll.training_options())
    return why_not_graphed(net, opt, **base)


class UserScale(ll.Layer):
    def predict(self, X):
        return 2 * X


def test_when_the_step_may_be_a_cuda_graph():
    net = _net()
    assert _reason(net) is None                 # built-in layers only: recorded
    assert "not on a GPU" in _reason(net, device=torch.device("cpu"))
    assert "cuda_graphs=False" in _reason(net, enabled=False)
    assert "DDP" in _reason(net, distributed=True)
    assert "mixed precision" in _reason(net, mixed_precision=True)
    assert "frozen" in why_not_graphed(net, None, **dict(
        device=torch.device("cuda"), enabled=True, distributed=False, mixed_precision=False,
        step_listeners=[]))
    adam = make_optimizer(net, ll.training_options("adam"))
    assert "Adam" in _reason(net, adam)
    assert "Monitor" in _reason(net, step_listeners=[type("Monitor", (), {})()])
    h = net.layers[1].register_forward_hook(lambda *a: None)
    assert "hooks on" in _reason(net)
    h.remove()
    h = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        assert "global" in _reason(net)
    finally:
        h.remove()
    assert _reason(net) is None
    user = Network([ll.FeatureInput(4), UserScale(name="mine"), ll.FullyConnected(3),
                    ll.Softmax(), ll.Classification()])
    assert "'mine'" in _reason(user) and "capturable" in _reason(user)
    UserScale.capturable = True                 # a user's layer may declare it
    try:
        assert _reason(user) is None
    finally:
        UserScale.capturable = False


def test_every_builtin_layer_declares_capturable_and_module_layer_does_not():
    import inspect
    builtin = [c for c in vars(ll).values() if inspect.isclass(c) and issubclass(c, ll.Layer)
               and c.__module__.startswith("layerlab.layers.") and not inspect.isabstract(c)]
    assert len(builtin) > 20
    assert [c.__name__ for c in builtin if not c.capturable] == ["ModuleLayer"]
    assert not ll.Layer.capturable


def test_cuda_graphs_option_is_checked():
    with pytest.raises(ll.OptionError, match="cuda_graphs.*True or False.*'yes'"):
        ll.training_options(cuda_graphs="yes")


def test_cpu_training_reports_eager():
    from layerlab.training.trainer import TrainingRun
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    run = TrainingRun.create(X, Y, list(_net().layers), ll.training_options(
        max_epochs=1, mini_batch_size=16, verbose=False, execution_environment="cpu"))
    _, info = run.run()
    assert run.graph_status == info.step == "eager: not on a GPU" and run.graphed is None
