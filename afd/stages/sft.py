"""The SFT stage: forward KL = token-level cross-entropy on the demonstrations (paper section 2).

TRL's SFTTrainer on conversational prompt/completion pairs, so the loss covers response tokens only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from afd.context import RunContext
from afd.policies import PolicyHandle
from afd.sampling import warn_over_length
from afd.stages.policy_training import train_log, train_policy_stage
from afd.trainer_args import common_trainer_args

log = logging.getLogger(__name__)


def sft_dataset(train: datasets.Dataset) -> datasets.Dataset:
    """Conversational prompt-completion rows: TRL masks the prompt (completion_only_loss)."""
    return datasets.Dataset.from_dict(
        {
            "prompt": list(train["prompt"]),
            "completion": [[{"role": "assistant", "content": d}] for d in train["demonstration"]],
        }
    )


def train_sft(ctx: RunContext, base: PolicyHandle, train: datasets.Dataset) -> PolicyHandle:
    """pi_SFT: fine-tune a copy of pi_init on the train split; cached by model, data, settings and seed."""
    cfg = ctx.cfg
    spec = {
        "base": base.spec,
        "dataset": cfg.dataset,
        # The demonstrations themselves: a file edited in place must not hit the old entry.
        "examples": list(zip(train["prompt_id"], train["demonstration"])),
        "sft": cfg.sft,
        "seed": cfg.seed,
        "bf16": ctx.bf16,
        "device": ctx.device.type,
    }

    def make_trainer(model, tokenizer, out: Path) -> SFTTrainer:
        warn_over_length(
            tokenizer,
            train["prompt"],
            train["demonstration"],
            cfg.model.max_length,
            "sft: demonstrations",
            "TRL keeps their first tokens, so their ends are not trained on",
        )
        args = TRLSFTConfig(
            **common_trainer_args(cfg.seed, out / "trainer", ctx.device, ctx.bf16, ctx.tracker.report_to),
            learning_rate=cfg.sft.learning_rate,
            num_train_epochs=cfg.sft.num_train_epochs,
            max_steps=cfg.sft.max_steps,
            per_device_train_batch_size=cfg.sft.per_device_train_batch_size,
            gradient_accumulation_steps=cfg.sft.gradient_accumulation_steps,
            logging_steps=cfg.sft.logging_steps,
            max_length=cfg.model.max_length,
            completion_only_loss=True,
            **cfg.sft.trl_args,
        )
        return SFTTrainer(
            model=model, args=args, train_dataset=sft_dataset(train), processing_class=tokenizer
        )

    sft = train_policy_stage(ctx, "sft", spec, base, "sft", make_trainer)
    losses = [h["loss"] for h in train_log(sft)]
    if losses:
        ctx.tracker.summary({"sft/final_loss": losses[-1]})
    return sft
