"""minibatchpredict, scores2label and testnet against direct computations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import layerlab as ll
from layerlab.errors import DataError
from layerlab.training import evaluation as _t

minibatchpredict, scores2label = _t.minibatchpredict, _t.scores2label


def run_testnet(*a, **k):
    return _t.testnet(*a, **k)


def _net():
    torch.manual_seed(1)
    return ll.Network([ll.FeatureInput(4), ll.FullyConnected(3, name="fc"), ll.Softmax()])


def _data(n=37):
    g = np.random.default_rng(0)
    return g.normal(size=(n, 4)).astype(np.float32), g.integers(0, 3, n)


def test_minibatchpredict_equals_one_pass_for_arrays_datasets_and_loaders():
    net, (X, Y) = _net(), _data()
    want = torch.softmax(net.layer("fc").predict(torch.from_numpy(X)), 1).detach().numpy()
    np.testing.assert_allclose(minibatchpredict(net, X, mini_batch_size=8), want, rtol=1e-6)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))
    np.testing.assert_allclose(minibatchpredict(net, ds, 5), want, rtol=1e-6)
    dl = torch.utils.data.DataLoader(ds, batch_size=10)
    np.testing.assert_allclose(minibatchpredict(net, dl), want, rtol=1e-6)
    assert isinstance(minibatchpredict(net, torch.from_numpy(X)), torch.Tensor)


def test_scores2label():
    assert scores2label(np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]]), ["a", "b", "c"]).tolist() \
        == ["b", "a"]
    with pytest.raises(DataError, match=r"scores \(N, 2\)"):
        scores2label(np.zeros((2, 3)), ["a", "b"])


def test_testnet_metrics_and_losses_by_name():
    net, (X, Y) = _net(), _data()
    S = torch.from_numpy(minibatchpredict(net, X)).double()
    t = torch.from_numpy(Y)
    got = run_testnet(net, X, Y, ["accuracy", "crossentropy", "fscore"], mini_batch_size=8)
    assert set(got) == {"accuracy", "crossentropy", "fscore"}
    assert got["accuracy"] == pytest.approx(float((S.argmax(1) == t).double().mean()))
    assert got["crossentropy"] == pytest.approx(float(F.nll_loss(S.log(), t)), rel=1e-5)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X), t)
    assert run_testnet(net, ds, ["accuracy"])["accuracy"] == pytest.approx(got["accuracy"])


def test_testnet_regression_and_string_labels():
    torch.manual_seed(0)
    net = ll.Network([ll.FeatureInput(4), ll.FullyConnected(2)])
    X, _ = _data(20)
    T = np.random.default_rng(1).normal(size=(20, 2))
    Z = minibatchpredict(net, X).astype(np.float64)
    got = run_testnet(net, X, T, ["rmse", "mse", "mae"])
    assert got["rmse"] == pytest.approx(np.sqrt(((Z - T) ** 2).mean()), rel=1e-5)
    assert got["mse"] == pytest.approx(((Z - T) ** 2).mean(), rel=1e-5)
    assert got["mae"] == pytest.approx(np.abs(Z - T).mean(), rel=1e-5)
    net3, (X3, Y3) = _net(), _data()
    names = np.array(["cat", "dog", "emu"])[Y3]
    assert run_testnet(net3, X3, names, "accuracy")["accuracy"] == pytest.approx(
        run_testnet(net3, X3, Y3, "accuracy")["accuracy"])
    with pytest.raises(DataError, match="without targets"):
        run_testnet(net3, X3)
