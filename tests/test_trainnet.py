"""trainnet on top of TrainingRun: losses, metrics (table, info, plot),
objective_metric_name, schedules, log_dir, mixed precision, bad input."""

import io
import math
import os

import numpy as np
import pytest
import torch

import layerlab as ll
from layerlab.errors import DataError, NetworkError, OptionError, TrainingError
from layerlab.training import evaluation as tn
from layerlab.training.schedules import WarmupSchedule
from layerlab.training.trainnet import trainnet


def _blobs(n=96, k=3, seed=0):
    g = np.random.default_rng(seed)
    centers = g.normal(scale=3, size=(k, 4))
    y = np.arange(n) % k
    return (centers[y] + g.normal(size=(n, 4))).astype(np.float32), y


def _layers(k=3, softmax=True):
    return [ll.FeatureInput(4), ll.FullyConnected(8), ll.ReLU(), ll.FullyConnected(k)] + \
        ([ll.Softmax()] if softmax else [])


def _opts(**kw):
    base = dict(max_epochs=3, mini_batch_size=16, verbose=False, seed=3, shuffle="every-epoch")
    base.update(kw)
    return ll.training_options("sgdm", **base)


def test_crossentropy_trains_exactly_as_train_network_with_a_classification_layer():
    X, Y = _blobs()
    torch.manual_seed(0)
    a, ia = trainnet(X, Y, _layers(), "crossentropy", _opts())
    b, ib = ll.train_network(X, Y, _layers() + [ll.Classification()], _opts())
    np.testing.assert_allclose(ia.training_loss, ib.training_loss, rtol=1e-6)
    assert a.output_layer is None and len(a.layers) == len(b.layers) - 1
    np.testing.assert_allclose(tn.minibatchpredict(a, X), ll.predict(b, X), rtol=1e-5, atol=1e-7)
    assert ia.classes == [0, 1, 2]


def test_regression_loss_at_the_first_iteration_is_the_formula():
    X, _ = _blobs()
    T = np.stack([X[:, 0] + X[:, 1], X[:, 2]], 1)
    torch.manual_seed(0)
    layers = [ll.FeatureInput(4), ll.FullyConnected(2, name="fc")]
    net0 = ll.Network(layers)
    Z0 = net0(torch.from_numpy(X[:16])).detach().numpy()
    for name, want in [("mse", ((Z0 - T[:16]) ** 2).mean()),
                       ("l1loss", np.abs(Z0 - T[:16]).sum() / 16),
                       ("huber", np.where(np.abs(Z0 - T[:16]) <= 1, 0.5 * (Z0 - T[:16]) ** 2,
                                          np.abs(Z0 - T[:16]) - 0.5).sum() / 16)]:
        _, info = trainnet(X, T, net0, name, _opts(max_epochs=1, shuffle="never"))
        assert info.training_loss[0] == pytest.approx(want, rel=1e-5), name
        assert info.metric_name == "RMSE"


def test_a_callable_loss_is_used_and_checked():
    X, Y = _blobs()
    calls = []

    def my_loss(Yp, T):
        calls.append(T.dtype)
        return -torch.log(Yp.gather(1, T[:, None])).mean()
    _, info = trainnet(X, Y, _layers(), my_loss, _opts(max_epochs=1))
    assert calls[0] == torch.int64 and info.iterations == 6
    with pytest.raises(DataError, match=r"loss 'bad' returned a tensor of size \(16, 3\).*"
                                        r"at iteration 1"):
        def bad(Yp, T):
            return Yp
        trainnet(X, Y, _layers(), bad, _opts())
    with pytest.raises(TrainingError, match="iteration 1"):
        trainnet(X, Y, _layers(), lambda Yp, T: Yp.sum() * float("nan"), _opts())


def test_metrics_per_iteration_and_on_validation_match_testnet():
    X, Y = _blobs(96)
    Xv, Yv = _blobs(40, seed=1)
    out = io.StringIO()
    opts = _opts(metrics=["accuracy", "fscore", "auc"], validation_data=(Xv, Yv),
                 validation_frequency=4, verbose=True)
    net, info = trainnet(X, Y, _layers(), "crossentropy", opts, stream=out)
    h = info.history
    for name in ("fscore", "auc", "accuracy"):
        assert h[f"training_{name}"].shape == (info.iterations,)
        assert np.isfinite(h[f"training_{name}"]).all()
    # the last validation is of the returned network: testnet agrees exactly
    got = tn.testnet(net, Xv, Yv, ["accuracy", "fscore", "auc", "crossentropy"])
    assert h["validation_fscore"][-1] == pytest.approx(got["fscore"], rel=1e-6)
    assert h["validation_auc"][-1] == pytest.approx(got["auc"], rel=1e-6)
    assert h["validation_accuracy"][-1] == pytest.approx(got["accuracy"])
    assert info.validation_loss[-1] == pytest.approx(got["crossentropy"], rel=1e-5)
    header = out.getvalue().splitlines()[3]
    assert "fscore" in header and "auc" in header and header.count("accuracy") == 0


