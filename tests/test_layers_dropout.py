"""Dropout, SpatialDropout and DropConnect: behaviour in training vs
prediction, checked against hand computations."""

import pytest
import torch
import torch.nn.functional as F

import layerlab as ll
from layerlab.autograd_bridge import run_layer


def test_dropout_is_inverted_in_training_and_identity_in_prediction():
    layer = ll.Dropout(0.75)
    assert layer.differs_in_training and layer.is_stochastic and not layer.couples_observations
    X = torch.rand(200, 50) + 0.5                        # no zeros of its own
    torch.testing.assert_close(run_layer(layer, (X,), training=False), X)
    Z = run_layer(layer, (X,), training=True)
    kept = Z != 0
    # kept units are scaled by 1 / (1 - p) = 4, as in the lecture's example
    torch.testing.assert_close(Z[kept], 4 * X[kept])
    assert abs(float(kept.float().mean()) - 0.25) < 0.02
    assert not torch.equal(Z, run_layer(layer, (X,), training=True))   # a new mask each time


def test_dropout_derivative_is_the_same_mask():
    layer = ll.Dropout(0.5)
    X = (torch.rand(30, 40) + 0.5).requires_grad_()
    Z = run_layer(layer, (X,), training=True)
    Z.sum().backward()
    torch.testing.assert_close(X.grad, (Z != 0).float() * 2)


def test_spatial_dropout_drops_whole_channels():
    layer = ll.SpatialDropout(0.5)
    assert layer.differs_in_training and layer.is_stochastic
    X = torch.rand(20, 16, 5, 5) + 0.5
    Z = run_layer(layer, (X,), training=True)
    zero_maps = (Z == 0).flatten(2)
    per_channel = zero_maps.all(2)
    assert torch.equal(per_channel, zero_maps.any(2))    # a channel is all dropped or all kept
    assert 0.35 < float(per_channel.float().mean()) < 0.65
    torch.testing.assert_close(Z[~per_channel], 2 * X[~per_channel])
    torch.testing.assert_close(run_layer(layer, (X,), training=False), X)
    with pytest.raises(ll.LayerError, match=r"'sd' \(SpatialDropout\): expected input "
                                            r"\(N, C, H, \.\.\.\).*got \(3, 4\)"):
        ll.SpatialDropout(name="sd").predict(torch.zeros(3, 4))


def test_drop_connect_masks_the_weights_once_per_mini_batch():
    p = 0.5
    layer = ll.FullyConnected(6, input_size=4, drop_connect=p)
    assert layer.differs_in_training and layer.is_stochastic
    assert not ll.FullyConnected(6, input_size=4).differs_in_training
    W, b = layer.weights.detach(), layer.bias.detach()
    # identity rows read the effective weights out; two copies of the
    # identity in one mini-batch must see the same mask
    X = torch.cat([torch.eye(4), torch.eye(4)])
    Z = run_layer(layer, (X,), training=True).detach() - b
    W_eff = Z[:4].T
    torch.testing.assert_close(Z[4:], Z[:4])
    dropped = W_eff == 0
    torch.testing.assert_close(W_eff[~dropped], W[~dropped] / (1 - p))
    assert 0 < int(dropped.sum()) < W.numel()
    torch.testing.assert_close(run_layer(layer, (X,), training=False), F.linear(X, W, b))


def test_drop_connect_gradient_flows_through_kept_weights_only():
    layer = ll.FullyConnected(3, input_size=5, drop_connect=0.5)
    X = torch.eye(5)
    Z = run_layer(layer, (X,), training=True)
    Z.sum().backward()
    W_eff = (Z.detach() - layer.bias.detach()).T       # (3, 5)
    # dL/dW = mask / (1 - p) summed over the batch: 2 where kept, 0 where dropped
    torch.testing.assert_close(layer.weights.grad, (W_eff != 0).float() * 2)


@pytest.mark.parametrize("p", [-0.1, 1.0, "half", True])
def test_bad_probabilities_are_named(p):
    with pytest.raises(ll.LayerError, match="Dropout probability: expected a probability in"):
        ll.Dropout(p)
    with pytest.raises(ll.LayerError, match="FullyConnected drop_connect: expected a probability"):
        ll.FullyConnected(3, drop_connect=p)
