"""The SFT stage: forward KL = token-level cross-entropy on the demonstrations (paper section 2).

TRL's SFTTrainer on conversational prompt/completion pairs, so the loss covers response tokens only.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import datasets
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from afd.context import RunContext
from afd.models import apply_lora
from afd.policies import PolicyHandle, saved_policy
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

    trained_here: dict = {}

    def build(out: Path) -> None:
        model, tokenizer = base.get()
        # pi_init stays untouched for later stages (reference samples, log-ratio rewards).
        model = apply_lora(copy.deepcopy(model), cfg.model.lora)
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
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=sft_dataset(train), processing_class=tokenizer
        )
        result = trainer.train()
        trained = trainer.model
        if cfg.model.lora.enabled:
            # Merged weights load like any model: sampling and later stages need no peft.
            trained = trained.merge_and_unload()
        trained.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))
        trained_here["policy"] = (trained.eval(), tokenizer)
        log.info("SFT finished: %s", result.metrics)

    entry = ctx.cache.get_or_build("sft", spec, build)
    history = json.loads((entry / "train_log.json").read_text())
    final_loss = [h["loss"] for h in history if "loss" in h]
    if final_loss:
        ctx.tracker.summary({"sft/final_loss": final_loss[-1]})
    handle = saved_policy(ctx, "sft", entry, {"sft": entry.name})
    if "policy" in trained_here:
        # Just trained in this process: use it rather than reading the same weights back from disk.
        handle.preload(trained_here["policy"])
    return handle
