"""Training checkpoints: written at the end of every epoch, read by
``train_network(..., resume_from=PATH)``.

A checkpoint is a layerlab network file (so :func:`layerlab.load` opens
it) with extra tensors: the optimizer's state (``opt.*``), the random-number
generators' states (``rng.*``: PyTorch's global CPU and CUDA generators, the
shuffling generator), the order of the training data (``data.order``), the
history so far (``hist.*``, one per :class:`History` series), early
stopping's best weights (``best.*``) and listeners' tensors
(``listener.<name>.*``); and extra metadata: epoch, iteration, elapsed time,
the data seed (augmentation), early-stopping counters, listeners' values.
It is the flat form of ``TrainingRun.state_dict()``; :func:`checkpoint_state`
turns it back.
It is written to a temporary file and renamed over the previous one, so a
crash while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import torch

from ..errors import PersistenceError
from ..network.network import Network
from ..persistence.config_json import decode, encode
from ..persistence.network_file import architecture, load_state, read_file, write_file
from ..persistence.validate import check_fields, check_tensors

__all__ = ["FILE_NAME", "save_checkpoint", "read_checkpoint", "checkpoint_file",
           "checkpoint_state", "restore_optimizer"]

FILE_NAME = "checkpoint.safetensors"


def checkpoint_file(path: str | os.PathLike) -> str:
    """The checkpoint file for ``path``, a file or a checkpoint folder."""
    path = os.fspath(path)
    return os.path.join(path, FILE_NAME) if os.path.isdir(path) else path


def _optimizer_tensors(sd: dict[str, Any] | None):
    if sd is None:
        return {}, None
    tensors, plain = {}, {}
    for idx, st in sd["state"].items():
        for key, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = v
            else:
                plain[f"{idx}.{key}"] = encode(v, f"optimizer state {key}")
    groups = [{k: encode(v, f"optimizer option {k}") for k, v in g.items()}
              for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "plain": plain}


def _optimizer_state(tensors: dict[str, torch.Tensor], info: dict[str, Any] | None,
                     file: str = "the checkpoint"):
    if info is None:
        return None
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for k, v in info["plain"].items():
        idx, key = k.split(".", 1)
        state.setdefault(int(idx), {})[key] = decode(v, f"{file!r}: optimizer state {key!r}")
    return {"state": state,
            "param_groups": [{k: decode(v, f"{file!r}: optimizer option {k!r}")
                              for k, v in g.items()} for g in info["param_groups"]]}


def _same_kind(saved: Any, own: Any) -> bool:
    """Whether a saved optimizer option has the type of this run's one."""
    if isinstance(own, bool) or own is None or isinstance(own, str):
        return type(saved) is type(own)
    if isinstance(own, (int, float)):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool) \
            and (math.isfinite(saved) or not math.isfinite(own))
    if isinstance(own, (tuple, list)):
        return isinstance(saved, (tuple, list)) and len(saved) == len(own) and all(
            _same_kind(a, b) for a, b in zip(saved, own))
    return False


