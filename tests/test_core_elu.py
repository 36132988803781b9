"""The built-in ELU and the demo's user-written SeedELU: hand-written
derivatives against autograd of a plain formula, in float64."""

import pytest
import torch

import layerlab as ll
from layerlab.autograd_bridge import run_layer
from layerlab.demo import SeedELU


def reference_elu(X, alpha):
    a = alpha.view(1, -1, *([1] * (X.dim() - 2)))
    return torch.where(X > 0, X, a * (torch.exp(torch.clamp(X, max=0)) - 1))


def away_from_kink(shape):
    X = torch.randn(shape, dtype=torch.float64) * 2
    return X + 0.05 * torch.sign(X)   # no values at the kink 0


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (7, 3)])
def test_elu_backward_matches_autograd(shape):
    layer = ll.ELU(3).double().train()
    X = away_from_kink(shape).requires_grad_()
    G = torch.randn(shape, dtype=torch.float64)
    Z = run_layer(layer, (X,), training=True)
    dX, dA = torch.autograd.grad(Z, (X, layer.alpha), G)

    alpha = layer.alpha.detach().clone().requires_grad_()
    X2 = X.detach().clone().requires_grad_()
    Zr = reference_elu(X2, alpha)
    rX, rA = torch.autograd.grad(Zr, (X2, alpha), G)
    torch.testing.assert_close(Z, Zr, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dX, rX, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dA, rA, rtol=1e-10, atol=1e-12)


def test_elu_gradcheck_finite_differences():
    layer = ll.ELU(2).double().train()
    X = away_from_kink((3, 2, 4, 4)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, a: run_layer(layer, (x,), True), (X, layer.alpha))


def test_seed_elu_matches_builtin():
    torch.manual_seed(1)
    seed = SeedELU(4).double().train()
    builtin = ll.ELU(4).double().train()
    with torch.no_grad():
        builtin.alpha.copy_(seed.alpha.view(-1))
    X = away_from_kink((2, 4, 3, 3)).requires_grad_()
    G = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    gs = torch.autograd.grad(run_layer(seed, (X,), True), (X, seed.alpha), G)
    gb = torch.autograd.grad(run_layer(builtin, (X,), True), (X, builtin.alpha), G)
    torch.testing.assert_close(gs[0], gb[0])
    torch.testing.assert_close(gs[1].view(-1), gb[1])


def test_fixed_alpha_elu_is_the_same_class_and_not_trained():
    fixed = ll.ELU(alpha=1.0, learnable=False)
    assert type(fixed) is ll.ELU and not fixed.is_learnable("alpha")
    X = torch.linspace(-3, 3, 13).view(1, 1, 13)
    torch.testing.assert_close(fixed.predict(X), torch.nn.functional.elu(X))
    # in training, the frozen alpha gets no gradient but the input does
    X = X.clone().requires_grad_()
    run_layer(fixed.train(), (X,), True).sum().backward()
    assert fixed.alpha.grad is None and X.grad is not None


def test_elu_no_overflow_for_large_inputs():
    layer = ll.ELU(1).train()
    X = torch.tensor([[1e4, -1e4]]).requires_grad_()
    Z = run_layer(layer, (X,), True)
    Z.sum().backward()
    assert torch.isfinite(Z).all() and torch.isfinite(X.grad).all()
    assert float(Z[0, 0].detach()) == 1e4


def test_elu_wrong_channel_count_is_clear():
    with pytest.raises(ll.LayerError, match="alpha has 3 channels"):
        ll.ELU(3).predict(torch.ones(2, 4, 5, 5))
