"""Activation layers against PyTorch's own ops (values and derivatives, in
float64), finite differences for the hand-written backwards, and their
argument errors."""

import pytest
import torch
import torch.nn.functional as F

import layerlab as ll
from layerlab.autograd_bridge import run_layer


def grads(fn, X, params, G):
    """Output and derivatives of ``fn(X)`` w.r.t. X and ``params``."""
    X = X.detach().clone().requires_grad_()
    Z = fn(X)
    return (Z, *torch.autograd.grad(Z, (X, *params), G))


def layer_grads(layer, X, G):
    return grads(lambda x: run_layer(layer, (x,), training=True), X,
                 list(layer.learnables().values()), G)


def with_zeros(shape):
    """Random float64 data with some exact zeros (the kink of the rectifiers)."""
    X = torch.randn(shape, dtype=torch.float64)
    X.view(-1)[::7] = 0.0
    return X


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 5, 6)])
def test_prelu_matches_torch_prelu_including_at_zero(shape):
    layer = ll.PReLU(4).double()
    with torch.no_grad():
        layer.scale.copy_(torch.tensor([0.1, -0.3, 0.25, 2.0]))
    X, G = with_zeros(shape), torch.randn(shape, dtype=torch.float64)
    a = layer.scale.detach().clone().requires_grad_()
    Z, dX, dA = layer_grads(layer, X, G)
    Zr, rX, rA = grads(lambda x: F.prelu(x, a), X, [a], G)
    torch.testing.assert_close(Z, Zr, rtol=0, atol=0)
    torch.testing.assert_close(dX, rX, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dA, rA, rtol=1e-12, atol=1e-12)
    assert layer.scale.shape == (4,) and layer.is_learnable("scale")


def test_leaky_relu_fixed_scale_matches_torch():
    layer = ll.LeakyReLU().double()           # MATLAB's default scale 0.01
    assert not layer.is_learnable("scale") and layer.scale.shape == (1,)
    X, G = with_zeros((4, 3, 5, 5)), torch.randn(4, 3, 5, 5, dtype=torch.float64)
    Z, dX = grads(lambda x: run_layer(layer, (x,), True), X, [], G)
    # 0.01 as stored (float32, then cast to float64)
    Zr, rX = grads(lambda x: F.leaky_relu(x, float(layer.scale)), X, [], G)
    torch.testing.assert_close(Z, Zr, rtol=0, atol=0)
    torch.testing.assert_close(dX, rX, rtol=1e-12, atol=1e-12)


def test_leaky_relu_learnable_shared_scale_sums_over_channels():
    layer = ll.LeakyReLU(0.2, learnable=True).double()
    X, G = with_zeros((4, 3, 5)), torch.randn(4, 3, 5, dtype=torch.float64)
    Z, dX, dA = layer_grads(layer, X, G)
    # hand computation: dL/da = sum of G * min(0, X) over everything
    torch.testing.assert_close(dA, (G * X.clamp(max=0)).sum().reshape(1))
    assert torch.autograd.gradcheck(lambda x, a: run_layer(layer, (x,), True),
                                    (X.abs().add(0.1) * X.sign().add(0.5).sign(),
                                     layer.scale))


def test_frozen_leaky_scale_gets_no_gradient():
    layer = ll.PReLU(3).double().freeze()
    X = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    run_layer(layer, (X,), True).sum().backward()
    assert layer.scale.grad is None and X.grad is not None


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 4)])
def test_crelu_matches_concatenated_relus(shape):
    layer = ll.CReLU()
    X = with_zeros(shape)
    G = torch.randn((shape[0], 2 * shape[1], *shape[2:]), dtype=torch.float64)
    Z, dX = grads(lambda x: run_layer(layer, (x,), True), X, [], G)
    Zr, rX = grads(lambda x: torch.cat([F.relu(x), F.relu(-x)], dim=1), X, [], G)
    torch.testing.assert_close(Z, Zr, rtol=0, atol=0)
    torch.testing.assert_close(dX, rX, rtol=0, atol=0)
    assert layer.predict(X).shape[1] == 2 * shape[1]
    # predict is differentiable by autograd too (e.g. for second checks)
    Zp, pX = grads(layer.predict, X, [], G)
    torch.testing.assert_close(Zp, Zr, rtol=0, atol=0)
    torch.testing.assert_close(pX, rX, rtol=0, atol=0)


@pytest.mark.parametrize("k", [2, 3])
def test_maxout_matches_max_over_channel_groups_with_ties(k):
    layer = ll.Maxout(k)
    X = torch.randn(4, 2 * k, 3, 3, dtype=torch.float64).relu()   # many ties at 0
    G = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    Z, dX = grads(lambda x: run_layer(layer, (x,), True), X, [], G)
    # hand computation: the derivative goes to the first winning piece only
    expected = torch.zeros_like(X)
    for n in range(4):
        for c in range(2):
            for i in range(3):
                for j in range(3):
                    pieces = X[n, c * k:(c + 1) * k, i, j]
                    w = int(torch.nonzero(pieces == pieces.max())[0])
                    expected[n, c * k + w, i, j] = G[n, c, i, j]
    torch.testing.assert_close(Z, X.view(4, 2, k, 3, 3).amax(2), rtol=0, atol=0)
    torch.testing.assert_close(dX, expected, rtol=0, atol=0)
    torch.testing.assert_close(layer.predict(X), Z)


