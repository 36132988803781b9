"""Validation, early stopping, callbacks, plots, progress, seed, non-finite loss."""

import io

import numpy as np
import pytest
import torch

import layerlab as ll
from layerlab.training.progress import ProgressLine


def _data(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    Y = (X[:, 0] + X[:, 1] > 0).long()
    return X, Y


def _layers(dropout=False):
    mid = [ll.Dropout(0.3)] if dropout else []
    return [ll.FeatureInput(4), ll.FullyConnected(8, name="fc1"), ll.ReLU(), *mid,
            ll.FullyConnected(2, name="fc2"), ll.Softmax(), ll.Classification()]


def _opts(**kw):
    base = dict(max_epochs=4, mini_batch_size=16, verbose=False, seed=1)
    base.update(kw)
    return ll.training_options("sgdm", **base)


def test_same_seed_gives_identical_weights_on_cpu():
    X, Y = _data()
    a, _ = ll.train_network(X, Y, _layers(dropout=True), _opts(shuffle="every-epoch"))
    b, _ = ll.train_network(X, Y, _layers(dropout=True), _opts(shuffle="every-epoch"))
    c, _ = ll.train_network(X, Y, _layers(dropout=True), _opts(shuffle="every-epoch", seed=2))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.layer("fc1").weights, c.layer("fc1").weights)


def test_early_stopping_stops_after_patience_validations_without_improvement():
    X, Y = _data()
    # a learning rate so small that the weights do not change in float32:
    # every validation loss equals the first, so each one counts against patience
    opts = _opts(initial_learn_rate=1e-30, momentum=0.0, l2_regularization=0.0,
                 validation_data=(X[:32], Y[:32]), validation_frequency=2,
                 validation_patience=2)
    _, info = ll.train_network(X, Y, _layers(), opts)
    assert info.stop_reason == "validation-patience"
    # validations at iterations 1 (best), 2 and 4 (not better): stop at 4
    assert info.iterations == 4
    assert list(np.flatnonzero(np.isfinite(info.validation_loss)) + 1) == [1, 2, 4]
    assert info.output_iteration == 4   # MATLAB returns the last network


def test_output_network_best_validation_loss_returns_the_best_weights():
    X, Y = _data()
    Xv, Yv = X[:48], 1 - Y[:48]   # labels flipped: validation gets worse as training learns
    opts = _opts(initial_learn_rate=0.2, validation_data=(Xv, Yv), validation_frequency=3,
                 output_network="best-validation-loss")
    net, info = ll.train_network(X, Y, _layers(), opts)
    best = int(np.nanargmin(info.validation_loss)) + 1
    assert info.output_iteration == best < info.iterations
    # the returned network's validation loss, computed independently
    scores = torch.as_tensor(ll.predict(net, Xv.numpy()))
    loss = torch.nn.functional.nll_loss(scores.log(), Yv)
    assert float(loss) == pytest.approx(np.nanmin(info.validation_loss), rel=1e-4)


def test_verbose_table_has_validation_columns():
    X, Y = _data()
    out = io.StringIO()
    opts = _opts(verbose=True, verbose_frequency=100, max_epochs=1,
                 validation_data=(X[:32], Y[:32]), validation_frequency=3)
    _, info = ll.train_network(X, Y, _layers(), opts, stream=out)
    text = out.getvalue()
    assert "Validation" in text and text.count("Loss") >= 2
    rows = [r for r in text.splitlines() if r.startswith("|") and r.split("|")[2].strip().isdigit()]
    iters = [int(r.split("|")[2]) for r in rows]
    assert iters == [1, 3, 6, 8]   # validation iterations and the last (8 = 128 / 16)
    v3 = float(rows[1].split("|")[7])
    assert v3 == pytest.approx(info.validation_loss[2], abs=1e-4)
    assert "\r" not in text   # no progress line when the stream is not a terminal


