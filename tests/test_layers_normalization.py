"""Batch and layer normalization against PyTorch's own ops: values,
derivatives (the lecture's hand-written formulas), running statistics,
training vs prediction."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import layerlab as ll
from layerlab.autograd_bridge import run_layer


def set_affine(layer, gamma, beta):
    with torch.no_grad():
        layer.scale.copy_(torch.as_tensor(gamma))
        layer.offset.copy_(torch.as_tensor(beta))
    return layer


@pytest.mark.parametrize("backward", ["formula", "native"])
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 6)])
def test_batch_norm_training_matches_torch(shape, backward):
    layer = set_affine(ll.BatchNormalization(num_channels=3, backward=backward).double(),
                       [0.5, 2.0, -1.0], [0.1, 0.2, 0.3])
    assert layer.has_backward == (backward == "formula")
    X = torch.randn(shape, dtype=torch.float64) * 3 + 1
    G = torch.randn(shape, dtype=torch.float64)
    x1 = X.clone().requires_grad_()
    Z = run_layer(layer, (x1,), training=True)
    dX, dB, dG = torch.autograd.grad(Z, (x1, layer.offset, layer.scale), G)

    ref = torch.nn.BatchNorm1d(3) if len(shape) == 2 else torch.nn.BatchNorm2d(3)
    ref = ref.double()
    with torch.no_grad():
        ref.weight.copy_(layer.scale), ref.bias.copy_(layer.offset)
    x2 = X.clone().requires_grad_()
    Zr = ref(x2)
    rX, rB, rG = torch.autograd.grad(Zr, (x2, ref.bias, ref.weight), G)
    for a, b in [(Z, Zr), (dX, rX), (dB, rB), (dG, rG),
                 (layer.trained_mean, ref.running_mean),
                 (layer.trained_variance, ref.running_var)]:
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_batch_norm_formula_passes_finite_differences():
    layer = set_affine(ll.BatchNormalization(num_channels=2, backward="formula").double(),
                       [1.5, -0.5], [0.0, 1.0])
    X = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, b, g: run_layer(layer, (x,), True),
                                    (X, layer.offset, layer.scale))


@pytest.mark.parametrize("backward", ["formula", "native"])
def test_running_statistics_after_several_batches_and_prediction(backward):
    layer = ll.BatchNormalization(momentum=0.2, num_channels=4, backward=backward)
    ref = torch.nn.BatchNorm2d(4, momentum=0.2)
    for _ in range(5):
        X = torch.randn(6, 4, 3, 3) * torch.tensor([1., 2, 3, 4]).view(1, 4, 1, 1) + 5
        run_layer(layer, (X,), training=True)
        ref.train()(X)
    torch.testing.assert_close(layer.trained_mean, ref.running_mean)
    torch.testing.assert_close(layer.trained_variance, ref.running_var)
    # prediction uses the running statistics, not the batch's
    X = torch.randn(2, 4, 3, 3)
    expected = (X - layer.trained_mean.view(1, 4, 1, 1)) / torch.sqrt(
        layer.trained_variance.view(1, 4, 1, 1) + 1e-5)
    torch.testing.assert_close(run_layer(layer, (X,), training=False), expected)
    torch.testing.assert_close(run_layer(layer, (X,), training=False), ref.eval()(X))
    assert layer.differs_in_training and layer.couples_observations and not layer.is_stochastic


def test_running_statistics_after_training_a_network(digits_small, one_thread):
    """With a negligible learning rate the convolution stays put, so the
    batch norm's running mean and variance must approach the statistics of
    its input over the data."""
    X, Y = digits_small[0][:600], digits_small[1][:600]
    layers = [ll.ImageInput((1, 28, 28), normalization="none"), ll.Convolution2d(5, 3),
              ll.BatchNormalization(momentum=0.5, backward="formula"), ll.ReLU(),
              ll.FullyConnected(10), ll.Softmax(), ll.Classification()]
    opts = ll.training_options("sgdm", initial_learn_rate=1e-9, momentum=0.0, max_epochs=1,
                               mini_batch_size=100, verbose=False, shuffle="never")
    net, _ = ll.train_network(X, Y, layers, opts)
    bn = net.layer("batchnorm_1")
    with torch.no_grad():
        A = net.layer("conv_1").predict(torch.as_tensor(X))
    # 6 iterations of momentum 0.5 from the initial 0 and 1: a weight of
    # 0.5^6 stays on the initial values
    w = 0.5 ** 6
    mean = (1 - w) * A.mean(dim=(0, 2, 3))
    var = w * 1.0 + (1 - w) * A.var(dim=(0, 2, 3))
    np.testing.assert_allclose(bn.trained_mean.numpy(), mean.numpy(), rtol=0.02, atol=1e-4)
    np.testing.assert_allclose(bn.trained_variance.numpy(), var.numpy(), rtol=0.05)


def test_batch_norm_needs_more_than_one_value_per_channel_in_training():
    layer = ll.BatchNormalization(num_channels=3, backward="formula", name="bn")
    with pytest.raises(ll.LayerError, match=r"'bn' \(BatchNormalization\): training needs more "
                                            r"than one value per channel, got input of size "
                                            r"\(1, 3\)"):
        run_layer(layer, (torch.zeros(1, 3),), training=True)
    assert run_layer(layer, (torch.zeros(1, 3),), training=False).shape == (1, 3)


def test_batch_norm_argument_errors():
    with pytest.raises(ll.LayerError, match=r"BatchNormalization backward: expected one of "
                                            r"\('native', 'formula'\), got 'fast'"):
        ll.BatchNormalization(backward="fast")
    with pytest.raises(ll.LayerError, match="BatchNormalization epsilon: expected a number > 0"):
        ll.BatchNormalization(epsilon=0)
    with pytest.raises(ll.LayerError, match="BatchNormalization scale_initializer: unknown"):
        ll.BatchNormalization(scale_initializer="bogus")
    layer = ll.BatchNormalization(num_channels=2, scale_initializer=ll.Gaussian(0.0, mean=3.0))
    assert torch.all(layer.scale == 3.0) and torch.all(layer.offset == 0.0)


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 5, 6)])
def test_layer_norm_matches_torch_layer_norm_with_per_channel_affine(shape):
    layer = set_affine(ll.LayerNormalization(num_channels=4).double(),
                       [1.0, 2.0, 0.5, -1.0], [0.0, 0.1, 0.2, 0.3])
    assert not (layer.differs_in_training or layer.couples_observations or layer.is_stochastic)
    X = torch.randn(shape, dtype=torch.float64) * 2 + 3
    G = torch.randn(shape, dtype=torch.float64)
    x1 = X.clone().requires_grad_()
    Z = run_layer(layer, (x1,), training=True)
    dX, dB, dG = torch.autograd.grad(Z, (x1, layer.offset, layer.scale), G)
    g = layer.scale.detach().clone().requires_grad_()
    b = layer.offset.detach().clone().requires_grad_()
    x2 = X.clone().requires_grad_()
    view = (1, 4) + (1,) * (len(shape) - 2)
    Zr = F.layer_norm(x2, shape[1:], eps=1e-5) * g.view(view) + b.view(view)
    rX, rB, rG = torch.autograd.grad(Zr, (x2, b, g), G)
    for a, r in [(Z, Zr), (dX, rX), (dB, rB), (dG, rG)]:
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.predict(X), Z)