def restore_optimizer(optimizer: torch.optim.Optimizer | None, state: dict[str, Any] | None,
                      file: Any = "the checkpoint") -> None:
    """Give ``optimizer`` a saved state (from :func:`checkpoint_state`: momentum,
    Adam's moments) after checking that it was written for the same solver,
    parameter groups and parameter sizes; :class:`PersistenceError` naming
    what differs."""
    if optimizer is None or state is None:
        return
    file = os.fspath(file) if isinstance(file, os.PathLike) else file
    own = optimizer.state_dict()["param_groups"]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    groups = state["param_groups"]
    if [len(g.get("params", ())) for g in groups] != [len(g["params"]) for g in own]:
        raise PersistenceError(
            f"{file!r} was written for another network or other learn-rate/L2 factors: its "
            f"optimizer has parameter groups of {[len(g.get('params', ())) for g in groups]} "
            f"parameters, this run's {[len(g['params']) for g in own]}")
    for g, o in zip(groups, own):
        if set(g) != set(o):
            raise PersistenceError(f"{file!r} was written with another solver: its optimizer "
                                   f"options are {sorted(g)}, this run's {sorted(o)}")
        for k, v in g.items():
            if k == "params":
                if v != o["params"]:
                    raise PersistenceError(f"{file!r}: optimizer parameter ids {v!r:.60}, "
                                           f"expected {o['params']!r:.60}")
            elif not _same_kind(v, o[k]):
                raise PersistenceError(f"{file!r}: optimizer option {k!r} is {v!r:.40} in "
                                       f"the checkpoint; this run's solver has {o[k]!r:.40}")
    for idx, entries in state["state"].items():
        if idx >= len(params):
            raise PersistenceError(f"{file!r}: optimizer state for parameter {idx}; this "
                                   f"network has {len(params)} trained parameters")
        p = params[idx]
        for key, v in entries.items():
            if isinstance(v, torch.Tensor) and (
                    tuple(v.shape) not in (tuple(p.shape), ()) or not v.is_floating_point()):
                raise PersistenceError(f"{file!r}: optimizer state {key!r} of parameter "
                                       f"{idx} has size {tuple(v.shape)} ({v.dtype}), the "
                                       f"parameter {tuple(p.shape)}: another network")
    try:
        optimizer.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - torch's message, with the file named
        raise PersistenceError(f"{file!r}: the checkpoint's optimizer state does not fit "
                               f"this network and solver: {exc}") from exc


def save_checkpoint(path: str | os.PathLike, net: Network, state: dict[str, Any]) -> str:
    """Write a training run's state (``TrainingRun.state_dict()``) beside the
    network ``net``; returns the file written."""
    path = os.fspath(path)
    file = path if path.endswith(".safetensors") else os.path.join(path, FILE_NAME)
    tensors = {"net." + k: v for k, v in net.state_dict().items()}
    opt_tensors, opt_meta = _optimizer_tensors(state["optimizer"])
    tensors.update(opt_tensors)
    rng = state["rng"]
    tensors["rng.torch"] = rng["torch"]
    for i, s in enumerate(rng.get("cuda", [])):
        tensors[f"rng.cuda.{i}"] = s
    tensors["rng.shuffle"] = rng["shuffle"]
    tensors["data.order"] = state["order"]
    for k, v in state["history"].items():
        tensors["hist." + k] = v
    early = dict(state["early_stopping"])
    best = early.pop("best_state", None)
    if best is not None:
        tensors.update({"best." + k: v for k, v in best.items()})
    listeners: dict[str, Any] = {}
    for name, lstate in state.get("listeners", {}).items():
        plain = {}
        for k, v in lstate.items():
            if isinstance(v, torch.Tensor):
                tensors[f"listener.{name}.{k}"] = v
            else:
                plain[k] = encode(v, f"listener {name} state {k}")
        listeners[name] = plain
    meta = architecture(net)
    meta["checkpoint"] = {"epoch": state["epoch"], "iteration": state["iteration"],
                          "time_elapsed": state["time_elapsed"], "solver": state["solver"],
                          "data_seed": state.get("data_seed"), "optimizer": opt_meta,
                          "early": {k: encode(v, k) for k, v in early.items()},
                          "listeners": listeners}
    write_file(file, tensors, meta)
    return file


