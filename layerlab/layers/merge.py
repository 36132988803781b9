"""Merge layers: several inputs into one (residual connections,
Inception-style branches). In a :class:`~layerlab.LayerGraph` their inputs
are the ports ``"name/in1"``, ``"name/in2"``, ..."""

from __future__ import annotations

import torch

from ..errors import LayerError
from ..layer import Layer
from ._util import positive_int

__all__ = ["Addition", "Concatenation"]


def _num_inputs(value, what: str) -> int:
    n = positive_int(value, what)
    if n < 2:
        raise LayerError(f"{what}: expected at least 2 inputs, got {value!r}")
    return n


class Addition(Layer):
    r"""Element-wise sum of its inputs, MATLAB's ``additionLayer``:
    :math:`Z = X_1 + X_2 + \dots + X_k`.

    Args:
        num_inputs: ``k``, default 2.

    Shape: ``k`` inputs of the same size ``(N, *S)`` to ``(N, *S)``.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "add"

    def __init__(self, num_inputs: int = 2, name: str | None = None):
        super().__init__(name=name, type="Addition")
        self.num_inputs = _num_inputs(num_inputs, "Addition num_inputs")
        self.description = f"element-wise addition of {self.num_inputs} inputs"

    def initialize(self, input_sizes):
        self._check_sizes(input_sizes)

    def _check_sizes(self, input_sizes):
        sizes = [tuple(s) for s in input_sizes]
        if any(s != sizes[0] for s in sizes):
            raise LayerError(f"layer {self.label}: inputs must have the same size, "
                             f"got {', '.join(map(str, sizes))}")

    def predict(self, *X):
        self._check_sizes([x.shape[1:] for x in X])
        Z = X[0]
        for x in X[1:]:
            Z = Z + x
        return Z


class Concatenation(Layer):
    r"""Concatenation of its inputs along a dimension, MATLAB's
    ``concatenationLayer``: by default along the channels,
    :math:`Z = [X_1, X_2, \dots, X_k]`.

    Args:
        num_inputs: ``k``, default 2.
        dim: the dimension, counted as in the tensors ``(N, C, H, W)``:
            1 (default) is the channels; 0, the observations, is not allowed.

    Shape: inputs ``(N, C_i, *S)`` to ``(N, sum_i C_i, *S)`` for ``dim=1``;
    all other sizes must agree.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "concat"

    def __init__(self, num_inputs: int = 2, dim: int = 1, name: str | None = None):
        super().__init__(name=name, type="Concatenation")
        self.num_inputs = _num_inputs(num_inputs, "Concatenation num_inputs")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise LayerError(f"Concatenation dim: expected an integer >= 1 (1 = channels), "
                             f"got {dim!r}")
        self.dim = dim
        self.description = f"concatenation of {self.num_inputs} inputs along dimension {dim}"

    def initialize(self, input_sizes):
        self._check_sizes(input_sizes)

    def _check_sizes(self, input_sizes):
        sizes = [tuple(s) for s in input_sizes]
        d = self.dim - 1                    # sizes have no batch dimension
        if any(len(s) != len(sizes[0]) for s in sizes) or d >= len(sizes[0]):
            raise LayerError(f"layer {self.label}: cannot concatenate along dimension "
                             f"{self.dim} inputs of sizes {', '.join(map(str, sizes))}")
        rest = [s[:d] + s[d + 1:] for s in sizes]
        if any(r != rest[0] for r in rest):
            raise LayerError(f"layer {self.label}: inputs must agree in all but "
                             f"dimension {self.dim}, got {', '.join(map(str, sizes))}")

    def predict(self, *X):
        self._check_sizes([x.shape[1:] for x in X])
        return torch.cat(X, dim=self.dim)