def test_output_fn_gets_records_and_can_stop_training():
    X, Y = _data()
    seen = []

    def fn(info):
        seen.append(info)
        return info.iteration == 5

    _, info = ll.train_network(X, Y, _layers(), _opts(output_fn=fn))
    assert info.iterations == 5 and info.stop_reason == "output-fn"
    states = [s.state for s in seen]
    assert states[0] == "start" and states[-1] == "done" and states.count("iteration") == 5
    it5 = seen[5]
    assert it5.iteration == 5 and it5.training_loss == pytest.approx(info.training_loss[4])


def test_training_progress_plot_is_saved_and_plot_training_draws_it(tmp_path):
    X, Y = _data()
    path = tmp_path / "progress.png"
    opts = _opts(max_epochs=2, plots="training-progress", plots_path=str(path),
                 validation_data=(X[:32], Y[:32]), validation_frequency=4)
    _, info = ll.train_network(X, Y, _layers(), opts)
    assert info.plot_path == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = ll.plot_training(info, tmp_path / "after.png")
    ax_metric, ax_loss = fig.axes
    lines = ax_loss.get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), info.training_loss)
    np.testing.assert_allclose(lines[1].get_xdata(), [1, 4, 8, 12, 16])   # validation points
    assert (tmp_path / "after.png").exists()


def test_progress_line_draws_and_clears():
    out = io.StringIO()
    p = ProgressLine(out, epochs=3, per_epoch=10, interval=0.0)
    p.update(2, 5)
    assert "epoch 2/3" in out.getvalue() and "5/10" in out.getvalue()
    p.clear()
    assert out.getvalue().endswith("\r")


class NaNAfterTwoSteps(ll.Layer):
    """Identity in inference; in training, NaN from its third call on."""

    def __init__(self, name=None):
        super().__init__(name=name)
        self.calls = 0

    def predict(self, X):
        return X

    def forward(self, X):
        self.calls += 1
        return (X * float("nan") if self.calls >= 3 else X), None


def test_nonfinite_loss_names_iteration_and_first_bad_layer():
    X, Y = _data()
    layers = [ll.FeatureInput(4), ll.FullyConnected(8, name="fc1"), NaNAfterTwoSteps(name="bad"),
              ll.ReLU(), ll.FullyConnected(2), ll.Softmax(), ll.Classification()]
    with pytest.raises(ll.TrainingError, match=r"iteration 3 .*'bad' \(NaNAfterTwoSteps\)"):
        # check_layers=False: the layer is deliberately broken
        ll.train_network(X, Y, layers, _opts(check_layers=False))


@pytest.mark.parametrize("verbose", [False, True])
def test_deferred_nonfinite_guard_names_the_first_bad_iteration(tmp_path, verbose):
    """The GPU's guard (losses read at table rows and epoch ends, never each
    iteration), forced on the CPU: iteration 3 is named although the check
    runs later, and the epoch's checkpoint with NaN weights is not written."""
    from layerlab.training.trainer import TrainingRun
    X, Y = _data()   # 128 observations, 8 iterations an epoch
    layers = [ll.FeatureInput(4), ll.FullyConnected(8, name="fc1"), NaNAfterTwoSteps(name="bad"),
              ll.ReLU(), ll.FullyConnected(2), ll.Softmax(), ll.Classification()]
    run = TrainingRun.create(X, Y, layers, _opts(check_layers=False, verbose=verbose,
                                                 verbose_frequency=6,
                                                 checkpoint_path=str(tmp_path)),
                             stream=io.StringIO())
    run.check_each_iteration = False
    found = 6 if verbose else 8   # the first table row after it, else the epoch's end
    with pytest.raises(ll.TrainingError,
                       match=rf"iteration 3 \(epoch 1\): the mini-batch loss is nan\. "
                             rf".*found at iteration {found}\)"):
        run.run()
    assert not list(tmp_path.iterdir())
