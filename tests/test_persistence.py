"""save / load: round trips, user layers, corrupted files (crafted files:
test_persistence_safety.py)."""

import numpy as np
import pytest
import torch

import layerlab as ll


class Scale(ll.Layer):
    """A user layer: ``Z = s * X`` with one learnable scale per channel."""

    def __init__(self, num_channels, init=0.5, name=None):
        super().__init__(name=name)
        self.s = ll.Learnable(torch.full((num_channels,), float(init)))

    def predict(self, X):
        return X * self.s.view(1, -1, *([1] * (X.dim() - 2)))


def _net():
    X = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    Y = np.array(["cat", "dog"])[(X.mean(dim=(1, 2, 3)) > 0).long().numpy()]
    layers = [ll.ImageInput((1, 8, 8)), ll.Convolution2d(3, 4, padding="same",
                                                       weights_initializer=ll.Gaussian(0.1)),
              ll.BatchNormalization(), Scale(4, init=0.7, name="scale"), ll.ELU(4),
              ll.FullyConnected(2), ll.Softmax(), ll.Classification()]
    layers[4].freeze("alpha")
    opts = ll.training_options("sgdm", max_epochs=2, mini_batch_size=16, verbose=False,
                               seed=0, check_layers=False)
    net, _ = ll.train_network(X, Y, layers, opts)
    return net, X


def test_round_trip_gives_identical_predictions_classes_and_settings(tmp_path):
    net, X = _net()
    ll.save(net, tmp_path / "net.safetensors")
    back = ll.load(tmp_path / "net.safetensors")
    assert np.array_equal(ll.predict(net, X.numpy()), ll.predict(back, X.numpy()))
    assert list(ll.classify(back, X.numpy())) == list(ll.classify(net, X.numpy()))
    assert back.classes == ["cat", "dog"]
    assert isinstance(back.layer("scale"), Scale)
    assert not back.layers[4].is_learnable("alpha")           # frozen stays frozen
    assert torch.equal(back.input_layer.mean, net.input_layer.mean)   # normalization
    assert [l.name for l in back.layers] == [l.name for l in net.layers]


def test_graph_connections_round_trip(tmp_path):
    g = ll.LayerGraph([ll.FeatureInput(3, name="in"), ll.FullyConnected(3, name="fc"),
                       ll.Addition(name="add"), ll.FullyConnected(2, name="out"), ll.Softmax(),
                       ll.Classification(classes=[0, 1])])
    g.connect("in", "add/in2")
    net = ll.Network(g)
    ll.save(net, tmp_path / "g.safetensors")
    back = ll.load(tmp_path / "g.safetensors")
    assert sorted(back.graph.connections) == sorted(net.graph.connections)
    X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    assert np.array_equal(ll.predict(net, X), ll.predict(back, X))


def test_layer_defined_in_a_function_cannot_be_saved(tmp_path):
    class Local(ll.Layer):
        def predict(self, X):
            return X

    net = ll.Network([ll.FeatureInput(2), Local(), ll.FullyConnected(2)])
    with pytest.raises(ll.PersistenceError, match="module level"):
        ll.save(net, tmp_path / "n.safetensors")


def test_corrupted_truncated_and_foreign_files_give_persistence_error(tmp_path):
    net, _ = _net()
    path = tmp_path / "net.safetensors"
    ll.save(net, path)
    raw = bytearray(path.read_bytes())
    flipped = bytearray(raw)
    flipped[-5] ^= 0x01
    cases = {"corrupted": bytes(flipped), "truncated": bytes(raw[:100]),
             "not a layerlab": b"hello world, not safetensors at all" * 3}
    for what, content in cases.items():
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(content)
        with pytest.raises(ll.PersistenceError, match=what.split()[0]):
            ll.load(bad)


def test_load_never_unpickles(tmp_path):
    # a pickle (what torch.save writes) is refused, not executed
    path = tmp_path / "pickle.pt"
    torch.save({"x": torch.zeros(2)}, path)
    with pytest.raises(ll.PersistenceError):
        ll.load(path)


def test_activations_returns_a_layers_outputs():
    net = ll.Network([ll.FeatureInput(3), ll.FullyConnected(4, name="fc"), ll.ReLU(name="relu"),
                      ll.FullyConnected(2), ll.Softmax(), ll.Classification()])
    X = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    fc = net.layer("fc")
    want = torch.nn.functional.linear(torch.from_numpy(X), fc.weights, fc.bias).detach()
    # float32 products summed in another order (another BLAS or CPU): last bits
    np.testing.assert_allclose(ll.activations(net, X, "fc"), want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ll.activations(net, X, "relu"), want.clamp(min=0).numpy(),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ll.NetworkError, match="nope"):
        ll.activations(net, X, "nope")


def test_saving_to_a_folder_or_an_unwritable_place_is_a_clear_error(tmp_path):
    net, _ = _net()
    with pytest.raises(ll.PersistenceError, match="it is a folder; give a file name"):
        ll.save(net, tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ll.PersistenceError, match="cannot save to"):
        ll.save(net, blocker / "net.safetensors")
    assert blocker.read_text() == "not a folder"          # nothing the user had is touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]   # no temporary files left
    saved = tmp_path / "net.safetensors"
    ll.save(net, saved)
    assert (saved.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    import os
    mask = os.umask(0)
    os.umask(mask)
    return mask
