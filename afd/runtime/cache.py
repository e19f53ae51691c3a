"""Content-addressed cache of pipeline stages (SFT checkpoints, samples, reward models).

A stage's entry is keyed by a hash of everything that determines it (model weights, data, stage settings,
seed, upstream entries, library versions and afd's stage code: afd/fingerprint.py), so sweeps over later
knobs reuse earlier stages and nothing else does. Entries are built in a temporary directory and renamed
into place: a killed run never leaves an entry a later run trusts. One run builds a key at a time: a
second run asking for it waits on the first's lock (released by the kernel if the first is killed) and
then reuses its entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator

from afd.runtime.distributed import is_main_process, main_process_value, wait_for_everyone
from afd.runtime.fingerprint import FileDigests, environment

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


def _partial_prefix(target: Path) -> str:
    return f".{target.name}.partial-{socket.gethostname()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove_dead_partials(target: Path) -> None:
    """Delete temp dirs that a killed build on this host left next to `target` (they are never trusted)."""
    pattern = re.compile(re.escape(_partial_prefix(target)) + r"(\d+)-")
    for entry in target.parent.iterdir():
        m = pattern.match(entry.name)
        if m and not _pid_alive(int(m.group(1))):
            log.info("removing %s, left by a killed run", entry)
            shutil.rmtree(entry, ignore_errors=True)


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
    """Return `target`, first running `build(tmp_dir)` and renaming tmp_dir to it if it does not exist.

    The rename is atomic, so `target` exists only complete: a run killed mid-build leaves a hidden
    `.<name>.partial-<host>-<pid>-*` directory that is never read, and later runs delete it. Runs that
    need the same target build it once: the others wait for the first (key_lock) and reuse its result.
    """
    target = Path(target)
    with key_lock(target.parent / LOCKS / f"{target.name}.lock", str(target)):
        if main_process_value(target.is_dir()):
            return target
        return _build(target, build)


def _build(target: Path, build: Callable[[Path], None]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_partials(target)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(target)}{os.getpid()}-", dir=target.parent))
    try:
        # Under accelerate every rank builds (a trainer needs them all), the main process publishes.
        build(tmp)
        if is_main_process():
            try:
                os.replace(tmp, target)
            except OSError:
                # Another run (a parallel sweep job) finished the same build first; its copy is as good.
                if not target.is_dir():
                    raise
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    wait_for_everyone()
    return target


class StageCache:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.digests = FileDigests(self.root)
        """Content digests of the local files stages read, remembered in the cache directory."""

    def entry(self, stage: str, spec: dict[str, Any]) -> Path:
        return self.root / stage / stage_key(stage, spec)

    def get_or_build(self, stage: str, spec: dict[str, Any], build: Callable[[Path], None]) -> Path:
        """Return the entry's directory, calling `build(tmp_dir)` to fill it only on a miss."""
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

            return _build(final, build_with_spec)
