"""Fused layer pairs (issue 16): Layer.fused_with, BatchNormELU, and when a
network runs a fused pair. The reference is always the two layers run on
their own (each with its own derivative)."""

import copy

import pytest
import torch

import layerlab as ll
from layerlab import kernels
from layerlab.checking import check_layer
from layerlab.layers.fused import BatchNormELU, ConvBatchNormELU, DenseBatchNormELU
from layerlab.layers.fused_chain import DenseBatchNormELUChain, FusedChain
from layerlab.network.network import Network


def _seed_net(**kw):
    from layerlab.demo import seed_layers
    torch.manual_seed(0)
    return Network(seed_layers(**kw))


def _step(net, X, T):
    """Output, every parameter's gradient and the state after one training step."""
    net.train()
    net.zero_grad()
    Y = net(X, logits=True)
    torch.nn.functional.cross_entropy(Y, T).backward()
    return (Y.detach(), {k: None if p.grad is None else p.grad.clone()
                         for k, p in net.named_parameters()},
            {k: b.clone() for k, b in net.named_buffers()})


def _assert_same_step(a, b):
    (Ya, ga, sa), (Yb, gb, sb) = a, b
    torch.testing.assert_close(Ya, Yb, rtol=1e-4, atol=1e-5)
    assert ga.keys() == gb.keys() and sa.keys() == sb.keys()
    for k in ga:
        assert (ga[k] is None) == (gb[k] is None), k
        if ga[k] is None:
            continue
        # the convolution's bias before batch normalization has a zero
        # derivative in exact arithmetic: compare it absolutely
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-3, atol=1e-6)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-6)


def _assert_fused_step_matches(net, X, T):
    """One training step of ``net`` (with its fused layers) against a copy
    running every layer on its own; returns the copy."""
    alone = copy.deepcopy(net)
    alone.fuse_layers = False
    _assert_same_step(_step(net, X, T), _step(alone, X, T))
    return alone


@pytest.fixture
def no_kernels(monkeypatch):
    monkeypatch.setattr(kernels, "_libs", {name: None for name in kernels._SIGNATURES})


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "pytorch-ops"])
def test_fused_seed_network_matches_its_layers_run_alone(kernel, monkeypatch):
    if not kernel:
        monkeypatch.setattr(kernels, "_libs", {n: None for n in kernels._SIGNATURES})
    net = _seed_net()
    (end, fused), = net._fused.values()
    assert list(net._fused) == [1] and end == 3        # convolution + batch norm + ELU
    assert isinstance(fused, ConvBatchNormELU)
    X, T = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    alone = _assert_fused_step_matches(net, X, T)
    net.eval()
    alone.eval()
    torch.testing.assert_close(net(X), alone(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "pytorch-ops"])
def test_fused_deep_mlp_with_frozen_shared_alpha_matches(kernel, monkeypatch):
    from layerlab.experiments.deep_mlp_batchnorm import deep_mlp
    if not kernel:
        monkeypatch.setattr(kernels, "_libs", {n: None for n in kernels._SIGNATURES})
    torch.manual_seed(0)
    net = Network(deep_mlp("ELU", batch_norm=True, depth=3))
    # the three fully connected + batch norm + ELU blocks and the classifier
    # after them: one chain
    (end, fused), = net._fused.values()
    assert list(net._fused) == [1] and end == 10
    assert isinstance(fused, DenseBatchNormELUChain) and len(fused.parts) == 4
    X, T = torch.randn(40, 1, 28, 28), torch.randint(0, 10, (40,))
    alone = _assert_fused_step_matches(net, X, T)
    net.eval()
    alone.eval()
    torch.testing.assert_close(net(X), alone(X), rtol=1e-5, atol=1e-6)


