"""Output layers: the final activation and the loss."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..data import encode_labels
from ..layer import Layer, OutputLayer

__all__ = ["Softmax", "Classification"]


class Softmax(Layer):
    r"""Softmax over the channels: :math:`Z_{nk} = e^{X_{nk}} / \sum_j e^{X_{nj}}`.

    Shape: ``(N, K)`` to ``(N, K)``.
    """

    default_name = "softmax"

    def __init__(self, name: str | None = None):
        super().__init__(name=name, type="Softmax")
        self.description = "softmax"

    def predict(self, X):
        return torch.softmax(X, dim=1)


class Classification(OutputLayer):
    r"""Cross-entropy loss for ``K`` mutually exclusive classes, MATLAB's
    ``classificationLayer``:

    .. math::  L = -\frac{1}{N} \sum_n \log Y_{n, t_n}

    with ``Y`` the softmax scores ``(N, K)`` and ``t`` the class indices.
    ``classes`` (the labels, ints or strings, in index order) are taken from
    the training labels when training starts, unless given here.

    When a :class:`Softmax` layer feeds it, training computes the loss from
    the softmax's input with ``F.cross_entropy`` (the same value, more
    accurate and faster).
    """

    default_name = "classoutput"

    def __init__(self, classes: Sequence[Any] | None = None, name: str | None = None):
        super().__init__(name=name, type="Classification Output")
        self.classes = list(classes) if classes is not None else None
        self.description = "cross-entropy"

    def prepare_targets(self, Y, n):
        """Labels (ints or strings) as class indices; the classes are taken
        from the labels unless the layer already has them."""
        T, classes = encode_labels(Y, n, self.classes)
        self.classes = classes
        return T

    def metric(self, Y, T):
        """Accuracy: the fraction of observations whose largest score is the
        true class (works on scores and on logits alike)."""
        return (Y.argmax(dim=1) == T).float().mean()

    def loss(self, Y, T):
        p = Y.gather(1, T.view(-1, 1)).clamp_min(torch.finfo(Y.dtype).tiny)
        return -p.log().mean()

    def loss_from_logits(self, logits, T):
        return F.cross_entropy(logits, T)
