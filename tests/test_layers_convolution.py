"""Convolution2d's hand-written backward against PyTorch's autograd of
F.conv2d, in the cases training meets: the network's first layer (no dL/dX
wanted), a hidden layer (dL/dX wanted), a frozen weight, strides and
"same" padding with odd and even filters."""

import pytest
import torch
import torch.nn.functional as F

import layerlab as ll
from layerlab.autograd_bridge import run_layer


def reference(layer, X, need_x):
    W = layer.weights.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    Xr = X.detach().clone().requires_grad_(need_x)
    kh, kw = layer.filter_size
    if layer.padding == "same":
        # PyTorch's own "same" (stride 1) is the reference for the padding
        Z = F.conv2d(Xr, W, b, 1, "same")
    else:
        Z = F.conv2d(Xr, W, b, layer.stride, layer.padding)
    return Z, Xr, W, b


CASES = [
    dict(filter_size=5, num_filters=20),                       # the seed's layer
    dict(filter_size=3, num_filters=8, padding="same"),
    dict(filter_size=4, num_filters=6, padding="same"),         # even: padded bottom/right
    dict(filter_size=(2, 3), num_filters=4, padding="same"),
    dict(filter_size=3, num_filters=8, stride=2, padding=1),
    dict(filter_size=3, num_filters=40, padding=1),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("kwargs", CASES)
@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("need_x", [False, True])
def test_backward_matches_autograd(kwargs, channels, need_x):
    torch.manual_seed(0)
    layer = ll.Convolution2d(**kwargs)
    layer.initialize([(channels, 11, 10)])
    X = torch.randn(6, channels, 11, 10, dtype=torch.float64)
    layer.double()
    Zr, Xr, W, b = reference(layer, X, need_x)
    G = torch.randn_like(Zr)
    Zr.backward(G)

    Xl = X.clone().requires_grad_(need_x)
    Z = run_layer(layer, (Xl,), training=True)
    assert Z.shape == Zr.shape
    torch.testing.assert_close(Z, Zr.detach())
    Z.backward(G)
    torch.testing.assert_close(layer.weights.grad, W.grad)
    torch.testing.assert_close(layer.bias.grad, b.grad)
    if need_x:
        torch.testing.assert_close(Xl.grad, Xr.grad)


def test_frozen_weights_get_no_gradient_and_bias_still_learns():
    torch.manual_seed(0)
    layer = ll.Convolution2d(5, 20)
    layer.initialize([(1, 28, 28)])
    layer.freeze("weights")
    Z = run_layer(layer, (torch.randn(4, 1, 28, 28),), training=True)
    Z.sum().backward()
    assert layer.weights.grad is None
    torch.testing.assert_close(layer.bias.grad, torch.full((20,), 4.0 * 24 * 24))
