"""Pooling layers against PyTorch's functional ops and a hand computation."""

import pytest
import torch
import torch.nn.functional as F

import layerlab as ll


@pytest.mark.parametrize("kwargs, expected_size", [
    (dict(pool_size=2), (3, 4, 5)),                        # stride defaults to the pool size
    (dict(pool_size=3, stride=1), (3, 7, 9)),
    (dict(pool_size=(3, 2), stride=(2, 1), padding=1), (3, 5, 12)),
])
def test_max_and_average_pooling_match_torch(kwargs, expected_size):
    X = torch.randn(2, 3, 9, 11)
    k, s = kwargs["pool_size"], kwargs.get("stride", kwargs["pool_size"])
    p = kwargs.get("padding", 0)
    net = ll.Network([ll.ImageInput((3, 9, 11), normalization="none"),
                      ll.MaxPooling2d(**kwargs), ll.AveragePooling2d(**kwargs, name="avg")])
    assert net.sizes["maxpool_1"] == (expected_size,)
    torch.testing.assert_close(net.layer("maxpool_1").predict(X), F.max_pool2d(X, k, s, p))
    torch.testing.assert_close(net.layer("avg").predict(X),
                               F.avg_pool2d(X, k, s, p, count_include_pad=True))


def test_pooling_by_hand():
    X = torch.arange(16.).view(1, 1, 4, 4)
    torch.testing.assert_close(ll.MaxPooling2d(2).predict(X),
                               torch.tensor([[[[5., 7.], [13., 15.]]]]))
    torch.testing.assert_close(ll.AveragePooling2d(2).predict(X),
                               torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    torch.testing.assert_close(ll.GlobalAveragePooling2d().predict(X),
                               torch.tensor([[[[7.5]]]]))


def test_global_average_pooling_then_fully_connected():
    net = ll.Network([ll.ImageInput((6, 5, 7)), ll.GlobalAveragePooling2d(), ll.FullyConnected(3)])
    assert net.sizes["gap_1"] == ((6, 1, 1),)
    assert net.layer("fc_1").weights.shape == (3, 6)
    X = torch.randn(4, 6, 5, 7)
    torch.testing.assert_close(net.layer("gap_1").predict(X), X.mean((2, 3), keepdim=True))


def test_pooling_errors_name_the_layer():
    with pytest.raises(ll.NetworkError, match=r"'mp' \(MaxPooling2d\): pool \(5, 5\) is larger "
                                              r"than the padded input \(3, 3\)"):
        ll.Network([ll.ImageInput((1, 3, 3)), ll.MaxPooling2d(5, name="mp")])
    with pytest.raises(ll.NetworkError, match=r"'gap_1' \(GlobalAveragePooling2d\): expected "
                                              r"images \(C, H, W\), got input of size \(4,\)"):
        ll.Network([ll.FeatureInput(4), ll.GlobalAveragePooling2d()])
    with pytest.raises(ll.LayerError, match="AveragePooling2d padding: at most half"):
        ll.AveragePooling2d(2, padding=2)
    with pytest.raises(ll.LayerError, match="MaxPooling2d pool_size: expected an integer >= 1"):
        ll.MaxPooling2d(0)
