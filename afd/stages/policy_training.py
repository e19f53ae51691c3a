"""What every policy-training stage (sft, dpo, rl) does around its TRL trainer: train a copy of the
starting policy, merge LoRA, save weights + tokenizer + log history into a cache entry, and hand the
result on without reading it back from disk."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

from afd.context import RunContext
from afd.distributed import is_main_process
from afd.models import apply_lora
from afd.policies import PolicyHandle, saved_policy

TrainerFactory = Callable[[Any, Any, Path], Any]
"""(model to train, tokenizer, output dir) -> a TRL trainer."""


def train_policy_stage(
    ctx: RunContext,
    stage: str,
    spec: dict[str, Any],
    start: PolicyHandle,
    name: str,
    make_trainer: TrainerFactory,
) -> PolicyHandle:
    """The policy `name` trained from `start` by `make_trainer`, cached under `stage` by `spec`."""
    lora = ctx.cfg.model.lora
    trained_here: dict = {}

    def build(out: Path) -> None:
        model, tokenizer = start.get()
        # The starting policy stays intact: later stages sample it, score it, or use it as reference.
        trainer = make_trainer(apply_lora(copy.deepcopy(model), lora), tokenizer, out)
        trainer.train()
        # Merged weights load like any model: sampling and later stages need no peft.
        trained = trainer.model.merge_and_unload() if lora.enabled else trainer.model
        if is_main_process():  # the copy the cache publishes; other ranks keep theirs in memory
            trained.save_pretrained(out)
            tokenizer.save_pretrained(out)
            (out / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))
        trained_here["policy"] = (trained.eval(), tokenizer)

    entry = ctx.cache.get_or_build(stage, spec, build)
    handle = saved_policy(ctx, name, entry, {stage: entry.name})
    if "policy" in trained_here:
        handle.preload(trained_here["policy"])
    return handle


def train_log(policy: PolicyHandle) -> list[dict[str, Any]]:
    """The trainer's logged steps (entries with a loss) of a policy a stage trained."""
    return [h for h in json.loads((policy.path / "train_log.json").read_text()) if "loss" in h]


def log_training(ctx: RunContext, policy: PolicyHandle, prefix: str) -> None:
    """The training curve of a (possibly cached) stage, into the run's tracker under `prefix/`."""
    for h in train_log(policy):
        ctx.tracker.log({f"{prefix}/{k}": v for k, v in h.items() if isinstance(v, (int, float))})
