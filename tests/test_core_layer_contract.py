"""The Layer contract: learnables, state, freezing, factors, config, the
hand-written backward bridge and its checks."""

import gc
import weakref

import pytest
import torch

import layerlab as ll
from layerlab.autograd_bridge import run_layer


class Scale(ll.Layer):
    """Z = w * X with a hand-written backward that records what was asked."""

    def __init__(self, learnable=True):
        super().__init__(type="Scale")
        self.w = ll.Learnable(torch.tensor([2.0]), learnable=learnable, learn_rate_factor=0.5)
        self.asked = None

    def predict(self, X):
        return self.w * X

    def backward(self, X, Z, dLdZ, memory):
        self.asked = (self.needs_gradient(0), self.needs_gradient("w"))
        dLdX = dLdZ * self.w if self.needs_gradient(0) else None
        dLdW = (dLdZ * X).sum().reshape(1) if self.needs_gradient("w") else None
        return dLdX, dLdW


def test_learnable_reads_as_a_tensor_and_is_a_parameter():
    s = Scale()
    assert isinstance(s.w, torch.Tensor)
    assert [n for n, _ in s.named_parameters()] == ["w"]
    assert s.learnable_names == ["w"]
    assert s.learn_rate_factor("w") == 0.5 and s.l2_factor("w") == 1.0


def test_layer_without_super_init_still_works():
    class NoSuper(ll.Layer):
        def __init__(self):
            self.a = ll.Learnable(1.0)

        def predict(self, X):
            return X * self.a

    layer = NoSuper()
    assert layer.learnable_names == ["a"]
    assert torch.equal(layer.predict(torch.ones(2)), torch.ones(2))


def test_freeze_and_unfreeze_at_run_time():
    s = Scale()
    assert s.is_learnable("w")
    s.freeze("w")
    assert not s.is_learnable("w") and not s.w.requires_grad
    s.unfreeze()
    assert s.is_learnable("w")
    assert not Scale(learnable=False).is_learnable("w")
    with pytest.raises(ll.LayerError, match="no learnable 'v'.*\\['w'\\]"):
        s.freeze("v")


def test_hand_written_backward_is_used_and_told_what_is_needed():
    s = Scale()
    s.train()
    x = torch.tensor([1.0, 3.0], requires_grad=True)
    z = run_layer(s, (x,), training=True)
    z.sum().backward()
    assert s.asked == (True, True)
    assert torch.equal(x.grad, torch.tensor([2.0, 2.0]))
    assert torch.equal(s.w.grad, torch.tensor([4.0]))
    # frozen parameter and an input that needs no gradient: nothing is asked
    s.freeze("w")
    x2 = torch.tensor([1.0, 3.0], requires_grad=True)
    run_layer(s, (x2,), training=True).sum().backward()
    assert s.asked == (True, False)


def test_backward_with_wrong_shape_or_count_is_a_clear_error():
    class BadShape(Scale):
        def backward(self, X, Z, dLdZ, memory):
            return dLdZ * self.w, torch.ones(3)

    class BadCount(Scale):
        def backward(self, X, Z, dLdZ, memory):
            return (dLdZ,)

    for cls, msg in ((BadShape, r"dLdw has size \(3,\), expected \(1,\)"),
                     (BadCount, r"must return 2 derivatives \(dLdX, dLdw\), got 1")):
        layer = cls()
        x = torch.ones(2, requires_grad=True)
        with pytest.raises(ll.LayerError, match=msg):
            run_layer(layer, (x,), training=True).sum().backward()


def test_memory_is_freed_with_the_graph():
    """Tensors kept for backward go through save_for_backward: once the
    output is gone, nothing keeps the memory value alive."""
    kept = []

    class Mem(ll.Layer):
        def predict(self, X):
            return X * 2

        def forward(self, X):
            m = X * 1.0
            kept.append(weakref.ref(m))
            return X * 2, {"m": m, "note": "not a tensor"}

        def backward(self, X, Z, dLdZ, memory):
            assert memory["note"] == "not a tensor"
            return dLdZ * 2 + 0 * memory["m"]

    layer = Mem()
    x = torch.ones(1000, requires_grad=True)
    z = run_layer(layer, (x,), training=True)
    z.sum().backward()
    assert torch.equal(x.grad, torch.full((1000,), 2.0))
    del z
    gc.collect()
    assert kept[0]() is None


def test_state_is_a_buffer_updated_by_assignment():
    class Counter(ll.Layer):
        def __init__(self):
            super().__init__()
            self.count = ll.State(torch.zeros(()))

        def predict(self, X):
            return X

        def forward(self, X):
            self.count = self.count + 1
            return X, None

    c = Counter()
    assert c.state_names == ["count"] and "count" in c.state_dict()
    run_layer(c, (torch.ones(1),), training=True)
    run_layer(c, (torch.ones(1),), training=False)
    assert float(c.count) == 1.0


def test_config_records_constructor_arguments():
    conv = ll.Convolution2d(3, 8, padding="same", name="c1")
    assert conv.config["filter_size"] == 3 and conv.config["num_filters"] == 8
    assert conv.config["padding"] == "same" and conv.config["name"] == "c1"


def test_bad_learnable_and_names_are_clear_errors():
    with pytest.raises(ll.LayerError, match="learn_rate_factor must be a finite number >= 0"):
        class L(ll.Layer):
            def __init__(self):
                self.a = ll.Learnable(1.0, learn_rate_factor=-1)
        L()
    with pytest.raises(ll.LayerError, match="layer name"):
        ll.ReLU(name="has space")
    with pytest.raises(ll.LayerError, match="expected a tensor, array or number"):
        class M(ll.Layer):
            def __init__(self):
                self.a = ll.Learnable(object())
        M()


def test_missing_predict_names_the_layer():
    class NoPredict(ll.Layer):
        pass
    with pytest.raises(NotImplementedError, match="must define predict"):
        NoPredict().predict(torch.ones(1))
