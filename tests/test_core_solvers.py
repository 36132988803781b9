"""SGDM as MATLAB defines it, checked against a hand computation."""

import numpy as np
import pytest
import torch

import layerlab as ll
from layerlab.network import Network
from layerlab.training.solvers import SGDM, make_optimizer


def test_sgdm_two_steps_by_hand():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = SGDM([w], lr=0.1, momentum=0.9, weight_decay=0.01)
    g1, g2 = torch.tensor([0.5, 1.0]), torch.tensor([-1.0, 0.25])
    # by hand, MATLAB: v = m v - l2*lr*W - lr*g; W = W + v
    W = np.array([1.0, -2.0])
    v = np.zeros(2)
    for g in (g1, g2):
        w.grad = g.clone()
        opt.step()
        v = 0.9 * v - 0.01 * 0.1 * W - 0.1 * g.numpy()
        W = W + v
        np.testing.assert_allclose(w.detach().numpy(), W, rtol=1e-6)


def test_per_parameter_factors_and_frozen_parameters():
    fc = ll.FullyConnected(3, input_size=2)
    fc.set_learn_rate_factor("bias", 2.0).set_l2_factor("bias", 0.0)
    net = Network([_features((2,)), fc])
    opts = ll.training_options("sgdm", initial_learn_rate=0.1, l2_regularization=0.5)
    opt = make_optimizer(net, opts)
    groups = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert groups[id(fc.weights)]["lr"] == pytest.approx(0.1)
    assert groups[id(fc.weights)]["weight_decay"] == pytest.approx(0.5)
    assert groups[id(fc.bias)]["lr"] == pytest.approx(0.2)
    assert groups[id(fc.bias)]["weight_decay"] == 0.0
    fc.freeze("weights")
    opt = make_optimizer(net, opts)
    assert all(p is not fc.weights for g in opt.param_groups for p in g["params"])


def _features(size):
    class Features(ll.InputLayer):
        def __init__(self, input_size):
            super().__init__()
            self.input_size = tuple(input_size)

        def predict(self, X):
            return X
    return Features(size)


def test_frozen_layer_is_not_updated_by_training():
    torch.manual_seed(0)
    X = torch.randn(64, 2)
    Y = (X[:, 0] > 0).long().numpy()
    fc1 = ll.FullyConnected(4)
    layers = [_features((2,)), fc1, ll.ReLU(), ll.FullyConnected(2), ll.Softmax(),
              ll.Classification()]
    fc1.initialize([(2,)])
    fc1.freeze("weights")
    before = fc1.weights.detach().clone()
    net, _ = ll.train_network(X, Y, layers, ll.training_options(
        "sgdm", max_epochs=3, mini_batch_size=16, verbose=False))
    trained = net.layers[1]
    assert torch.equal(trained.weights.detach(), before)
    assert not torch.equal(trained.bias.detach(), fc1.bias.detach())
    # training worked on a copy: the layers given are unchanged
    assert torch.equal(fc1.weights.detach(), before) and fc1.name == ""
