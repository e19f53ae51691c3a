"""The reward_model stage: a sequence classifier with a scalar head trained on pairs; reward = its logit
(paper section 3). Cached, and always read back from its entry.

Pointwise BCE (the paper's discriminator loss) or Bradley-Terry, through a transformers Trainer that
encodes each prompt once per batch (afd/stages/classifier_trainer.py).
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

from afd.config.run import RMTextFormat
from afd.config.stages import RewardModelConfig, RMLoss
from afd.data.pairs import Pair, pairwise_accuracy, warn_pairs_over_length
from afd.rewards.classifier import ClassifierReward
from afd.runtime.context import RunContext
from afd.runtime.distributed import is_main_process, world_size
from afd.stages.classifier_trainer import SharedPrefixRewardTrainer, pair_batches
from afd.stages.trainer_args import common_trainer_args, last_checkpoint

log = logging.getLogger(__name__)


def _trainer(ctx: RunContext, cfg: RewardModelConfig, model, tokenizer, pairs: Sequence[Pair], out: Path):
    from transformers import TrainingArguments

    pointwise = cfg.loss is RMLoss.bce
    max_length = ctx.cfg.model.max_length
    warn_pairs_over_length(
        tokenizer,
        pairs,
        max_length,
        "reward model",
        "they keep their last tokens (the response and the end of the prompt)",
    )
    batches = pair_batches(
        tokenizer, pairs, max_length, cfg.trainer.per_device_train_batch_size, pointwise, ctx.cfg.seed
    )
    args = TrainingArguments(
        # The Trainer's checkpointing would drop the prompt's KV cache; shared_prefix_scores keeps it.
        **{**common_trainer_args(ctx, out, cfg.trainer, report_to="none"), "activation_checkpointing": False},
        # One batch of pair_batches per step: the batch size is theirs (cfg.trainer's); its keys are not
        # the model's arguments, so the Trainer must keep them.
        **{**cfg.trainer.as_trainer_args(), "per_device_train_batch_size": 1},
        remove_unused_columns=False,
    )
    return SharedPrefixRewardTrainer(
        model=model,
        args=args,
        train_dataset=batches,
        pointwise=pointwise,
        checkpointing=cfg.trainer.activation_checkpointing,
    )


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
    from afd.models.policies import release_policies

    spec = {
        "init": init_spec,
        "pairs": [[p.prompt_id, p.positive, p.negative] for p in pairs],
        "loss": cfg.loss,
        # Only what shapes training: the data is in the pairs, scoring settings do not matter.
        "trainer": cfg.trainer.as_trainer_args(),
        "lora": cfg.lora,
        "max_length": ctx.cfg.model.max_length,
        "chat_template": ctx.cfg.model.chat_template,
        "seed": ctx.cfg.seed,
        "bf16": ctx.bf16,
        # The global batch is the per-device batch times the processes: another world size, other weights.
        "processes": world_size(),
    }

    def build(out: Path) -> None:
        release_policies(ctx)  # the classifier loads its own weights from init_dir
        tokenizer = load_tokenizer(init_dir, ctx.cfg.model)
        model = AutoModelForSequenceClassification.from_pretrained(init_dir, num_labels=1, dtype=ctx.dtype)
        # Sequence classification pools the last non-pad token, found through config.pad_token_id.
        model.config.pad_token_id = tokenizer.pad_token_id
        model = apply_lora(model, cfg.lora, task_type="SEQ_CLS")
        trainer = _trainer(ctx, cfg, model, tokenizer, pairs, out)
        trainer.train(resume_from_checkpoint=last_checkpoint(out))
        trained = trainer.model.merge_and_unload() if cfg.lora.enabled else trainer.model
        if is_main_process():  # the copy the cache publishes
            trained.save_pretrained(out)
            tokenizer.save_pretrained(out)
            (out / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))
            shutil.rmtree(out / "trainer", ignore_errors=True)  # checkpoints: for resuming only

    entry = ctx.cache.get_or_build("reward_model", spec, build, resumable=True)
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
