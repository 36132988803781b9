"""The compiled CPU kernels (layerlab/kernels) and the layers that use them
(issue 16): each kernel against PyTorch's own ops in float64, each layer's
kernel path against its PyTorch-op path, the build and its fallbacks."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import layerlab as ll
from layerlab import kernels
from layerlab.autograd_bridge import run_layer
from layerlab.kernels import build

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_fast_paths import _train_grads  # noqa: E402 - the same training-step helper

needs_kernels = pytest.mark.skipif(
    any(kernels._library(n) is None for n in kernels._SIGNATURES),
    reason=f"compiled kernels not built here: {kernels.status()}")


@pytest.fixture
def no_kernels(monkeypatch):
    """As on a machine without a C compiler: every layer uses PyTorch ops."""
    monkeypatch.setattr(kernels, "_libs", {name: None for name in kernels._SIGNATURES})


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


# ---------------------------------------------------------------------------
# batch normalization + ELU
# ---------------------------------------------------------------------------
def _bn_elu_reference(X, gamma, beta, alpha, dZ):
    """F.batch_norm then the ELU formula, in float64, differentiated by autograd."""
    Xd, g, b, a = (t.double().clone().requires_grad_() for t in (X, gamma, beta, alpha))
    Y = F.batch_norm(Xd, None, None, g, b, True, 0.1, 1e-5)
    av = a.view(1, -1, *[1] * (X.dim() - 2))
    Z = torch.where(Y > 0, Y, av * (torch.exp(Y.clamp(max=0)) - 1))
    Z.backward(dZ.double())
    return Z, Xd.grad, g.grad, b.grad, a.grad


@needs_kernels
@pytest.mark.parametrize("shape,shared", [((16, 5, 7, 9), False), ((16, 5, 7, 9), True),
                                          ((64, 20, 24, 24), False), ((100, 37), False),
                                          ((9, 4), True), ((3, 2, 1, 1), False)])
def test_batchnorm_elu_kernel_matches_pytorch(shape, shared):
    torch.manual_seed(0)
    C = shape[1]
    X = torch.randn(shape) * 3 + 2                    # a mean far from 0
    gamma, beta = torch.rand(C) + 0.5, torch.randn(C) * 0.5
    alpha = torch.rand(1 if shared else C)
    dZ = torch.randn(shape)
    rm, rv = torch.randn(C), torch.rand(C) + 0.5
    rm0, rv0 = rm.clone(), rv.clone()
    Z, mean, invstd = kernels.batchnorm_elu_forward(X, gamma, beta, alpha, 1e-5, 0.1, rm, rv)
    dX, dgamma, dbeta, dalpha = kernels.batchnorm_elu_backward(X, dZ, gamma, beta, alpha,
                                                               mean, invstd)
    Zr, dXr, dgr, dbr, dar = _bn_elu_reference(X, gamma, beta, alpha, dZ)
    assert _rel(Z, Zr) < 1e-5
    assert _rel(dX, dXr) < 1e-4
    assert _rel(dgamma, dgr) < 1e-4 and _rel(dbeta, dbr) < 1e-4
    assert _rel(dalpha.sum() if shared else dalpha, dar) < 1e-4
    # the derivative taken from the output Z (alpha > 0; here also alpha 0
    # and < 0 in some channels, which compute e^y again)
    if not shared and C >= 3:
        alpha[0], alpha[1] = 0.0, -0.3
        Z, mean, invstd = kernels.batchnorm_elu_forward(X, gamma, beta, alpha, 1e-5)
        Zr, dXr, dgr, dbr, dar = _bn_elu_reference(X, gamma, beta, alpha, dZ)
        for z in (None, Z):
            dX, dgamma, dbeta, dalpha = kernels.batchnorm_elu_backward(
                X, dZ, gamma, beta, alpha, mean, invstd, Z=z)
            assert _rel(dX, dXr) < 1e-4 and _rel(dalpha, dar) < 1e-4
            assert _rel(dgamma, dgr) < 1e-4 and _rel(dbeta, dbr) < 1e-4
    # the running statistics move as torch.batch_norm moves them
    rm2, rv2 = rm0.clone(), rv0.clone()
    F.batch_norm(X, rm2, rv2, None, None, True, 0.1, 1e-5)
    torch.testing.assert_close(rm, rm2)
    torch.testing.assert_close(rv, rv2)
    # inference: the running statistics instead of the batch's
    Ze = kernels.batchnorm_elu_forward(X, gamma, beta, alpha, 1e-5, running_mean=rm,
                                       running_var=rv, batch_statistics=False)[0]
    Ye = F.batch_norm(X.double(), rm.double(), rv.double(), gamma.double(), beta.double(),
                      False, 0.0, 1e-5)
    av = alpha.double().view(1, -1, *[1] * (X.dim() - 2))
    assert _rel(Ze, torch.where(Ye > 0, Ye, av * (Ye.clamp(max=0).exp() - 1))) < 1e-5


@needs_kernels
def test_batchnorm_elu_kernel_propagates_nan_and_handles_extremes():
    X = torch.randn(8, 3, 4, 4)
    ones, zeros = torch.ones(3), torch.zeros(3)
    X[2, 1, 0, 0] = float("nan")
    Z = kernels.batchnorm_elu_forward(X, ones, zeros, ones, 1e-5)[0]
    assert torch.isnan(Z[:, 1]).all()                # the channel's statistics are NaN
    assert torch.isfinite(Z[:, [0, 2]]).all()
    # very negative inputs: ELU -> -alpha, no overflow or NaN
    X = torch.randn(8, 3, 4, 4)
    Z = kernels.batchnorm_elu_forward(X, ones * 200, zeros, ones * 0.5, 1e-5)[0]
    assert torch.isfinite(Z).all() and Z.min() >= -0.5 - 1e-6


# ---------------------------------------------------------------------------
# convolution for few input channels
# ---------------------------------------------------------------------------
@needs_kernels
@pytest.mark.parametrize("N,C,H,W,F_,K", [(4, 1, 28, 28, 20, 5), (3, 2, 11, 13, 6, 3),
                                         (2, 3, 9, 30, 9, 7), (3, 4, 12, 20, 3, 2),
                                         (2, 1, 6, 9, 5, 1), (2, 1, 10, 33, 7, 4)])
def test_conv2d_kernels_match_pytorch(N, C, H, W, F_, K):
    torch.manual_seed(0)
    X, Wt, b = torch.randn(N, C, H, W), torch.randn(F_, C, K, K), torch.randn(F_)
    Z = kernels.conv2d_forward(X, Wt, b)
    assert _rel(Z, F.conv2d(X.double(), Wt.double(), b.double())) < 1e-5
    G = torch.randn_like(Z)
    dW, db = kernels.conv2d_weight_grad(X, G, tuple(Wt.shape))
    _, dWr, dbr = torch.ops.aten.convolution_backward(
        G.double(), X.double(), Wt.double(), [F_], [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
        [False, True, True])
    assert _rel(dW, dWr) < 1e-5 and _rel(db, dbr) < 1e-5


def _conv_layer_run(layer, X, G):
    Z, dX, (dW, db) = _train_grads(layer, X, G)
    return Z.detach(), dX, dW, db


@needs_kernels
@pytest.mark.parametrize("kwargs", [dict(), dict(padding=2), dict(padding="same"),
                                    dict(padding=(1, 0))])
def test_convolution_layer_kernel_path_matches_pytorch_path(kwargs, monkeypatch):
    torch.manual_seed(0)
    conv = ll.Convolution2d((4, 3), 6, num_channels=2, **kwargs)
    X = torch.randn(5, 2, 12, 14)
    with torch.no_grad():                         # as in training's forward
        assert conv._few_channels(conv._padded(X))
        Z0 = conv.predict(X)
    G = torch.randn_like(Z0)
    fast = _conv_layer_run(conv, X, G)
    monkeypatch.setattr(kernels, "_libs", {n: None for n in kernels._SIGNATURES})
    assert not conv._few_channels(X)
    slow = _conv_layer_run(conv, X, G)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# fully connected with few outputs
# ---------------------------------------------------------------------------
@needs_kernels
@pytest.mark.parametrize("N,D,K", [(128, 11520, 10), (7, 2049, 16), (5, 2051, 1), (3, 4096, 3)])
def test_dense_kernels_match_pytorch(N, D, K):
    torch.manual_seed(0)
    X, W, b, G = torch.randn(N, D), torch.randn(K, D), torch.randn(K), torch.randn(N, K)
    Xd, Wd, Gd = X.double(), W.double(), G.double()
    assert _rel(kernels.dense_forward(X, W, b), Xd @ Wd.t() + b.double()) < 1e-5
    assert _rel(kernels.dense_input_grad(G, W), Gd @ Wd) < 1e-5
    assert _rel(kernels.dense_weight_grad(G, X), Gd.t() @ Xd) < 1e-5


@needs_kernels
def test_fully_connected_kernel_path_matches_pytorch_path(monkeypatch):
    torch.manual_seed(0)
    fc = ll.FullyConnected(10, input_size=3 * 30 * 30)
    X = torch.randn(6, 3, 30, 30)
    with torch.no_grad():
        assert fc._skinny(X.flatten(1), fc.weights)

    def run():
        fc.train()
        fc.zero_grad()
        Xg = X.clone().requires_grad_()
        Z = run_layer(fc, (Xg,), training=True)
        Z.backward(torch.arange(60.0).view(6, 10) / 60)
        return Z.detach(), Xg.grad, fc.weights.grad, fc.bias.grad
    fast = run()
    monkeypatch.setattr(kernels, "_libs", {n: None for n in kernels._SIGNATURES})
    slow = run()
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# the kernels run only where they may
# ---------------------------------------------------------------------------
def test_usable_refuses_what_c_cannot_take():
    x = torch.randn(4, 3, 8, 8)
    assert not kernels.usable(x.double())
    assert not kernels.usable(x.transpose(2, 3))
    assert not kernels.usable(x.to("meta"))
    w = torch.nn.Parameter(torch.randn(3))
    assert not kernels.usable(x, w)                       # autograd records w
    with torch.no_grad():
        assert kernels.usable(x, w) == (kernels._library() is not None)
    assert not torch.func.vmap(lambda t: torch.tensor(kernels.usable(t)))(x).any()


def test_build_is_cached_and_can_be_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.setattr(build, "_why_not", {})
    monkeypatch.setenv("LAYERLAB_KERNELS", "0")
    assert build.load("dense_skinny") is None
    assert "LAYERLAB_KERNELS=0" in build.status("dense_skinny")
    if build._compiler() is None or not sys.platform.startswith("linux"):
        pytest.skip("no C compiler here")
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.delenv("LAYERLAB_KERNELS")
    assert build.load("dense_skinny") is not None
    built = list((tmp_path / "kernels").glob("dense_skinny-*.so"))
    assert len(built) == 1                               # no temporary file left
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(build, "_loaded", {})
    assert build.load("dense_skinny") is not None
    assert built[0].stat().st_mtime_ns == stamp          # loaded, not built again


def test_a_failed_build_falls_back_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.setattr(build, "_why_not", {})
    monkeypatch.setattr(build, "_compiler", lambda: None)
    assert build.load("batchnorm_elu") is None
    assert "no C compiler" in build.status("batchnorm_elu")


def test_layers_work_without_kernels(no_kernels):
    """A machine without a compiler trains the same network (PyTorch ops)."""
    torch.manual_seed(0)
    X = torch.randn(64, 1, 28, 28)
    Y = torch.randint(0, 10, (64,))
    from layerlab.demo import seed_layers
    net, info = ll.train_network(X, Y, seed_layers(), ll.training_options(
        "sgdm", max_epochs=2, mini_batch_size=32, verbose=False, seed=0))
    assert info.iterations == 4 and all(torch.isfinite(torch.as_tensor(info.training_loss)))


# ---------------------------------------------------------------------------
# keeping freed memory
# ---------------------------------------------------------------------------
_MEMORY_CHILD = ("from layerlab.training.host_memory import keep_freed_memory; "
                 "print(keep_freed_memory(), keep_freed_memory())")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
@pytest.mark.parametrize("env,expected", [({}, "True True"),
                                          ({"MALLOC_TRIM_THRESHOLD_": "0"}, "False False"),
                                          ({"LAYERLAB_KEEP_FREED_MEMORY": "0"}, "False False")])
def test_keep_freed_memory_respects_the_users_settings(env, expected):
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("MALLOC_") and k != "LAYERLAB_KEEP_FREED_MEMORY"}
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD], env={**base, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == expected, out.stderr


def test_a_replaced_learnable_of_another_size_never_reaches_c():
    """C reads the bias by filter (or output): sizes that disagree leave the
    computation to PyTorch's ops, whose error names the sizes (no crash)."""
    conv = ll.Convolution2d(3, 8, num_channels=1)
    conv.weights = torch.randn(12, 1, 3, 3)
    fc = ll.FullyConnected(4, input_size=3000)
    fc.weights = torch.randn(6, 3000)
    with torch.no_grad():
        assert not conv._few_channels(torch.randn(2, 1, 12, 12))
        assert not fc._skinny(torch.randn(2, 3000), fc.weights)
        with pytest.raises(RuntimeError):
            conv.predict(torch.randn(2, 1, 12, 12))