def test_objective_metric_chooses_the_best_network_and_the_early_stop():
    X, Y = _blobs(96)
    Xv, Yv = _blobs(40, seed=1)
    opts = _opts(max_epochs=6, metrics=["fscore"], validation_data=(Xv, Yv),
                 validation_frequency=2, objective_metric_name="fscore",
                 output_network="best-validation", initial_learn_rate=0.05)
    net, info = trainnet(X, Y, _layers(), "crossentropy", opts)
    v = info.history["validation_fscore"]
    assert info.output_iteration == int(np.nanargmax(v)) + 1
    assert tn.testnet(net, Xv, Yv, "fscore")["fscore"] == pytest.approx(np.nanmax(v))
    with pytest.raises(OptionError, match="objective_metric_name.*'fscor'"):
        trainnet(X, Y, _layers(), "crossentropy",
                 _opts(metrics=["fscore"], objective_metric_name="fscor"))


def test_iteration_schedules_show_in_the_learning_rate_column():
    X, Y = _blobs()
    opts = _opts(initial_learn_rate=0.1, max_epochs=2,
                 learn_rate_schedule=[WarmupSchedule(0.0, 1.0, 4, "iteration"), "cosine"])
    _, info = trainnet(X, Y, _layers(), "crossentropy", opts)
    # 6 iterations an epoch; the cosine starts at iteration 5 and counts whole epochs
    # from there (s = 0 for iterations 5-10, 1 for 11-12) over ceil(8 / 6) = 2 epochs
    want = [0.1 * s / 4 for s in range(4)] + \
        [0.1 * 0.5 * (1 + math.cos(math.pi * s / 2)) for s in [0] * 6 + [1] * 2]
    np.testing.assert_allclose(info.base_learn_rate, want, rtol=1e-12)


def test_log_dir_holds_tensorboard_scalars_and_the_csv(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    X, Y = _blobs()
    net, info = trainnet(X, Y, _layers(), "crossentropy",
                         _opts(metrics=["fscore"], log_dir=str(tmp_path / "run")))
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    loss = [e.value for e in acc.Scalars("train/loss")]
    np.testing.assert_allclose(loss, info.training_loss, rtol=1e-6)
    f = [e.value for e in acc.Scalars("train/fscore")]
    np.testing.assert_allclose(f, info.history["training_fscore"], rtol=1e-6)
    assert [e.step for e in acc.Scalars("train/learn_rate")] == list(range(1, 19))
    assert (tmp_path / "run" / "history.csv").read_text().count("\n") == 19


def test_bad_input_is_named():
    X, Y = _blobs()
    with pytest.raises(OptionError, match="did you mean 'crossentropy'"):
        trainnet(X, Y, _layers(), "cross-entropy", _opts())
    with pytest.raises(OptionError, match="'accuracy' does not fit a regression loss"):
        trainnet(X, X[:, :3], _layers(softmax=False), "mse", _opts(metrics=["accuracy"]))
    with pytest.raises(DataError, match="output size"):
        trainnet(X, X[:, :2], _layers(softmax=False), "mse", _opts())
    with pytest.raises(DataError, match="5 classes .*gives 3 scores"):
        trainnet(X, np.arange(96) % 5, _layers(), "crossentropy", _opts())
    with pytest.raises(NetworkError, match="remove that layer, or train with train_network"):
        trainnet(X, Y, _layers() + [ll.Classification()], "crossentropy", _opts())


def test_train_network_refuses_labels_that_do_not_fit_the_output():
    X, Y = _blobs()
    with pytest.raises(DataError, match="5 classes .*more classes than outputs.*"
                                        r"FullyConnected\(5\)"):
        ll.train_network(X, np.arange(96) % 5, _layers() + [ll.Classification()], _opts())
    with pytest.raises(DataError, match="2 classes .*fewer"):
        ll.train_network(X, np.arange(96) % 2, _layers() + [ll.Classification()], _opts())
    with pytest.raises(NetworkError, match=r"put Softmax\(\) before it"):
        ll.train_network(X, Y, _layers(softmax=False) + [ll.Classification()], _opts())


def test_default_plot_goes_to_the_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, Y = _blobs()
    out = io.StringIO()
    _, info = ll.train_network(X, Y, _layers() + [ll.Classification()],
                               _opts(max_epochs=1, plots="training-progress", verbose=True),
                               stream=out)
    assert not os.listdir(tmp_path)
    assert os.path.exists(info.plot_path) and info.plot_path in out.getvalue()
    os.remove(info.plot_path)


class _ScaledTanh(ll.Layer):
    """A user layer with a hand-written backward that records dtypes."""
    seen: list = []

    def __init__(self):
        super().__init__(name="stanh")
        self.a = ll.Learnable(torch.ones(1))

    def predict(self, X):
        return self.a * torch.tanh(X)

    def backward(self, X, Z, dLdZ, memory):
        _ScaledTanh.seen.append((X.dtype, dLdZ.dtype))
        t = torch.tanh(X)
        return dLdZ * self.a * (1 - t * t), (dLdZ * t).sum().reshape(1)


class _Spy(ll.Layer):
    """Differentiated by autograd: records the dtype it is given."""
    seen: list = []

    def predict(self, X):
        _Spy.seen.append(X.dtype)
        return X


def test_bf16_mixed_trains_and_hand_written_backwards_run_in_float32():
    X, Y = _blobs(192)
    layers = [ll.FeatureInput(4), ll.FullyConnected(16), _Spy(name="spy"), _ScaledTanh(),
              ll.FullyConnected(3), ll.Softmax()]
    _ScaledTanh.seen.clear()
    _Spy.seen.clear()
    net, info = trainnet(X, Y, layers, "crossentropy",
                         _opts(max_epochs=8, precision="bf16-mixed", check_layers=False,
                               initial_learn_rate=0.05))
    assert torch.bfloat16 in _Spy.seen                           # autocast is on around it
    assert set(_ScaledTanh.seen) == {(torch.float32, torch.float32)}
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert info.training_loss[-1] < 0.6 * info.training_loss[0]
    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match="needs a GPU"):
            trainnet(X, Y, _layers(), "crossentropy", _opts(precision="16-mixed"))


