"""``save(net, path)`` / ``load(path)``: a network as one safetensors file.

The file holds the network's tensors under ``net.<state-dict key>`` (the
learnables and the State buffers, so normalization statistics and batch-norm
running statistics travel with the weights), in their own dtypes, and, in
the safetensors metadata under ``"layerlab"``, JSON describing:

* each layer: its class import path (``"mypackage.layers.MyELU"``), its
  constructor arguments (:attr:`Layer.config`), its name, frozen learnables,
  learn-rate and L2 factors, and class labels of a classification layer;
* the graph's connections (``"conv_1/out" -> "bn_1/in"``);
* the format version, and a SHA-256 digest of all of the above and of every
  tensor, so that a corrupted or edited file is detected.

Checkpoints are the same kind of file with extra tensors and metadata
(:mod:`layerlab.training.checkpoint`), so ``load`` opens them too.

A file is untrusted input. Loading never unpickles, never imports a module
and never calls anything the file names: the classes a file may name and
the values its arguments may hold are listed in :mod:`.registry`; the
fields are checked by :mod:`.validate`, and the stored tensors' sizes and
dtypes are compared with what the architecture implies (built on PyTorch's
``meta`` device, which allocates nothing) before any weight is allocated.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
import warnings
from typing import Any, Iterable

import torch

from ..errors import PersistenceError
from ..network.graph import LayerGraph
from ..network.network import Network, as_network
from .config_json import decode, encode
from .registry import class_path, find_layer_class, is_builtin
from .validate import check_architecture, check_tensors

__all__ = ["save", "load", "architecture", "network_from_file", "write_file", "read_file",
           "load_state", "FORMAT", "VERSION"]

FORMAT = "layerlab-network"
VERSION = 2          # 2: the checksum covers the metadata too; value types by tag
_NET = "net."
_TMP_PREFIX = ".layerlab-tmp-"
_TMP_RE = re.compile(r"^\.layerlab-tmp-(\d+)-.*\.safetensors$")


# ---------------------------------------------------------------------------
# the architecture: network <-> JSON
# ---------------------------------------------------------------------------
def architecture(net: Network) -> dict[str, Any]:
    """The JSON-ready description of ``net`` (no tensors)."""
    layers = []
    for layer in net.graph.layers:
        where = f"layer '{layer.name}' ({type(layer).__name__})"
        path = class_path(type(layer))
        if "<locals>" in path:
            raise PersistenceError(f"{where}: its class is defined inside a function "
                                   f"({path}), so it cannot be found when loading; define it "
                                   f"at module level")
        # layerlab's convention: every argument taking an initializer is named
        # *_initializer; there a user's function (which no file can hold) is unsaved
        entry: dict[str, Any] = {
            "class": path, "name": layer.name,
            "config": {k: encode(v, f"{where} argument {k}",
                                 initializer=k.endswith("_initializer"))
                       for k, v in layer.config.items()},
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
            entry["classes"] = [encode(c, f"{where} classes") for c in classes]
        layers.append(entry)
    return {"format": FORMAT, "version": VERSION, "layers": layers,
            "connections": [list(c) for c in net.graph.connections]}


def _build(arch: dict[str, Any], classes: list[type], path: Any) -> Network:
    """A network from a checked architecture and its (allowed) classes."""
    graph = LayerGraph()
    built = []
    for entry, cls in zip(arch["layers"], classes):
        where = f"layer '{entry['name']}' ({cls.__name__})"
        kwargs = {k: decode(v, f"{path!r}: {where} argument {k!r}")
                  for k, v in entry["config"].items()}
        if "name" in kwargs:
            kwargs["name"] = entry["name"]
        try:
            layer = cls(**kwargs)
            layer.name = entry["name"]
            if "classes" in entry:
                layer.classes = [decode(c, f"{where} classes") for c in entry["classes"]]
            graph.add_layers(layer)
        except Exception as exc:  # noqa: BLE001 - user code too: add the file and layer
            raise PersistenceError(f"{path!r}: {where} could not be built from the file's "
                                   f"arguments {kwargs!r:.200}: {type(exc).__name__}: "
                                   f"{exc}") from exc
        built.append((layer, entry))
    try:
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
    except Exception as exc:  # noqa: BLE001 - a network error or a user layer's
        raise PersistenceError(f"{path!r}: the file's network does not build: "
                               f"{type(exc).__name__}: {exc}") from exc
    return net


def _meta_tensors_left(net: Network) -> bool:
    """Whether a layer holds a tensor outside its learnables and State
    (still on the ``meta`` device after loading the stored tensors)."""
    for module in net.modules():
        for v in list(vars(module).values()) + list(module._parameters.values()) \
                + list(module._buffers.values()):
            items = v if isinstance(v, (list, tuple)) else (v,)
            if any(isinstance(t, torch.Tensor) and t.is_meta for t in items):
                return True
    return False


def network_from_file(arch: dict[str, Any], state: dict[str, torch.Tensor], path: Any,
                      custom_layers: Iterable[type] = ()) -> Network:
    """The network a checked file describes, holding its stored tensors.

    It is first built on the ``meta`` device (sizes only, nothing allocated)
    and the stored tensors are compared with the sizes it implies; they then
    become the network's tensors. A user layer that fails on ``meta``, or
    keeps tensors outside its learnables and State, is then built for real.
    """
    classes = [find_layer_class(e["class"], custom_layers) for e in arch["layers"]]
    net: Network | None = None
    try:
        with torch.device("meta"):
            net = _build(arch, classes, path)
    except PersistenceError:
        if all(is_builtin(c) for c in classes):
            raise           # built-in layers all build on meta: the file is wrong
    if net is not None:
        check_tensors(net.state_dict(), state, path)
        net.load_state_dict(state, assign=True)
        if not _meta_tensors_left(net):
            return net
    net = _build(arch, classes, path)
    check_tensors(net.state_dict(), state, path)
    net.load_state_dict(state, assign=True)    # assign: the stored dtypes are kept
    return net


# ---------------------------------------------------------------------------
# the file: tensors + JSON, checksum, atomic writes
# ---------------------------------------------------------------------------
def _canonical(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _digest(tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None) -> str:
    """SHA-256 of the metadata (``None`` in format version 1) and every tensor."""
    h = hashlib.sha256()
    if meta is not None:
        h.update(_canonical(meta))
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cannot_save(path: str, exc: BaseException) -> PersistenceError:
    if isinstance(exc, OSError):
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    else:   # safetensors reports I/O errors as SafetensorError("... Os { code: 28 ...")
        text = str(exc)
        why = "the disk is full" if "code: 28" in text or "StorageFull" in text else text
    return PersistenceError(f"cannot save to {path!r}: {why}; any earlier file there is "
                            f"unchanged")


def _remove_stale_temporaries(folder: str) -> None:
    """Remove what a save killed midway (SIGKILL, power loss) left in
    ``folder``: temporary files of processes that no longer run."""
    if os.name != "posix":
        return
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = _TMP_RE.match(name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue                        # the writer still runs
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, OSError):
            continue
        try:
            os.remove(os.path.join(folder, name))
        except OSError:
            pass


def write_file(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
               meta: dict[str, Any]) -> None:
    """Write tensors and JSON metadata atomically: to a temporary file in the
    same folder, flushed to disk, then renamed over ``path`` (a crash or a
    full disk leaves the old file intact). :class:`PersistenceError` naming
    the path when it cannot be written."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file
    path = os.fspath(path)
    if os.path.isdir(path):
        raise PersistenceError(f"cannot save to {path!r}: it is a folder; give a file name "
                               f"such as {os.path.join(path, 'net.safetensors')!r}")
    folder = os.path.dirname(os.path.abspath(path))
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = dict(meta)
    meta.pop("sha256", None)
    meta["sha256"] = _digest(tensors, meta)
    try:
        os.makedirs(folder, exist_ok=True)
        _remove_stale_temporaries(folder)
        fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-",
                                   suffix=".safetensors", dir=folder)
    except OSError as exc:
        raise _cannot_save(path, exc) from None
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"layerlab": json.dumps(meta)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); a saved network gets the
        # permissions any file the user writes gets (0666 less the umask)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        _remove_quietly(tmp)
        raise _cannot_save(path, exc) from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(file: str) -> None:
    try:
        os.remove(file)
    except OSError:
        pass


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _folder_error(path: str) -> PersistenceError:
    inside = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))[:5]
    hint = (f"; it holds {', '.join(inside)}" if inside else "; it holds no .safetensors file")
    return PersistenceError(f"cannot load {path!r}: it is a folder, give the file{hint}")


