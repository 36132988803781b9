"""Layer statistics (issue: see inside training) against a hand computation.

The reference runs the layers one by one (Network.layer_outputs) and reads
each output's gradient with retain_grad; the recorder under test uses hooks.
"""

import math

import numpy as np
import pytest
import torch

import layerlab as ll
from layerlab.monitoring import StatisticsRecorder, layer_statistics, resolve_statistics


def small_layers():
    return [ll.FeatureInput(4, normalization="none"), ll.FullyConnected(8), ll.ReLU(),
            ll.FullyConnected(3), ll.Softmax(), ll.Classification()]


def data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    Y = np.array([0, 1, 2, 1] * (n // 4))
    return X, Y


def reference(net, X, Y):
    """Per-layer stats by hand: outputs kept, their gradients retained."""
    net.train()
    T = net.output_layer.prepare_targets(Y, X.shape[0])
    stop = len(net.layers) - 2                       # the softmax is fused into the loss
    outs = net.layer_outputs(X, stop)
    for z in outs:
        if z.requires_grad:
            z.retain_grad()
    loss = net.loss(outs[-1], T, from_logits=True)
    net.zero_grad(set_to_none=True)
    loss.backward()
    n = len(net.layers)
    ref = {k: np.full(n, np.nan) for k in ("activation_mean", "activation_std",
                                           "activation_zero_fraction", "input_gradient_norm")}
    for i, z in enumerate(outs):
        zd = z.detach().double()
        ref["activation_mean"][i] = zd.mean().item()
        ref["activation_std"][i] = math.sqrt(((zd - zd.mean()) ** 2).mean().item())
        ref["activation_zero_fraction"][i] = (zd == 0).double().mean().item()
        if i > 0 and outs[i - 1].grad is not None:
            ref["input_gradient_norm"][i] = outs[i - 1].grad.double().norm().item()
    params = [(f"{l.name}.{p}", t) for l in net.layers for p, t in l.named_parameters()]
    ref["learnable_norm"] = np.array([t.detach().double().norm().item() for _, t in params])
    ref["gradient_norm"] = np.array([t.grad.double().norm().item() for _, t in params])
    return ref, [name for name, _ in params]


def test_layer_statistics_match_hand_computation():
    torch.manual_seed(0)
    net = ll.Network(small_layers())
    X, Y = data()
    stats = layer_statistics(net, X, Y)
    ref, names = reference(net, X, Y)
    assert stats.learnables == names
    assert list(stats.iterations) == [1]
    for key, expected in ref.items():
        np.testing.assert_allclose(stats[key][0], expected, rtol=1e-6, atol=1e-12,
                                   equal_nan=True, err_msg=key)
    # the ReLU really kills units: the fraction of zeros is strictly between 0 and 1
    relu = stats.layers.index(net.layers[2].name)
    assert 0 < stats["activation_zero_fraction"][0, relu] < 1
    assert np.isnan(stats["update_ratio"]).all()      # no update without training


def test_layer_statistics_leave_the_network_unchanged():
    torch.manual_seed(1)
    layers = [ll.FeatureInput(4, normalization="none"), ll.FullyConnected(6),
              ll.BatchNormalization(), ll.ReLU(), ll.FullyConnected(3), ll.Softmax(),
              ll.Classification()]
    net = ll.Network(layers)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    X, Y = data()
    layer_statistics(net, X, Y)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert net.output_layer.classes is None


def test_recorder_update_ratio_is_the_relative_step():
    torch.manual_seed(2)
    net = ll.Network(small_layers())
    X, Y = data()
    T = net.output_layer.prepare_targets(Y, X.shape[0])
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    rec = StatisticsRecorder(net, ["gradients"], frequency=2)
    net.train()
    expected = []
    for it in (1, 2, 3, 4):
        watching = rec.wants(it)
        if watching:
            rec.begin(it)
        loss = net.loss(net(X, logits=True), T, from_logits=True)
        opt.zero_grad()
        loss.backward()
        if watching:
            rec.after_backward()
            expected.append([(0.5 * p.grad.double().norm() / p.detach().double().norm()).item()
                             if p.detach().norm() > 0 else np.nan   # zero biases: undefined
                             for p in net.parameters()])
        opt.step()
        if watching:
            rec.after_update()
    stats = rec.result()
    assert list(stats.iterations) == [1, 2, 4]
    np.testing.assert_allclose(stats["update_ratio"], np.array(expected), rtol=1e-5)
    assert stats.statistics == ("input_gradient_norm", "learnable_norm", "gradient_norm",
                                "update_ratio")


def test_unknown_statistic_and_bad_frequency():
    with pytest.raises(ll.OptionError, match="did you mean 'activations'"):
        resolve_statistics(["activation"])
    with pytest.raises(ll.OptionError, match="positive integer"):
        StatisticsRecorder(ll.Network(small_layers()), ["gradients"], frequency=0)
    with pytest.raises(ll.OptionError, match="positive integer"):
        StatisticsRecorder(ll.Network(small_layers()), ["gradients"], frequency=2.5)


def test_plot_and_csv(tmp_path):
    torch.manual_seed(3)
    X, Y = data()
    stats = layer_statistics(small_layers(), X, Y)
    fig = ll.plot_layer_statistics(stats, "input_gradient_norm", tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 1000
    assert fig.axes[0].get_yscale() == "log"
    path = stats.to_csv(tmp_path / "s.csv")
    rows = open(path).read().splitlines()
    assert rows[0] == "iteration,kind,name,statistic,value"
    n_values = sum(v.size for v in stats.values.values())
    assert len(rows) == 1 + n_values


# -- during training (training_options(monitor=...)) ---------------------------

def tiny_options(**kw):
    base = dict(max_epochs=2, mini_batch_size=8, shuffle="never", verbose=False, seed=0,
                check_layers=False)
    base.update(kw)
    return ll.training_options("sgdm", **base)


def test_training_records_at_iteration_1_and_every_frequency():
    torch.manual_seed(4)
    X, Y = data(32)
    net = ll.Network(small_layers())
    _, info = ll.train_network(X, Y, net, tiny_options(monitor=("activations", "gradients"),
                                                       monitor_frequency=3))
    stats = info.layer_statistics
    assert list(stats.iterations) == [1, 3, 6]          # 4 iterations an epoch, 8 in all
    # iteration 1 sees the initial weights on the first mini-batch: the same as
    # the one-batch probe of the untrained network
    first = layer_statistics(net, X[:8], Y[:8])
    for key in ("activation_mean", "activation_std", "activation_zero_fraction",
                "input_gradient_norm", "learnable_norm", "gradient_norm"):
        np.testing.assert_allclose(stats[key][0], first[key][0], rtol=1e-5, equal_nan=True,
                                   err_msg=key)
    assert np.isfinite(stats["update_ratio"][:, [0, 2]]).all()   # the weights moved
    assert (stats["update_ratio"][:, [0, 2]] > 0).all()


def test_monitor_off_records_nothing_and_bad_options_are_named():
    X, Y = data(16)
    _, info = ll.train_network(X, Y, small_layers(), tiny_options(max_epochs=1))
    assert info.layer_statistics is None
    with pytest.raises(ll.OptionError, match="'monitor'.*did you mean 'gradients'"):
        ll.training_options("sgdm", monitor=["gradient"])
    with pytest.raises(ll.OptionError, match="monitor_frequency.*positive integer"):
        ll.training_options("sgdm", monitor="activations", monitor_frequency=-5)
    opts = ll.training_options("sgdm", monitor="activations", monitor_frequency=np.int64(7))
    assert opts.monitor_frequency == 7 and opts.monitor[0] == "activation_mean"


def test_monitor_writes_tensorboard_and_csv(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    X, Y = data(32)
    _, info = ll.train_network(X, Y, small_layers(), tiny_options(
        monitor="gradients", monitor_frequency=2, log_dir=str(tmp_path)))
    stats = info.layer_statistics
    assert (tmp_path / "layer_statistics.csv").exists()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    name = stats.learnables[0]
    events = acc.Scalars(f"learnables/gradient_norm/{name}")
    assert [e.step for e in events] == list(stats.iterations)
    np.testing.assert_allclose([e.value for e in events], stats["gradient_norm"][:, 0],
                               rtol=1e-6)


def test_monitor_survives_a_resume(tmp_path):
    X, Y = data(32)
    opts = dict(monitor="gradients", monitor_frequency=3, max_epochs=3)
    _, full = ll.train_network(X, Y, small_layers(), tiny_options(**opts))
    ll.train_network(X, Y, small_layers(), tiny_options(
        **{**opts, "max_epochs": 2}, checkpoint_path=str(tmp_path)))
    _, resumed = ll.train_network(X, Y, small_layers(), tiny_options(**opts),
                                  resume_from=str(tmp_path))
    a, b = full.layer_statistics, resumed.layer_statistics
    assert list(a.iterations) == list(b.iterations) == [1, 3, 6, 9, 12]
    np.testing.assert_allclose(a["gradient_norm"], b["gradient_norm"], rtol=1e-6)


def test_layer_amplitudes_example_draws_its_figures(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    example = Path(__file__).resolve().parents[1] / "examples" / "layer_amplitudes.py"
    run = subprocess.run([sys.executable, str(example), "--epochs", "1", "--frequency", "10",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("iteration    1: first") == 2
    for stem in ("no_bn", "bn"):
        assert (tmp_path / f"gradient_norm_{stem}.png").stat().st_size > 10_000
        rows = (tmp_path / f"layer_statistics_{stem}.csv").read_text().splitlines()
        assert len(rows) > 100 and rows[0].startswith("iteration,kind")
