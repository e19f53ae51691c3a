"""Multi-process runs under `accelerate launch` (DDP, FSDP, DeepSpeed; configs in conf/accelerate/),
through accelerate's own process state (the one its trainers use).

Every process runs the whole pipeline, so each trainer sees all ranks. Sampling, scoring and evaluation
are sharded: inside `sharded()` each rank takes every world_size-th unit of work (a group of prompts
decoded together, a batch of sequences scored together) of the plan a single process would make, and the
results are gathered in the original order on every rank. A unit is computed exactly as one process would
compute it (same rows, same padding), so a 2-process run gives the same numbers as a 1-process one.
Only the main process writes: the run directory, metrics, plots and the W&B run, and it alone publishes
stage-cache entries, which the other ranks wait for and then read.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Iterator, Sequence, TypeVar

T = TypeVar("T")

# Set by the pipeline around work every rank does on the same inputs (sample_split, score_pool, KL
# estimates), never inside a trainer, where each rank scores its own batch (RL rewards).
_SHARDED = contextvars.ContextVar("afd_sharded", default=False)


def _state():
    import torch
    from accelerate import PartialState

    # Without cpu=True, accelerate sees torchrun's ranks on a machine without an accelerator as one
    # process (DistributedType.NO: every rank rank 0, barriers no-ops) until a trainer re-creates the
    # state with TrainingArguments(use_cpu=True); with it, they join a gloo group from the start.
    return PartialState(cpu=not torch.accelerator.is_available())


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


@contextlib.contextmanager
def sharded() -> Iterator[None]:
    """Within: every rank calls the same work on the same inputs, and `my_share` / `gather_shares`
    split it between the ranks and put it back together."""
    token = _SHARDED.set(True)
    try:
        yield
    finally:
        _SHARDED.reset(token)


def _sharding() -> bool:
    return _SHARDED.get() and _launched()


def my_share(units: Sequence[T]) -> list[tuple[int, T]]:
    """(index, unit) for the units this rank computes: all of them outside `sharded()` or in a single
    process, else every world_size-th one starting at this rank (round robin: units come sorted by
    size, so each rank gets a similar mix)."""
    if not _sharding():
        return list(enumerate(units))
    return [(i, u) for i, u in enumerate(units) if i % world_size() == rank()]


def gather_shares(results: dict[int, T]) -> dict[int, T]:
    """Every rank's {unit index: result} merged, on every rank (a no-op when not sharding)."""
    if not _sharding():
        return results
    from accelerate.utils import gather_object

    merged: dict[int, T] = {}
    for part in gather_object([results]):
        merged.update(part)
    return merged
