"""Multi-process runs under `accelerate launch` (DDP, FSDP, DeepSpeed; configs in conf/accelerate/),
through accelerate's own process state (the one its trainers use).

Every process runs the whole pipeline, so each trainer sees all ranks; sampling and scoring are repeated
on every rank (same seeds, same results), not sharded. Only the main process writes: the run directory,
metrics, plots and the W&B run, and it alone publishes stage-cache entries, which the other ranks wait
for and then read.
"""

from __future__ import annotations

import os


def _state():
    from accelerate import PartialState

    return PartialState()


def _launched() -> bool:
    # Without a launcher there is one process; no need to build accelerate's state to know it.
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    """Processes in this run."""
    return _state().num_processes if _launched() else 1


def rank() -> int:
    return _state().process_index if _launched() else 0


def is_main_process() -> bool:
    return rank() == 0


def start() -> None:
    """Join the process group before the first stage (accelerate picks gloo on CPU, NCCL on GPUs and
    each rank's GPU), so that barriers work before any trainer exists; trainers then reuse it."""
    if _launched():
        _state()


def wait_for_everyone() -> None:
    """A barrier across the run's processes; a no-op in a single process."""
    if _launched():
        _state().wait_for_everyone()


def main_process_value(value: bool) -> bool:
    """The main process's `value` on every rank: ranks must take the same branch (a cache hit or a
    build), or one of them waits forever in a collective the others never reach; another run may
    publish an entry between two ranks' checks."""
    if not _launched():
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return bool(box[0])