def read_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and checked metadata of a layerlab file; :class:`PersistenceError`
    for a missing, truncated, corrupted, edited, newer or foreign file."""
    from safetensors import SafetensorError
    from safetensors.torch import load
    path = os.fspath(path)
    if os.path.isdir(path):
        raise _folder_error(path)
    if not os.path.isfile(path):
        raise PersistenceError(f"no such file: {path!r}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise PersistenceError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    header_len = int.from_bytes(raw[:8], "little")
    if len(raw) < 8 or header_len > len(raw) - 8:
        raise PersistenceError(f"{path!r} is truncated or not a layerlab file "
                               f"(its header is incomplete)")
    try:
        header = json.loads(raw[8:8 + header_len])
        tensors = load(raw)
        meta_text = (header.get("__metadata__") or {}).get("layerlab")
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError, RecursionError,
            AttributeError, TypeError) as exc:
        raise PersistenceError(f"{path!r} is truncated, corrupted or not a layerlab file: "
                               f"{type(exc).__name__}: {exc}") from None
    if meta_text is None:
        raise PersistenceError(f"{path!r} is a safetensors file but not a layerlab one "
                               f"(no 'layerlab' metadata)")
    try:
        meta = json.loads(meta_text, parse_constant=_no_constants)
    except (ValueError, TypeError, RecursionError) as exc:
        raise PersistenceError(f"{path!r} is corrupted: its layerlab metadata is not valid "
                               f"JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PersistenceError(f"{path!r}: unknown format "
                               f"{meta.get('format') if isinstance(meta, dict) else meta!r:.40}")
    version = meta.get("version")
    if type(version) is not int or version < 1:
        raise PersistenceError(f"{path!r}: bad format version {version!r:.40}")
    if version > VERSION:
        raise PersistenceError(f"{path!r} was written in format version {version} by a newer "
                               f"layerlab; this layerlab reads versions 1 to {VERSION}: "
                               f"upgrade layerlab")
    claimed = meta.pop("sha256", None)
    try:
        actual = _digest(tensors, meta if version >= 2 else None)
    except (ValueError, TypeError, RecursionError) as exc:
        raise PersistenceError(f"{path!r} is corrupted: {exc}") from None
    if claimed != actual:
        raise PersistenceError(f"{path!r} is corrupted or was edited: its contents do not "
                               f"match the checksum written with them")
    check_architecture(meta, path)
    return tensors, meta


# ---------------------------------------------------------------------------
# the public functions
# ---------------------------------------------------------------------------
def _warn_main_classes(net: Network) -> None:
    main = sorted({type(l).__name__ for l in net.layers if type(l).__module__ == "__main__"})
    if main:
        names = ", ".join(main)
        warnings.warn(f"layerlab.save: the layer class(es) {names} are defined in the script "
                      f"being run (__main__), which another program cannot import. To load "
                      f"the file elsewhere, move them to a module and import it, or pass "
                      f"them: layerlab.load(path, custom_layers=[{names}])", UserWarning,
                      stacklevel=3)


def save(net: Network | Any, path: str | os.PathLike) -> None:
    """Save a network (architecture, weights in their dtypes, normalization
    statistics, classes) to ``path`` (a ``.safetensors`` file), atomically.

    Warns when a layer class is defined in ``__main__`` (the running
    script): load it elsewhere with ``load(path, custom_layers=[...])``.

    Examples:
        >>> ll.save(net, "net.safetensors")
        >>> net = ll.load("net.safetensors", custom_layers=[MyELU])
    """
    net = as_network(net)
    _warn_main_classes(net)
    tensors = {_NET + k: v for k, v in net.state_dict().items()}
    write_file(path, tensors, architecture(net))


def load(path: str | os.PathLike, device: str | torch.device = "cpu", *,
         custom_layers: Iterable[type] = ()) -> Network:
    """Load a network saved by :func:`save` (or a training checkpoint).

    The file is untrusted: it may name only layerlab's layers, the classes
    in ``custom_layers`` (matched by import path or class name) and Layer
    classes already defined in this program; nothing is imported or called
    because the file says so (see :mod:`layerlab.persistence.registry`).
    Raises :class:`PersistenceError` for a missing, truncated, corrupted,
    edited or newer file, or a class it may not build (naming it).

    Examples:
        >>> net = ll.load("net.safetensors", custom_layers=[MyELU])
    """
    if isinstance(custom_layers, type) or not isinstance(custom_layers, (list, tuple, set)):
        raise PersistenceError(f"custom_layers: expected a list of Layer classes, got "
                               f"{custom_layers!r:.60}; e.g. custom_layers=[MyELU]")
    custom = list(custom_layers)
    tensors, meta = read_file(path)
    state = {k[len(_NET):]: v for k, v in tensors.items() if k.startswith(_NET)}
    net = network_from_file(meta, state, os.fspath(path), custom)
    net.eval()
    return net.to(device)


def load_state(net: Network, state: dict[str, torch.Tensor], path: Any) -> None:
    """Copy stored tensors into ``net``'s own (in place, so that an optimizer
    holding them keeps working), after checking names, sizes and dtypes."""
    check_tensors(net.state_dict(), state, path)
    with torch.no_grad():
        net.load_state_dict(state)

