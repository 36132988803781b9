"""Data sources for train_network, predict, classify, activations and
validation_data: memmaps, array-likes, torch Datasets and DataLoaders give the
same training as in-memory arrays; bad data is a DataError naming the item."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import layerlab as ll
from layerlab.datastores.readahead import read_ahead
from layerlab.datastores.sources import ArrayLikeSource, as_data_source
from layerlab.errors import DataError


def _data(n=96):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 1, 5, 5, generator=g)
    Y = (X.mean(dim=(1, 2, 3)) > 0.5).long()
    return X, Y


def _layers():
    # batch norm (mini-batch statistics) and zero-center input: every value matters
    return [ll.ImageInput((1, 5, 5)), ll.Convolution2d(3, 2), ll.BatchNormalization(),
            ll.ReLU(), ll.FullyConnected(2), ll.Softmax(), ll.Classification()]


def _opts(**kw):
    return ll.training_options("sgdm", **{**dict(max_epochs=2, mini_batch_size=16, seed=3,
                                                 verbose=False, shuffle="every-epoch"), **kw})


def _same(net_a, net_b, atol=0.0):
    for (k, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        assert torch.allclose(a, b, atol=atol, rtol=0), k


class PairDataset(Dataset):
    """A plain map-style Dataset (no .tensors, no .targets)."""

    def __init__(self, X, Y, bad=None):
        self.X, self.Y, self.bad = X, Y, bad or {}

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        if i in self.bad:
            return self.bad[i]
        return self.X[i].numpy(), int(self.Y[i])


@pytest.fixture(scope="module")
def reference():
    X, Y = _data()
    net, info = ll.train_network(X, Y, _layers(), _opts())
    return X, Y, net, info


def test_memmap_trains_like_the_array(reference, tmp_path):
    X, Y, net, info = reference
    np.save(tmp_path / "x.npy", X.numpy())
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert isinstance(as_data_source(Xm, Y), ArrayLikeSource)
    assert as_data_source(Xm, Y).file is not None      # read with pread, not the mapping
    net_m, info_m = ll.train_network(Xm, Y.numpy(), _layers(), _opts())
    # the normalization mean is computed in a streaming pass: last-bit differences
    _same(net, net_m, atol=1e-5)
    assert info_m.iterations == info.iterations == 2 * (96 // 16)


def test_datasets_train_like_the_arrays(reference):
    X, Y, net, _ = reference
    for data in (TensorDataset(X, Y), PairDataset(X, Y)):
        net_d, _ = ll.train_network(data, _layers(), _opts())
        _same(net, net_d, atol=1e-5)


def test_a_dataloader_uses_its_own_batches():
    X, Y = _data()
    net, info = ll.train_network(X, Y, _layers(), _opts(shuffle="never"))
    loader = DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=False)
    net_l, info_l = ll.train_network(loader, _layers(), _opts(mini_batch_size=128))
    _same(net, net_l, atol=1e-5)   # mini_batch_size is the loader's
    # an incomplete last batch is discarded, as for every source
    loader = DataLoader(TensorDataset(X[:90], Y[:90]), batch_size=16, shuffle=True)
    _, info_l = ll.train_network(loader, _layers(), _opts())
    assert info_l.iterations == 2 * 5


def test_validation_data_from_a_source_and_unseen_labels():
    X, Y = _data()
    _, info_a = ll.train_network(X, Y, _layers(), _opts(validation_data=(X[:40], Y[:40]),
                                                         validation_frequency=3))
    _, info_d = ll.train_network(X, Y, _layers(), _opts(
        validation_data=PairDataset(X[:40], Y[:40]), validation_frequency=3))
    assert np.allclose(info_a.validation_loss, info_d.validation_loss, equal_nan=True,
                       atol=1e-6)
    with pytest.raises(DataError, match="validation_data.*7"):
        ll.train_network(X, Y, _layers(), _opts(validation_data=(X[:4], [0, 1, 7, 0])))


def test_inference_on_sources_equals_arrays(reference, tmp_path):
    X, Y, net, _ = reference
    np.save(tmp_path / "x.npy", X.numpy())
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    scores = ll.predict(net, X.numpy())
    labels = ll.classify(net, X.numpy())
    feats = ll.activations(net, X.numpy(), net.layers[1].name)
    for data in (Xm, TensorDataset(X, Y), PairDataset(X, Y),
                 DataLoader(TensorDataset(X, Y), batch_size=10)):
        assert np.allclose(ll.predict(net, data, mini_batch_size=7), scores, atol=1e-6)
        assert np.array_equal(ll.classify(net, data, mini_batch_size=7), labels)
        assert np.allclose(ll.activations(net, data, net.layers[1].name, mini_batch_size=7),
                           feats, atol=1e-6)


def test_dataset_with_wrong_items_names_the_index():
    X, Y = _data()
    cases = {
        5: ((np.zeros((1, 4, 4)), 0), r"item 5: x has size \(1, 4, 4\)"),
        7: (("not numbers", 1), "item 7: x should be"),
        9: ((X[9].numpy(),), "item 9 should be a pair"),
        11: ((np.zeros((1, 5, 5), dtype=np.complex64), 0), "item 11: x should hold real"),
    }
    for i, (item, message) in cases.items():
        with pytest.raises(DataError, match=message):
            ll.train_network(PairDataset(X, Y, bad={i: item}), _layers(),
                             _opts(shuffle="never", max_epochs=1))


def test_complex_inputs_are_refused():
    X, Y = _data(32)
    Xc = X.numpy().astype(np.complex64)
    with pytest.raises(DataError, match="complex"):
        ll.train_network(Xc, Y, _layers(), _opts())
    with pytest.raises(DataError, match="complex"):
        ll.train_network(torch.as_tensor(Xc), Y, _layers(), _opts())


def test_no_targets_and_no_layers_are_clear_errors():
    X, Y = _data(32)
    with pytest.raises(DataError, match="without targets"):
        ll.train_network(X, None, _layers(), _opts())
    with pytest.raises(ll.NetworkError, match="no layers"):
        ll.train_network(TensorDataset(X, Y))


def test_read_ahead_keeps_order_and_passes_errors():
    assert list(read_ahead(lambda i: i * 10, range(7), depth=3, workers=2)) == \
        [i * 10 for i in range(7)]

    def boom(i):
        if i == 4:
            raise DataError("item 4 is bad")
        return i
    with pytest.raises(DataError, match="item 4"):
        list(read_ahead(boom, range(9), depth=2, workers=2))


def test_array_like_gathers_sorted_rows():
    class Lazy:
        """An h5py-like array: only increasing index lists allowed."""
        def __init__(self, a):
            self.a, self.shape, self.dtype = a, a.shape, a.dtype
            self.reads = 0

        def __getitem__(self, idx):
            assert list(idx) == sorted(set(idx)) if not isinstance(idx, slice) else True
            self.reads += 1
            return self.a[idx]

    a = np.arange(40, dtype=np.float32).reshape(10, 4)
    lazy = Lazy(a)
    src = ArrayLikeSource(lazy, np.zeros(10))
    assert torch.equal(src.read(np.array([7, 2, 2, 5])), torch.from_numpy(a[[7, 2, 2, 5]]))


@pytest.mark.parametrize("kind", ["memmap", "dataset", "dataloader"])
def test_resume_is_exact_for_every_source(kind, tmp_path):
    X, Y = _data(64)
    np.save(tmp_path / "x.npy", X.numpy())

    def data():
        if kind == "memmap":
            return np.load(tmp_path / "x.npy", mmap_mode="r"), Y.numpy()
        if kind == "dataset":
            return (PairDataset(X, Y),)
        # its own shuffling, from PyTorch's global generator (saved in checkpoints)
        return (DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True),)

    opts = dict(max_epochs=3, validation_data=PairDataset(X[:20], Y[:20]),
                validation_frequency=3)
    straight, info_s = ll.train_network(*data(), _layers(), _opts(**opts))
    ckpt = str(tmp_path / "ckpt")
    _, info_i = ll.train_network(*data(), _layers(), _opts(
        **opts, checkpoint_path=ckpt, output_fn=lambda i: i.iteration == 10))
    assert info_i.iterations == 10
    resumed, info_r = ll.train_network(*data(), _layers(), _opts(**opts), resume_from=ckpt)
    _same(straight, resumed)
    assert np.array_equal(info_r.training_loss, info_s.training_loss)
    assert np.array_equal(info_r.validation_loss, info_s.validation_loss, equal_nan=True)


def test_validation_from_a_shuffling_dataloader_pairs_its_own_labels():
    X, Y = _data()
    net, info = ll.train_network(X, Y, _layers(), _opts(validation_data=(X[:48], Y[:48])))
    loader = DataLoader(TensorDataset(X[:48], Y[:48]), batch_size=16, shuffle=True)
    _, info_l = ll.train_network(X, Y, _layers(), _opts(validation_data=loader))
    assert np.allclose(info.validation_loss, info_l.validation_loss, equal_nan=True, atol=1e-5)


def test_read_ahead_runs_the_next_reads_while_one_is_consumed():
    import threading
    started = [threading.Event() for _ in range(4)]

    def read(i):
        started[i].set()
        if i == 0:   # the first read finishes only once the second has started
            assert started[1].wait(timeout=30), "no read ahead"
        return i

    it = read_ahead(read, range(4), depth=2, workers=2)
    assert next(it) == 0 and started[1].is_set()
    assert list(it) == [1, 2, 3]
