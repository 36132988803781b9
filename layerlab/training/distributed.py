"""Data-parallel training over several processes with PyTorch's
DistributedDataParallel (DDP).

``execution_environment="parallel"`` (CPUs, the gloo backend) or
``"multi-gpu"`` (one GPU per process, NCCL) trains with one process per
worker, launched by ``torchrun``::

    torchrun --nproc_per_node=2 my_training_script.py            # one machine
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=4 \\
             --rdzv_endpoint=HOST:29500 my_training_script.py    # several machines

Every process runs the same script with the same data. Each global
mini-batch of ``mini_batch_size`` observations (the same shuffling on every
process) is split into equal shards, one per process; DDP averages the
gradients, so the update is the one a single process would make on the
whole mini-batch. ``mini_batch_size`` must be divisible by the number of
processes.

Batch normalization: in training each process normalizes with the
statistics of its own shard (as PyTorch's DDP does without SyncBatchNorm),
and the running statistics of rank 0 are copied to the others before each
forward pass (DDP's ``broadcast_buffers``). With ``N`` processes this is
batch normalization over mini-batches of ``mini_batch_size / N``.

The verbose table, plots and checkpoints come from rank 0 only; the
mini-batch loss and accuracy in the table are averaged over all processes.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist

from ..errors import OptionError

__all__ = ["DistributedContext", "setup", "ENVIRONMENTS"]

ENVIRONMENTS = ("parallel", "multi-gpu")


@dataclasses.dataclass
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size`` processes."""

    rank: int
    world_size: int
    device: torch.device
    owns_process_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, start: int, stop: int) -> slice:
        """This process's share of the global mini-batch ``[start, stop)``."""
        per = (stop - start) // self.world_size
        return slice(start + self.rank * per, start + (self.rank + 1) * per)

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The average of ``t`` over all processes (for the table's figures)."""
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.world_size

    def broadcast_from_main(self, t: torch.Tensor) -> torch.Tensor:
        """Rank 0's value of ``t`` on every process."""
        t = t.clone()
        dist.broadcast(t, src=0)
        return t

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(module, device_ids=ids, broadcast_buffers=True)

    def close(self) -> None:
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(environment: str, mini_batch_size: int) -> DistributedContext:
    """Join (or create) the process group for ``environment``.

    Uses an existing process group when the caller made one; otherwise the
    variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ...). Raises :class:`OptionError` when neither is there.
    """
    if environment not in ENVIRONMENTS:
        raise OptionError(f"execution_environment {environment!r} is not distributed")
    if not dist.is_available():
        raise OptionError("training option 'execution_environment': this PyTorch build has "
                          "no torch.distributed")
    owns = False
    if not dist.is_initialized():
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise OptionError(
                f"training option 'execution_environment': {environment!r} trains one process "
                f"per worker; launch the script with torchrun, e.g. "
                f"`torchrun --nproc_per_node=2 script.py` (RANK and WORLD_SIZE are not set)")
        if environment == "multi-gpu" and not torch.cuda.is_available():
            raise OptionError("training option 'execution_environment': 'multi-gpu' needs GPUs; "
                              "use 'parallel' for CPU processes")
        dist.init_process_group("nccl" if environment == "multi-gpu" else "gloo")
        owns = True
    rank, world = dist.get_rank(), dist.get_world_size()
    if mini_batch_size % world:
        raise OptionError(f"training option 'mini_batch_size': {mini_batch_size} must be "
                          f"divisible by the {world} processes of the "
                          f"'{environment}' environment")
    if environment == "multi-gpu":
        local = int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return DistributedContext(rank, world, device, owns)
