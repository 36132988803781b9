"""Training the seed network end to end on the digits: the table, the
iteration count, the info record, and the accuracy reached."""

import io

import numpy as np
import torch

import layerlab as ll
from layerlab.demo import SeedELU, seed_layers


def test_seed_network_learns_the_digits(digits_small):
    Xtr, Ytr, Xte, Yte = digits_small
    out = io.StringIO()
    opts = ll.training_options("sgdm", max_epochs=6, verbose_frequency=10, seed=0)
    net, info = ll.train_network(Xtr, Ytr, seed_layers(), opts, stream=out)
    text = out.getvalue()
    # 1000 images at 128: 7 iterations an epoch (the last partial batch dropped)
    assert info.iterations == 42 and len(info.training_loss) == 42
    assert "Training on CPU." in text and "Initializing image normalization." in text
    assert "|  Mini-batch  |" in text and "|     Loss     |" in text
    rows = [l for l in text.splitlines() if l.startswith("|") and l.split("|")[2].strip().isdigit()]
    assert [int(r.split("|")[2]) for r in rows] == [1, 10, 20, 30, 40, 42]
    assert info.training_loss[-1] < info.training_loss[0] / 3
    accuracy = (ll.classify(net, Xte) == Yte).mean()
    assert accuracy > 0.85, accuracy


def test_user_layer_with_hand_written_backward_trains_like_builtin(digits_small):
    """The demo's user-written SeedELU trains to the same weights as the
    built-in ELU started from the same alpha (both hand-written backwards)."""
    Xtr, Ytr, _, _ = digits_small
    opts = ll.training_options("sgdm", max_epochs=1, seed=0, verbose=False)
    torch.manual_seed(0)
    user = SeedELU(20)
    builtin = ll.ELU(20)
    with torch.no_grad():
        builtin.alpha.copy_(user.alpha.view(-1))
    torch.manual_seed(1)
    net_u, info_u = ll.train_network(Xtr, Ytr, seed_layers(user), opts)
    torch.manual_seed(1)
    net_b, info_b = ll.train_network(Xtr, Ytr, seed_layers(builtin), opts)
    np.testing.assert_allclose(info_u.training_loss, info_b.training_loss, rtol=1e-4)
    torch.testing.assert_close(net_u.layer("seed_elu_1").alpha.view(-1),
                               net_b.layer("elu_1").alpha, rtol=1e-4, atol=1e-6)


def test_string_labels_come_back_as_strings():
    torch.manual_seed(0)
    X = torch.rand(64, 1, 6, 6)
    names = np.array(["cat", "dog"])
    Y = names[(X.mean((1, 2, 3)) > 0.5).long().numpy()]
    layers = [ll.ImageInput((1, 6, 6)), ll.FullyConnected(2), ll.Softmax(), ll.Classification()]
    net, _ = ll.train_network(X, Y, layers, ll.training_options(
        max_epochs=2, mini_batch_size=16, verbose=False))
    labels = ll.classify(net, X)
    assert net.classes == ["cat", "dog"] and set(labels) <= {"cat", "dog"}


def test_same_seed_same_weights():
    X = torch.rand(64, 1, 8, 8)
    Y = np.arange(64) % 3
    layers = [ll.ImageInput((1, 8, 8)), ll.Convolution2d(3, 4), ll.ELU(4),
              ll.FullyConnected(3), ll.Softmax(), ll.Classification()]
    opts = ll.training_options(max_epochs=2, mini_batch_size=16, verbose=False, seed=7,
                               shuffle="every-epoch")
    a, _ = ll.train_network(X, Y, layers, opts)
    b, _ = ll.train_network(X, Y, layers, opts)
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k
