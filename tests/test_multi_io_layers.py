"""User layers with several inputs or outputs and hand-written backwards:
check_layer passes them, and in a layer graph their derivatives equal
autograd's of the same layers without a backward."""

import torch

import layerlab as ll
from layerlab.network.network import Network


class WeightedSum(ll.Layer):
    """Z = a * X1 + X2 with a learnable per-feature a, shape (C,)."""
    num_inputs = 2

    def __init__(self, channels, name=None):
        super().__init__(name=name)
        self.a = ll.Learnable(torch.linspace(0.5, 1.5, channels))

    def predict(self, X1, X2):
        return self.a * X1 + X2

    def backward(self, X1, X2, Z, dLdZ, memory):
        return self.a * dLdZ, dLdZ, (X1 * dLdZ).sum(0)


class Split(ll.Layer):
    """(X[:, :k] * s, X[:, k:]): two outputs, a learnable scalar s."""
    num_outputs = 2

    def __init__(self, k, name=None):
        super().__init__(name=name)
        self.k = k
        self.s = ll.Learnable(torch.tensor([2.0]))

    def predict(self, X):
        return X[:, :self.k] * self.s, X[:, self.k:]

    def backward(self, X, Z1, Z2, dLdZ1, dLdZ2, memory):
        dLdX = torch.cat([dLdZ1 * self.s, dLdZ2], dim=1)
        return dLdX, (dLdZ1 * X[:, :self.k]).sum().reshape(1)


class WeightedSumAutograd(WeightedSum):
    backward = ll.Layer.backward          # no hand-written backward: autograd


class SplitAutograd(Split):
    backward = ll.Layer.backward


def graph(split_cls, sum_cls):
    torch.manual_seed(0)
    g = ll.LayerGraph([ll.FeatureInput(6, normalization="none"), split_cls(3, name="split"),
                       sum_cls(3, name="sum"), ll.FullyConnected(2), ll.Softmax(),
                       ll.Classification()])
    g.connect("split/out2", "sum/in2")
    return g


def test_check_layer_passes_several_inputs_and_outputs():
    assert ll.check_layer(WeightedSum(3), [(3,), (3,)], verbose=False).passed
    assert ll.check_layer(Split(2), (5,), verbose=False).passed


def test_hand_written_multi_io_backwards_equal_autograd_in_a_graph():
    assert WeightedSum(3).has_backward and not WeightedSumAutograd(3).has_backward
    X = torch.randn(8, 6)
    Y = ["a", "b"] * 4
    grads = []
    for split_cls, sum_cls in [(Split, WeightedSum), (SplitAutograd, WeightedSumAutograd)]:
        net = Network(graph(split_cls, sum_cls))
        T = net.output_layer.prepare_targets(Y, 8)
        net.train()
        loss = net.loss(net(X, logits=True), T, from_logits=True)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 4
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name])


def test_multi_io_graph_trains():
    rng = torch.Generator().manual_seed(0)
    X = torch.randn(256, 6, generator=rng)
    Y = (X[:, 0] + X[:, 4] > 0).long().numpy()
    opts = ll.training_options("sgdm", max_epochs=20, mini_batch_size=32, verbose=False, seed=0,
                               initial_learn_rate=0.05)
    net, info = ll.train_network(X, Y, graph(Split, WeightedSum), opts)
    assert info.training_loss[-5:].mean() < 0.5 * info.training_loss[:5].mean()
    assert (ll.classify(net, X) == Y).mean() > 0.9
