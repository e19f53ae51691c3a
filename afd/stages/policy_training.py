"""What every policy-training stage (sft, dpo, rl) does around its TRL trainer: train a copy of the
starting policy against an explicit KL reference, merge LoRA, save weights + tokenizer + log history into
a cache entry, and hand on the policy in that entry.

The trained policy is always read back from its entry, never handed on as the trainer's object: TRL
patches the model it trains (a fused LM-head forward that closes over the model's original forward), and
a deep copy of a patched model still runs the *original* model's forward, so a later stage "training" a
copy of it would train nothing. Reading the entry also makes a cold run and a warm one the same code path.
"""

from __future__ import annotations

import copy
import gc
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
    reference: PolicyHandle | None = None,
) -> PolicyHandle:
    """The policy `name` trained from `start` by `make_trainer`, cached under `stage` by `spec` plus the
    reference's spec. `reference` (default: `start`) is the policy a KL-regularised trainer (DPO, GRPO,
    RLOO) regularises towards; trainers without a KL term ignore it."""
    lora = ctx.cfg.model.lora
    reference = reference or start
    if lora.enabled and reference is not start:
        # With LoRA, TRL's reference is the model under the adapters, i.e. `start`.
        raise ValueError(
            f"{name}: a KL reference ({reference.name}) other than the starting policy ({start.name}) "
            "needs full fine-tuning (model.lora.enabled=false)"
        )

    def build(out: Path) -> None:
        model, tokenizer = start.get()
        # The starting policy stays intact: later stages sample it, score it, or use it as reference.
        policy = copy.deepcopy(model)
        # TRL 1.16 builds the frozen KL reference by loading `config._name_or_path` when it is given none
        # (DPOTrainer without ref_model and PEFT; GRPOTrainer and RLOOTrainer whenever beta > 0). That
        # path is wherever the weights were last loaded from: the base model for a pi_SFT trained in this
        # process, the cache entry for one loaded from it. Point it at the reference's weights on purpose.
        # With LoRA the reference is the model under the adapters, which is `start` (checked above).
        policy.config._name_or_path = reference.weights_dir()
        trainer = make_trainer(apply_lora(policy, lora), tokenizer, out)
        trainer.train()
        # Merged weights load like any model: sampling and later stages need no peft.
        trained = trainer.model.merge_and_unload() if lora.enabled else trainer.model
        if is_main_process():  # the copy the cache publishes
            trained.save_pretrained(out)
            tokenizer.save_pretrained(out)
            (out / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))

    entry = ctx.cache.get_or_build(stage, {**spec, "reference": reference.spec}, build)
    gc.collect()  # the trainer, its optimizer state and its patched model
    return saved_policy(ctx, name, entry, {stage: entry.name})


def train_log(policy: PolicyHandle) -> list[dict[str, Any]]:
    """The trainer's logged steps (entries with a loss) of a policy a stage trained."""
    return [h for h in json.loads((policy.path / "train_log.json").read_text()) if "loss" in h]


def log_training(ctx: RunContext, policy: PolicyHandle, prefix: str) -> None:
    """The training curve of a (possibly cached) stage, into the run's tracker under `prefix/`."""
    for h in train_log(policy):
        ctx.tracker.log({f"{prefix}/{k}": v for k, v in h.items() if isinstance(v, (int, float))})
