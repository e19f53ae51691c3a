"""The dpo stage: TRL's DPOTrainer on (prompt, chosen, rejected) pairs, starting from and referenced to
the given policy; cached, with a divergence guard."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import datasets
from trl import DPOConfig, DPOTrainer

from afd.context import RunContext
from afd.policies import PolicyHandle
from afd.rm_data import RMPair, warn_pairs_over_length
from afd.stability import DivergenceGuard
from afd.stages.policy_training import log_training, train_policy_stage
from afd.trainer_args import common_trainer_args


def dpo_dataset(pairs: Sequence[RMPair]) -> datasets.Dataset:
    """Conversational preference rows; the positive response is `chosen`."""
    return datasets.Dataset.from_dict(
        {
            "prompt": [p.prompt for p in pairs],
            "chosen": [[{"role": "assistant", "content": p.positive}] for p in pairs],
            "rejected": [[{"role": "assistant", "content": p.negative}] for p in pairs],
        }
    )


def train_dpo(ctx: RunContext, policy: PolicyHandle, pairs: Sequence[RMPair], name: str) -> PolicyHandle:
    """DPO from `policy` (also the frozen reference) on `pairs`; returns the new policy `name`."""
    cfg = ctx.cfg
    d = cfg.dpo
    hparams = {
        "beta": d.beta,
        "learning_rate": d.learning_rate,
        "num_train_epochs": d.num_train_epochs,
        "max_steps": d.max_steps,
        "per_device_train_batch_size": d.per_device_train_batch_size,
        "logging_steps": d.logging_steps,
        **d.trl_args,
    }
    spec = {
        "policy": policy.spec,
        "pairs": [[p.prompt_id, p.positive, p.negative] for p in pairs],
        "hparams": hparams,
        "lora": cfg.model.lora,
        "max_length": cfg.model.max_length,
        "seed": cfg.seed,
        "bf16": ctx.bf16,
        "device": ctx.device.type,
    }

    def make_trainer(model, tokenizer, out: Path) -> DPOTrainer:
        warn_pairs_over_length(
            tokenizer, pairs, cfg.model.max_length, f"dpo ({name})", "TRL keeps their first tokens"
        )
        args = DPOConfig(
            **common_trainer_args(cfg.seed, out / "trainer", ctx.device, ctx.bf16, ctx.tracker.report_to),
            **hparams,
            max_length=cfg.model.max_length,
        )
        guard = DivergenceGuard(
            cfg.stability, f"DPO ({name})", f"{policy.name} ({policy.path or 'the base model'})"
        )
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