def test_data_sources_binary_crossentropy_and_a_trained_network_as_layers():
    X, Y = _blobs()
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))
    net, info = trainnet(ds, _layers(), "crossentropy", _opts(max_epochs=2))
    assert info.iterations == 12 and info.classes == [0, 1, 2]
    # continue from the trained network: its weights are the starting point
    net2, info2 = trainnet(X, Y, net, "crossentropy", _opts(max_epochs=1))
    assert info2.training_loss[0] < info.training_loss[0]
    B = np.stack([Y == 0, Y == 2], 1).astype(np.float32)        # two labels per observation
    layers = [ll.FeatureInput(4), ll.FullyConnected(2), ll.Sigmoid()]
    netb, infob = trainnet(X, B, layers, "binary-crossentropy",
                           _opts(metrics=["accuracy", "fscore"], initial_learn_rate=0.1))
    P = tn.minibatchpredict(netb, X)
    assert infob.metric_name == "Accuracy"
    got = tn.testnet(netb, X, B, ["accuracy", "binary-crossentropy"])
    assert got["accuracy"] == pytest.approx(((P > 0.5) == (B > 0.5)).mean())
    want = -(B * np.log(P) + (1 - B) * np.log(1 - P)).mean()
    assert got["binary-crossentropy"] == pytest.approx(want, rel=1e-4)


def test_validation_metrics_from_a_dataloader_source():
    X, Y = _blobs()
    Xv, Yv = _blobs(40, seed=1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(Xv), torch.from_numpy(Yv)),
        batch_size=16, shuffle=True)
    net, info = trainnet(X, Y, _layers(), "crossentropy",
                         _opts(metrics=["fscore"], validation_data=loader,
                               validation_frequency=6))
    got = tn.testnet(net, Xv, Yv, ["fscore", "crossentropy"])
    assert info.history["validation_fscore"][-1] == pytest.approx(got["fscore"], rel=1e-6)
    assert info.validation_loss[-1] == pytest.approx(got["crossentropy"], rel=1e-5)


def test_checkpoint_resume_is_exact_and_the_result_saves(tmp_path):
    X, Y = _blobs(64)

    def opts(epochs, **kw):
        return _opts(max_epochs=epochs, metrics=["fscore"], **kw)
    full, fi = trainnet(X, Y, _layers(), "crossentropy", opts(4))
    trainnet(X, Y, _layers(), "crossentropy", opts(2, checkpoint_path=str(tmp_path / "ck")))
    res, ri = trainnet(X, Y, _layers(), "crossentropy",
                       opts(4, checkpoint_path=str(tmp_path / "ck")), resume_from=tmp_path / "ck")
    for a, b in zip(full.parameters(), res.parameters()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(fi.history["training_fscore"], ri.history["training_fscore"])
    ll.save(res, tmp_path / "n.safetensors")
    back = ll.load(tmp_path / "n.safetensors")
    np.testing.assert_allclose(tn.minibatchpredict(back, X), tn.minibatchpredict(res, X))
    with pytest.raises(OptionError, match="checkpoints .* need a loss given by name"):
        trainnet(X, Y, _layers(), lambda Yp, T: Yp.sum(),
                 opts(1, checkpoint_path=str(tmp_path / "ck2")))


def test_train_network_takes_metrics_and_the_plot_draws_their_curves(tmp_path):
    X, Y = _blobs()
    Xv, Yv = _blobs(40, seed=1)
    png = tmp_path / "progress.png"
    net, info = ll.train_network(X, Y, _layers() + [ll.Classification()],
                                 _opts(metrics=["precision", "recall"], plots="training-progress",
                                       plots_path=str(png), validation_data=(Xv, Yv)))
    assert png.exists() and info.plot_path == str(png)
    assert np.isfinite(info.history["training_recall"]).all()
    fig = ll.plot_training(info)
    axes = fig.get_axes()
    assert len(axes) == 3 and axes[1].get_ylabel() == "Metrics"
    labels = [l.get_label() for l in axes[1].get_lines() if not l.get_label().startswith("_")]
    assert labels == ["precision", "precision (validation)", "recall", "recall (validation)"]
