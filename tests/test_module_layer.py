"""Any torch.nn.Module is a layer (issue 12, item 5): ModuleLayer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import layerlab as ll
from layerlab.errors import LayerError, LayerlabError


def mixed_layers():
    return [ll.ImageInput((1, 8, 8), normalization="none"), nn.Conv2d(1, 4, 3),
            ll.ModuleLayer(nn.BatchNorm2d(4), name="bn"), ll.ELU(4), nn.Flatten(),
            nn.Linear(4 * 6 * 6, 3), ll.Softmax(), ll.Classification()]


def test_modules_in_a_layer_list_are_wrapped_and_sized():
    net = ll.Network(mixed_layers())
    conv = net.layers[1]
    assert isinstance(conv, ll.ModuleLayer) and conv.name == "conv2d_1"
    assert conv.learnable_names == ["weight", "bias"]
    assert net.layer("bn").state_names == ["running_mean", "running_var", "num_batches_tracked"]
    assert net.sizes["conv2d_1"] == ((4, 6, 6),)
    assert net.sizes["flatten_1"] == ((144,),)


def test_outputs_match_the_plain_pytorch_modules_in_both_modes():
    torch.manual_seed(0)
    net = ll.Network(mixed_layers())
    conv, bn, lin = net.layers[1].module, net.layer("bn").module, net.layers[5].module
    X = torch.randn(5, 1, 8, 8)
    alpha = net.layers[3].alpha.detach().view(1, -1, 1, 1)

    def plain(x):
        h = bn(conv(x))
        h = h.clamp(min=0) + alpha * (h.clamp(max=0).exp() - 1)
        return torch.softmax(lin(h.flatten(1)), 1)

    net.eval()
    bn.eval()
    torch.testing.assert_close(net(X), plain(X))
    net.train()
    assert bn.training
    before = bn.running_mean.clone()
    net(X)
    assert not torch.equal(bn.running_mean, before)    # training mode reached the module


def test_freeze_and_factors_on_module_parameters_in_training():
    torch.manual_seed(0)
    layers = mixed_layers()
    X, Y = torch.randn(32, 1, 8, 8), torch.randint(0, 3, (32,))
    net = ll.Network(layers)
    net.layers[1].freeze("weight").set_learn_rate_factor("bias", 0.0)
    w0, b0 = net.layers[1].module.weight.clone(), net.layers[1].module.bias.clone()
    lin0 = net.layers[5].module.weight.clone()
    opts = ll.training_options("sgdm", max_epochs=1, mini_batch_size=16, verbose=False,
                               check_layers=False)
    trained, _ = ll.train_network(X, Y, net, opts)
    assert torch.equal(trained.layers[1].module.weight, w0)
    assert torch.equal(trained.layers[1].module.bias, b0)
    assert not torch.equal(trained.layers[5].module.weight, lin0)


def test_summary_lists_wrapped_modules():
    text = str(ll.summary(mixed_layers()))
    assert "conv2d_1" in text and "Conv2d" in text


def test_save_and_load_rebuild_torch_nn_modules(tmp_path):
    torch.manual_seed(0)
    net = ll.Network(mixed_layers())
    net.layers[1].set_l2_factor("weight", 0.5)
    path = tmp_path / "mixed.safetensors"
    ll.save(net, path)
    loaded = ll.load(path)
    X = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(loaded.eval()(X), net.eval()(X))
    assert type(loaded.layers[1].module) is nn.Conv2d
    assert loaded.layers[1].l2_factor("weight") == 0.5


def test_config_and_from_config_use_the_closed_list():
    layer = ll.ModuleLayer(nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, bias=False), nn.ReLU()))
    cfg = layer.config
    assert cfg["module"]["modules"][0] == {"class": "Conv2d", "args": {
        "in_channels": 1, "out_channels": 2, "kernel_size": (3, 3), "stride": (2, 2),
        "padding": (0, 0), "dilation": (1, 1), "groups": 1, "bias": False,
        "padding_mode": "zeros"}}
    again = ll.ModuleLayer.from_config(cfg)
    assert again.module[0].bias is None and again.module[0].stride == (2, 2)
    with pytest.raises(LayerError, match="'os.system' is not a module class ModuleLayer rebuilds"):
        ll.ModuleLayer({"class": "os.system", "args": {}})


class _UserModule(nn.Module):
    def forward(self, x):
        return x * 2


def test_a_user_module_runs_but_is_not_saved_by_name(tmp_path):
    net = ll.Network([ll.FeatureInput(3, normalization="none"), _UserModule(),
                      ll.Regression()])
    torch.testing.assert_close(net(torch.ones(2, 3)), torch.full((2, 3), 2.0))
    with pytest.raises(LayerlabError, match="_UserModule.*cannot be saved"):
        ll.save(net, tmp_path / "u.safetensors")


def test_a_module_that_cannot_take_the_input_names_itself():
    with pytest.raises(LayerlabError, match=r"'lin'.*Linear.*output_size"):
        ll.Network([ll.FeatureInput(5), ll.ModuleLayer(nn.Linear(3, 2), name="lin"),
                    ll.Regression()])


def test_lazy_modules_are_materialised_by_the_size_probe():
    net = ll.Network([ll.FeatureInput(5), nn.LazyLinear(2), ll.Regression()])
    assert net.layers[1].module.weight.shape == (2, 5)
    assert net.sizes["lazy_linear_1"] == ((2,),)


class _Scale(torch.nn.Module):
    """A user module: saved by its constructor arguments once registered."""

    def __init__(self, factor=2.0):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def test_a_registered_user_module_saves_and_loads(tmp_path):
    import numpy as np
    layers = [ll.FeatureInput(3), _Scale(0.5), ll.FullyConnected(2), ll.Softmax(),
              ll.Classification()]
    net = ll.Network(layers)
    with pytest.raises(ll.LayerError, match="register_module_class"):
        ll.save(net, tmp_path / "a.safetensors")
    ll.register_module_class(_Scale)
    ll.save(net, tmp_path / "a.safetensors")
    loaded = ll.load(tmp_path / "a.safetensors")
    scale = loaded.layers[1].module
    assert type(scale) is _Scale and scale.factor == 0.5
    X = np.random.rand(4, 3).astype("float32")
    np.testing.assert_allclose(ll.predict(loaded, X), ll.predict(net, X), rtol=1e-6)
    with pytest.raises(ll.LayerError, match="torch.nn.Module subclass"):
        ll.register_module_class(ll.ReLU)
