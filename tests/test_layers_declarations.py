"""Each new layer passes check_layer, and its class declarations
(differs_in_training, couples_observations, is_stochastic) match what it
does."""

import io

import pytest
import torch

import layerlab as ll
from layerlab import checking
from layerlab.autograd_bridge import run_layer


@pytest.fixture(autouse=True)
def _one_thread_for_every_test(one_thread):
    """Small tensors: one thread (the shared fixture in conftest.py)."""


# (layer factory, one observation's input size(s))
LAYERS = [
    (lambda: ll.LeakyReLU(), [(3, 4, 4)]),
    (lambda: ll.LeakyReLU(0.3, learnable=True), [(3, 4, 4)]),
    (lambda: ll.PReLU(3), [(3, 4, 4)]),
    (lambda: ll.CReLU(), [(3, 4, 4)]),
    (lambda: ll.Maxout(3), [(6, 4, 4)]),
    (lambda: ll.FullyConnectedMaxout(3, num_pieces=2, input_size=8), [(2, 2, 2)]),
    (lambda: ll.Tanh(), [(5,)]),
    (lambda: ll.Sigmoid(), [(5,)]),
    (lambda: ll.Dropout(0.3), [(3, 4, 4)]),
    (lambda: ll.SpatialDropout(0.3), [(3, 4, 4)]),
    (lambda: ll.FullyConnected(4, input_size=6, drop_connect=0.3), [(6,)]),
    (lambda: ll.BatchNormalization(num_channels=3, backward="formula"), [(3, 4, 4)]),
    (lambda: ll.BatchNormalization(num_channels=3), [(3, 4, 4)]),
    (lambda: ll.LayerNormalization(num_channels=3), [(3,)]),
    (lambda: ll.LayerNormalization(num_channels=3), [(3, 4, 4)]),
    (lambda: ll.MaxPooling2d(2), [(3, 4, 4)]),
    (lambda: ll.AveragePooling2d(2), [(3, 4, 4)]),
    (lambda: ll.GlobalAveragePooling2d(), [(3, 4, 4)]),
    (lambda: ll.Addition(2), [(3, 4, 4), (3, 4, 4)]),
    (lambda: ll.Concatenation(2), [(3, 4, 4), (2, 4, 4)]),
]


def run(layer, X, training, seed=0):
    torch.manual_seed(seed)
    Z = run_layer(layer, X, training=training)
    return Z.detach()


def label(case):
    layer = case[0]()
    return f"{type(layer).__name__}{list(case[1])}"


IDS = [label(c) for c in LAYERS]


@pytest.mark.parametrize("factory, sizes", LAYERS, ids=IDS)
def test_declarations_match_behaviour(factory, sizes):
    layer = factory().double()
    layer.initialize(sizes)
    X = tuple(torch.randn(4, *s, dtype=torch.float64) for s in sizes)
    X2 = tuple(torch.cat([x[:1], torch.randn_like(x[1:]) * 3 + 1]) for x in X)
    for training in (False, True):
        state = {k: v.clone() for k, v in layer.state_dict().items()}
        a, b = run(layer, X, training), run(layer, X2, training)
        layer.load_state_dict(state)
        couples = training and layer.couples_observations
        # observation 0 is the same in X and X2: its output changes only when
        # the layer says it couples observations
        assert torch.allclose(a[:1], b[:1]) != couples
    same = torch.allclose(run(layer, X, True), run(layer, X, False))
    assert same != layer.differs_in_training
    stochastic = not torch.equal(run(layer, X, True, seed=0), run(layer, X, True, seed=1))
    assert stochastic == layer.is_stochastic


@pytest.mark.parametrize("factory, sizes", LAYERS, ids=IDS)
def test_check_layer_passes(factory, sizes):
    out = io.StringIO()
    # the contract's tests (the whole suite on every built-in layer:
    # tests/test_check_layer.py)
    report = checking.check_layer(factory(), sizes if len(sizes) > 1 else sizes[0],
                                  tests=checking.TRAINING_TESTS, stream=out)
    assert report.passed, out.getvalue()
    ran = {r.name for r in report.results if r.status == "passed"}
    assert {"runs", "types", "gradients", "independent_observations"} <= ran, out.getvalue()
