"""A zoo of deliberately wrong layers, each with one bug that
``check_layer`` must catch in the test named after it (``BUG``) and in no
other, and the corrected seed ELU that must pass. ``NEEDS`` names a bridge
feature a bug can only be seen with (second derivatives through a
hand-written backward).

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


class WhereELU(ll.Layer):
    """ELU written with torch.where: for large positive X the unselected
    branch exp(X) overflows and the gradient is inf * 0 = NaN."""

    BUG = "extreme_inputs"

    def predict(self, X):
        return torch.where(X > 0, X, torch.exp(X) - 1)


class InPlaceMemoryELU(SeedELU):
    """backward overwrites its memory (memory.mul_(dLdZ)): right the first
    time, wrong for a second backward over the same graph."""

    BUG = "backward_twice"

    def backward(self, X, Z, dLdZ, memory):
        dLdX = dLdZ * torch.where(X > 0, 1.0, self.alpha + Z)
        dLdAlpha = memory.mul_(dLdZ).sum(dim=(0, 2, 3)).view(-1, 1, 1)   # in place
        return dLdX, dLdAlpha


class InPlaceOutputGradientTanh(ll.Layer):
    """tanh whose backward scales dLdZ in place (dLdZ.mul_): the caller's
    gradient, which another branch of a graph may still use, changes."""

    BUG = "inputs_unchanged"

    def predict(self, X):
        return torch.tanh(X)

    def backward(self, X, Z, dLdZ, memory):
        return (dLdZ.mul_(1 - Z * Z),)


class ViewScale(ll.Layer):
    """predict flattens with .view(-1), which fails on non-contiguous,
    channels-last and expanded input."""

    BUG = "memory_layouts"

    def predict(self, X):
        return torch.tanh(X.view(-1)).view(X.shape)


class DetachedSecondDerivativeELU(SeedELU):
    """A backward that detaches Z: first derivatives right, the second
    derivative (through the backward) wrong."""

    BUG = "second_derivatives"
    NEEDS = "double_backward"

    def backward(self, X, Z, dLdZ, memory):
        dLdX = dLdZ * torch.where(X > 0, 1.0, self.alpha + Z.detach())
        dLdAlpha = (memory * dLdZ).sum(dim=(0, 2, 3)).view(-1, 1, 1)
        return dLdX, dLdAlpha


class UndeclaredNoise(ll.Layer):
    """Multiplies by fresh noise in training without declaring is_stochastic."""

    BUG = "determinism"
    differs_in_training = True

    def predict(self, X):
        return X

    def forward(self, X):
        return X * (1 + 0.1 * torch.rand_like(X)), None


class FlattenMinusOne(ll.Layer):
    """reshape(N, -1) is ambiguous for an empty batch (0 elements): fails on
    0 observations (flatten(1) would not)."""

    BUG = "observations"

    def predict(self, X):
        return torch.tanh(X.reshape(X.shape[0], -1)).reshape(X.shape)


class _OldStyleSquare(torch.autograd.Function):
    """An autograd.Function in the old style (ctx in forward, no
    setup_context): torch.func (vmap, grad) cannot use it."""

    @staticmethod
    def forward(ctx, X):
        ctx.save_for_backward(X)
        return X * X

    @staticmethod
    def backward(ctx, g):
        (X,) = ctx.saved_tensors
        return 2 * X * g


class OldStyleFunctionSquare(ll.Layer):
    """X^2 through an old-style autograd.Function."""

    BUG = "vmap"

    def predict(self, X):
        return _OldStyleSquare.apply(X)


class PlainAttributeGain(ll.Layer):
    """A constant tensor kept as a plain attribute (not State): layer.to()
    does not convert it, so float16 input comes out float32."""

    BUG = "low_precision"

    def __init__(self, num_channels=5):
        super().__init__()
        self.gain = torch.linspace(0.5, 1.5, num_channels)        # not State, not moved

    def predict(self, X):
        return X * self.gain


class CompiledShortcutELU(ll.Layer):
    """A 'fast path' taken only under torch.compile, which forgets the
    negative part."""

    BUG = "compile"

    def predict(self, X):
        if torch.compiler.is_compiling():
            return torch.relu(X)
        return torch.nn.functional.elu(X)


#: a setting the program changes at run time
SETTINGS = {"gain": 1.0}


class GlobalSettingGain(ll.Layer):
    """Reads a module-level setting in its constructor instead of taking it
    as an argument: a new process loads it with the default setting."""

    BUG = "save_load_fresh_process"

    @staticmethod
    def setup():
        SETTINGS["gain"] = 3.0               # the program's run-time change

    def __init__(self):
        super().__init__()
        self.gain = SETTINGS["gain"]

    def predict(self, X):
        return self.gain * X


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
    WhereELU: ((), (3, 4)),
    InPlaceMemoryELU: ((3,), (3, 4, 4)),
    InPlaceOutputGradientTanh: ((), (3, 4)),
    ViewScale: ((), (2, 3, 3)),
    DetachedSecondDerivativeELU: ((3,), (3, 4, 4)),
    UndeclaredNoise: ((), (5,)),
    FlattenMinusOne: ((), (2, 3)),
    OldStyleFunctionSquare: ((), (4,)),
    PlainAttributeGain: ((5,), (5,)),
    CompiledShortcutELU: ((), (4,)),
    GlobalSettingGain: ((), (4,)),
}
