"""Layer graphs: each structural error with its message, blocks, the
residual block helper, and a 10-block residual network learning the digits."""

import numpy as np
import pytest
import torch

import layerlab as ll
from layerlab.network import Network


def small_residual_graph():
    g = ll.LayerGraph([ll.ImageInput((2, 8, 8), normalization="none"),
                       ll.Convolution2d(3, 2, padding=1, name="c1"), ll.ReLU(name="r1"),
                       ll.Convolution2d(3, 2, padding=1, name="c2"), ll.Addition(2, name="add"),
                       ll.ReLU(name="out")])
    return g


def test_a_skip_connection_by_port_name():
    g = small_residual_graph().connect("imageinput_1", "add/in2")
    net = Network(g)
    X = torch.randn(3, 2, 8, 8)
    c1, c2 = net.layer("c1"), net.layer("c2")
    expected = torch.relu(c2.predict(torch.relu(c1.predict(X))) + X)
    torch.testing.assert_close(net.predict(X), expected)
    assert ("imageinput_1/out", "add/in2") in g.connections


def test_unconnected_input_is_named():
    with pytest.raises(ll.NetworkError, match=r"input 'add/in2' of layer 'add' \(Addition\) "
                                              r"is not connected"):
        Network(small_residual_graph())


def test_cycle_is_named():
    g = small_residual_graph().connect("out", "add/in2")
    with pytest.raises(ll.NetworkError, match="the graph has a cycle: add -> out -> add"):
        Network(g)


def test_mismatched_sizes_are_named():
    g = small_residual_graph()
    g.layer("c2").__init__(3, 2, padding=0, name="c2")     # 8x8 -> 6x6
    g.connect("imageinput_1", "add/in2")
    with pytest.raises(ll.NetworkError, match=r"'add' \(Addition\): inputs must have the same "
                                              r"size, got \(2, 6, 6\), \(2, 8, 8\)"):
        Network(g)


def test_duplicate_names_and_bad_ports_are_named():
    with pytest.raises(ll.NetworkError, match="two layers are named 'r1'"):
        ll.LayerGraph([ll.ImageInput((1, 4, 4)), ll.ReLU(name="r1"), ll.ReLU(name="r1")])
    g = small_residual_graph()
    with pytest.raises(ll.NetworkError, match=r"layer 'add' has no input 'in3'; it has "
                                              r"\['in1', 'in2'\]"):
        g.connect("r1", "add/in3")
    with pytest.raises(ll.NetworkError, match=r"input 'add/in1' is already connected to "
                                              r"'c2/out'"):
        g.connect("r1", "add/in1")
    with pytest.raises(ll.NetworkError, match=r"layer 'add' has inputs \['add/in1', "
                                              r"'add/in2'\]: name one"):
        g.connect("r1", "add")
    with pytest.raises(ll.NetworkError, match="the graph has no layer named 'nope'"):
        g.connect("nope", "add/in2")


def test_dangling_output_is_named():
    g = small_residual_graph().connect("imageinput_1", "add/in2")
    g.add_layers(ll.ReLU(name="dangling"))
    g.connect("r1", "dangling")
    with pytest.raises(ll.NetworkError, match=r"not connected to anything: \['dangling', 'out'\]"
                                              r"|not connected to anything: \['out', 'dangling'\]"):
        Network(g)


def test_residual_block_identity_and_projection():
    block = ll.residual_block(4, name="b")
    assert torch.all(ll.residual_block(4, zero_init_residual=True).layers["bn2"].scale == 0)
    assert torch.all(block.layers["bn2"].scale == 1)                      # the default
    assert set(block.layers) == {"conv1", "bn1", "relu1", "conv2", "bn2", "add", "relu"}
    assert block.entries == ["conv1", "add/in2"]
    proj = ll.residual_block(4, 8, stride=2)
    assert "proj" in proj.layers and proj.entries == ["conv1", "proj"]
    net = Network(ll.LayerGraph([ll.ImageInput((4, 9, 9), normalization="none"), block, proj]))
    net.eval()
    assert net.sizes["b_relu"] == ((4, 9, 9),)
    assert net.sizes["res_1_relu"] == ((8, 5, 5),)
    assert net.layer("res_1_proj").weights.shape == (8, 4, 1, 1)
    # the identity block computes relu(bn2(conv2(relu(bn1(conv1 X)))) + X)
    X = torch.randn(2, 4, 9, 9)
    L = {r: net.layer(f"b_{r}") for r in ["conv1", "bn1", "conv2", "bn2"]}
    inner = L["bn2"].predict(L["conv2"].predict(torch.relu(L["bn1"].predict(
        L["conv1"].predict(X)))))
    torch.testing.assert_close(net.forward(X, until=[l.name for l in net.layers].index("b_relu")),
                               torch.relu(inner + X))
    with pytest.raises(ll.NetworkError, match="residual_block filter_size: expected an odd"):
        ll.residual_block(4, filter_size=2)


def test_add_block_after_a_named_layer():
    g = ll.LayerGraph([ll.ImageInput((3, 6, 6), normalization="none"), ll.ReLU(name="r")])
    end = g.add_block(ll.residual_block(3, name="blk"), after="r")
    assert end == "blk_relu"
    assert Network(g).sizes[end] == ((3, 6, 6),)


def test_ten_block_residual_network_learns_the_digits(digits_small, one_thread):
    Xtr, Ytr, Xte, Yte = digits_small
    layers = ll.LayerGraph([
        ll.ImageInput((1, 28, 28)),
        ll.Convolution2d(3, 8, stride=2, padding=1),                  # 14x14
        ll.BatchNormalization(), ll.ReLU(),
        *[ll.residual_block(8, zero_init_residual=True) for _ in range(10)],   # deep: zero-init
        ll.FullyConnected(10), ll.Softmax(), ll.Classification()])
    opts = ll.training_options("adam", initial_learn_rate=0.01, max_epochs=2,
                               mini_batch_size=50, verbose=False, seed=0)
    net, info = ll.train_network(Xtr, Ytr, layers, opts)
    assert sum(isinstance(l, ll.Addition) for l in net.layers) == 10
    accuracy = float(np.mean(ll.classify(net, Xte) == Yte))
    assert accuracy > 0.5, accuracy                      # chance is 0.1


def test_block_errors_are_named():
    with pytest.raises(ll.NetworkError, match=r"Block: 'add/in2' names no layer of the block; "
                                              r"its layers are \['conv'\]"):
        ll.Block(layers={"conv": ll.Convolution2d(3, 2)}, connections=[("conv", "add/in2")],
                 entries=["conv"], exit="conv")
    with pytest.raises(ll.NetworkError, match="Block: layer 'relu' is a str, not a layerlab.Layer"):
        ll.Block(layers={"relu": "relu"}, connections=[], entries=["relu"], exit="relu")
    block = ll.residual_block(2)
    g = ll.LayerGraph([ll.ImageInput((2, 4, 4)), block])
    with pytest.raises(ll.NetworkError, match="added twice"):
        g.add_block(block, after="imageinput_1")
