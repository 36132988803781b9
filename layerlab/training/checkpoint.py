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

import os
from typing import Any

import torch

from ..errors import PersistenceError
from ..network.network import Network
from ..persistence.config_json import decode, encode
from ..persistence.network_file import architecture, load_state, read_file, write_file

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


def _optimizer_state(tensors: dict[str, torch.Tensor], info: dict[str, Any] | None):
    if info is None:
        return None
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for k, v in info["plain"].items():
        idx, key = k.split(".", 1)
        state.setdefault(int(idx), {})[key] = decode(v)
    return {"state": state, "param_groups": [{k: decode(v) for k, v in g.items()}
                                             for g in info["param_groups"]]}


def restore_optimizer(optimizer: torch.optim.Optimizer | None,
                      state: dict[str, Any] | None) -> None:
    """Load an optimizer state (from :func:`checkpoint_state`) into ``optimizer``."""
    if optimizer is None or state is None:
        return
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError) as exc:
        raise PersistenceError(f"the checkpoint's optimizer state does not fit this network "
                               f"and solver: {exc}") from exc


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
    early = {k: decode(v) for k, v in info["early"].items()}
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    early["best_state"] = best or None
    listeners: dict[str, dict[str, Any]] = {}
    for name, plain in info.get("listeners", {}).items():
        listeners[name] = {k: decode(v) for k, v in plain.items()}
    for k, v in tensors.items():
        if k.startswith("listener."):
            _, name, key = k.split(".", 2)
            listeners.setdefault(name, {})[key] = v
    return {
        "epoch": info["epoch"], "iteration": info["iteration"],
        "time_elapsed": info["time_elapsed"], "solver": info.get("solver"),
        "data_seed": info.get("data_seed"),
        "network": {k[4:]: v for k, v in tensors.items() if k.startswith("net.")},
        "optimizer": _optimizer_state(tensors, info.get("optimizer")),
        "rng": {"torch": tensors["rng.torch"], "shuffle": tensors["rng.shuffle"],
                "cuda": [tensors[k] for k in sorted((t for t in tensors
                                                     if t.startswith("rng.cuda.")),
                                                    key=lambda t: int(t.rsplit(".", 1)[1]))]},
        "order": tensors["data.order"],
        "history": {k[5:]: v for k, v in tensors.items() if k.startswith("hist.")},
        "early_stopping": early,
        "listeners": listeners,
    }


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint; :class:`PersistenceError` for a
    missing, truncated or corrupted one, or a saved network (not a checkpoint)."""
    file = checkpoint_file(path)
    tensors, meta = read_file(file)
    if "checkpoint" not in meta:
        raise PersistenceError(f"{file!r} is a saved network, not a training checkpoint")
    return tensors, meta


def restore_network(net: Network, state: dict[str, torch.Tensor], path: Any) -> None:
    load_state(net, state, path)


def restore_rng(rng: dict[str, Any], shuffle_generator: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and rng.get("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])
    shuffle_generator.set_state(rng["shuffle"])
