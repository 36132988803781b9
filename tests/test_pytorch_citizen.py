"""A layerlab layer is a full PyTorch citizen (issue 12): hooks, torch.func,
second derivatives through hand-written backwards, gradients in every mode,
torch.nn.Parameter as a learnable. References: loops (vmap), autograd of the
same function written with elementary ops (the "composite"), eager (compile).
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, jacrev, vmap

import layerlab as ll
from layerlab.errors import LayerError


def per_channel(p, X):
    return p.view(1, -1, *([1] * (X.dim() - 2)))


def elu_composite(X, alpha):
    return X.clamp(min=0) + per_channel(alpha, X) * (X.clamp(max=0).exp() - 1)


def leaky_composite(X, scale):
    return X.clamp(min=0) + per_channel(scale, X) * X.clamp(max=0)


# ---- 1. module semantics ---------------------------------------------------
@pytest.mark.parametrize("training", [True, False])
def test_forward_hooks_fire_with_input_and_output(training):
    layer = ll.ELU(3).train(training)
    X = torch.randn(4, 3, 5, 5, requires_grad=True)
    seen = []
    layer.register_forward_pre_hook(lambda m, inp: seen.append(("pre", inp[0])))
    layer.register_forward_hook(lambda m, inp, out: seen.append(("post", inp[0], out)))
    Z = layer(X)
    assert [s[0] for s in seen] == ["pre", "post"]
    assert seen[0][1] is X and seen[1][2] is Z
    torch.testing.assert_close(Z, elu_composite(X, layer.alpha))


def test_full_backward_hook_sees_the_hand_written_gradient():
    layer = ll.ELU(3).train()
    X = torch.randn(4, 3, 5, 5, requires_grad=True)
    got = []
    layer.register_full_backward_hook(lambda m, gin, gout: got.append((gin[0], gout[0])))
    layer(X).pow(2).sum().backward()
    assert len(got) == 1
    Xr = X.detach().clone().requires_grad_()
    elu_composite(Xr, layer.alpha.detach()).pow(2).sum().backward()
    torch.testing.assert_close(got[0][0], Xr.grad)


def test_hooks_fire_inside_a_network_in_training_and_inference():
    net = ll.Network([ll.ImageInput((1, 6, 6)), ll.Convolution2d(3, 4, name="conv"),
                      ll.ELU(4, name="elu"), ll.FullyConnected(2), ll.Softmax(),
                      ll.Classification()])
    shapes = []
    net.layer("elu").register_forward_hook(lambda m, i, o: shapes.append((m.training, o.shape)))
    X = torch.randn(3, 1, 6, 6)
    net.train()(X)
    net.eval()(X)
    assert shapes == [(True, (3, 4, 4, 4)), (False, (3, 4, 4, 4))]


def test_forward_is_the_modules_and_training_forward_the_seeds():
    layer = ll.ELU(2).train()
    X = torch.randn(3, 2, 4)
    Z, memory = layer.training_forward(X)
    torch.testing.assert_close(layer.forward(X), Z)
    torch.testing.assert_close(memory, X.clamp(max=0).exp() - 1)
    assert [n for n, _ in torch.nn.Sequential(layer).named_modules()] == ["", "0"]
    assert list(layer.state_dict()) == ["alpha"]


# ---- 2. torch.func and higher-order gradients ------------------------------
def test_per_sample_gradients_with_vmap_match_a_loop():
    torch.manual_seed(0)
    layer = ll.ELU(3).train()
    X = torch.randn(5, 3, 4, 4)
    params = {k: v.detach() for k, v in layer.named_parameters()}

    def loss(p, x):
        return functional_call(layer, p, (x.unsqueeze(0),)).pow(2).sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, X)["alpha"]
    a = layer.alpha.detach().clone().requires_grad_()
    loop = torch.stack([torch.autograd.grad(elu_composite(X[i:i + 1], a).pow(2).sum(), a)[0]
                        for i in range(5)])
    torch.testing.assert_close(per_sample, loop)


@pytest.mark.parametrize("make, composite", [
    (lambda: ll.LeakyReLU(0.1), lambda X: leaky_composite(X, torch.tensor([0.1]))),
    (lambda: ll.ELU(alpha=0.5), lambda X: elu_composite(X, torch.tensor([0.5]))),
    (lambda: ll.CReLU(), lambda X: torch.cat([X.clamp(min=0), (-X).clamp(min=0)], 1)),
    (lambda: ll.Maxout(2), lambda X: X.view(2, 2, 2, 4).amax(2)),
])
def test_jacrev_through_a_hand_written_backward(make, composite):
    layer = make().train()
    X = torch.randn(2, 4, 4)
    J = jacrev(layer)(X)
    torch.testing.assert_close(J, torch.autograd.functional.jacobian(composite, X))


@pytest.mark.parametrize("make, composite, name", [
    (lambda: ll.ELU(3), elu_composite, "alpha"),
    (lambda: ll.PReLU(3), leaky_composite, "scale"),
])
def test_second_derivative_through_hand_written_backward_matches_composite(make, composite, name):
    torch.manual_seed(1)
    layer = make().train()
    X = torch.randn(4, 3, 5, 5, requires_grad=True)
    # a gradient penalty: || dL/dX ||^2, differentiated again
    g, = torch.autograd.grad(layer(X).pow(3).sum(), X, create_graph=True)
    got = torch.autograd.grad(g.pow(2).sum(), [X, getattr(layer, name)])
    Xr = X.detach().clone().requires_grad_()
    p = getattr(layer, name).detach().clone().requires_grad_()
    gr, = torch.autograd.grad(composite(Xr, p).pow(3).sum(), Xr, create_graph=True)
    want = torch.autograd.grad(gr.pow(2).sum(), [Xr, p])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_second_derivative_through_batch_norm_formula_keeps_running_statistics():
    torch.manual_seed(2)
    bn = ll.BatchNormalization(backward="formula")
    ll.Network([ll.FeatureInput(3), bn])    # sized by a network
    bn.train()
    ref = torch.nn.BatchNorm1d(3)
    X = torch.randn(6, 3, requires_grad=True)
    g, = torch.autograd.grad(bn(X).pow(3).sum(), X, create_graph=True)
    mean_after_one_run = bn.trained_mean.clone()
    got, = torch.autograd.grad(g.pow(2).sum(), X)
    torch.testing.assert_close(bn.trained_mean, mean_after_one_run)
    Xr = X.detach().clone().requires_grad_()
    gr, = torch.autograd.grad(ref(Xr).pow(3).sum(), Xr, create_graph=True)
    want, = torch.autograd.grad(gr.pow(2).sum(), Xr)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


class _NumpyBackwardELU(ll.ELU):
    backward_is_differentiable = False


def test_a_non_differentiable_backward_gives_a_clear_error():
    layer = _NumpyBackwardELU(3, name="np_elu").train()
    X = torch.randn(2, 3, 4, requires_grad=True)
    g, = torch.autograd.grad(layer(X).sum(), X)     # first derivatives work
    with pytest.raises(LayerError, match="'np_elu'.*not differentiable"):
        torch.autograd.grad(layer(X).sum(), X, create_graph=True)


def test_forward_mode_differentiates_forward():
    layer = ll.ELU(3, name="e").train()
    X, T = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    _, tr = torch.func.jvp(lambda x: elu_composite(x, layer.alpha.detach()), (X,), (T,))
    _, t = torch.func.jvp(layer, (X,), (T,))
    torch.testing.assert_close(t, tr)
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        t2 = fwAD.unpack_dual(layer(fwAD.make_dual(X, T))).tangent
    torch.testing.assert_close(t2, tr)
    layer.use_autograd = True           # or explicitly
    torch.testing.assert_close(torch.func.jvp(layer, (X,), (T,))[1], tr)


# ---- 3. gradients in every mode ---------------------------------------------
@pytest.mark.parametrize("make", [lambda: ll.ELU(3), lambda: ll.CReLU(), lambda: ll.PReLU(3),
                                  lambda: ll.LeakyReLU(), lambda: ll.Maxout(3)])
def test_input_gradient_in_inference_mode_matches_training_of_the_predict(make):
    layer = make().eval()
    X = torch.randn(2, 6 if isinstance(layer, ll.Maxout) else 3, 4, 4, requires_grad=True)
    layer(X)[:, 0].sum().backward()
    Xr = X.detach().clone().requires_grad_()
    # reference: the same layer's training pass (its hand-written backward)
    layer.train()(Xr)[:, 0].sum().backward()
    torch.testing.assert_close(X.grad, Xr.grad)


def test_saliency_of_a_trained_network_in_inference_mode():
    net = ll.Network([ll.ImageInput((1, 6, 6)), ll.Convolution2d(3, 4),
                      ll.BatchNormalization(), ll.ELU(4), ll.FullyConnected(3),
                      ll.Softmax(), ll.Classification()]).eval()
    X = torch.randn(2, 1, 6, 6, requires_grad=True)
    net(X)[:, 1].sum().backward()
    assert X.grad is not None and X.grad.abs().sum() > 0


# ---- 4. torch.nn.Parameter and submodules are learnables ---------------------
class _ScaleWithParameter(ll.Layer):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.proj = torch.nn.Linear(3, 3)

    def predict(self, X):
        return self.proj(X * self.w)


def test_nn_parameter_and_submodule_are_learnables():
    layer = _ScaleWithParameter()
    assert layer.learnable_names == ["w", "proj.weight", "proj.bias"]
    assert layer.learnables()["w"] is layer.w
    layer.freeze("proj.weight").set_learn_rate_factor("w", 2.0)
    assert not layer.proj.weight.requires_grad and layer.learn_rate_factor("w") == 2.0
    assert layer.has_learnable("proj.bias") and not layer.has_learnable("nope")
    with pytest.raises(LayerError, match="no learnable 'nope'"):
        layer.freeze("nope")


def test_nn_parameter_in_a_user_layer_is_trained():
    torch.manual_seed(0)
    layer = _ScaleWithParameter()
    net = ll.Network([ll.FeatureInput(3), layer, ll.Regression()])
    w0, b0 = layer.w.detach().clone(), layer.proj.bias.detach().clone()
    X = torch.randn(32, 3)
    opts = ll.training_options("sgdm", max_epochs=2, mini_batch_size=16, verbose=False,
                               plots="none", initial_learn_rate=0.1,
                               check_layers=False)   # check_layer: tests/test_check_layer.py
    trained, _ = ll.train_network(X, X * 2, net, opts)
    layer = trained.layers[1]
    assert not torch.equal(layer.w.detach(), w0)
    assert not torch.equal(layer.proj.bias.detach(), b0)


# ---- 3b. torch.compile ---------------------------------------------------------
def _builtin_zoo(dropout: bool):
    return ll.Network([
        ll.ImageInput((2, 8, 8)), ll.Convolution2d(3, 4, padding="same"),
        ll.BatchNormalization(backward="formula"), ll.ELU(4), ll.PReLU(),
        ll.CReLU(), ll.Maxout(2), ll.LeakyReLU(), ll.MaxPooling2d(2),
        ll.BatchNormalization(), *([ll.Dropout(0.3)] if dropout else []),
        ll.AveragePooling2d(2), ll.FullyConnected(3), ll.Tanh(), ll.FullyConnected(3),
        ll.Softmax(), ll.Classification()])


@pytest.mark.slow
def test_builtin_layers_compile_without_graph_breaks_and_match_eager():
    import copy
    torch.manual_seed(0)
    net = _builtin_zoo(dropout=True)
    X = torch.randn(4, 2, 8, 8)
    for mode in (True, False):
        explained = torch._dynamo.explain(net.train(mode))(X)
        assert explained.graph_break_count == 0, explained.break_reasons
    torch._dynamo.reset()
    net = _builtin_zoo(dropout=False)
    eager = copy.deepcopy(net)
    compiled = torch.compile(net, backend="aot_eager", dynamic=False)
    for mode in (True, False):
        net.train(mode), eager.train(mode)
        Xc, Xe = X.clone().requires_grad_(), X.clone().requires_grad_()
        Yc, Ye = compiled(Xc), eager(Xe)
        torch.testing.assert_close(Yc, Ye)
        Yc[:, 1].sum().backward()
        Ye[:, 1].sum().backward()
        torch.testing.assert_close(Xc.grad, Xe.grad)
        for p, q in zip(net.parameters(), eager.parameters()):
            torch.testing.assert_close(p.grad, q.grad)
            p.grad = q.grad = None


# ---- 6. the network in a plain PyTorch loop -----------------------------------
def test_plain_torch_sgd_loop_reaches_the_weights_of_train_network():
    import copy
    torch.manual_seed(0)
    net = ll.Network([ll.FeatureInput(4, normalization="none"), ll.FullyConnected(8),
                      ll.ELU(8), ll.FullyConnected(3), ll.Softmax(), ll.Classification()])
    net.layers[1].set_learn_rate_factor("bias", 2.0)
    X, labels = torch.randn(64, 4), torch.randint(0, 3, (64,))
    plain = copy.deepcopy(net)
    opts = ll.training_options("sgdm", initial_learn_rate=0.05, momentum=0.9,
                               l2_regularization=1e-3, mini_batch_size=16, max_epochs=3,
                               shuffle="never", verbose=False, check_layers=False)
    trained, _ = ll.train_network(X, labels, net, opts)

    # what a PyTorch user writes: torch.optim.SGD, one parameter group per
    # learnable with its learn-rate and L2 factors; net(X) is the softmax's
    # output (the loss layer's input) in training mode
    groups = [{"params": [p], "lr": 0.05 * layer.learn_rate_factor(name),
               "weight_decay": 1e-3 * layer.l2_factor(name)}
              for layer in plain.layers for name, p in layer.learnables().items()]
    sgd = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    plain.output_layer.classes = trained.output_layer.classes
    T = plain.output_layer.prepare_targets(labels, 64)
    plain.train()
    for _ in range(3):
        for b in range(4):
            rows = slice(16 * b, 16 * (b + 1))
            loss = torch.nn.functional.nll_loss(plain(X[rows]).log(), labels[rows])
            torch.testing.assert_close(loss, plain.loss(plain(X[rows]), T[rows]))
            sgd.zero_grad()
            loss.backward()
            sgd.step()
    for p, q in zip(plain.parameters(), trained.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


# ---- issue 17: reproducible initial values -------------------------------------
def test_elu_alpha_is_drawn_under_the_training_seed_when_layers_are_built_anew():
    def run():
        torch.randn(7)       # the global RNG is somewhere else each time
        layers = [ll.FeatureInput(3, normalization="none"), ll.FullyConnected(4), ll.ELU(4),
                  ll.FullyConnected(2), ll.Softmax(), ll.Classification()]
        opts = ll.training_options("sgdm", max_epochs=1, mini_batch_size=8, seed=3,
                                   verbose=False, check_layers=False)
        X, Y = torch.linspace(-1, 1, 48).view(16, 3), torch.arange(16) % 2
        net, _ = ll.train_network(X, Y, layers, opts)
        return net.layers[2].alpha.detach().clone()

    torch.testing.assert_close(run(), run(), rtol=0, atol=0)


def test_a_set_or_loaded_alpha_is_not_redrawn():
    elu = ll.ELU(3)
    elu.alpha = torch.tensor([0.1, 0.2, 0.3])
    ll.Network([ll.FeatureInput(3), elu])
    torch.testing.assert_close(elu.alpha.detach(), torch.tensor([0.1, 0.2, 0.3]))
    inplace = ll.ELU(3)
    with torch.no_grad():
        inplace.alpha.fill_(0.25)
    ll.Network([ll.FeatureInput(3), inplace])
    torch.testing.assert_close(inplace.alpha.detach(), torch.full((3,), 0.25))
    other = ll.ELU(3)
    other.load_state_dict({"alpha": torch.tensor([0.5, 0.5, 0.5])})
    ll.Network([ll.FeatureInput(3), other])
    torch.testing.assert_close(other.alpha.detach(), torch.full((3,), 0.5))
