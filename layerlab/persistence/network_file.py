"""``save(net, path)`` / ``load(path)``: a network as one safetensors file.

The file holds the network's tensors under ``net.<state-dict key>`` (the
learnables and the State buffers, so normalization statistics and batch-norm
running statistics travel with the weights) and, in the safetensors
metadata under ``"layerlab"``, JSON describing:

* each layer: its class import path (``"mypackage.layers.MyELU"``), its
  constructor arguments (:attr:`Layer.config`), its name, frozen learnables,
  learn-rate and L2 factors, and class labels of a classification layer;
* the graph's connections (``"conv_1/out" -> "bn_1/in"``);
* a SHA-256 digest of the tensors, so a corrupted file is detected.

Checkpoints are the same kind of file with extra tensors and metadata
(:mod:`layerlab.training.checkpoint`), so ``load`` opens them too.
Loading never unpickles; it imports the modules that define the layer
classes (as the user's own code would) and refuses classes that are not
``layerlab.Layer`` subclasses.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

import torch

from ..errors import LayerlabError, PersistenceError
from ..layer import Layer
from ..network.graph import LayerGraph
from ..network.network import Network, as_network
from .config_json import decode, encode, import_path, resolve

__all__ = ["save", "load", "architecture", "network_from_architecture",
           "write_file", "read_file", "FORMAT"]

FORMAT = "layerlab-network"
VERSION = 1
_NET = "net."


def architecture(net: Network) -> dict[str, Any]:
    """The JSON-ready description of ``net`` (no tensors)."""
    layers = []
    for layer in net.graph.layers:
        where = f"layer '{layer.name}' ({type(layer).__name__})"
        path = import_path(layer)
        if "<locals>" in path:
            raise PersistenceError(f"{where}: its class is defined inside a function "
                                   f"({path}), so it cannot be found when loading; define it "
                                   f"at module level")
        entry: dict[str, Any] = {
            "class": path, "name": layer.name,
            "config": {k: encode(v, f"{where} argument {k}") for k, v in layer.config.items()},
        }
        frozen = [n for n in layer.learnable_names if not layer.is_learnable(n)]
        if frozen:
            entry["frozen"] = frozen
        lrf = {n: layer.learn_rate_factor(n) for n in layer.learnable_names
               if layer.learn_rate_factor(n) != 1.0}
        l2f = {n: layer.l2_factor(n) for n in layer.learnable_names if layer.l2_factor(n) != 1.0}
        if lrf:
            entry["learn_rate_factors"] = lrf
        if l2f:
            entry["l2_factors"] = l2f
        classes = getattr(layer, "classes", None)
        if classes is not None:
            entry["classes"] = encode(list(classes), f"{where} classes")
        layers.append(entry)
    return {"format": FORMAT, "version": VERSION, "layers": layers,
            "connections": [list(c) for c in net.graph.connections]}


def network_from_architecture(arch: dict[str, Any]) -> Network:
    """A new network (fresh weights) built from :func:`architecture`'s output."""
    try:
        graph = LayerGraph()
        built = []
        for entry in arch["layers"]:
            cls = resolve(entry["class"], "layer")
            if not (isinstance(cls, type) and issubclass(cls, Layer)):
                raise PersistenceError(f"{entry['class']!r} in the file is not a "
                                       f"layerlab.Layer class; refusing to build it")
            kwargs = {k: decode(v) for k, v in entry["config"].items()}
            if "name" in kwargs:
                kwargs["name"] = entry["name"]
            try:
                layer = cls(**kwargs)
            except LayerlabError:
                raise
            except Exception as exc:  # noqa: BLE001 - user code: add context
                raise PersistenceError(f"layer '{entry['name']}': {entry['class']}(**{kwargs!r:.200}) "
                                       f"failed: {type(exc).__name__}: {exc}") from exc
            layer.name = entry["name"]
            if "classes" in entry:
                layer.classes = decode(entry["classes"])
            graph.add_layers(layer)
            built.append((layer, entry))
        for src, dst in arch["connections"]:
            graph.connect(src, dst)
        net = Network(graph)
        for layer, entry in built:
            for n in entry.get("frozen", []):
                layer.freeze(n)
            for n, f in entry.get("learn_rate_factors", {}).items():
                layer.set_learn_rate_factor(n, f)
            for n, f in entry.get("l2_factors", {}).items():
                layer.set_l2_factor(n, f)
        return net
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PersistenceError):
            raise
        raise PersistenceError(f"the file's architecture is malformed or does not build: "
                               f"{type(exc).__name__}: {exc}") from exc


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
               meta: dict[str, Any]) -> None:
    """Write tensors and JSON metadata atomically: to a temporary file in the
    same folder, flushed to disk, then renamed over ``path`` (a crash leaves
    the old file intact)."""
    from safetensors.torch import save_file
    path = os.fspath(path)
    if os.path.isdir(path):
        raise PersistenceError(f"cannot save to {path!r}: it is a folder; give a file name "
                               f"such as {os.path.join(path, 'net.safetensors')!r}")
    folder = os.path.dirname(os.path.abspath(path))
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = dict(meta, sha256=_digest(tensors))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=folder)
    except OSError as exc:
        raise PersistenceError(f"cannot save to {path!r}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"layerlab": json.dumps(meta)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); a saved network gets the
        # permissions any file the user writes gets (0666 less the umask)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a layerlab file; :class:`PersistenceError`
    for a missing, truncated, corrupted or foreign file."""
    from safetensors import SafetensorError
    from safetensors.torch import load
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PersistenceError(f"no such file: {path!r}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        header_len = int.from_bytes(raw[:8], "little")
        if len(raw) < 8 or header_len > len(raw) - 8:
            raise PersistenceError(f"{path!r} is truncated or not a layerlab file "
                                   f"(its header is incomplete)")
        header = json.loads(raw[8:8 + header_len])
        tensors = load(raw)
    except PersistenceError:
        raise
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise PersistenceError(f"{path!r} is truncated, corrupted or not a layerlab file: "
                               f"{exc}") from exc
    meta_text = (header.get("__metadata__") or {}).get("layerlab")
    if meta_text is None:
        raise PersistenceError(f"{path!r} is a safetensors file but not a layerlab one "
                               f"(no 'layerlab' metadata)")
    try:
        meta = json.loads(meta_text)
    except ValueError as exc:
        raise PersistenceError(f"{path!r}: its layerlab metadata is not valid JSON: {exc}") from exc
    if meta.get("format") != FORMAT or "sha256" not in meta:
        raise PersistenceError(f"{path!r}: unknown format {meta.get('format')!r}")
    if meta["sha256"] != _digest(tensors):
        raise PersistenceError(f"{path!r} is corrupted: its tensors do not match the "
                               f"checksum written with them")
    return tensors, meta


def save(net: Network | Any, path: str | os.PathLike) -> None:
    """Save a network (architecture, weights, normalization statistics,
    classes) to ``path`` (a ``.safetensors`` file)."""
    net = as_network(net)
    tensors = {_NET + k: v for k, v in net.state_dict().items()}
    write_file(path, tensors, architecture(net))


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Network:
    """Load a network saved by :func:`save` (or a training checkpoint).

    Layer classes are found by their import path: import (or install) the
    module that defines a user layer before loading. Raises
    :class:`PersistenceError` for a missing, truncated or corrupted file,
    or a class that cannot be found (naming it).
    """
    tensors, meta = read_file(path)
    net = network_from_architecture(meta)
    state = {k[len(_NET):]: v for k, v in tensors.items() if k.startswith(_NET)}
    load_state(net, state, path)
    net.eval()
    return net.to(device)


def load_state(net: Network, state: dict[str, torch.Tensor], path: Any) -> None:
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise PersistenceError(f"{path!r}: the weights do not fit the architecture "
                               f"(missing {missing[:5]}, unexpected {extra[:5]})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise PersistenceError(f"{path!r}: tensor {k!r} has size {tuple(v.shape)}, the "
                                   f"layer expects {tuple(own[k].shape)}")
    net.load_state_dict(state)