def test_relu_after_batch_norm_fuses_too():
    layers = [ll.ImageInput((2, 6, 6), normalization="none"), ll.BatchNormalization(),
              ll.ReLU(), ll.FullyConnected(3), ll.Softmax(), ll.Classification()]
    net = Network(layers)
    assert isinstance(net._fused[1][1], BatchNormELU)
    X, T = torch.randn(8, 2, 6, 6), torch.randint(0, 3, (8,))
    _assert_fused_step_matches(net, X, T)


def test_no_fusion_where_the_middle_value_is_needed():
    net = _seed_net()
    elu = net.layers[3]
    seen = []
    handle = elu.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    net.train()
    net(torch.randn(4, 1, 28, 28))
    assert seen == [(4, 20, 24, 24)]                    # the ELU ran on its own
    handle.remove()
    # every layer's output asked for: all there
    outs = net.layer_outputs(torch.randn(4, 1, 28, 28))
    assert all(o is not None for o in outs)
    # a layer asked to use autograd, or layers in different modes, run alone
    calls = []
    bn = net.layers[2]
    orig = ConvBatchNormELU.training_forward
    ConvBatchNormELU.training_forward = lambda self, X: calls.append(1) or orig(self, X)
    try:
        net(torch.randn(4, 1, 28, 28))
        assert calls == [1]
        elu.use_autograd = True
        net(torch.randn(4, 1, 28, 28))
        assert calls == [1]
        elu.use_autograd = False
        bn.eval()
        net(torch.randn(4, 1, 28, 28))
        assert calls == [1]
        bn.train()
        net.fuse_layers = False
        net(torch.randn(4, 1, 28, 28))
        assert calls == [1]
    finally:
        ConvBatchNormELU.training_forward = orig


def test_what_does_not_fuse():
    class MyELU(ll.ELU):
        pass
    assert ll.BatchNormalization().fused_with(MyELU(3)) is None       # a user's subclass
    assert ll.BatchNormalization(backward="formula").fused_with(ll.ELU(3)) is None
    assert ll.BatchNormalization().fused_with(ll.LeakyReLU()) is None
    assert ll.ELU().fused_with(ll.BatchNormalization()) is None       # the default: none
    # a ReLU after batch norm on features stays alone (native ops beat the bridge there)
    feats = Network([ll.FeatureInput(6, normalization="none"), ll.BatchNormalization(),
                     ll.ReLU(), ll.FullyConnected(2)])
    assert feats._fused == {}
    feats = Network([ll.FeatureInput(6, normalization="none"), ll.BatchNormalization(),
                     ll.ELU(), ll.FullyConnected(2)])
    assert list(feats._fused) == [1]
    # batch norm's output feeds two layers: not fused
    g = ll.LayerGraph([ll.ImageInput((2, 5, 5), normalization="none", name="in"),
                       ll.BatchNormalization(name="bn"), ll.ELU(name="elu"),
                       ll.Addition(2, name="add"), ll.FullyConnected(3, name="fc")])
    g.connect("bn", "add/in2")
    assert Network(g)._fused == {}


def test_a_users_layer_can_offer_a_fused_layer():
    class Double(ll.Layer):
        def predict(self, X):
            return 2 * X

        def fused_with(self, following):
            return Quadruple(self) if isinstance(following, Double) else None

    class Quadruple(ll.Layer):
        def __init__(self, part):
            super().__init__()
            self.part = part

        def predict(self, X):
            return 4 * X

    net = Network([ll.FeatureInput(3, normalization="none"), Double(), Double()])
    assert isinstance(net._fused[1][1], Quadruple)
    X = torch.randn(2, 3)
    torch.testing.assert_close(net(X), 4 * X)

    class Bad(Double):
        def fused_with(self, following):
            return 42
    with pytest.raises(ll.errors.NetworkError, match="fused_with must return a Layer"):
        Network([ll.FeatureInput(3, normalization="none"), Bad(), Double()])


