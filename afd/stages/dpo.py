"""The dpo stage: TRL's DPOTrainer on (prompt, chosen, rejected) pairs, starting from and referenced to
the given policy; cached, with a divergence guard."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Sequence

import datasets
from trl import DPOConfig, DPOTrainer

from afd.context import RunContext
from afd.models import apply_lora
from afd.policies import PolicyHandle, saved_policy
from afd.rm_data import RMPair
from afd.stability import DivergenceGuard
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
    trained_here: dict = {}

    def build(out: Path) -> None:
        model, tokenizer = policy.get()
        # The starting policy stays intact: it is the reference and may be evaluated later.
        model = apply_lora(copy.deepcopy(model), cfg.model.lora)
        args = DPOConfig(
            **common_trainer_args(cfg.seed, out / "trainer", ctx.device, ctx.bf16, ctx.tracker.report_to),
            **hparams,
            max_length=cfg.model.max_length,
        )
        guard = DivergenceGuard(
            cfg.stability, f"DPO ({name})", f"{policy.name} ({policy.path or 'the base model'})"
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=dpo_dataset(pairs),
            processing_class=tokenizer,
            callbacks=[guard],
        )
        trainer.train()
        trained = trainer.model.merge_and_unload() if cfg.model.lora.enabled else trainer.model
        trained.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))
        trained_here["policy"] = (trained.eval(), tokenizer)

    entry = ctx.cache.get_or_build("dpo", spec, build)
    for h in json.loads((entry / "train_log.json").read_text()):
        if "loss" in h:
            ctx.tracker.log({f"dpo/{name}/{k}": v for k, v in h.items() if isinstance(v, (int, float))})
    handle = saved_policy(ctx, name, entry, {"dpo": entry.name})
    if "policy" in trained_here:
        handle.preload(trained_here["policy"])
    return handle
