"""Policies known by the spec that determines them and loaded lazily, at most once per run.

A stage whose output is cached never loads its model; a model two stages need is loaded once.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
from pathlib import Path
from typing import Any, Callable

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from afd.config.run import LoraSettings
from afd.models.hub import ModelSourceError
from afd.models.loading import load_policy, model_identity, policy_source
from afd.runtime.context import RunContext

log = logging.getLogger(__name__)

Loaded = tuple[PreTrainedModel, PreTrainedTokenizerBase]


class PolicyHandle:
    def __init__(
        self,
        name: str,
        spec: dict[str, Any],
        loader: Callable[[], Loaded],
        path: Path | None = None,
        locate: Callable[[], str] | None = None,
    ):
        self.name = name
        self.path = path
        """Where a saved policy's weights and tokenizer live (None for pi_init, the configured model)."""
        self.spec = spec
        """Everything that determines the policy's weights: part of every downstream cache key."""
        self._loader = loader
        self._locate = locate
        self._loaded: Loaded | None = None

    def weights_dir(self) -> str:
        """A local directory holding exactly this policy's weights (what TRL builds a KL reference from)."""
        if self.path is not None:
            return str(self.path)
        assert self._locate is not None, f"policy {self.name} has neither a path nor a locator"
        return self._locate()

    def get(self) -> Loaded:
        if self._loaded is None:
            log.info("loading policy %s", self.name)
            self._loaded = self._loader()
        return self._loaded

    def release(self) -> None:
        self._loaded = None
        gc.collect()


def init_policy(ctx: RunContext) -> PolicyHandle:
    """pi_init: the configured model before any training, identified by its settings and the contents
    of its files."""
    cfg = ctx.cfg

    def locate() -> str:
        # A hub model that was loaded is in the local hub cache, so this finds its snapshot directory.
        source = policy_source(cfg.model, cfg.paths.cache_dir)[0]
        if not os.path.isdir(source):
            raise ModelSourceError(
                f"model.name_or_path={cfg.model.name_or_path}: no local copy of its weights to serve as a "
                "KL reference; download it first (huggingface-cli download) or pass a local directory"
            )
        return source

    handle = PolicyHandle(
        "init",
        {"model": cfg.model, "weights": model_identity(cfg.model, ctx.cache.digests)},
        lambda: load_policy(cfg.model, ctx.cfg.paths.cache_dir, ctx.device, ctx.dtype),
        locate=locate,
    )
    ctx.policies.append(handle)
    return handle


def saved_policy(ctx: RunContext, name: str, path: Path, spec: dict[str, Any]) -> PolicyHandle:
    """A policy a stage saved (merged weights + tokenizer), loaded through the same path as a user's model."""
    model_cfg = dataclasses.replace(
        ctx.cfg.model,
        name=f"{ctx.cfg.model.name}-{name}",
        name_or_path=str(path),
        gguf_package=None,
        gguf_file=None,
        revision=None,
        lora=LoraSettings(enabled=False),
    )
    handle = PolicyHandle(
        name, spec, lambda: load_policy(model_cfg, ctx.cfg.paths.cache_dir, ctx.device, ctx.dtype), path=path
    )
    ctx.policies.append(handle)
    return handle


def release_policies(ctx: RunContext, keep: PolicyHandle | None = None) -> None:
    """Drop every loaded policy of the run but `keep`. A training stage calls it once it holds what it
    trains: the trainer needs none of them (TRL loads a KL reference from disk), and each would hold its
    weights through the stage's peak (SmolLM2: 0.54 GB apiece). A sampling stage calls it with its own
    policy under `compute.low_memory`. A later stage that needs one loads it again (about two seconds)."""
    for handle in ctx.policies:
        if handle is not keep:
            handle.release()