def test_fused_layer_is_not_saved_and_not_a_submodule(tmp_path):
    net = _seed_net()
    names = [k for k, _ in net.named_parameters()]
    assert not any("batchnorm." in k or "activation." in k for k in names)
    assert len(list(net.parameters())) == len(names)
    path = tmp_path / "net.safetensors"
    ll.save(net, str(path))
    loaded = ll.load(str(path))
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in net.layers]


@pytest.mark.parametrize("activation,size", [(lambda: ll.ELU(3), (3, 4, 4)),
                                             (lambda: ll.ELU(), (5,)),
                                             (lambda: ll.ReLU(), (3, 4, 4))])
def test_batchnorm_elu_passes_check_layer(activation, size):
    layer = BatchNormELU(ll.BatchNormalization(), activation())
    report = check_layer(layer, size, verbose=False,
                         skip=("compile", "save_load", "save_load_fresh_process"))
    assert report.passed, report.text
    assert report["gradients"].passed and report["second_derivatives"].passed, report.text


def test_batchnorm_elu_passes_check_layer_without_kernels(no_kernels):
    report = check_layer(BatchNormELU(ll.BatchNormalization(), ll.ELU(3)), (3, 4, 4),
                         verbose=False, skip=("compile", "save_load", "save_load_fresh_process"))
    assert report.passed, report.text


def test_batchnorm_elu_names_both_layers_in_errors():
    layer = BatchNormELU(ll.BatchNormalization(num_channels=3, name="bn"), ll.ELU(4, name="e"))
    with pytest.raises(ll.errors.LayerError, match="'e' .*ELU"):
        layer._alpha(torch.randn(2, 3, 4, 4))
    assert "'bn'" in layer.label and "'e'" in layer.label
    with pytest.raises(ll.errors.LayerError, match="expected a BatchNormalization"):
        BatchNormELU(ll.ELU(3), ll.ELU(3))


def test_fused_network_compiles_and_vmaps():
    """The PyTorch-op path under torch.compile and torch.func."""
    net = _seed_net()
    net.eval()
    X = torch.randn(4, 1, 28, 28)
    ref = net(X)
    compiled = torch.compile(net, backend="aot_eager")
    torch.testing.assert_close(compiled(X), ref, rtol=1e-4, atol=1e-5)
    per_obs = torch.func.vmap(lambda x: net(x.unsqueeze(0)).squeeze(0))(X)
    torch.testing.assert_close(per_obs, ref, rtol=1e-4, atol=1e-5)


def test_conv_fuses_with_the_fused_pair_only_where_its_kernel_applies():
    bn_elu = BatchNormELU(ll.BatchNormalization(), ll.ELU(4))
    assert isinstance(ll.Convolution2d(3, 4, num_channels=2).fused_with(bn_elu), ConvBatchNormELU)
    assert ll.Convolution2d(3, 4, num_channels=8).fused_with(bn_elu) is None   # many channels
    assert ll.Convolution2d(3, 4, stride=2, num_channels=2).fused_with(bn_elu) is None
    assert ll.Convolution2d(3, 4, num_channels=2).fused_with(ll.BatchNormalization()) is None


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "pytorch-ops"])
@pytest.mark.parametrize("padding,shared", [(0, False), ("same", True), (1, False)])
def test_conv_batchnorm_elu_matches_its_parts(kernel, padding, shared, monkeypatch):
    if not kernel:
        monkeypatch.setattr(kernels, "_libs", {n: None for n in kernels._SIGNATURES})
    torch.manual_seed(0)
    layers = [ll.ImageInput((2, 12, 13), normalization="none"),
              ll.Convolution2d((4, 3), 5, padding=padding), ll.BatchNormalization(),
              ll.ELU() if shared else ll.ELU(5), ll.FullyConnected(3), ll.Softmax(),
              ll.Classification()]
    net = Network(layers)
    assert isinstance(net._fused[1][1], ConvBatchNormELU)
    X, T = torch.randn(9, 2, 12, 13), torch.randint(0, 3, (9,))
    _assert_fused_step_matches(net, X, T)


