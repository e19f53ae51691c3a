"""The train_rm stage: a sequence classifier with a scalar head; reward = its logit (paper section 3).

Pointwise BCE (the paper's discriminator loss) through transformers' Trainer, whose single-label
multi-label head computes exactly BCE-with-logits; Bradley-Terry through TRL's RewardTrainer.
"""

from __future__ import annotations

import gc
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import datasets

from afd.config import RMLoss, RMTextFormat
from afd.context import RunContext
from afd.distributed import is_main_process
from afd.rewards import ClassifierReward, encode_pairs
from afd.rm_data import RMPair, pairwise_accuracy, warn_pairs_over_length
from afd.sampling import warn_over_length
from afd.trainer_args import common_trainer_args

log = logging.getLogger(__name__)


def _bce_trainer(ctx: RunContext, model, tokenizer, pairs: Sequence[RMPair], out: Path):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    cfg = ctx.cfg
    prompts = [p.prompt for p in pairs for _ in range(2)]
    responses = [r for p in pairs for r in (p.positive, p.negative)]
    labels = [[float(y)] for _ in pairs for y in (1, 0)]
    warn_over_length(
        tokenizer,
        prompts,
        responses,
        cfg.model.max_length,
        "reward model: training sequences",
        "they keep their last tokens (the response and the end of the prompt)",
    )
    ids = encode_pairs(tokenizer, RMTextFormat.chat_template, prompts, responses, cfg.model.max_length)
    train = datasets.Dataset.from_dict(
        {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids], "labels": labels}
    )
    # num_labels=1 + multi_label_classification = BCEWithLogitsLoss on the logit.
    model.config.problem_type = "multi_label_classification"
    args = TrainingArguments(
        **common_trainer_args(cfg.seed, out / "trainer", ctx.device, ctx.bf16, "none"),
        **_rm_hparams(ctx),
    )
    tokenizer.padding_side = "right"
    return Trainer(
        model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer)
    )


def _bt_trainer(ctx: RunContext, model, tokenizer, pairs: Sequence[RMPair], out: Path):
    from trl import RewardConfig, RewardTrainer

    cfg = ctx.cfg
    train = datasets.Dataset.from_dict(
        {
            "prompt": [p.prompt for p in pairs],
            "chosen": [[{"role": "assistant", "content": p.positive}] for p in pairs],
            "rejected": [[{"role": "assistant", "content": p.negative}] for p in pairs],
        }
    )
    warn_pairs_over_length(
        tokenizer, pairs, cfg.model.max_length, "reward model", "TRL's RewardTrainer drops those pairs"
    )
    args = RewardConfig(
        **common_trainer_args(cfg.seed, out / "trainer", ctx.device, ctx.bf16, "none"),
        **_rm_hparams(ctx),
        max_length=cfg.model.max_length,
    )
    tokenizer.padding_side = "right"
    return RewardTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)


def _rm_hparams(ctx: RunContext) -> dict[str, Any]:
    rm = ctx.cfg.rm
    return {
        "learning_rate": rm.learning_rate,
        "num_train_epochs": rm.num_train_epochs,
        "max_steps": rm.max_steps,
        "per_device_train_batch_size": rm.per_device_train_batch_size,
        "logging_steps": rm.logging_steps,
        **rm.trl_args,
    }


TRAINERS = {RMLoss.bce: _bce_trainer, RMLoss.bt: _bt_trainer}


def train_rm(
    ctx: RunContext,
    init_source: str,
    init_spec: dict[str, Any],
    pairs: Sequence[RMPair],
    loss: RMLoss,
    name: str = "reward model",
) -> ClassifierReward:
    """Train (or reuse) the reward model; returns it ready to score. Its cache entry (weights, tokenizer,
    train_log.json) is `reward.path`."""
    from transformers import AutoModelForSequenceClassification

    from afd.models import apply_lora, load_tokenizer

    cfg = ctx.cfg
    spec = {
        "init": init_spec,
        "pairs": [[p.prompt_id, p.positive, p.negative] for p in pairs],
        "loss": loss,
        # Only what shapes training: data settings are in the pairs, scoring settings do not matter.
        "hparams": _rm_hparams(ctx),
        "init_head": cfg.rm.init,
        "lora": cfg.rm.lora,
        "max_length": cfg.model.max_length,
        "chat_template": cfg.model.chat_template,
        "seed": cfg.seed,
        "bf16": ctx.bf16,
    }

    def build(out: Path) -> None:
        tokenizer = load_tokenizer(init_source, cfg.model)
        model = AutoModelForSequenceClassification.from_pretrained(init_source, num_labels=1, dtype=ctx.dtype)
        # Sequence classification pools the last non-pad token, found through config.pad_token_id.
        model.config.pad_token_id = tokenizer.pad_token_id
        model = apply_lora(model, cfg.rm.lora, task_type="SEQ_CLS")
        trainer = TRAINERS[loss](ctx, model, tokenizer, pairs, out)
        trainer.train()
        trained = trainer.model.merge_and_unload() if cfg.rm.lora.enabled else trainer.model
        trained.config.problem_type = None
        if is_main_process():  # the copy the cache publishes
            trained.save_pretrained(out)
            tokenizer.save_pretrained(out)
            (out / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))

    entry = ctx.cache.get_or_build("train_rm", spec, build)
    gc.collect()  # the trainer and its optimizer state
    for h in json.loads((entry / "train_log.json").read_text()):
        if "loss" in h:
            ctx.tracker.log({"rm/train_loss": h["loss"], "rm/train_step": h.get("step", 0)})
    # Read back from the entry, as on a warm cache: one code path, and no trainer-patched object.
    reward = load_trained_rm(ctx, entry, name)
    reward.path = entry
    return reward


def load_trained_rm(ctx: RunContext, entry: Path, name: str = "reward model") -> ClassifierReward:
    from afd.models import load_reward_model

    return _as_reward(ctx, *load_reward_model(str(entry), "reward model", ctx.device, ctx.dtype), name)


def _as_reward(ctx: RunContext, model, tokenizer, name: str) -> ClassifierReward:
    # Just trained in this process, or read from the cache: either way loaded once.
    model.config.pad_token_id = tokenizer.pad_token_id
    cfg = ctx.cfg
    return ClassifierReward(
        name,
        model,
        tokenizer,
        RMTextFormat.chat_template,
        cfg.model.max_length,
        cfg.rm.batch_size,
        bf16=ctx.bf16,
    )


def heldout_accuracy(reward, pairs: Sequence[RMPair], pointwise: bool) -> dict[str, float]:
    """rm/accuracy (held-out pairs ordered correctly) and, if `pointwise` (a BCE-trained logit),
    rm/pointwise_accuracy (sign of the logit = label; other rewards have an arbitrary offset)."""
    if not pairs:
        return {}
    prompts = [p.prompt for p in pairs]
    pos = reward.score(prompts, [p.positive for p in pairs])
    neg = reward.score(prompts, [p.negative for p in pairs])
    metrics = {"rm/accuracy": pairwise_accuracy(pos, neg), "rm/heldout_pairs": len(pairs)}
    if pointwise:
        metrics["rm/pointwise_accuracy"] = float(((pos > 0).sum() + (neg <= 0).sum()) / (2 * len(pairs)))
    return metrics
