"""The SFT stage: forward KL = token-level cross-entropy on the demonstrations (paper section 2).

TRL's SFTTrainer on conversational prompt/completion pairs, so the loss covers response tokens only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from afd.config.stages import SFTSettings
from afd.data.pairs import is_heldout
from afd.generation.prompts import warn_over_length
from afd.models.policies import PolicyHandle
from afd.runtime.context import RunContext
from afd.stages.policy_training import train_log, train_policy_stage
from afd.stages.trainer_args import common_trainer_args

log = logging.getLogger(__name__)


def sft_dataset(train: datasets.Dataset) -> datasets.Dataset:
    """Conversational prompt-completion rows: TRL masks the prompt (completion_only_loss)."""
    return datasets.Dataset.from_dict(
        {
            "prompt": list(train["prompt"]),
            "completion": [[{"role": "assistant", "content": d}] for d in train["demonstration"]],
        }
    )


def train_sft(
    ctx: RunContext, init: PolicyHandle, train: datasets.Dataset, settings: SFTSettings
) -> PolicyHandle:
    """pi_SFT: fine-tune a copy of pi_init on the train split; cached by model, data, settings and seed."""
    cfg = ctx.cfg
    held_out = [is_heldout(pid, settings.validation_fraction, cfg.seed) for pid in train["prompt_id"]]
    validation = train.select([i for i, h in enumerate(held_out) if h])
    train = train.select([i for i, h in enumerate(held_out) if not h])
    spec = {
        "init": init.spec,
        # The demonstrations themselves (prompt ids are hashes of the prompts): a file edited in place
        # is a miss, and other splits' sizes do not matter.
        "examples": list(zip(train["prompt_id"], train["demonstration"])),
        "validation": list(validation["prompt_id"]),
        "trainer": settings.trainer.as_trainer_args(),
        "group_by_length": settings.group_by_length,
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
        evaluate = len(validation) > 0
        args = TRLSFTConfig(
            **common_trainer_args(ctx, out, settings.trainer),
            **settings.trainer.as_trainer_args(),
            max_length=cfg.model.max_length,
            completion_only_loss=True,
            train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
            eval_strategy="epoch" if evaluate else "no",
            per_device_eval_batch_size=settings.trainer.per_device_train_batch_size,
        )
        return SFTTrainer(
            model=model,
            args=args,
            train_dataset=sft_dataset(train),
            eval_dataset=sft_dataset(validation) if evaluate else None,
            processing_class=tokenizer,
        )

    sft = train_policy_stage(ctx, "sft", spec, init, "sft", make_trainer)
    for h in json.loads((sft.path / "train_log.json").read_text()):
        if "eval_loss" in h:
            ctx.tracker.log({"sft/validation_loss": h["eval_loss"], "sft/epoch": h["epoch"]})
    return sft


def sft_metrics(sft: PolicyHandle) -> dict[str, float]:
    """sft/final_loss (the last logged training loss) and, with a validation split,
    sft/validation_loss after the last epoch and sft/best_validation_epoch."""
    losses = [h["loss"] for h in train_log(sft)]
    metrics = {"sft/final_loss": losses[-1]} if losses else {}
    evals = [h for h in json.loads((sft.path / "train_log.json").read_text()) if "eval_loss" in h]
    if evals:
        best = min(evals, key=lambda h: h["eval_loss"])
        metrics.update(
            {"sft/validation_loss": evals[-1]["eval_loss"], "sft/best_validation_epoch": best["epoch"]}
        )
    return metrics
