"""``Layer.backward_uses``: the bridge keeps only what a hand-written
backward reads, passes None for the rest, and the derivatives stay right."""

import torch

import layerlab as ll
from layerlab.autograd_bridge import run_layer


class Scale(ll.Layer):
    """Z = w * X; backward reads only the memory (X itself, kept there)."""

    backward_uses = ("memory",)

    def __init__(self):
        super().__init__(name="scale")
        self.w = ll.Learnable(torch.tensor([3.0], dtype=torch.float64))
        self.seen = None

    def predict(self, X):
        return self.w * X

    def forward(self, X):
        return self.w * X, {"x": X}

    def backward(self, X, Z, dLdZ, memory):
        self.seen = (X, Z)
        return dLdZ * self.w, (dLdZ * memory["x"]).sum().reshape(1)


def saved_bytes(fn):
    """Bytes of the distinct storages autograd keeps for backward."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def test_backward_gets_none_for_what_it_does_not_use_and_is_right():
    layer = Scale().train()
    X = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    G = torch.randn(4, 5, dtype=torch.float64)
    dX, dw = torch.autograd.grad(run_layer(layer, (X,), True), (X, layer.w), G)
    assert layer.seen == (None, None)
    torch.testing.assert_close(dX, 3.0 * G)
    torch.testing.assert_close(dw, (G * X).sum().reshape(1))


def test_elu_keeps_x_and_memory_but_not_z():
    layer = ll.ELU(3).train()
    X = torch.randn(8, 3, 6, 6, requires_grad=True)
    Z, nbytes = saved_bytes(lambda: run_layer(layer, (X,), True))
    # X and the memory exp(min(X, 0)) - 1, each the size of X; Z is not kept
    assert nbytes == 2 * X.numel() * X.element_size()
    Z.sum().backward()
    assert X.grad is not None and layer.alpha.grad is not None