def test_conv_batchnorm_elu_passes_check_layer():
    layer = ConvBatchNormELU(ll.Convolution2d(3, 4, num_channels=2),
                             BatchNormELU(ll.BatchNormalization(), ll.ELU(4)))
    report = check_layer(layer, (2, 6, 10), verbose=False,
                         skip=("compile", "save_load", "save_load_fresh_process"))
    assert report.passed, report.text
    assert report["gradients"].passed and report["second_derivatives"].passed, report.text


def test_conv_batchnorm_elu_with_a_mismatched_batch_norm_is_a_clear_error():
    layer = ConvBatchNormELU(ll.Convolution2d(3, 8, num_channels=1),
                             BatchNormELU(ll.BatchNormalization(num_channels=2, name="bn"),
                                          ll.ELU()))
    with torch.no_grad(), pytest.raises(ll.errors.LayerError, match="'bn'.*expected input"):
        layer.training_forward(torch.randn(4, 1, 12, 12))


# ---- fully connected + batch norm + ELU blocks, and chains of them ----------
def _mlp_layers(shared=True, width=6, depth=3, input_size=(2, 3, 4)):
    layers = [ll.ImageInput(input_size, normalization="none")]
    for _ in range(depth):
        layers += [ll.FullyConnected(width), ll.BatchNormalization(),
                   ll.ELU(learnable=True) if shared else ll.ELU(width)]
    return layers + [ll.FullyConnected(3), ll.Softmax(), ll.Classification()]


@pytest.fixture
def two_threads():
    """The compiled chain's backward splits its work over two threads (and
    runs in order on one): both must compute the same."""
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("kernel", ["kernel-2-threads", "kernel-1-thread", "pytorch-ops"])
@pytest.mark.parametrize("shared", [True, False], ids=["one-alpha", "alpha-per-channel"])
def test_dense_chain_matches_its_layers_run_alone(kernel, shared, monkeypatch, two_threads):
    if kernel == "pytorch-ops":
        monkeypatch.setattr(kernels, "_libs", {n: None for n in kernels._SIGNATURES})
    if kernel == "kernel-1-thread":
        torch.set_num_threads(1)
    torch.manual_seed(1)
    net = Network(_mlp_layers(shared))
    (end, fused), = net._fused.values()
    assert isinstance(fused, DenseBatchNormELUChain) and end == 10
    X, T = torch.randn(7, 2, 3, 4), torch.randint(0, 3, (7,))
    _assert_fused_step_matches(net, X, T)
    # the ELUs' learnable alphas get their derivative through the chain
    assert all(p.grad is not None for n, p in net.named_parameters() if n.endswith("alpha"))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [3, 9, 64])
def test_dense_chain_statistics_with_a_large_mean(n, threads, two_threads):
    """The compiled forward splits the observations between two threads, each
    summing its rows shifted by its own first row; the sums are then added
    up. With a large mean (about 1000) and a spread of about 1, a wrong shift
    or count shows in the variance at once. The reference is the network
    unfused in float64 (float32 itself is about 1e-4 off here)."""
    if kernels._library("dense_batchnorm_elu_chain") is None:
        pytest.skip(f"chain kernel not here: {kernels.status()}")
    torch.set_num_threads(threads)
    torch.manual_seed(2)
    net = Network(_mlp_layers(width=40, depth=2))
    with torch.no_grad():
        net.layers[1].bias.fill_(1e3)
    reference = copy.deepcopy(net).double()
    reference.fuse_layers = False
    X, T = torch.randn(n, 2, 3, 4), torch.randint(0, 3, (n,))
    (Y, g, s), (Yr, gr, sr) = _step(net, X, T), _step(reference, X.double(), T)
    torch.testing.assert_close(Y, Yr.float(), rtol=1e-3, atol=1e-3)
    for k in sr:
        torch.testing.assert_close(s[k], sr[k].float(), rtol=1e-5, atol=1e-4)
    for k in gr:
        if gr[k] is not None:
            torch.testing.assert_close(g[k], gr[k].float(), rtol=1e-2,
                                       atol=max(1e-3 * float(gr[k].abs().max()), 1e-5))


