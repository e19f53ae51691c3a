"""Content-addressed cache of pipeline stages (SFT checkpoints, samples, reward models).

A stage's entry is keyed by a hash of everything that determines it (model, data, stage settings,
seed, upstream entries), so sweeps over later knobs reuse earlier stages. Entries are built in a
temporary directory and renamed into place: a killed run never leaves an entry a later run trusts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from dataclasses import asdict, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from afd.distributed import is_main_process, main_process_value, wait_for_everyone

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
# Bump when a stage's output format or semantics change, so old entries stop matching.
CACHE_VERSION = 1


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return _plain(asdict(value))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def stage_key(stage: str, spec: dict[str, Any]) -> str:
    payload = json.dumps({"stage": stage, "version": CACHE_VERSION, "spec": _plain(spec)}, sort_keys=True)
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


def build_dir_atomically(target: str | Path, build: Callable[[Path], None]) -> Path:
    """Return `target`, first running `build(tmp_dir)` and renaming tmp_dir to it if it does not exist.

    The rename is atomic, so `target` exists only complete: a run killed mid-build leaves a hidden
    `.<name>.partial-<host>-<pid>-*` directory that is never read, and later runs delete it.
    """
    target = Path(target)
    if main_process_value(target.is_dir()):
        return target
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

    def entry(self, stage: str, spec: dict[str, Any]) -> Path:
        return self.root / stage / stage_key(stage, spec)

    def get_or_build(self, stage: str, spec: dict[str, Any], build: Callable[[Path], None]) -> Path:
        """Return the entry's directory, calling `build(tmp_dir)` to fill it only on a miss."""
        final = self.entry(stage, spec)
        if main_process_value(final.is_dir()):
            log.info("cache hit: %s %s (reusing %s)", stage, final.name, final)
            return final
        log.info("cache miss: %s %s, building", stage, final.name)

        def build_with_spec(tmp: Path) -> None:
            build(tmp)
            (tmp / SPEC_FILE).write_text(
                json.dumps(_plain({"stage": stage, **spec}), indent=2, sort_keys=True)
            )

        return build_dir_atomically(final, build_with_spec)
