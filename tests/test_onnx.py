"""export_onnx: built-in layers verified with onnxruntime; unexportable layers."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

import layerlab as ll


def test_exported_seed_network_matches_onnxruntime(tmp_path):
    layers = [ll.ImageInput((1, 12, 12)), ll.Convolution2d(5, 4), ll.BatchNormalization(),
              ll.ELU(4), ll.MaxPooling2d(2), ll.Dropout(0.3), ll.FullyConnected(3),
              ll.Softmax(), ll.Classification()]
    X = torch.randn(48, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    Y = torch.arange(48) % 3
    opts = ll.training_options("sgdm", max_epochs=2, mini_batch_size=16, verbose=False, seed=0)
    net, _ = ll.train_network(X, Y, layers, opts)   # non-trivial batch-norm statistics
    path = ll.export_onnx(net, tmp_path / "net.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    Xt = np.random.default_rng(1).normal(size=(7, 1, 12, 12)).astype(np.float32)  # other batch
    got = session.run(None, {"input": Xt})[0]
    np.testing.assert_allclose(got, ll.predict(net, Xt), atol=1e-5)
    assert not net.training   # left in inference mode


class Zeta(ll.Layer):
    """Uses an operation ONNX does not have."""

    def predict(self, X):
        return torch.special.zeta(X * X + 2.0, torch.ones_like(X))


def test_unexportable_layer_error_names_it(tmp_path):
    net = ll.Network([ll.FeatureInput(3), ll.FullyConnected(3), Zeta(name="zeta"),
                      ll.FullyConnected(2), ll.Softmax(), ll.Classification()])
    with pytest.raises(ll.PersistenceError, match="'zeta' \\(Zeta\\)"):
        ll.export_onnx(net, tmp_path / "z.onnx")