def test_dense_chain_kernel_with_a_team_of_one_thread():
    """Asked for two threads, OpenMP may give one (under OMP_THREAD_LIMIT, or
    inside another parallel region): the kernel then computes both halves
    of the work on that one, neither waiting for a second thread for ever
    nor leaving the other half's derivatives unwritten."""
    if kernels._library("dense_batchnorm_elu_chain") is None:
        pytest.skip(f"chain kernel not here: {kernels.status()}")
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]);"
        "import test_fused_layers as t; torch.set_num_threads(2);"
        "torch.manual_seed(1); net = t.Network(t._mlp_layers(width=40));"
        "assert isinstance(net._fused[1][1], t.DenseBatchNormELUChain);"
        "t._assert_fused_step_matches(net, torch.randn(9, 2, 3, 4), torch.randint(0, 3, (9,)));"
        "print('ok')")
    import os
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)],
                          env=dict(os.environ, OMP_THREAD_LIMIT="1"), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_dense_chain_kernel_is_the_one_in_use():
    """The compiled chain runs (not the blocks one by one) on the CPU in
    float32, where it is built: its memory is one buffer."""
    if kernels._library("dense_batchnorm_elu_chain") is None:
        pytest.skip(f"chain kernel not here: {kernels.status()}")
    torch.manual_seed(0)
    net = Network(_mlp_layers())
    chain = net._fused[1][1]
    with torch.no_grad():
        Z, memory = chain.training_forward(torch.randn(5, 24))
    assert isinstance(memory[0], torch.Tensor) and memory[0].dim() == 1


def test_dense_chain_skips_frozen_and_input_derivatives(monkeypatch):
    torch.manual_seed(0)
    net = Network(_mlp_layers(shared=False))
    fc = net.layers[4]
    fc.freeze("weights")
    X, T = torch.randn(6, 2, 3, 4), torch.randint(0, 3, (6,))
    alone = copy.deepcopy(net)
    alone.fuse_layers = False
    a, b = _step(net, X, T), _step(alone, X, T)
    _assert_same_step(a, b)
    assert a[1]["layers.4.weights"] is None
    # in the generic chain (no kernel) each block is told what it needs: the
    # first block no input derivative, the frozen weights none
    monkeypatch.setattr(kernels, "_libs", {n: None for n in kernels._SIGNATURES})
    seen = []
    orig = DenseBatchNormELU.backward

    def spy(self, *args):
        seen.append(self.needed_gradients())
        return orig(self, *args)
    monkeypatch.setattr(DenseBatchNormELU, "backward", spy)
    _step(net, X, T)
    first, second, third = seen[::-1]
    assert first[0] is False and second[0] is True and third[0] is True
    assert second[1] is False and second[2] is True       # frozen weights, trained bias


def test_dense_chain_passes_check_layer():
    from layerlab.layers.fused_chain import DenseBatchNormELUChain
    torch.manual_seed(0)
    net = Network([ll.FeatureInput(5)] + _mlp_layers(shared=False, width=4, depth=2)[1:])
    chain = net._fused[1][1]
    fresh = DenseBatchNormELUChain([copy.deepcopy(p) for p in chain.parts])
    report = check_layer(fresh, (5,), verbose=False,
                         skip=("compile", "save_load", "save_load_fresh_process"))
    assert report.passed, report.text
    assert report["gradients"].passed and report["second_derivatives"].passed, report.text


def test_dense_batchnorm_elu_passes_check_layer():
    layer = DenseBatchNormELU(ll.FullyConnected(4), BatchNormELU(ll.BatchNormalization(),
                                                                 ll.ELU(4)))
    report = check_layer(layer, (3, 2), verbose=False,
                         skip=("compile", "save_load", "save_load_fresh_process"))
    assert report.passed, report.text