def checkpoint_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """The training run's state (as ``TrainingRun.state_dict()`` gave it)
    from a checkpoint's tensors and metadata; the network's own tensors
    are under ``"network"``."""
    info = meta["checkpoint"]
    early = dict(info["early"])          # decoded by read_checkpoint
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    early["best_state"] = best or None
    listeners: dict[str, dict[str, Any]] = {}
    for name, plain in info.get("listeners", {}).items():
        listeners[name] = {k: decode(v, f"listener {name} state {k}")
                          for k, v in plain.items()}
    for k, v in tensors.items():
        if k.startswith("listener."):
            _, name, key = k.split(".", 2)
            listeners.setdefault(name, {})[key] = v
    return {
        "epoch": info["epoch"], "iteration": info["iteration"],
        "time_elapsed": info["time_elapsed"], "solver": info.get("solver"),
        "data_seed": info.get("data_seed"),
        "network": {k[4:]: v for k, v in tensors.items() if k.startswith("net.")},
        "optimizer": _optimizer_state(tensors, info.get("optimizer"),
                                      meta.get("_file", "the checkpoint")),
        "rng": {"torch": tensors["rng.torch"], "shuffle": tensors["rng.shuffle"],
                "cuda": [tensors[k] for k in sorted((t for t in tensors
                                                     if t.startswith("rng.cuda.")),
                                                    key=lambda t: int(t.rsplit(".", 1)[1]))]},
        "order": tensors["data.order"],
        "history": {k[5:]: v for k, v in tensors.items() if k.startswith("hist.")},
        "early_stopping": early,
        "listeners": listeners,
    }


