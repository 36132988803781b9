"""Property-based tests (hypothesis): the hand-written backwards agree with
PyTorch's autograd of an independent reference for any size, filter,
stride, padding or parameter the strategies draw, in float64."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import layerlab as ll
from layerlab.autograd_bridge import run_layer

SETTINGS = settings(max_examples=25, deadline=None)


def backward_through(layer, X, G):
    """dL/dX and the learnables' gradients for L = sum(Z * G), training mode."""
    Xl = X.clone().requires_grad_(True)
    for p in layer.learnables().values():
        p.grad = None
    Z = run_layer(layer, (Xl,), training=True)
    (Z * G).sum().backward()
    return Z.detach(), Xl.grad, {n: p.grad for n, p in layer.learnables().items()}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@SETTINGS
@given(n=st.integers(1, 4), c=st.integers(1, 4), f=st.integers(1, 6),
       h=st.integers(5, 9), w=st.integers(5, 9), k=st.integers(1, 4),
       stride=st.integers(1, 3), pad=st.one_of(st.integers(0, 2), st.just("same")),
       seed=st.integers(0, 2**16))
def test_convolution_backward_matches_autograd_of_conv2d(n, c, f, h, w, k, stride, pad, seed):
    if pad == "same":
        stride = 1
    torch.manual_seed(seed)
    layer = ll.Convolution2d(k, f, stride=stride, padding=pad)
    layer.initialize([(c, h, w)])
    layer.double()
    X = torch.randn(n, c, h, w, dtype=torch.float64)
    Wr = layer.weights.detach().clone().requires_grad_(True)
    br = layer.bias.detach().clone().requires_grad_(True)
    Xr = X.clone().requires_grad_(True)
    Zr = F.conv2d(Xr, Wr, br, stride, "same" if pad == "same" else pad)
    G = torch.randn_like(Zr)
    (Zr * G).sum().backward()
    Z, dX, grads = backward_through(layer, X, G)
    torch.testing.assert_close(Z, Zr.detach())
    torch.testing.assert_close(dX, Xr.grad)
    torch.testing.assert_close(grads["weights"], Wr.grad)
    torch.testing.assert_close(grads["bias"], br.grad)


REFERENCES = {
    # layer factory, reference Z = f(X, learnable) with PyTorch's own ops
    "ELU": (lambda c: ll.ELU(c), lambda X, a: torch.where(X > 0, X, a.view(1, -1, 1, 1)
                                                          * torch.expm1(X))),
    "PReLU": (lambda c: ll.PReLU(c), lambda X, a: F.prelu(X, a)),
    "LeakyReLU": (lambda c: ll.LeakyReLU(0.3), lambda X, a: F.leaky_relu(X, 0.3)),
    "CReLU": (lambda c: ll.CReLU(), lambda X, a: torch.cat([F.relu(X), F.relu(-X)], 1)),
    "Maxout": (lambda c: ll.Maxout(2), lambda X, a: X.view(X.shape[0], -1, 2, *X.shape[2:])
               .amax(2)),
}


@SETTINGS
@given(name=st.sampled_from(sorted(REFERENCES)), n=st.integers(1, 5),
       c=st.sampled_from([2, 4, 6]), h=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_activation_backwards_match_autograd_of_pytorch_ops(name, n, c, h, seed):
    torch.manual_seed(seed)
    make, reference = REFERENCES[name]
    layer = make(c)
    layer.initialize([(c, h, h)])
    layer.double()
    X = torch.randn(n, c, h, h, dtype=torch.float64)
    X = X + 0.05 * X.sign()                               # away from the kinks
    learnables = layer.learnables()
    a = next(iter(learnables.values())).detach().clone().requires_grad_(True) \
        if learnables else None
    Xr = X.clone().requires_grad_(True)
    Zr = reference(Xr, a.view(-1) if a is not None else None)
    G = torch.randn_like(Zr)
    (Zr * G).sum().backward()
    Z, dX, grads = backward_through(layer, X, G)
    torch.testing.assert_close(Z, Zr.detach())
    torch.testing.assert_close(dX, Xr.grad)
    if a is not None:
        (g,) = grads.values()
        torch.testing.assert_close(g, a.grad)
