"""Predicting and testing as MATLAB's current workflow:
``minibatchpredict``, ``scores2label`` and ``testnet``.

Examples:
    >>> # scores = ll.minibatchpredict(net, Xtest)
    >>> # labels = ll.scores2label(scores, classes)
    >>> # ll.testnet(net, Xtest, Ytest, ["accuracy", "crossentropy"])
    >>> # {'accuracy': 0.97, 'crossentropy': 0.11}
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..data import as_input_tensor
from ..datastores.sources import as_data_source, is_data_source
from ..errors import DataError, NetworkError, OptionError
from ..network.network import Network
from ..validation import check_number
from .losses import LOSS_NAMES, REGRESSION, resolve_loss
from .metrics import metric_value, resolve_metric

__all__ = ["minibatchpredict", "scores2label", "testnet"]


def _is_array(X: Any) -> bool:
    """An array-like of observations (NumPy, tensor, memmap), not a data source."""
    return isinstance(X, (np.ndarray, torch.Tensor)) or (
        hasattr(X, "shape") and hasattr(X, "__getitem__")
        and not isinstance(X, torch.utils.data.Dataset))


def _batches(net: Network, data: Any, mini_batch_size: int, what: str,
             targets: bool) -> Iterator[tuple[torch.Tensor, Any]]:
    """``(x, y)`` mini-batches (``y`` None without targets) from an array,
    a torch ``Dataset`` of ``x`` or ``(x, y)`` items, a ``DataLoader`` or any
    iterable of such batches; ``x`` checked and on the network's device."""
    device, dtype = net.device, net.dtype
    if is_data_source(data):     # Dataset, DataLoader, datastore (layerlab/datastores)
        src = as_data_source(data).bind(net.input_size, dtype, what)
        for xb in src.inference_batches(mini_batch_size):
            yield xb.to(device), None
        return
    if isinstance(data, (np.ndarray, torch.Tensor)) or hasattr(data, "shape"):
        X = data
        n = X.shape[0]
        for start in range(0, n, mini_batch_size):
            xb = as_input_tensor(X[start:start + mini_batch_size], net.input_size,
                                 f"{what} (observations {start}-)", dtype=dtype)
            yield xb.to(device), None
        return
    try:
        it = iter(data)
    except TypeError:
        raise DataError(f"{what}: expected an array, a torch Dataset or DataLoader, or an "
                        f"iterable of mini-batches, got {type(data).__name__}") from None
    for k, batch in enumerate(it):
        if isinstance(batch, (tuple, list)):
            if len(batch) < 1:
                raise DataError(f"{what}: mini-batch {k} is empty")
            xb, yb = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            xb, yb = batch, None
        if targets and yb is None:
            raise DataError(f"{what}: mini-batch {k} has no targets; testnet needs (x, y) "
                            f"pairs")
        xb = as_input_tensor(xb, net.input_size, f"{what} mini-batch {k}", dtype=dtype)
        yield xb.to(device), yb


def _check_net(net: Any, fn: str) -> Network:
    if not isinstance(net, Network):
        raise NetworkError(f"{fn}: expected a trained layerlab Network, got "
                           f"{type(net).__name__}")
    return net


def minibatchpredict(net: Network, data: Any, mini_batch_size: int = 128):
    """The network's outputs (class scores ``(N, K)`` after a softmax) for
    every observation of ``data`` (an array ``(N, *input_size)``, a torch
    ``Dataset``/``DataLoader``, or an iterable of mini-batches), in
    inference mode, ``mini_batch_size`` at a time. A NumPy array for all
    inputs but a tensor (then a tensor on the network's device).

    Examples:
        >>> # scores = ll.minibatchpredict(net, Xtest)      # (N, 10)
    """
    net = _check_net(net, "minibatchpredict")
    mini_batch_size = check_number(mini_batch_size, "minibatchpredict mini_batch_size", 1,
                                   integer=True)
    was_training = net.training
    net.eval()
    parts = []
    try:
        with torch.inference_mode():
            for xb, _ in _batches(net, data, mini_batch_size, "minibatchpredict data", False):
                parts.append(net(xb))
    finally:
        net.train(was_training)
    Y = torch.cat(parts) if parts else torch.empty(0)
    return Y if isinstance(data, torch.Tensor) else Y.cpu().numpy()


