"""Resident memory of this process: its peak so far, and the peak inside one stage.

The kernel keeps one high-water mark per process (ru_maxrss): once SFT has set it, it hides what every
later stage needs. A stage's own peak is sampled instead, by a thread reading /proc/self/statm.
"""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import threading
from types import TracebackType

PAGE_GB = os.sysconf("SC_PAGE_SIZE") / 2**30
SAMPLE_SECONDS = 0.05
"""How often a StagePeak reads the resident set: a shorter spike can be missed (tensors that large take
longer than this to fill)."""


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def rss_gb() -> float:
    """This process's resident memory now."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE_GB
    except OSError:  # not Linux: the peak so far is the best bound there is
        return peak_rss_gb()


def release_freed_memory() -> None:
    """Collect garbage and hand the allocator's free pages back to the OS. glibc keeps what a stage freed
    (a trainer's optimizer state and activations, a sampler's KV cache) in holes of its heaps, where the
    next stage's differently-sized tensors often do not fit: without this, a run's resident set after SFT
    stayed 2 GB above what it held into every stage after it."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to hand back this way
        pass


M_MMAP_THRESHOLD = -3
"""mallopt's parameter number for the size from which glibc serves an allocation with its own mapping."""
LOW_MEMORY_MMAP_BYTES = 64 * 2**10
"""compute.low_memory's threshold; measured on a SmolLM2 SFT step, 256 KiB kept the same memory and time."""


def map_large_allocations(threshold: int = LOW_MEMORY_MMAP_BYTES) -> bool:
    """glibc: serve every allocation of `threshold` bytes or more from its own mapping, handed back to the
    OS the moment it is freed; False where the C library is not glibc. By default glibc raises this
    threshold to the size of the largest mapping freed so far (up to 32 MB), after which activations live
    in heap holes that a step's differently-sized tensors fragment: a SmolLM2 SFT step (8 x 512 tokens,
    activation checkpointing) peaked at 3.9 GB resident with a live set under 2 GB. The price is a page
    fault per fresh 4 KiB page: that bare step took 1.4x as long, though make run's SFT and sampling
    stages took no longer (README, Performance)."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


class StagePeak:
    """`with StagePeak() as p:` samples the resident set while the block runs; afterwards `p.start_gb`
    and `p.peak_gb` hold the resident memory when it began and the highest reading (sampled every
    `every` seconds, and at both ends; torch releases the GIL in its kernels)."""

    def __init__(self, every: float = SAMPLE_SECONDS) -> None:
        self.every = every
        self.start_gb = self.peak_gb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="afd-rss", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_gb = max(self.peak_gb, rss_gb())

    def __enter__(self) -> StagePeak:
        self.start_gb = self.peak_gb = rss_gb()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_gb = max(self.peak_gb, rss_gb())
