"""Addition and Concatenation: values against torch, sizes, errors."""

import pytest
import torch

import layerlab as ll
from layerlab.autograd_bridge import run_layer


def test_addition_of_three_inputs_and_its_derivatives():
    layer = ll.Addition(3)
    assert layer.num_inputs == 3
    X = [torch.randn(2, 3, 4, requires_grad=True) for _ in range(3)]
    Z = run_layer(layer, tuple(X), training=True)
    torch.testing.assert_close(Z, X[0] + X[1] + X[2])
    Z.sum().backward()
    for x in X:
        torch.testing.assert_close(x.grad, torch.ones_like(x))


def test_concatenation_along_channels_and_other_dimensions():
    A, B = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    torch.testing.assert_close(ll.Concatenation().predict(A, B), torch.cat([A, B], 1))
    C = torch.randn(2, 3, 2, 4)
    torch.testing.assert_close(ll.Concatenation(2, dim=2).predict(A, C), torch.cat([A, C], 2))


def test_merge_size_errors_name_the_layer_and_sizes():
    with pytest.raises(ll.LayerError, match=r"'add' \(Addition\): inputs must have the same "
                                            r"size, got \(3, 4\), \(3, 5\)"):
        ll.Addition(name="add").predict(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))
    with pytest.raises(ll.LayerError, match=r"'cat' \(Concatenation\): inputs must agree in all "
                                            r"but dimension 1, got \(3, 4\), \(5, 6\)"):
        ll.Concatenation(name="cat").predict(torch.zeros(2, 3, 4), torch.zeros(2, 5, 6))
    with pytest.raises(ll.LayerError, match="Addition num_inputs: expected at least 2"):
        ll.Addition(1)
    with pytest.raises(ll.LayerError, match=r"Concatenation dim: expected an integer >= 1"):
        ll.Concatenation(dim=0)


def test_concatenation_in_a_graph_doubles_the_channels():
    g = ll.LayerGraph([ll.ImageInput((2, 6, 6)), ll.Convolution2d(3, 4, padding=1, name="a"),
                       ll.Concatenation(name="cat")])
    g.add_layers(ll.Convolution2d(1, 3, name="b"))
    g.connect("imageinput_1", "b").connect("b", "cat/in2")
    net = ll.Network(g)
    assert net.sizes["cat"] == ((7, 6, 6),)