def test_a_generic_chain_of_hand_written_layers():
    """FusedChain takes any layers with one input, one output and their own
    backward: a user's layer chains as the built-ins do."""
    class Scale(ll.Layer):
        def __init__(self, c):
            super().__init__()
            self.w = ll.Learnable(torch.linspace(0.5, 1.5, c))

        def predict(self, X):
            return X * self.w

        def backward(self, X, Z, dLdZ, memory):
            dX = dLdZ * self.w if self.needs_gradient(0) else None
            return dX, (dLdZ * X).sum(0)

    chain = FusedChain([Scale(3), ll.ELU(3), Scale(3)])
    assert len(chain.learnable_names) == 3
    report = check_layer(chain, (3,), verbose=False,
                         skip=("compile", "save_load", "save_load_fresh_process"))
    assert report.passed, report.text
    with pytest.raises(ll.errors.LayerError, match="own backward"):
        FusedChain([Scale(3), ll.Softmax()])
    with pytest.raises(ll.errors.LayerError, match="at least two"):
        FusedChain([Scale(3)])


def test_backward_with_needs_checks_their_number():
    layer = ll.ELU(3)
    X = torch.randn(4, 3)
    Z, memory = layer.training_forward(X)
    with pytest.raises(ll.errors.LayerError, match="expected 2 needs"):
        layer.backward_with_needs((True,), X, Z, torch.ones_like(Z), memory)
    dX, dalpha = layer.backward_with_needs((True, False), X, Z, torch.ones_like(Z), memory)
    assert dX is not None and layer.needed_gradients() is None     # reset afterwards


def test_a_copied_chain_makes_its_own_plan():
    """The compiled chain's plan holds addresses: a deep copy of the network
    (train_network's, a study's) must not carry it to the copy's tensors."""
    torch.manual_seed(0)
    net = Network(_mlp_layers())
    X, T = torch.randn(6, 2, 3, 4), torch.randint(0, 3, (6,))
    _step(net, X, T)                  # the plan is made
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
    alone = copy.deepcopy(twin)
    alone.fuse_layers = False
    a, b = _step(twin, X, T), _step(net, X, T)
    _assert_same_step(a, _step(alone, X, T))     # the copy computes with its own weights
    assert not torch.equal(a[0], b[0])


def test_dense_chain_under_compile_and_second_derivatives():
    """The chain's PyTorch-op path: torch.compile traces it (training and
    inference) and a gradient of a gradient goes through it."""
    from layerlab.experiments.deep_mlp_batchnorm import deep_mlp
    torch.manual_seed(0)
    net = Network(deep_mlp("ELU", batch_norm=True, depth=2))
    ref = copy.deepcopy(net)
    ref.fuse_layers = False
    X = torch.randn(8, 1, 28, 28)
    compiled = torch.compile(net, backend="aot_eager")
    Y, Yr = compiled(X, logits=True), ref(X, logits=True)
    torch.testing.assert_close(Y, Yr, rtol=1e-4, atol=1e-5)
    Y.sum().backward()
    Yr.sum().backward()
    weights = [(n, p) for n, p in net.named_parameters() if n.endswith("weights")]
    ref_params = dict(ref.named_parameters())
    for n, p in weights:
        torch.testing.assert_close(p.grad, ref_params[n].grad, rtol=1e-3, atol=1e-5)
    for model in (net, ref):
        model.zero_grad()
        x = X.clone().requires_grad_(True)
        gx, = torch.autograd.grad(model(x, logits=True).pow(2).sum(), x, create_graph=True)
        gx.pow(2).sum().backward()
    for n, p in weights:   # float32 second derivatives: within 1e-3 of the largest
        scale = float(ref_params[n].grad.abs().max())
        torch.testing.assert_close(p.grad, ref_params[n].grad, rtol=1e-3, atol=1e-3 * scale)
