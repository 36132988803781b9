"""Networks from lists: names, shape inference, and the errors of item 9."""

import numpy as np
import pytest
import torch

import layerlab as ll
from layerlab.network import Network


def seed_layers(bn=True):
    layers = [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 20)]
    if bn:
        layers.append(ll.BatchNormalization())
    return layers + [ll.ELU(20), ll.FullyConnected(10), ll.Softmax(), ll.Classification()]


def test_shape_inference_and_names_for_the_seed_network():
    net = Network(seed_layers())
    assert [l.name for l in net.layers] == ["imageinput_1", "conv_1", "batchnorm_1", "elu_1",
                                             "fc_1", "softmax_1", "classoutput_1"]
    assert net.sizes["conv_1"] == ((20, 24, 24),)
    assert net.sizes["fc_1"] == ((10,),)
    conv = net.layer("conv_1")
    assert conv.weights.shape == (20, 1, 5, 5) and conv.bias.shape == (20,)
    assert net.layer("fc_1").weights.shape == (10, 20 * 24 * 24)
    assert net.fuses_softmax


def test_convolution_stride_padding_sizes():
    net = Network([ll.ImageInput((3, 11, 11)), ll.Convolution2d(3, 4, stride=2, padding=1),
                   ll.Convolution2d(3, 5, padding="same")])
    assert net.sizes["conv_1"] == ((4, 6, 6),) and net.sizes["conv_2"] == ((5, 6, 6),)
    X = torch.randn(2, 3, 11, 11)
    c1 = net.layer("conv_1")
    ref = torch.nn.functional.conv2d(X, c1.weights, c1.bias, 2, 1)
    torch.testing.assert_close(net.layers[1].predict(X), ref)


def test_glorot_initialization_bounds():
    conv = ll.Convolution2d(5, 20, num_channels=1)
    bound = np.sqrt(6 / (25 * 1 + 25 * 20))
    assert float(conv.weights.detach().abs().max()) <= bound
    assert float(conv.weights.detach().abs().max()) > 0.8 * bound     # uniform over the range
    assert float(conv.bias.detach().abs().max()) == 0.0


def test_predict_returns_numpy_for_numpy_and_tensor_for_tensor():
    net = Network(seed_layers())
    net.layer("classoutput_1").classes = list(range(10))
    X = np.random.rand(3, 1, 28, 28).astype(np.float32)
    scores = net.predict(X)
    assert isinstance(scores, np.ndarray) and scores.shape == (3, 10)
    np.testing.assert_allclose(scores.sum(1), 1.0, rtol=1e-5)
    assert isinstance(net.predict(torch.from_numpy(X)), torch.Tensor)
    labels = ll.classify(net, X)
    assert labels.shape == (3,) and set(labels) <= set(range(10))


# ---- item 9: errors name the layer or option, the expectation and what was given
def test_wrong_input_size_is_named():
    net = Network(seed_layers())
    with pytest.raises(ll.DataError, match=r"expected size \(N, 1, 28, 28\).*got \(4, 1, 20, 20\)"):
        net.predict(np.zeros((4, 1, 20, 20), np.float32))
    with pytest.raises(ll.DataError, match=r"one observation.*X\[None\]"):
        net.predict(np.zeros((1, 28, 28), np.float32))


def test_layers_that_cannot_connect_are_named():
    layers = [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 20),
              ll.FullyConnected(10, input_size=500), ll.Softmax(), ll.Classification()]
    with pytest.raises(ll.NetworkError, match=r"'fc_1' \(FullyConnected\): weights expect 500 "
                                              r"inputs, got 11520"):
        Network(layers)
    with pytest.raises(ll.NetworkError, match=r"'conv_2'.*filter \(30, 30\) is larger"):
        Network([ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 2), ll.Convolution2d(30, 2)])


def test_user_layer_failing_on_its_input_gets_context():
    class Broken(ll.Layer):
        def predict(self, X):
            return X @ torch.ones(3, 3)

    with pytest.raises(ll.NetworkError, match=r"layer 'broken_1' \(Broken\) cannot take input "
                                              r"of size \(1, 28, 28\) from 'imageinput_1'"):
        Network([ll.ImageInput((1, 28, 28)), Broken()])


def test_structural_errors():
    with pytest.raises(ll.NetworkError, match="no input layer"):
        Network([ll.ReLU(), ll.Softmax()])
    with pytest.raises(ll.NetworkError, match="two layers are named 'a'"):
        Network([ll.ImageInput((1, 4, 4)), ll.ReLU(name="a"), ll.ReLU(name="a")])
    with pytest.raises(ll.NetworkError, match="not a layerlab.Layer"):
        ll.train_network(np.zeros((2, 1, 4, 4)), [0, 1], [ll.ImageInput((1, 4, 4)), "relu"])
    with pytest.raises(ll.NetworkError, match="added twice"):
        r = ll.ReLU()
        Network([ll.ImageInput((1, 4, 4)), r, r])


def test_label_count_and_bad_data_are_named():
    X = np.random.rand(10, 1, 28, 28).astype(np.float32)
    opts = ll.training_options(max_epochs=1, mini_batch_size=5, verbose=False)
    with pytest.raises(ll.DataError, match="got 9 labels for 10 observations"):
        ll.train_network(X, np.arange(9), seed_layers(), opts)
    Xbad = X.copy()
    Xbad[3, 0, 1, 1] = np.nan
    with pytest.raises(ll.DataError, match=r"NaN or Inf \(first in observation 3\)"):
        ll.train_network(Xbad, np.arange(10) % 2, seed_layers(), opts)
    with pytest.raises(ll.DataError, match="integers or strings"):
        ll.train_network(X, np.linspace(0, 1, 10), seed_layers(), opts)
    with pytest.raises(ll.OptionError, match="'mini_batch_size': 128 is larger than the 10"):
        ll.train_network(X, np.arange(10) % 2, seed_layers(),
                         ll.training_options(verbose=False))


def test_option_errors_are_named():
    with pytest.raises(ll.OptionError, match="unknown option 'max_epoch'; did you mean 'max_epochs'"):
        ll.training_options("sgdm", max_epoch=3)
    with pytest.raises(ll.OptionError, match=r"'initial_learn_rate': expected a finite number "
                                             r"in \(0, inf\], got -1"):
        ll.training_options("sgdm", initial_learn_rate=-1)
    with pytest.raises(ll.OptionError, match="'shuffle': expected one of"):
        ll.training_options("sgdm", shuffle="sometimes")
    with pytest.raises(ll.OptionError, match="solver must be one of"):
        ll.training_options("sgd")
    with pytest.raises(ll.OptionError, match="'max_epochs': expected an integer"):
        ll.training_options(max_epochs=2.5)


def test_layer_argument_errors_are_named():
    with pytest.raises(ll.LayerError, match="Convolution2d num_filters: expected a positive "
                                            "integer, got 0"):
        ll.Convolution2d(5, 0)
    with pytest.raises(ll.LayerError, match="ImageInput input_size: expected \\(C, H, W\\)"):
        ll.ImageInput((28, 28))
    with pytest.raises(ll.LayerError, match="unknown initializer 'xavier'"):
        ll.FullyConnected(10, weights_initializer="xavier")
