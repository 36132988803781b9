"""FeatureInput normalizations and the Regression output (half mean
squared error, RMSE), checked by hand and by training."""

import numpy as np
import pytest
import torch

import layerlab as ll


def test_feature_input_normalizations_by_hand():
    X = torch.tensor([[1., 10., 5.], [3., 30., 5.], [5., 20., 5.]])
    mean = torch.tensor([3., 20., 5.])
    std = torch.tensor([np.sqrt(8 / 3), np.sqrt(200 / 3), 1.0], dtype=torch.float32)
    none = ll.FeatureInput(3)
    assert not none.needs_normalization_data
    torch.testing.assert_close(none.predict(X), X)
    zc = ll.FeatureInput(3, normalization="zerocenter")
    zc.compute_normalization(X)
    torch.testing.assert_close(zc.predict(X), X - mean)
    zs = ll.FeatureInput((3,), normalization="zscore")
    zs.compute_normalization(X)
    # the constant third feature is only centered
    torch.testing.assert_close(zs.predict(X), (X - mean) / std)
    assert zs.state_names == ["mean", "std"]


def test_feature_input_errors():
    with pytest.raises(ll.DataError, match=r"expected size \(N, 3\) for the network's input "
                                           r"layer, got \(2, 4\)"):
        ll.train_network(np.zeros((2, 4)), [0, 1],
                         [ll.FeatureInput(3), ll.FullyConnected(2), ll.Softmax(),
                          ll.Classification()],
                         ll.training_options(verbose=False, mini_batch_size=1))
    with pytest.raises(ll.DataError, match=r"'f' \(FeatureInput\): expected features of size "
                                           r"\(N, 3\), got \(2, 4\)"):
        ll.FeatureInput(3, name="f").predict(torch.zeros(2, 4))
    with pytest.raises(ll.LayerError, match="FeatureInput normalization: expected one of"):
        ll.FeatureInput(3, normalization="rescale")
    with pytest.raises(ll.LayerError, match=r"FeatureInput input_size: expected the number of "
                                            r"features"):
        ll.FeatureInput((3, 4))


def test_regression_loss_and_metric_by_hand():
    out = ll.Regression()
    assert out.metric_name == "RMSE" and out.metric_is_percentage is False
    Y = torch.tensor([[1., 2.], [3., 4.], [0., 0.]])
    T = out.prepare_targets(np.array([[1., 0.], [1., 4.], [1., 1.]]), 3)
    # half the squared error of each observation, summed over responses,
    # averaged over observations
    assert float(out.loss(Y, T)) == pytest.approx(0.5 * (4 + 4 + 2) / 3)
    assert float(out.metric(Y, T)) == pytest.approx(np.sqrt((4 + 4 + 2) / 6))
    T1 = out.prepare_targets([1.0, 2.0, 3.0], 3)
    assert T1.shape == (3, 1) and T1.dtype == torch.float32


def test_regression_target_errors():
    out = ll.Regression(name="r")
    with pytest.raises(ll.DataError, match=r"'r' \(Regression\): got 2 targets for 3"):
        out.prepare_targets([1., 2.], 3)
    with pytest.raises(ll.DataError, match="expected numeric targets"):
        out.prepare_targets(["a", "b"], 2)
    with pytest.raises(ll.DataError, match=r"NaN or Inf \(first in observation 1\)"):
        out.prepare_targets([1., np.nan], 2)
    with pytest.raises(ll.DataError, match=r"responses of size \(2, 1\) but the targets have "
                                           r"size \(2, 3\)"):
        out.loss(torch.zeros(2, 1), torch.zeros(2, 3))


def test_regression_network_learns_a_linear_map_and_predicts_values(one_thread):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(512, 4)) * [1, 10, 0.1, 5]).astype(np.float32)
    w = np.array([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0], [-1.0, 2.0]], dtype=np.float32)
    Y = (X - X.mean(0)) / X.std(0) @ w + 0.5
    layers = [ll.FeatureInput(4, normalization="zscore"), ll.FullyConnected(2), ll.Regression()]
    opts = ll.training_options("adam", initial_learn_rate=0.1, max_epochs=15,
                               mini_batch_size=128, verbose=False, seed=0)
    net, info = ll.train_network(X, Y, layers, opts)
    assert info.metric_name == "RMSE"
    assert info.training_accuracy[-1] < 0.15 < 1.0 < info.training_accuracy[0]
    pred = ll.predict(net, X[:5])
    assert isinstance(pred, np.ndarray) and pred.shape == (5, 2)
    np.testing.assert_allclose(pred, Y[:5], atol=0.3)


def test_regression_of_digit_angles_runs_with_an_rmse_table(one_thread):
    import io
    from layerlab.datasets import digits_train
    X, _, angles = digits_train()
    X, angles = X[:256], angles[:256]
    layers = [ll.ImageInput((1, 28, 28)), ll.Convolution2d(5, 4), ll.ReLU(),
              ll.FullyConnected(1), ll.Regression()]
    buf = io.StringIO()
    opts = ll.training_options("adam", initial_learn_rate=0.01, max_epochs=2,
                               mini_batch_size=64, verbose=True, verbose_frequency=1, seed=0)
    net, info = ll.train_network(X, angles, layers, opts, stream=buf)
    assert "RMSE" in buf.getvalue()
    assert np.all(np.isfinite(info.training_loss))
    pred = ll.predict(net, X[:3])
    assert pred.shape == (3, 1)


@pytest.mark.parametrize("chunk", [None, 7], ids=["one-chunk", "chunks-of-a-few-values"])
def test_normalization_statistics_in_chunks_match_float64(chunk, monkeypatch):
    """The training set's mean and standard deviation are summed in float64 a
    chunk of rows at a time (a float64 copy of a large data set would double
    the training's peak memory); chunked or not, they match float64 torch."""
    from layerlab import data
    if chunk:
        monkeypatch.setattr(data, "CHUNK_VALUES", chunk)
    g = torch.Generator().manual_seed(0)
    F = torch.randn(23, 5, generator=g) * 3 + 1e4       # a large mean: float32 sums would drift
    zs = ll.FeatureInput(5, normalization="zscore")
    zs.compute_normalization(F)
    torch.testing.assert_close(zs.mean, F.double().mean(0).float(), rtol=1e-7, atol=0)
    torch.testing.assert_close(zs.std, F.double().std(0, correction=0).float(),
                               rtol=1e-6, atol=0)
    images = torch.rand(11, 2, 3, 4, generator=g)
    zc = ll.ImageInput((2, 3, 4))
    zc.compute_normalization(images)
    torch.testing.assert_close(zc.mean, images.double().mean(0).float(), rtol=1e-7, atol=0)


def test_nan_found_in_a_later_chunk_names_its_observation(monkeypatch):
    from layerlab import data
    monkeypatch.setattr(data, "CHUNK_VALUES", 8)         # two rows of four values a chunk
    X = np.zeros((9, 4), dtype=np.float32)
    X[6, 2] = np.inf
    with pytest.raises(ll.DataError, match=r"NaN or Inf \(first in observation 6\)"):
        data.as_input_tensor(X, (4,))
