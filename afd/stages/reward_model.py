"""The reward_model stage: a sequence classifier with a scalar head trained on pairs; reward = its logit
(paper section 3). Cached, and always read back from its entry.

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

from afd.config.run import RMTextFormat
from afd.config.stages import RewardModelConfig, RMLoss
from afd.data.pairs import Pair, pairwise_accuracy, warn_pairs_over_length
from afd.generation.prompts import warn_over_length
from afd.rewards.classifier import ClassifierReward, encode_pairs
from afd.runtime.context import RunContext
from afd.runtime.distributed import is_main_process
from afd.stages.trainer_args import common_trainer_args

log = logging.getLogger(__name__)


def _bce_trainer(ctx: RunContext, cfg: RewardModelConfig, model, tokenizer, pairs: Sequence[Pair], out: Path):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    max_length = ctx.cfg.model.max_length
    prompts = [p.prompt for p in pairs for _ in range(2)]
    responses = [r for p in pairs for r in (p.positive, p.negative)]
    labels = [[float(y)] for _ in pairs for y in (1, 0)]
    warn_over_length(
        tokenizer,
        prompts,
        responses,
        max_length,
        "reward model: training sequences",
        "they keep their last tokens (the response and the end of the prompt)",
    )
    ids = encode_pairs(tokenizer, RMTextFormat.chat_template, prompts, responses, max_length)
    train = datasets.Dataset.from_dict(
        {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids], "labels": labels}
    )
    # num_labels=1 + multi_label_classification = BCEWithLogitsLoss on the logit.
    model.config.problem_type = "multi_label_classification"
    args = TrainingArguments(
        **common_trainer_args(ctx.cfg.seed, out / "trainer", ctx.device, ctx.bf16, "none"),
        **cfg.trainer.as_trainer_args(),
    )
    # The classifier pools the last non-pad token: right padding (this stage's own tokenizer).
    tokenizer.padding_side = "right"
    return Trainer(
        model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer)
    )


def _bt_trainer(ctx: RunContext, cfg: RewardModelConfig, model, tokenizer, pairs: Sequence[Pair], out: Path):
    from trl import RewardConfig, RewardTrainer

    train = datasets.Dataset.from_dict(
        {
            "prompt": [p.prompt for p in pairs],
            "chosen": [[{"role": "assistant", "content": p.positive}] for p in pairs],
            "rejected": [[{"role": "assistant", "content": p.negative}] for p in pairs],
        }
    )
    max_length = ctx.cfg.model.max_length
    warn_pairs_over_length(
        tokenizer, pairs, max_length, "reward model", "TRL's RewardTrainer drops those pairs"
    )
    args = RewardConfig(
        **common_trainer_args(ctx.cfg.seed, out / "trainer", ctx.device, ctx.bf16, "none"),
        **cfg.trainer.as_trainer_args(),
        max_length=max_length,
    )
    tokenizer.padding_side = "right"
    return RewardTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)


TRAINERS = {RMLoss.bce: _bce_trainer, RMLoss.bt: _bt_trainer}


def train_reward_model(
    ctx: RunContext,
    init_dir: str,
    init_spec: dict[str, Any],
    pairs: Sequence[Pair],
    cfg: RewardModelConfig,
    name: str = "reward model",
) -> ClassifierReward:
    """Train (or reuse) a reward model on `pairs`, starting from the weights in `init_dir` (identified by
    `init_spec` in the cache key); returns it ready to score, its cache entry as `reward.path`."""
    from transformers import AutoModelForSequenceClassification

    from afd.models.loading import load_tokenizer
    from afd.models.lora import apply_lora

    spec = {
        "init": init_spec,
        "pairs": [[p.prompt_id, p.positive, p.negative] for p in pairs],
        "loss": cfg.loss,
        # Only what shapes training: the data is in the pairs, scoring settings do not matter.
        "trainer": cfg.trainer,
        "lora": cfg.lora,
        "max_length": ctx.cfg.model.max_length,
        "chat_template": ctx.cfg.model.chat_template,
        "seed": ctx.cfg.seed,
        "bf16": ctx.bf16,
    }

    def build(out: Path) -> None:
        tokenizer = load_tokenizer(init_dir, ctx.cfg.model)
        model = AutoModelForSequenceClassification.from_pretrained(init_dir, num_labels=1, dtype=ctx.dtype)
        # Sequence classification pools the last non-pad token, found through config.pad_token_id.
        model.config.pad_token_id = tokenizer.pad_token_id
        model = apply_lora(model, cfg.lora, task_type="SEQ_CLS")
        trainer = TRAINERS[cfg.loss](ctx, cfg, model, tokenizer, pairs, out)
        trainer.train()
        trained = trainer.model.merge_and_unload() if cfg.lora.enabled else trainer.model
        trained.config.problem_type = None
        if is_main_process():  # the copy the cache publishes
            trained.save_pretrained(out)
            tokenizer.save_pretrained(out)
            (out / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))

    entry = ctx.cache.get_or_build("reward_model", spec, build)
    gc.collect()  # the trainer and its optimizer state
    for h in json.loads((entry / "train_log.json").read_text()):
        if "loss" in h:
            ctx.tracker.log({"reward/train_loss": h["loss"], "reward/train_step": h.get("step", 0)})
    # Read back from the entry, as on a warm cache: one code path, and no trainer-patched object.
    reward = load_trained_reward_model(ctx, entry, name)
    reward.path = entry
    return reward


def load_trained_reward_model(ctx: RunContext, entry: Path, name: str = "reward model") -> ClassifierReward:
    from afd.models.loading import load_reward_model

    model, tokenizer = load_reward_model(str(entry), "reward model", ctx.device, ctx.dtype)
    return ClassifierReward(
        name,
        model,
        tokenizer,
        RMTextFormat.chat_template,
        ctx.cfg.model.max_length,
        ctx.cfg.scoring.batch_size,
        bf16=ctx.bf16,
    )


def heldout_accuracy(reward, pairs: Sequence[Pair], pointwise: bool) -> dict[str, float]:
    """reward/accuracy (held-out pairs ordered correctly) and, if `pointwise` (a BCE-trained logit),
    reward/pointwise_accuracy (sign of the logit = label; other rewards have an arbitrary offset)."""
    if not pairs:
        return {}
    prompts = [p.prompt for p in pairs]
    pos = reward.score(prompts, [p.positive for p in pairs])
    neg = reward.score(prompts, [p.negative for p in pairs])
    metrics = {"reward/accuracy": pairwise_accuracy(pos, neg), "reward/heldout_pairs": len(pairs)}
    if pointwise:
        metrics["reward/pointwise_accuracy"] = float(((pos > 0).sum() + (neg <= 0).sum()) / (2 * len(pairs)))
    return metrics


def trained_reward(
    ctx: RunContext,
    init_dir: str,
    init_spec: dict[str, Any],
    pairs: Sequence[Pair],
    truth: Sequence[Pair] | None,
    cfg: RewardModelConfig,
    name: str,
) -> tuple[ClassifierReward, dict[str, float]]:
    """A reward model trained on `pairs` minus a held-out share of prompts, and its reward/* metrics.

    `truth`: the same pairs with their true labels when `pairs` carry noise; held-out accuracy is then
    measured against the truth, not the noise."""
    from afd.data.pairs import split_heldout
    from afd.runtime.errors import UserError

    train, heldout = split_heldout(pairs, cfg.heldout_fraction, ctx.cfg.seed)
    if not train:
        raise UserError(
            f"no reward-model training pairs left (dataset.align_size={ctx.cfg.dataset.align_size}, "
            f"heldout_fraction={cfg.heldout_fraction})"
        )
    reward = train_reward_model(ctx, init_dir, init_spec, train, cfg, name)
    if truth is not None:
        heldout = split_heldout(truth, cfg.heldout_fraction, ctx.cfg.seed)[1]
    metrics = {
        **heldout_accuracy(reward, heldout, pointwise=cfg.loss is RMLoss.bce),
        "reward/train_pairs": len(train),
    }
    return reward, metrics
