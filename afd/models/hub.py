"""Resolve a model's `name_or_path` to a local directory or a reachable hub id, failing within seconds.

Without this, transformers spends ~46 s retrying an unreachable hub before it fails (offline.md pitfall 11).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from urllib.parse import urlparse

from afd.runtime.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 5.0
_PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")
_TRUE = {"1", "true", "yes", "on"}


class ModelSourceError(UserError):
    """A model / reward-model source is neither a local directory nor a loadable hub id."""


def resolve_source(name_or_path: str, revision: str | None, what: str) -> str:
    """Return a local directory (given, or a cached hub snapshot) or a hub id the hub can serve.

    `what` is the config key (e.g. "model.name_or_path") named in every error.
    """
    expanded = os.path.expanduser(name_or_path)
    if os.path.isdir(expanded):
        return expanded
    if name_or_path.startswith(_PATH_PREFIXES) or os.path.exists(expanded):
        kind = "a file, not a directory" if os.path.exists(expanded) else "does not exist"
        raise ModelSourceError(
            f"{what}={name_or_path} looks like a local path but {kind}; pass a directory written by "
            "save_pretrained (config.json, weights, tokenizer files) or a hub id"
        )

    cached = _cached_snapshot(name_or_path, revision, what)
    if cached is not None:
        logger.info("%s=%s: using the cached snapshot %s", what, name_or_path, cached)
        return cached

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        raise ModelSourceError(
            f"{what}={name_or_path} is not a local directory and not in the Hugging Face cache, and "
            f"HF_HUB_OFFLINE is set; download it where there is network "
            f"(huggingface-cli download {name_or_path}) or pass a local directory"
        )

    endpoint = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    problem = probe_endpoint(endpoint)
    if problem is not None:
        raise ModelSourceError(
            f"{what}={name_or_path} is not a local directory and not in the Hugging Face cache, and the "
            f"hub at {endpoint} cannot be reached ({problem}); download it where there is network "
            f"(huggingface-cli download {name_or_path}) or pass a local directory"
        )
    return name_or_path


def source_identity(name_or_path: str, revision: str | None, what: str, digests) -> dict[str, str]:
    """What a model source's files are, for cache keys: a hub repository by its resolved commit (the
    snapshot the local hub cache holds, or the hub's answer), a local directory by its files' digests.
    `digests` is an afd.fingerprint.FileDigests."""
    from afd.runtime.fingerprint import digest_of

    source = resolve_source(name_or_path, revision, what)
    if os.path.isdir(source):
        snapshot = os.path.realpath(source)
        if os.path.basename(os.path.dirname(snapshot)) == "snapshots" and snapshot != os.path.realpath(
            os.path.expanduser(name_or_path)
        ):
            # A hub snapshot directory is named by its commit, which determines every file in it.
            return {"hub": name_or_path, "commit": os.path.basename(snapshot)}
        return {"files": digest_of(digests.directory(source))}
    from huggingface_hub import HfApi

    try:
        commit = HfApi().model_info(name_or_path, revision=revision).sha
    except Exception as e:  # any hub error: the id cannot be served as asked
        raise ModelSourceError(
            f"{what}={name_or_path}: the hub cannot resolve it ({type(e).__name__}: {e})"
        ) from e
    return {"hub": name_or_path, "commit": str(commit)}


def _cached_snapshot(repo_id: str, revision: str | None, what: str) -> str | None:
    """The local snapshot directory of `repo_id` at `revision` if the HF cache holds one; no network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError

    try:
        return snapshot_download(repo_id, revision=revision, local_files_only=True)
    except HFValidationError as e:
        raise ModelSourceError(
            f"{what}={repo_id} is neither an existing local directory nor a valid hub id ({e})"
        ) from e
    except IncompleteSnapshotError as e:
        # A partial download (e.g. `--include "*.safetensors" "*.json"`) is often all a model needs;
        # transformers says clearly which file is missing if it is not.
        snapshot = getattr(e, "snapshot_path", None)
        if snapshot and os.path.isfile(os.path.join(snapshot, "config.json")):
            return snapshot
        return None
    except LocalEntryNotFoundError:
        return None


def probe_endpoint(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if a TCP connection to the endpoint's host opens within `timeout`, else the reason it did not.

    A proxy (HTTPS_PROXY / HTTP_PROXY) is probed instead of the hub when one is set, as the hub client
    would connect through it.
    """
    url = urlparse(endpoint)
    if not url.hostname:
        return f"HF_ENDPOINT={endpoint!r} has no host"
    proxy = _proxy_for(url.scheme, url.hostname)
    target = urlparse(proxy) if proxy else url
    host = target.hostname or url.hostname
    port = target.port or (443 if target.scheme == "https" else 80)
    result: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as e:  # refused, DNS failure, unreachable network, timeout
            result.append(f"{type(e).__name__}: {e}")

    # getaddrinfo ignores socket timeouts and can hang for tens of seconds on a broken resolver, so the
    # whole probe runs in a daemon thread that is abandoned after the timeout.
    thread = threading.Thread(target=connect, name="afd-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not result:
        return f"no connection to {host}:{port} within {timeout:.0f} s"
    return None if result[0] is None else f"{result[0]} connecting to {host}:{port}"


def _proxy_for(scheme: str, host: str) -> str | None:
    import urllib.request

    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme or "https")
