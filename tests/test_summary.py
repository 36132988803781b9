"""layerlab.summary: counts equal the parameters, sizes, and layers whose
input does not fit are marked with the reason."""

import torch

import layerlab as ll
from layerlab.network import Network


def seed_layers():
    return [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 20), ll.BatchNormalization(),
            ll.ELU(20), ll.FullyConnected(10), ll.Softmax(), ll.Classification()]


def test_counts_equal_the_parameters_of_the_network():
    net = Network(ll.LayerGraph([ll.ImageInput((1, 28, 28)), ll.Convolution2d(1, 4),
                                 *[ll.residual_block(4) for _ in range(2)],
                                 ll.residual_block(4, 8, stride=2),
                                 ll.GlobalAveragePooling2d(), ll.FullyConnected(10),
                                 ll.Softmax(), ll.Classification()]))
    net.layer("res_1_conv1").freeze("bias")
    s = ll.summary(net)
    assert s.learnable_params == sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert s.frozen_params == 4
    assert s.total_params == sum(p.numel() for p in net.parameters())
    assert s.state_values == sum(b.numel() for b in net.buffers())
    assert [r.name for r in s.rows] == [l.name for l in net.layers]
    for r, l in zip(s.rows, net.layers):
        assert r.activations == net.sizes[l.name]
        assert r.learnables == {k: tuple(p.shape) for k, p in l.learnables().items()}
    assert not s.errors


def test_summary_of_a_list_does_not_change_the_layers():
    layers = seed_layers()
    s = ll.summary(layers)
    assert "weights" not in layers[1]._parameters and layers[1].name == ""
    conv = s.row("conv_1")
    assert conv.activations == ((20, 24, 24),) and conv.learnables["weights"] == (20, 1, 5, 5)
    assert s.row("fc_1").learnable_params == 20 * 24 * 24 * 10 + 10
    assert s.learnable_params == 20 * 25 + 20 + 40 + 20 + 11520 * 10 + 10
    text = str(s)
    assert "conv_1" in text and "20x24x24" in text and "weights 20x1x5x5" in text
    assert "Total parameters: 115,790 (learnable: 115,790, frozen: 0)" in text


def test_a_layer_whose_input_does_not_fit_is_marked_with_the_reason():
    layers = [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 20),
              ll.FullyConnected(10, input_size=500), ll.Softmax(), ll.Classification()]
    s = ll.summary(layers)
    assert set(s.errors) == {"fc_1", "softmax_1", "classoutput_1"}
    assert "weights expect 500 inputs, got 11520" in s.errors["fc_1"]
    assert "cannot take input of size (20, 24, 24)" in s.errors["fc_1"]
    assert "not reached: its input from 'fc_1'" in s.errors["softmax_1"]
    assert s.row("conv_1").activations == ((20, 24, 24),)
    text = str(s)
    assert "ERROR" in text and "3 layer(s) could not run: fc_1, softmax_1, classoutput_1" in text


def test_input_size_for_layers_without_an_input_layer():
    s = ll.summary([ll.Convolution2d(3, 8), ll.ReLU(), ll.Maxout(2), ll.FullyConnected(5)],
                   input_size=(3, 10, 10))
    assert s.row("maxout_1").activations == ((4, 8, 8),)
    assert s.row("fc_1").learnables == {"weights": (5, 256), "bias": (5,)}
    s = ll.summary([ll.ReLU(), ll.FullyConnected(5)])
    assert "not connected; give input_size" in s.errors["relu_1"]


def test_multi_output_user_layer_in_a_summary():
    class Split(ll.Layer):
        num_outputs = 2

        def predict(self, X):
            return X[:, :2], X[:, 2:]

    # a chain feeds the first input from the first output
    g2 = ll.LayerGraph([ll.FeatureInput(5), Split(name="split"), ll.Concatenation(name="cat")])
    assert ("split/out1", "cat/in1") in g2.connections
    g2.connect("split/out2", "cat/in2")
    s = ll.summary(g2)
    assert s.row("split").activations == ((2,), (3,))
    assert s.row("cat").activations == ((5,),)
    assert torch.equal(Network(g2).predict(torch.arange(10.).view(2, 5)),
                       torch.arange(10.).view(2, 5))
