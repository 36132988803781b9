"""A zoo of deliberately wrong layers, each with one bug that
``check_layer`` must catch in the test named after it (``BUG``), and the
corrected seed ELU that must pass.

Importable by the command-line test: ``layerlab check
tests/zoo_wrong_layers.py:TypoELU --input-size 4 5 5 --args '[4]'``.
"""

import torch

import layerlab as ll
from layerlab.demo import SeedELU


class CorrectELU(SeedELU):
    """The seed post's ELU with the corrected backward (layerlab.demo.SeedELU)."""


class TypoELU(SeedELU):
    """The seed post's backward as first published: the minus one went inside
    the exponential, ``dLdAlpha = exp(min(X,0) - 1) .* dLdZ``."""

    BUG = "gradients"

    def backward(self, X, Z, dLdZ, memory):
        dLdX = dLdZ * torch.where(X > 0, 1.0, self.alpha + Z)
        dLdAlpha = torch.exp(X.clamp(max=0) - 1) * dLdZ             # the typo
        dLdAlpha = dLdAlpha.sum(dim=(0, 2, 3)).view(-1, 1, 1)
        return dLdX, dLdAlpha


class WrongSignTanh(ll.Layer):
    """tanh with the sign of its derivative wrong: 1 + Z^2 for 1 - Z^2."""

    BUG = "gradients"

    def predict(self, X):
        return torch.tanh(X)

    def backward(self, X, Z, dLdZ, memory):
        return (dLdZ * (1 + Z * Z),)


class UnsummedScale(ll.Layer):
    """Z = s * X with one scale per channel; dLds is not summed over the
    observations (size (N, C) instead of (C,))."""

    BUG = "backward_sizes"

    def __init__(self, num_channels=3):
        super().__init__()
        self.s = ll.Learnable(torch.linspace(0.5, 1.5, num_channels))

    def predict(self, X):
        return X * self.s.view(1, -1, 1, 1)

    def backward(self, X, Z, dLdZ, memory):
        return dLdZ * self.s.view(1, -1, 1, 1), (dLdZ * X).sum(dim=(2, 3))   # no sum over N


class WrongShapeInputDerivative(ll.Layer):
    """Z = 2 X with dLdX returned flattened, (N, C*H*W) instead of (N, C, H, W)."""

    BUG = "backward_sizes"

    def predict(self, X):
        return 2 * X

    def backward(self, X, Z, dLdZ, memory):
        return (2 * dLdZ.flatten(1),)


class Float64Output(ll.Layer):
    """Computes in float64 whatever the input: float64 out for float32 in."""

    BUG = "types"

    def predict(self, X):
        return torch.sin(X.double())


class UndeclaredBatchCoupling(ll.Layer):
    """Centers each feature over the mini-batch without declaring
    couples_observations (nor differs_in_training: predict does the same)."""

    BUG = "independent_observations"

    def predict(self, X):
        return X - X.mean(dim=0, keepdim=True)


class UndeclaredTrainingDifference(ll.Layer):
    """forward scales by 2, predict does not, without declaring
    differs_in_training."""

    BUG = "train_vs_predict"

    def predict(self, X):
        return X

    def forward(self, X):
        return 2 * X, None


class MissingParameterDerivative(ll.Layer):
    """backward returns dLdX only, forgetting the learnable's derivative."""

    BUG = "signatures"

    def __init__(self):
        super().__init__()
        self.b = ll.Learnable(torch.tensor([0.5]))

    def predict(self, X):
        return X + self.b

    def backward(self, X, Z, dLdZ, memory):
        return (dLdZ,)


class SqueezingLayer(ll.Layer):
    """Squeezes its output: one observation loses its batch dimension."""

    BUG = "output_size"

    def predict(self, X):
        return (3 * X).squeeze()


class ForgetsInputDerivativeWhenFrozen(ll.Layer):
    """Returns no dLdX when its scale is frozen (it should still give it)."""

    BUG = "frozen_learnables"

    def __init__(self):
        super().__init__()
        self.s = ll.Learnable(torch.tensor([1.5]))

    def predict(self, X):
        return self.s * X

    def backward(self, X, Z, dLdZ, memory):
        if not self.needs_gradient("s"):
            return None, None                       # the bug: dLdX is still needed
        return dLdZ * self.s, (dLdZ * X).sum().reshape(1)


class PredictUpdatesState(ll.Layer):
    """Counts calls in a State, in predict too (predict must only read it)."""

    BUG = "state"

    def __init__(self):
        super().__init__()
        self.calls = ll.State(torch.zeros(1))

    def predict(self, X):
        self.calls += 1
        return X * 1.0


WRONG_LAYERS = {
    # class: (constructor args, input size)
    TypoELU: ((4,), (4, 5, 5)),
    WrongSignTanh: ((), (3, 4)),
    UnsummedScale: ((3,), (3, 4, 4)),
    WrongShapeInputDerivative: ((), (2, 3, 3)),
    Float64Output: ((), (5,)),
    UndeclaredBatchCoupling: ((), (5,)),
    UndeclaredTrainingDifference: ((), (5,)),
    MissingParameterDerivative: ((), (5,)),
    SqueezingLayer: ((), (5,)),
    ForgetsInputDerivativeWhenFrozen: ((), (5,)),
    PredictUpdatesState: ((), (5,)),
}
