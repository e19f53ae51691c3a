"""Content-addressed cache of pipeline stages (SFT checkpoints, samples, reward models).

A stage's entry is keyed by a hash of everything that determines it (model weights, data, stage settings,
seed, upstream entries, library versions and afd's stage code: afd/runtime/fingerprint.py), so sweeps over
later knobs reuse earlier stages and nothing else does. Entries are built in a partial directory and
renamed into place: a killed run never leaves an entry a later run trusts, and the stages that can
(training, sampling) resume from what it left. One run builds a key at a time: a second run asking for it
waits on the first's lock (released by the kernel if the first is killed) and then reuses its entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator

from afd.runtime.distributed import is_main_process, main_process_value, wait_for_everyone
from afd.runtime.fingerprint import FileDigests, environment
from afd.runtime.memory import StagePeak, peak_rss_gb, release_freed_memory

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
LOCKS = ".locks"
"""Folder of the per-key lock files (hidden: never an entry)."""
# Bump when a stage's output format changes (code changes are caught by the stage-code digest).
# 2: KL references fixed; keys include file contents, library versions and the stage-code digest.
# 3: objectives as config nodes: specs name stages and splits anew (reward_model, align).
CACHE_VERSION = 3


def plain(value: Any) -> Any:
    """A spec as JSON-able values: dataclasses as dicts, enums as their values, paths as strings."""
    if is_dataclass(value):
        return plain(asdict(value))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def stage_key(stage: str, spec: dict[str, Any]) -> str:
    payload = json.dumps(
        {"stage": stage, "version": CACHE_VERSION, "environment": environment(), "spec": plain(spec)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def partial_dir(target: Path) -> Path:
    """Where `target` is built: one directory per key (one run builds a key at a time, under its lock),
    which a run killed mid-build leaves behind for the next run to resume from."""
    return target.parent / f".{target.name}.partial"


@contextlib.contextmanager
def key_lock(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on one key (the file `lock_file`) on the main process.

    flock locks belong to the open file: the kernel releases them when the holder exits, also on
    kill -9, so a killed run never blocks the next. Other ranks of an accelerate run follow the main
    process's decision (main_process_value) and take no lock of their own.
    """
    if not is_main_process():
        yield
        return
    # Lock files are never deleted: unlinking one while another run waits on it would let a third
    # run lock a new file of the same name, and two runs would build at once.
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another run that is building %s", what)
            start = time.monotonic()
            fcntl.flock(handle, fcntl.LOCK_EX)
            log.info("waited %.1f s for another run to build %s", time.monotonic() - start, what)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_dir_atomically(target: str | Path, build: Callable[[Path], None]) -> Path:
    """Return `target`, first running `build(partial_dir)` and renaming the partial directory to it if it
    does not exist. The rename is atomic, so `target` exists only complete. Runs that need the same target
    build it once: the others wait for the first (key_lock) and reuse its result."""
    target = Path(target)
    with key_lock(target.parent / LOCKS / f"{target.name}.lock", str(target)):
        if main_process_value(target.is_dir()):
            return target
        return _build(target, build, resumable=False)


def _build(target: Path, build: Callable[[Path], None], resumable: bool) -> Path:
    """Build `target` in its partial directory and publish it by renaming.

    A build that raises leaves nothing (its failure would repeat). A run killed mid-build (kill -9, Ctrl-C,
    a lost node) leaves the partial directory: a `resumable` builder continues from what it holds (trainer
    checkpoints, finished batches of samples), any other starts it afresh. Under accelerate every rank
    builds into the same directory (a trainer needs them all) and the main process publishes."""
    partial = partial_dir(target)
    if is_main_process() and partial.exists():
        if resumable:
            log.info("resuming %s from %s, left by a run that did not finish", target.name, partial)
        else:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    wait_for_everyone()
    try:
        build(partial)
    except Exception:
        if is_main_process():
            shutil.rmtree(partial, ignore_errors=True)
        raise
    wait_for_everyone()
    if is_main_process():
        os.replace(partial, target)
    wait_for_everyone()
    return target


class StageCache:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.digests = FileDigests(self.root)
        """Content digests of the local files stages read, remembered in the cache directory."""
        self.builds: list[dict[str, Any]] = []
        """What each stage built in this process cost: wall seconds, resident memory when it began and its
        own peak (sampled), and the process's peak after it (run directories keep it as resources.json)."""

    def entry(self, stage: str, spec: dict[str, Any]) -> Path:
        return self.root / stage / stage_key(stage, spec)

    def get_or_build(
        self, stage: str, spec: dict[str, Any], build: Callable[[Path], None], resumable: bool = False
    ) -> Path:
        """Return the entry's directory, calling `build(partial_dir)` to fill it only on a miss; a
        `resumable` build finds there what a killed run of it left (see _build)."""
        final = self.entry(stage, spec)
        with key_lock(self.root / LOCKS / f"{stage}-{final.name}.lock", f"{stage} {final.name}"):
            if main_process_value(final.is_dir()):
                log.info("cache hit: %s %s (reusing %s)", stage, final.name, final)
                return final
            log.info("cache miss: %s %s, building", stage, final.name)

            def build_with_spec(tmp: Path) -> None:
                build(tmp)
                (tmp / SPEC_FILE).write_text(
                    json.dumps(
                        plain({"stage": stage, "environment": environment(), **spec}),
                        indent=2,
                        sort_keys=True,
                    )
                )

            start = time.perf_counter()
            with StagePeak() as memory:
                built = _build(final, build_with_spec, resumable)
            release_freed_memory()
            record = {
                "stage": stage,
                "key": final.name,
                "seconds": round(time.perf_counter() - start, 1),
                "rss_gb_start": round(memory.start_gb, 2),
                "rss_gb_peak": round(memory.peak_gb, 2),
                "process_peak_rss_gb": round(peak_rss_gb(), 2),
            }
            self.builds.append(record)
            log.info(
                "built %s %s in %.0f s; resident memory %.2f GB at its start, %.2f GB at its peak",
                stage,
                final.name,
                record["seconds"],
                record["rss_gb_start"],
                record["rss_gb_peak"],
            )
            return built
