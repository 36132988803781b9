"""The speed paths of the built-in layers (issue 16) compute what the plain
formulas compute: each against an independent reference (PyTorch's own ops
and autograd, or check_layer's finite differences)."""

import pytest
import torch
import torch.nn.functional as F

import layerlab as ll
from layerlab.autograd_bridge import run_layer


def _train_grads(layer, X, G):
    layer.train()
    for p in layer.parameters():
        p.grad = None
    X = X.clone().requires_grad_()
    Z = run_layer(layer, (X,), training=True)
    Z.backward(G)
    return Z, X.grad, [p.grad for p in layer.learnables().values()]


@pytest.mark.parametrize("shape", [(4, 2, 32, 32), (3, 2500)])
def test_long_fully_connected_uses_its_backward_and_matches_autograd(shape):
    torch.manual_seed(0)
    fc = ll.FullyConnected(7, input_size=int(torch.tensor(shape[1:]).prod())).double()
    assert fc.has_backward                    # 2048+ inputs to few outputs: the fast path
    X = torch.randn(shape, dtype=torch.float64)
    G = torch.randn(shape[0], 7, dtype=torch.float64)
    Z, dX, (dW, db) = _train_grads(fc, X, G)
    # reference: F.linear differentiated by autograd
    Xr = X.clone().requires_grad_()
    W = fc.weights.detach().clone().requires_grad_()
    b = fc.bias.detach().clone().requires_grad_()
    Zr = F.linear(Xr.flatten(1), W, b)
    Zr.backward(G)
    torch.testing.assert_close(Z, Zr)
    assert Z.is_contiguous()
    torch.testing.assert_close(dX, Xr.grad)
    torch.testing.assert_close(dW, W.grad)
    torch.testing.assert_close(db, b.grad)


def test_small_fully_connected_is_differentiated_by_autograd():
    fc = ll.FullyConnected(100, input_size=100)
    assert not fc.has_backward                # no hand-written backward to run for small layers
    assert ll.FullyConnected(10, input_size=100, drop_connect=0.5).has_backward


def test_long_fully_connected_passes_check_layer():
    fc = ll.FullyConnected(2, input_size=2048)
    report = ll.check_layer(fc, (2048,), verbose=False)
    assert report.passed, report


