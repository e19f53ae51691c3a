"""Multi-process runs under `accelerate launch` (DDP, FSDP, DeepSpeed; configs in conf/accelerate/).

Every process runs the whole pipeline, so each trainer sees all ranks; sampling and scoring are repeated
on every rank (same seeds, same results), not sharded. Only the main process writes: the run directory,
metrics, plots and the W&B run, and it alone publishes stage-cache entries, which the other ranks wait
for and then read.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in this run (accelerate / torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def start() -> None:
    """Join the process group before the first stage, so that barriers work before any trainer exists
    (the trainers' accelerate state then reuses the group). A single process needs nothing."""
    if world_size() == 1:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def wait_for_everyone() -> None:
    """A barrier across the run's processes; a no-op in a single process."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def main_process_value(value: bool) -> bool:
    """The main process's `value` on every rank: ranks must take the same branch (a cache hit or a
    build), or one of them waits forever in a collective the others never reach; another run may
    publish an entry between two ranks' checks."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])