def scores2label(scores: Any, classes: Sequence[Any]) -> np.ndarray:
    """The class of the largest score of each row: ``classes[argmax]``
    (MATLAB's ``scores2label``).

    Examples:
        >>> scores2label(np.array([[0.1, 0.9], [0.8, 0.2]]), ["cat", "dog"]).tolist()
        ['dog', 'cat']
    """
    S = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    classes = list(classes)
    if S.ndim != 2 or S.shape[1] != len(classes):
        raise DataError(f"scores2label: expected scores (N, {len(classes)}) for the "
                        f"{len(classes)} classes, got size {S.shape}")
    return np.asarray(classes)[S.argmax(axis=1)]


def testnet(net: Network, X: Any, Y: Any = None, metrics: Any = ("accuracy",),
            mini_batch_size: int = 128, classes: Sequence[Any] | None = None
            ) -> dict[str, float]:
    """Each metric (and loss, by name) of ``net`` on test data, by name
    (MATLAB's ``testnet``): ``testnet(net, X, Y, metrics)`` or
    ``testnet(net, data, metrics)`` with ``data`` yielding ``(x, y)``.

    ``metrics``: names of metrics ("accuracy", "fscore", ...) and of losses
    ("crossentropy", "mse", ...), functions ``f(Y, T)`` or update-compute
    objects. Class labels are mapped to the network's classes (its
    ``Classification`` layer's) or ``classes``; else the sorted labels of
    ``Y`` when they are as many as the network's outputs. Metrics are in
    fractions (accuracy 0.97, not 97).

    Examples:
        >>> # ll.testnet(net, Xtest, Ytest, ["accuracy", "fscore"])
    """
    net = _check_net(net, "testnet")
    if not _is_array(X) and Y is not None:     # testnet(net, data, metrics)
        metrics, Y = Y, None
    if is_data_source(X):                       # its targets, all at once
        Y = as_data_source(X).targets()
    if _is_array(X) and Y is None:
        raise DataError("testnet: got inputs X without targets; call testnet(net, X, Y, "
                        "metrics) or testnet(net, data, metrics) with data yielding (x, y)")
    specs = [metrics] if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)) \
        else list(metrics)
    if not specs:
        raise OptionError("testnet: give at least one metric or loss name")
    loss_names = [s for s in specs if isinstance(s, str) and s.strip().lower() in LOSS_NAMES]
    out_size = net.sizes[net.layers[-2 if net.output_layer is not None else -1].name][0]
    # the task, and the targets' encoding, from the first loss named or the labels
    probe = resolve_loss(loss_names[0]) if loss_names else None
    net_classes = list(classes) if classes is not None else net.classes

    def targets(y, n):
        nonlocal probe
        if probe is None:
            arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
            is_labels = arr.ndim == 1 and arr.dtype.kind in "iuUSOb"
            probe = resolve_loss("crossentropy" if is_labels else "mse")
        if probe.task != REGRESSION and probe.classes is None:
            if net_classes is not None:
                probe.classes = list(net_classes)
            elif n_all_labels is not None:
                probe.classes = n_all_labels
        return probe.prepare_targets(y, n, out_size, what="testnet Y")

    n_all_labels = None
    if Y is not None:
        arr = Y.detach().cpu().numpy() if isinstance(Y, torch.Tensor) else np.asarray(Y)
        if arr.ndim == 1 and arr.dtype.kind in "iuUSOb" and net_classes is None:
            n_all_labels = np.unique(arr).tolist()
        n = X.shape[0] if _is_array(X) else len(as_data_source(X))
        if arr.shape[0] != n:
            raise DataError(f"testnet: got {arr.shape[0]} targets for {n} observations in X")
    # resolve after the task is known: from the first batch
    objs: list | None = None
    losses = {}
    weight = 0
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            pos = 0
            for xb, yb in _batches(net, X, mini_batch_size, "testnet data", Y is None):
                b = xb.shape[0]
                if Y is not None:
                    yb = Y[pos:pos + b]
                pos += b
                T = targets(yb, b).to(xb.device)
                if objs is None:
                    objs = []
                    for s in specs:
                        if isinstance(s, str) and s.strip().lower() in LOSS_NAMES:
                            objs.append(("loss", s.strip().lower(), resolve_loss(s)))
                        else:
                            m = resolve_metric(s, probe.task)
                            m.reset()
                            objs.append(("metric", m.name, m))
                Z = net(xb)
                for kind, name, obj in objs:
                    if kind == "loss":
                        losses[name] = losses.get(name, 0.0) + float(obj(Z, T)) * b
                    else:
                        obj.update(Z, T)
                weight += b
    finally:
        net.train(was_training)
    if objs is None:
        raise DataError("testnet: the data has no observations")
    return {name: (losses[name] / weight if kind == "loss" else metric_value(obj.compute(), name))
            for kind, name, obj in objs}


testnet.__test__ = False   # a MATLAB name, not a test: pytest must not collect it