def read_checkpoint(path: str | os.PathLike, *, observations: int | None = None,
                    iterations: int | None = None, solver: str | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and checked metadata of a checkpoint.

    :class:`PersistenceError` for a missing, truncated, corrupted or edited
    one, a saved network (not a checkpoint), any field of the wrong kind,
    and, when given, a checkpoint of other data (``observations``), other
    options (more than ``iterations`` done, another ``solver``). The early
    stopping values come back decoded (``best_loss`` a float).
    """
    file = checkpoint_file(path)
    tensors, meta = read_file(file)
    if "checkpoint" not in meta:
        raise PersistenceError(f"{file!r} is a saved network, not a training checkpoint")
    state = meta["checkpoint"]
    check_fields(state, {"epoch": int, "iteration": int, "time_elapsed": (int, float),
                         "solver": str, "optimizer": (dict, type(None)), "early": dict,
                         "data_seed": (int, type(None)), "listeners": dict},
                 ("epoch", "iteration", "time_elapsed", "solver", "early"), "checkpoint", file)
    for k in ("epoch", "iteration", "time_elapsed"):
        if not (math.isfinite(state[k]) and state[k] >= 0):
            raise PersistenceError(f"{file!r}: checkpoint {k} is {state[k]!r}, expected >= 0")
    check_fields(state["early"], {"best_loss": (int, float, dict), "bad": int,
                                  "best_iteration": int},
                 ("best_loss", "bad", "best_iteration"), "checkpoint early stopping", file)
    early = {k: decode(v, f"{file!r}: early stopping {k}") for k, v in state["early"].items()}
    if not isinstance(early["best_loss"], float) and not isinstance(early["best_loss"], int):
        raise PersistenceError(f"{file!r}: early stopping best_loss {early['best_loss']!r:.40}")
    state["early"] = early
    for name, plain in state.get("listeners", {}).items():
        if not (isinstance(name, str) and _NAME.match(name) and isinstance(plain, dict)
                and all(isinstance(k, str) for k in plain)):
            raise PersistenceError(f"{file!r}: unexpected listener state {name!r:.40}")
    if state.get("optimizer") is not None:
        _check_optimizer_fields(state["optimizer"], file)
    meta["_file"] = file
    _check_checkpoint_tensors(tensors, state["iteration"], file)
    n = tensors["data.order"].shape[0]
    if observations is not None and n != observations:
        raise PersistenceError(f"{file!r} was written for other data: {n} training "
                               f"observations there, {observations} here")
    if iterations is not None and state["iteration"] > iterations:
        raise PersistenceError(f"{file!r} was written for other options: it is at iteration "
                               f"{state['iteration']}, these options train "
                               f"{iterations} iterations in all")
    if solver is not None and state["solver"] != solver:
        raise PersistenceError(f"{file!r} was written for other options: solver "
                               f"{state['solver']!r} there, {solver!r} here")
    return tensors, meta


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_OPT_KEY = re.compile(r"^\d{1,6}\.[A-Za-z_][A-Za-z0-9_]*$")


def _check_optimizer_fields(info: Any, file: str) -> None:
    check_fields(info, {"param_groups": list, "plain": dict}, ("param_groups", "plain"),
                 "checkpoint optimizer", file)
    for g in info["param_groups"]:
        check_fields(g, {k: object for k in (g if isinstance(g, dict) else {})}, ("params",),
                     "an optimizer parameter group", file)
        if not (isinstance(g["params"], list) and all(type(i) is int for i in g["params"])):
            raise PersistenceError(f"{file!r}: optimizer 'params' should list parameter ids")
    for k in info["plain"]:
        if not _OPT_KEY.match(k):
            raise PersistenceError(f"{file!r}: unexpected optimizer state {k!r:.40}")


def _uint8_like(t: torch.Tensor, like: torch.Tensor) -> bool:
    return t.dtype == torch.uint8 and tuple(t.shape) == tuple(like.shape)


def _check_checkpoint_tensors(tensors: dict[str, torch.Tensor], iteration: int,
                              file: str) -> None:
    """Every tensor of a checkpoint: known names, sizes and dtypes."""
    for k, t in tensors.items():
        known = (k.startswith(("net.", "best.")) or k in ("rng.torch", "rng.shuffle",
                 "data.order") or (k.startswith("hist.") and _NAME.match(k[5:]))
                 or re.match(r"^listener\.[A-Za-z_][A-Za-z0-9_]{0,63}\.[A-Za-z0-9_.]{1,64}$", k)
                 or re.match(r"^rng\.cuda\.\d{1,3}$", k) or
                 (k.startswith("opt.") and _OPT_KEY.match(k[4:])))
        if not known:
            raise PersistenceError(f"{file!r}: unexpected tensor {k!r:.60} in the checkpoint")
    for k in ["rng.torch", "rng.shuffle", "data.order", "hist.loss"]:
        if k not in tensors:
            raise PersistenceError(f"{file!r}: the checkpoint has no {k!r} tensor")
    if not _uint8_like(tensors["rng.torch"], torch.get_rng_state()):
        raise PersistenceError(f"{file!r}: 'rng.torch' is not a PyTorch generator state")
    if not _uint8_like(tensors["rng.shuffle"], torch.Generator().get_state()):
        raise PersistenceError(f"{file!r}: 'rng.shuffle' is not a PyTorch generator state")
    order = tensors["data.order"]
    if order.dtype != torch.int64 or order.dim() != 1 or not torch.equal(
            order.sort().values, torch.arange(order.shape[0])):
        raise PersistenceError(f"{file!r}: 'data.order' is not an order of the observations "
                               f"(a permutation of 0..N-1)")
    for h in (k[5:] for k in tensors if k.startswith("hist.")):
        t = tensors["hist." + h]
        kind_ok = t.dtype != torch.bool and not t.is_complex()
        if t.dim() != 1 or t.shape[0] != iteration or not kind_ok or t.is_complex():
            raise PersistenceError(f"{file!r}: history 'hist.{h}' has size {tuple(t.shape)} "
                                   f"({t.dtype}), expected ({iteration},) for the checkpoint's "
                                   f"{iteration} iterations")
    net = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    if best:
        check_tensors(net, best, file)


def restore_network(net: Network, state: dict[str, torch.Tensor], path: Any) -> None:
    """Copy a checkpoint's network tensors (``checkpoint_state(...)["network"]``)
    into ``net``, checked first: :class:`PersistenceError` naming what differs
    for another network."""
    file = checkpoint_file(path)
    try:
        load_state(net, state, file)
    except PersistenceError as exc:
        raise PersistenceError(f"the checkpoint was written for another network: {exc}") \
            from None


def restore_rng(rng: dict[str, Any], shuffle_generator: torch.Generator) -> None:
    try:
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available() and rng.get("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
        shuffle_generator.set_state(rng["shuffle"])
    except (RuntimeError, ValueError, TypeError) as exc:
        raise PersistenceError(f"the checkpoint's random-number generator states are not "
                               f"valid here: {exc}") from exc
