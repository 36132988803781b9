"""``layer_statistics(net, X, Y)``: the amplitudes of one mini-batch, without training."""

from __future__ import annotations

import copy
from typing import Any, Iterable


from ..data import as_input_tensor
from ..errors import NetworkError
from .statistics import LayerStatistics, StatisticsRecorder

__all__ = ["layer_statistics"]


def layer_statistics(net, X: Any, Y: Any,
                     statistics: Iterable[str] = ("activations", "gradients")) -> LayerStatistics:
    """The per-layer statistics of one training-mode forward and backward
    pass on ``(X, Y)``, with no update: look at an initialization before
    training. The network is not changed (it runs on a copy, so batch
    normalization's running statistics and the output layer's classes stay
    as they were); ``update_ratio`` is NaN (there is no update).

    Args:
        net: a :class:`~layerlab.Network`, a list of layers or a graph, with
            an output layer (its loss is differentiated).
        X: one mini-batch of inputs ``(N, *input_size)``.
        Y: its targets (labels for classification).
        statistics: names or groups, see :mod:`layerlab.monitoring.statistics`.

    Returns:
        :class:`LayerStatistics` with one recorded iteration (numbered 1).

    Examples:
        >>> stats = ll.layer_statistics(layers, X[:128], Y[:128])   # doctest: +SKIP
        >>> ll.plot_layer_statistics(stats, "input_gradient_norm")   # doctest: +SKIP
    """
    from ..network.network import as_network
    net = copy.deepcopy(as_network(net))
    if net.output_layer is None:
        raise NetworkError("layer_statistics: the network needs an output layer (e.g. "
                           "Classification()) to differentiate its loss")
    Xt = as_input_tensor(X, net.input_size, "layer_statistics X", dtype=net.dtype)
    T = net.output_layer.prepare_targets(Y, Xt.shape[0])
    device = net.device
    Xt, T = Xt.to(device), T.to(device)
    recorder = StatisticsRecorder(net, statistics, frequency=1)
    net.train()
    recorder.begin(1)
    try:
        loss = net.loss(net(Xt, logits=True), T, from_logits=True)
        net.zero_grad(set_to_none=True)
        loss.backward()
    except Exception:
        recorder.cancel()
        raise
    recorder.after_backward(update_follows=False)
    recorder.after_update()
    return recorder.result()
