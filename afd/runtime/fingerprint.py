"""What a stage's result depends on beyond its config: the contents of the files it reads, the library
versions that compute it, and afd's own stage code. Every stage-cache key includes these, so a model
overwritten in place, an upgraded library or changed stage code is a cache miss, never a stale hit.

File digests are remembered by (path, size, mtime, inode) in the cache directory, so a multi-GB model is
hashed once, not on every run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The libraries whose numerics or formats a stage's output depends on.
LIBRARIES = ("torch", "transformers", "trl", "peft", "tokenizers", "accelerate")

AFD_ROOT = Path(__file__).resolve().parents[1]
# Code that only reads finished results or talks to the user (reports and plots, tracking, the CLI and
# its checks): editing it cannot change what a stage computes, so it stays out of the code fingerprint.
NOT_STAGE_CODE = ("analysis/", "main.py", "runtime/tracking.py", "runtime/preflight.py", "runtime/errors.py")

_MEMO_FILE = "fingerprints.json"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FileDigests:
    """sha256 of files, remembered across runs in `<memo_dir>/fingerprints.json` by path, size, mtime and
    inode: a file rewritten in place changes at least its mtime, and is hashed again."""

    def __init__(self, memo_dir: str | Path | None):
        self.memo_path = Path(memo_dir).expanduser() / _MEMO_FILE if memo_dir is not None else None
        self._memo: dict[str, str] | None = None
        self._dirty = False

    def _load(self) -> dict[str, str]:
        if self._memo is None:
            self._memo = {}
            if self.memo_path is not None and self.memo_path.is_file():
                try:
                    self._memo = json.loads(self.memo_path.read_text())
                except (OSError, ValueError):
                    log.warning("%s is unreadable; file digests are recomputed", self.memo_path)
        return self._memo

    def digest(self, path: str | Path) -> str:
        path = Path(path).resolve()
        st = path.stat()
        stamp = f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        memo = self._load()
        if stamp not in memo:
            if st.st_size > (256 << 20):
                log.info("fingerprinting %s (%.1f GB) once", path, st.st_size / 1e9)
            memo[stamp] = sha256_file(path)
            self._dirty = True
        return memo[stamp]

    def directory(self, root: str | Path) -> dict[str, str]:
        """{relative path: sha256} of every file under `root` (hidden files and folders excluded)."""
        root = Path(root)
        out = {}
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            out[rel.as_posix()] = self.digest(path)
        return out

    def save(self) -> None:
        """Write the memo atomically (concurrent runs may each write; a lost update only costs a re-hash)."""
        if not self._dirty or self.memo_path is None:
            return
        self.memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.memo_path.with_name(f".{_MEMO_FILE}.tmp-{os.getpid()}")
        try:
            merged = {}
            if self.memo_path.is_file():
                try:
                    merged = json.loads(self.memo_path.read_text())
                except ValueError:
                    merged = {}
            merged.update(self._memo or {})
            tmp.write_text(json.dumps(merged, sort_keys=True))
            os.replace(tmp, self.memo_path)
            self._dirty = False
        except OSError as e:
            log.warning(
                "could not write %s (%s); file digests will be recomputed next run", self.memo_path, e
            )


def digest_of(value: Any) -> str:
    """A short stable hash of a JSON-able value (a directory listing, a set of versions)."""
    payload = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


@lru_cache(maxsize=1)
def stage_code_digest() -> str:
    """sha256 of afd's stage code (every module but the read-only ones in NOT_STAGE_CODE): any edit to
    what computes a stage invalidates its entries, with no version number to forget to bump."""
    digest = hashlib.sha256()
    for path in sorted(AFD_ROOT.rglob("*.py")):
        rel = path.relative_to(AFD_ROOT).as_posix()
        if rel.startswith(NOT_STAGE_CODE):
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def environment() -> dict[str, Any]:
    """What every stage-cache key includes: library versions and the stage-code digest."""
    return {"libraries": library_versions(), "afd_code": stage_code_digest()}
