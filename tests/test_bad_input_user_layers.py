"""User-layer mistakes found in the safe-files probe (issue 11), each a clear
error naming the layer."""

import numpy as np
import pytest
import torch

import layerlab as ll

X = np.random.default_rng(0).random((32, 4)).astype("float32")
Y = np.arange(32) % 2
OPTS = ll.training_options("sgdm", max_epochs=1, mini_batch_size=8, verbose=False,
                           check_layers=False)


def net_with(layer):
    return [ll.FeatureInput(4), layer, ll.FullyConnected(2), ll.Softmax(), ll.Classification()]


class NoneForTrained(ll.Layer):
    def __init__(self):
        super().__init__()
        self.w = ll.Learnable(torch.ones(1))

    def predict(self, X):
        return X * self.w

    def backward(self, X, Z, dLdZ, memory):
        return dLdZ * self.w, None          # forgets dLdw: w would never train


class Float64Out(ll.Layer):
    def predict(self, X):
        return X.double()


class Boom(ll.Layer):
    def predict(self, X):
        return X

    def forward(self, X):
        raise ValueError("boom inside")


def test_none_for_a_trained_learnable_is_named():
    with pytest.raises(ll.LayerError, match=r"none_for_trained_1.*None for dLdw.*'w' is "
                                            r"trained"):
        ll.train_network(X, Y, net_with(NoneForTrained()), OPTS)


def test_none_is_fine_for_a_frozen_learnable():
    layer = NoneForTrained()
    layer.freeze("w")
    net, _ = ll.train_network(X, Y, net_with(layer), OPTS)
    assert float(net.layers[1].w) == 1.0


def test_an_output_of_another_type_names_the_layer_that_made_it():
    with pytest.raises(ll.LayerlabError, match=r"float64_out_1.*predict returned "
                                               r"torch.float64 for torch.float32 input"):
        ll.train_network(X, Y, net_with(Float64Out()), OPTS)


def test_an_exception_in_a_users_forward_names_the_layer_and_keeps_its_type():
    with pytest.raises(ValueError, match="boom inside") as info:
        ll.train_network(X, Y, net_with(Boom()), OPTS)
    assert "raised in the forward of layer 'boom_1' (Boom)" in info.value.__notes__