def test_hand_written_backwards_pass_finite_differences():
    X = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    X = X + 0.1 * X.sign()                       # away from the kinks
    for layer in [ll.PReLU(6).double(), ll.CReLU(), ll.Maxout(3)]:
        params = tuple(layer.learnables().values())
        assert layer.has_backward
        assert torch.autograd.gradcheck(
            lambda x, *p: run_layer(layer, (x,), True), (X.clone().requires_grad_(), *params))


def test_fully_connected_maxout_is_max_of_affine_pieces():
    layer = ll.FullyConnectedMaxout(3, num_pieces=4, input_size=5).double()
    assert layer.weights.shape == (12, 5) and layer.bias.shape == (12,)
    X = torch.randn(7, 5, dtype=torch.float64)
    W, b = layer.weights.detach(), layer.bias.detach()
    expected = torch.tensor([[max(float(X[n] @ W[i * 4 + j] + b[i * 4 + j]) for j in range(4))
                              for i in range(3)] for n in range(7)], dtype=torch.float64)
    torch.testing.assert_close(layer.predict(X), expected)
    net = ll.Network([ll.ImageInput((1, 4, 4), normalization="none"),
                      ll.FullyConnectedMaxout(6, num_pieces=2)])
    assert net.sizes["fcmaxout_1"] == ((6,),)
    assert net.layer("fcmaxout_1").weights.shape == (12, 16)


def test_tanh_and_sigmoid():
    X = torch.randn(3, 4)
    torch.testing.assert_close(ll.Tanh().predict(X), torch.tanh(X))
    torch.testing.assert_close(ll.Sigmoid().predict(X), 1 / (1 + torch.exp(-X)))


def test_initializers_are_wired_into_maxout_weights():
    assert torch.all(ll.FullyConnectedMaxout(2, input_size=3, weights_initializer="ones")
                     .weights == 1)
    layer = ll.FullyConnectedMaxout(2, input_size=3, weights_initializer=lambda s: torch.full(s, 7.))
    assert torch.all(layer.weights == 7)
    torch.manual_seed(0)
    w = ll.FullyConnectedMaxout(50, num_pieces=2, input_size=400,
                                weights_initializer=ll.Gaussian(0.5)).weights.detach()
    assert abs(float(w.std()) - 0.5) < 0.02
    w = ll.FullyConnectedMaxout(50, num_pieces=2, input_size=400, weights_initializer="he").weights.detach()
    assert abs(float(w.std()) - (2 / 400) ** 0.5) < 0.005


def test_argument_and_size_errors_name_the_layer():
    with pytest.raises(ll.LayerError, match="Maxout num_pieces: expected a positive integer"):
        ll.Maxout(0)
    with pytest.raises(ll.LayerError, match=r"'m' \(Maxout\): expected input \(N, C\*3, \.\.\.\)"
                                            r".*got \(2, 4, 5\)"):
        ll.Maxout(3, name="m").predict(torch.zeros(2, 4, 5))
    with pytest.raises(ll.LayerError, match="LeakyReLU scale: expected a number, got 'x'"):
        ll.LeakyReLU("x")
    with pytest.raises(ll.LayerError, match=r"'p' \(PReLU\): scale has 3 channels, got input "
                                            r"of size \(2, 4\)"):
        ll.PReLU(3, name="p").predict(torch.zeros(2, 4))
    with pytest.raises(ll.NetworkError, match=r"'maxout_1' \(Maxout\).*divisible by num_pieces 2"):
        ll.Network([ll.ImageInput((3, 4, 4)), ll.Maxout(2)])


def test_prelu_infers_channels_in_a_network():
    net = ll.Network([ll.ImageInput((5, 4, 4)), ll.PReLU(), ll.CReLU()])
    assert net.layer("prelu_1").scale.shape == (5,)
    assert torch.all(net.layer("prelu_1").scale == 0.25)
    assert net.sizes["crelu_1"] == ((10, 4, 4),)


def test_fixed_leaky_relu_trains_from_its_one_byte_mask_and_learnable_one_from_X():
    X = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    X = X + 0.1 * X.sign()                       # away from the kink
    fixed = ll.LeakyReLU(0.2).double()
    assert fixed.backward_uses == ("memory",)
    Z, mask = fixed.training_forward(X)
    assert mask.dtype == torch.bool and mask.element_size() == 1 and torch.equal(mask, X > 0)
    assert torch.autograd.gradcheck(lambda x: run_layer(fixed, (x,), True),
                                     (X.clone().requires_grad_(),))
    learned = ll.PReLU(4).double()
    assert learned.backward_uses == ("X",)
    learned.freeze("scale")                      # frozen: the mask is enough again
    assert learned.backward_uses == ("memory",)
    Xr = X.clone().requires_grad_()
    run_layer(learned, (Xr,), True).sum().backward()
    torch.testing.assert_close(Xr.grad, torch.where(X > 0, 1.0, learned.scale.view(1, 4, 1, 1)
                                                    .detach().expand_as(X)))