def test_elu_exp2_form_matches_exp():
    torch.manual_seed(0)
    X = torch.randn(4, 3, 8, 8) * 4
    elu = ll.ELU(3)
    a = elu.alpha.detach().view(1, 3, 1, 1)
    expected = torch.where(X > 0, X, a * (torch.exp(X) - 1))
    torch.testing.assert_close(elu.predict(X), expected, rtol=1e-6, atol=1e-6)
    Xd = X.double()
    torch.testing.assert_close(elu.double().predict(Xd),
                               torch.where(Xd > 0, Xd, a.double() * torch.expm1(Xd)),
                               rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("momentum,l2", [(0.9, 1e-2), (0.0, 0.0), (0.0, 1e-2)])
def test_sgdm_matches_pytorch_sgd_at_constant_rate(momentum, l2):
    """With a constant learning rate MATLAB's SGDM and PyTorch's SGD agree
    (v = -lr * buf): an independent implementation of the same update. With
    momentum 0 (the deep MLP study's plain SGD) SGDM takes its one-update
    path and keeps no velocity."""
    torch.manual_seed(0)
    w1 = torch.nn.Parameter(torch.randn(5))
    w2 = torch.nn.Parameter(w1.detach().clone())
    ours = ll.training.solvers.SGDM([w1], lr=0.05, momentum=momentum, weight_decay=l2)
    ref = torch.optim.SGD([w2], lr=0.05, momentum=momentum, weight_decay=l2)
    for _ in range(5):
        g = torch.randn(5)
        w1.grad, w2.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(w1.detach(), w2.detach(), rtol=1e-5, atol=1e-6)
    assert ("velocity" in ours.state[w1]) == (momentum > 0)
    ours.zero_grad()
    assert w1.grad is None


def test_sgdm_step_hooks_and_profiler_label_still_work():
    """SGDM.step skips torch.optim's wrapper only while it has nothing to
    do: step hooks (the optimizer's own and global) still run, and a
    profiler still sees the step's label."""
    w = torch.nn.Parameter(torch.ones(3))
    opt = ll.training.solvers.SGDM([w], lr=0.5, momentum=0.0)
    calls = []
    h1 = opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    h2 = opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    from torch.optim.optimizer import register_optimizer_step_post_hook
    h3 = register_optimizer_step_post_hook(lambda o, a, k: calls.append("global"))
    w.grad = torch.ones(3)
    opt.step()
    assert calls == ["pre", "post", "global"]
    torch.testing.assert_close(w.detach(), torch.full((3,), 0.5))
    for h in (h1, h2, h3):
        h.remove()
    calls.clear()
    opt.step()
    assert calls == [] and torch.equal(w.detach(), torch.zeros(3))
    with torch.profiler.profile() as prof:
        opt.step()
    assert any(e.name == "Optimizer.step#SGDM.step" for e in prof.events())


def test_learnables_of_layers_of_layers_are_named_as_named_parameters_names_them():
    """Layer._submodule_parameters' own walk (fused chains ask it every
    step) gives named_parameters' names and order, shared modules once."""
    from layerlab.layer import _named_parameters, _parameter_values
    shared = torch.nn.Linear(2, 2)
    tree = torch.nn.Sequential(torch.nn.Linear(3, 2),
                               torch.nn.Sequential(torch.nn.BatchNorm1d(2), shared),
                               torch.nn.ModuleList([shared, torch.nn.Linear(2, 1)]))
    assert [(n, id(p)) for n, p in _named_parameters(tree)] == \
        [(n, id(p)) for n, p in tree.named_parameters()]
    # the bridge's values-only form: the same tensors as learnables(), in order
    from layerlab.experiments.deep_mlp_batchnorm import deep_mlp
    from layerlab.network.network import Network
    net = Network(deep_mlp("ELU", batch_norm=True, depth=3))
    chain = net._fused[1][1]
    for layer in [chain, *chain.parts, ll.ModuleLayer(tree), ll.ELU(3), ll.FullyConnected(2,
                                                                                       input_size=3)]:
        assert [id(p) for p in layer._learnable_values()] == \
            [id(p) for p in layer.learnables().values()], layer.label
    plain = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Sequential(
        torch.nn.Linear(2, 2), torch.nn.ModuleList([torch.nn.Linear(2, 1)])))
    assert [(n, id(p)) for n, p in _named_parameters(plain)] == \
        [(n, id(p)) for n, p in plain.named_parameters()]
    for t in (tree, plain):
        assert [id(p) for p in _parameter_values(t)] == [id(p) for p in t.parameters()]


def test_the_bridge_does_not_bind_arguments_with_inspect_each_step(monkeypatch):
    """torch.autograd.Function.apply binds its arguments with inspect.signature
    on every call (about 50 us); the bridge's apply skips it, outside
    torch.func transforms, and computes the same."""
    import inspect
    torch.manual_seed(0)
    layer = ll.ELU(3)
    X, G = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    Z0, dX0, (da0,) = _train_grads(layer, X, G)

    def no_binding(*args, **kwargs):
        raise AssertionError("inspect.signature called in a training step")
    monkeypatch.setattr(inspect, "signature", no_binding)
    Z, dX, (da,) = _train_grads(layer, X, G)
    assert torch.equal(Z, Z0) and torch.equal(dX, dX0) and torch.equal(da, da0)
    # under a torch.func transform, Function.apply's own route (and its binding)
    with pytest.raises(AssertionError, match="inspect.signature called"):
        torch.func.grad(lambda x: run_layer(layer, (x,), training=True).sum())(X)
