"""The dpo stage: TRL's DPOTrainer on (prompt, chosen, rejected) pairs, starting from and referenced to
the given policy; cached, with a divergence guard."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import datasets
from trl import DPOConfig, DPOTrainer

from afd.config.stages import DPOSettings, StabilitySettings
from afd.data.pairs import Pair, warn_pairs_over_length
from afd.models.policies import PolicyHandle
from afd.runtime.context import RunContext
from afd.stages.policy_training import log_training, train_policy_stage
from afd.stages.stability import DivergenceGuard
from afd.stages.trainer_args import common_trainer_args


def dpo_dataset(pairs: Sequence[Pair]) -> datasets.Dataset:
    """Conversational preference rows; the positive response is `chosen`."""
    return datasets.Dataset.from_dict(
        {
            "prompt": [p.prompt for p in pairs],
            "chosen": [[{"role": "assistant", "content": p.positive}] for p in pairs],
            "rejected": [[{"role": "assistant", "content": p.negative}] for p in pairs],
        }
    )


def train_dpo(
    ctx: RunContext,
    policy: PolicyHandle,
    pairs: Sequence[Pair],
    settings: DPOSettings,
    stability: StabilitySettings,
    name: str,
) -> PolicyHandle:
    """DPO from `policy` (also the frozen reference) on `pairs`; returns the new policy `name`."""
    cfg = ctx.cfg
    hparams = {"beta": settings.beta, **settings.trainer.as_trainer_args()}
    spec = {
        "policy": policy.spec,
        "pairs": [[p.prompt_id, p.positive, p.negative] for p in pairs],
        "hparams": hparams,
        "seed": cfg.seed,
        "bf16": ctx.bf16,
        "device": ctx.device.type,
    }

    def make_trainer(model, tokenizer, out: Path) -> DPOTrainer:
        warn_pairs_over_length(
            tokenizer, pairs, cfg.model.max_length, f"dpo ({name})", "TRL keeps their first tokens"
        )
        args = DPOConfig(
            **common_trainer_args(ctx, out, settings.trainer),
            **hparams,
            max_length=cfg.model.max_length,
        )
        guard = DivergenceGuard(stability, f"DPO ({name})", f"{policy.name} ({policy.path or 'pi_init'})")
        return DPOTrainer(
            model=model,
            args=args,
            train_dataset=dpo_dataset(pairs),
            processing_class=tokenizer,
            callbacks=[guard],
        )

    trained = train_policy_stage(ctx, "dpo", spec, policy, name, make_trainer)
    log_training(ctx, trained, f"dpo/{name}")
    return trained
