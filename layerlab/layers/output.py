"""Output layers: the final activation and the loss."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F


from ..data import encode_labels, numeric_targets
from ..errors import DataError
from ..layer import Layer, OutputLayer

__all__ = ["Softmax", "Classification", "Regression"]


class Softmax(Layer):
    r"""Softmax over the channels: :math:`Z_{nk} = e^{X_{nk}} / \sum_j e^{X_{nj}}`.

    Shape: ``(N, K)`` to ``(N, K)``.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

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

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

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

    def takes_logits_from(self, layer):
        """A :class:`Softmax` feeding this layer is fused into the loss."""
        return isinstance(layer, Softmax)

    def loss_from_logits(self, logits, T):
        """``F.cross_entropy(logits, T)``: the loss of ``softmax(logits)``."""
        return F.cross_entropy(logits, T)


class Regression(OutputLayer):
    r"""Half mean squared error for regression, MATLAB's ``regressionLayer``:

    .. math::  L = \frac{1}{2N} \sum_{n=1}^{N} \sum_{i=1}^{R} (Y_{ni} - T_{ni})^2

    (half the squared error of each observation, summed over its ``R``
    responses and averaged over the mini-batch, not divided by ``R``, as in
    MATLAB). The training table shows the root mean squared error
    :math:`\sqrt{\frac{1}{NR} \sum_{n,i} (Y_{ni} - T_{ni})^2}` (``RMSE``).

    A network ending in this layer predicts values: ``layerlab.predict(net,
    X)`` returns the network's responses ``(N, R)``.

    Shape: responses ``(N, R)`` (or ``(N, *S)``); targets ``(N,)`` for one
    response or ``(N, R)``.
    """

    capturable = True   # pure tensor code: a GPU step may be a CUDA graph

    default_name = "regressionoutput"
    metric_name = "RMSE"
    metric_is_percentage = False

    def __init__(self, name: str | None = None):
        super().__init__(name=name, type="Regression Output")
        self.description = "half mean squared error"

    def prepare_targets(self, Y: Any, n: int) -> torch.Tensor:
        """Numeric targets ``(n,)`` or ``(n, R)`` as a float tensor ``(n, R)``."""
        T = numeric_targets(Y, n, f"layer '{self.name}' (Regression)")
        return T.reshape(n, 1) if T.dim() == 1 else T

    def _match(self, Y: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        if T.numel() != Y.numel() or T.shape[0] != Y.shape[0]:
            raise DataError(f"layer '{self.name}' (Regression): the network gives responses "
                            f"of size {tuple(Y.shape)} but the targets have size "
                            f"{tuple(T.shape)}")
        return T.reshape(Y.shape).to(Y.dtype)

    def loss(self, Y, T):
        T = self._match(Y, T)
        return 0.5 * (Y - T).square().sum() / Y.shape[0]

    def metric(self, Y, T):
        """Root mean squared error over all responses of the mini-batch."""
        T = self._match(Y, T)
        return (Y - T).square().mean().sqrt()
