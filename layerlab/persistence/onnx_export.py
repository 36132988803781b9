"""``export_onnx(net, path)``: a network for inference, as an ONNX file.

Uses PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``), which still works in torch 2.13 and needs no extra
package (the newer exporter needs ``onnxscript``). The exported graph is the
network's ``predict`` (inference mode: batch norm with its trained
statistics, dropout off), with a dynamic batch dimension; it is checked by
running it with onnxruntime (when installed) on random inputs and comparing
with the network's own outputs.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import numpy as np
import torch

from ..errors import PersistenceError
from ..network.network import Network, as_network
from ..optional import missing_message, require

__all__ = ["export_onnx"]


class _Predict(torch.nn.Module):
    def __init__(self, net: Network):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def _export(module: torch.nn.Module, example: torch.Tensor, target: Any, opset: int) -> None:
    # in eval mode: the exporter restores the wrapper's mode afterwards, and
    # would put the network back in training mode otherwise
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice
        torch.onnx.export(module, (example,), target, dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})


class _OneLayer(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


def _culprit(net: Network, example: torch.Tensor, opset: int) -> str | None:
    """The first layer that does not export on its own (single-input layers
    of a chain), to name in the error."""
    with torch.no_grad():
        x = example
        for i, layer in enumerate(net.layers):
            if layer is net.output_layer:
                break
            try:
                _export(_OneLayer(layer), x, io.BytesIO(), opset)
            except Exception as exc:  # noqa: BLE001 - we only name the layer
                return f"layer '{layer.name}' ({type(layer).__name__}): {type(exc).__name__}: {exc}"
            try:
                x = net(example, until=i)
            except Exception:  # noqa: BLE001 - several inputs etc.: stop looking
                return None
            if isinstance(x, tuple):
                return None
    return None


def export_onnx(net: Network | Any, path: str | os.PathLike, *, opset: int = 17,
                verify: bool = True, atol: float = 1e-4) -> str:
    """Export ``net`` for inference to the ONNX file ``path`` and return it.

    The file takes ``input`` of size ``(N, *net.input_size)`` (float32) and
    gives ``output``, what :func:`layerlab.predict` gives (e.g. softmax
    scores). With ``verify`` (default), the file is run with onnxruntime on
    random inputs and its outputs compared with the network's (absolute
    tolerance ``atol``); a mismatch raises :class:`PersistenceError`.
    A layer that cannot be exported raises :class:`PersistenceError` naming it.
    """
    require("onnx", feature="export_onnx", extra="onnx")   # torch's exporter needs it
    net = as_network(net)
    was_training = net.training
    device = net.device
    net.eval()
    net.to("cpu")
    path = os.fspath(path)
    example = torch.rand((2, *net.input_size))
    try:
        try:
            with torch.no_grad():
                _export(_Predict(net), example, path, opset)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
            which = _culprit(net, example, opset)
            raise PersistenceError(
                f"export_onnx: the network cannot be exported to ONNX: "
                f"{which or f'{type(exc).__name__}: {exc}'}. Layers whose predict uses "
                f"operations that ONNX lacks, Python control flow on tensor values or "
                f"NumPy cannot be exported") from exc
        if verify:
            _verify(net, path, atol)
    finally:
        net.to(device)
        net.train(was_training)
    return path


def _verify(net: Network, path: str, atol: float) -> None:
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - onnxruntime is optional
        warnings.warn(missing_message("onnxruntime", feature="export_onnx's check",
                                      extra="onnx") + "; the file was not verified")
        return
    X = torch.rand((5, *net.input_size)) * 2 - 1
    with torch.no_grad():
        want = net(X).numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": X.numpy()})[0]
    if got.shape != want.shape or not np.allclose(got, want, atol=atol, rtol=1e-4):
        err = np.max(np.abs(got - want)) if got.shape == want.shape else "shape"
        raise PersistenceError(f"export_onnx: onnxruntime's outputs differ from the network's "
                               f"(max difference {err}); the file {path!r} is not faithful")
