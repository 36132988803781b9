"""Training checkpoints: written at the end of every epoch, read by
``train_network(..., resume_from=PATH)``.

A checkpoint is a layerlab network file (so :func:`layerlab.load` opens
it) with extra tensors: the optimizer's state (``opt.*``), the random-number
generators' states (``rng.*``: PyTorch's global CPU and CUDA generators, the
shuffling generator), the order of the training data (``data.order``), the
history so far (``hist.*``) and early stopping's best weights (``best.*``);
and extra metadata: epoch, iteration, elapsed time, early-stopping counters.
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
           "restore_optimizer"]

FILE_NAME = "checkpoint.safetensors"


def checkpoint_file(path: str | os.PathLike) -> str:
    """The checkpoint file for ``path``, a file or a checkpoint folder."""
    path = os.fspath(path)
    return os.path.join(path, FILE_NAME) if os.path.isdir(path) else path


def _optimizer_tensors(optimizer: torch.optim.Optimizer | None):
    if optimizer is None:
        return {}, None
    sd = optimizer.state_dict()
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


def restore_optimizer(optimizer: torch.optim.Optimizer | None, tensors: dict[str, torch.Tensor],
                      meta: dict[str, Any]) -> None:
    info = meta["checkpoint"].get("optimizer")
    if optimizer is None or info is None:
        return
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for k, v in info["plain"].items():
        idx, key = k.split(".", 1)
        state.setdefault(int(idx), {})[key] = decode(v)
    groups = [{k: decode(v) for k, v in g.items()} for g in info["param_groups"]]
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as exc:
        raise PersistenceError(f"the checkpoint's optimizer state does not fit this network "
                               f"and solver: {exc}") from exc


def save_checkpoint(path: str | os.PathLike, net: Network,
                    optimizer: torch.optim.Optimizer | None, *, epoch: int, iteration: int,
                    time_elapsed: float, shuffle_generator: torch.Generator,
                    order: torch.Tensor, history: dict[str, torch.Tensor],
                    early: dict[str, Any], best_state: dict[str, torch.Tensor] | None,
                    solver: str) -> str:
    """Write a checkpoint; returns the file written."""
    path = os.fspath(path)
    file = path if path.endswith(".safetensors") else os.path.join(path, FILE_NAME)
    tensors = {"net." + k: v for k, v in net.state_dict().items()}
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    tensors["rng.shuffle"] = shuffle_generator.get_state()
    tensors["data.order"] = order
    for k, v in history.items():
        tensors["hist." + k] = v[:iteration]
    if best_state is not None:
        tensors.update({"best." + k: v for k, v in best_state.items()})
    meta = architecture(net)
    meta["checkpoint"] = {"epoch": epoch, "iteration": iteration, "time_elapsed": time_elapsed,
                          "solver": solver, "optimizer": opt_meta,
                          "early": {k: encode(v, k) for k, v in early.items()}}
    write_file(file, tensors, meta)
    return file


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint; :class:`PersistenceError` for a
    missing, truncated or corrupted one, or a saved network (not a checkpoint)."""
    file = checkpoint_file(path)
    tensors, meta = read_file(file)
    if "checkpoint" not in meta:
        raise PersistenceError(f"{file!r} is a saved network, not a training checkpoint")
    return tensors, meta


def restore_network(net: Network, tensors: dict[str, torch.Tensor], path: Any) -> None:
    load_state(net, {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}, path)


def restore_rng(tensors: dict[str, torch.Tensor], shuffle_generator: torch.Generator) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states)
    shuffle_generator.set_state(tensors["rng.shuffle"])
