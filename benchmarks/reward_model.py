"""Reward-model training: the training tokens/s of afd's reward_model stage (a transformers Trainer over
prompt-grouped batches that encode each prompt once, afd/stages/classifier_trainer.py, called as a run
calls it) against a minimal TRL RewardTrainer script, both one epoch of Bradley-Terry over the same pairs
with the same model, batch, learning rate and precision. Both trained models are scored on the same
held-out pairs: afd must learn what the script learns."""

from __future__ import annotations

import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

from benchmarks.common import SMOLLM2, Row, precision, smollm2_dir
from benchmarks.training import (
    Meter,
    afd_context,
    baseline_args,
    mask_tokens,
    metered,
    take_turns,
    throughput_row,
)

LEARNING_RATE = 5e-5  # afd's trainer default


def chitchat_pairs(rows, n_pairs: int, per_prompt: int) -> list:
    """Pairs shaped like the Init-Demo reward model's: each prompt's demonstration (chosen) against
    `per_prompt` short off-topic replies (rejected), the openings of the next prompts' demonstrations."""
    from afd.data.pairs import matched_pairs

    n_prompts = -(-n_pairs // per_prompt)
    demos = rows["demonstration"][: n_prompts + per_prompt]
    openings = [" ".join(d.split("\n")[0].split()[:8]) for d in demos]
    pairs = matched_pairs(
        rows["prompt_id"][:n_prompts],
        rows["prompt"][:n_prompts],
        [openings[i + 1 : i + 1 + per_prompt] for i in range(n_prompts)],
        [[d] for d in demos[:n_prompts]],
    )
    return pairs[:n_pairs]


def shared_prefix_tokens(batch) -> int:
    """The tokens of the sequences in one of afd's batches: each row's prompt prefix plus its suffix."""
    return sum(len(batch["prefixes"][s]) for s in batch["src"]) + int(batch["suffix_mask"].sum())


def heldout_metrics(reward, pairs) -> dict[str, float]:
    """Pairwise accuracy and Bradley-Terry loss of a trained reward on held-out pairs."""
    prompts = [p.prompt for p in pairs]
    chosen = reward.score(prompts, [p.positive for p in pairs])
    margin = chosen - reward.score(prompts, [p.negative for p in pairs])
    return {"accuracy": float((margin > 0).mean()), "loss": float(np.logaddexp(0, -margin).mean())}


def run_afd(run_dir: Path, batch: int, pairs, heldout) -> tuple[Meter, dict]:
    import afd.stages.reward_model as rm_stage
    from afd.config.stages import RewardModelConfig, RMLoss, TrainerSettings

    ctx = afd_context(run_dir)
    cfg = RewardModelConfig(
        loss=RMLoss.bt,
        # Activation checkpointing on, as in RewardModelConfig's default (the script's is off).
        trainer=TrainerSettings(
            learning_rate=LEARNING_RATE,
            per_device_train_batch_size=batch,
            logging_steps=1,
            save_steps=0,
            activation_checkpointing=True,
        ),
    )
    meter = Meter(shared_prefix_tokens)
    # Only the meter is added; afd builds the batches, the trainer and its arguments as in a run.
    trainer_cls = metered(rm_stage.SharedPrefixRewardTrainer, meter)
    with mock.patch.object(rm_stage, "SharedPrefixRewardTrainer", trainer_cls):
        reward = rm_stage.train_reward_model(ctx, str(smollm2_dir()), {"model": SMOLLM2.name}, pairs, cfg)
    return meter, heldout_metrics(reward, heldout)


def run_trl(run_dir: Path, batch: int, pairs, heldout) -> tuple[Meter, dict]:
    """The minimal TRL script a user would write: a sequence classifier on the model, the pairs as
    conversational preference data, RewardTrainer with CPU-safe flags."""
    import datasets
    import torch
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from afd.config.run import RMTextFormat
    from afd.models.loading import load_tokenizer
    from afd.rewards.classifier import ClassifierReward

    source = smollm2_dir()
    tok = load_tokenizer(str(source), SMOLLM2)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    data = datasets.Dataset.from_dict(
        {
            "prompt": [p.prompt for p in pairs],
            "chosen": [[{"role": "assistant", "content": p.positive}] for p in pairs],
            "rejected": [[{"role": "assistant", "content": p.negative}] for p in pairs],
        }
    )
    meter = Meter(mask_tokens)
    args = RewardConfig(**baseline_args(run_dir / "trl", batch, LEARNING_RATE))
    trainer = metered(RewardTrainer, meter)(model=model, args=args, train_dataset=data, processing_class=tok)
    trainer.train()
    # Scored by the same scorer as afd's model (batched; equal to whole-sequence scoring, tested).
    reward = ClassifierReward("trl", trainer.model, tok, RMTextFormat.chat_template, 512, 16, bf16=args.bf16)
    return meter, heldout_metrics(reward, heldout)


def run(steps: int = 6, batch: int = 8, per_prompt: int = 2, runs: int = 1, heldout: int = 16) -> list[Row]:
    from afd.data import cached_splits

    with tempfile.TemporaryDirectory() as tmp:
        splits = cached_splits(afd_context(Path(tmp)).cfg.dataset)  # the data a run would use
    pairs = chitchat_pairs(splits["train"], steps * batch, per_prompt)
    held = chitchat_pairs(splits["align"], heldout, per_prompt)
    setting = (
        f"one epoch ({steps} steps x batch {batch} pairs) over {len(pairs)} pairs of chitchat train prompts "
        f"({per_prompt} a prompt: the demonstration against the openings of other prompts' demonstrations), "
        f"Bradley-Terry loss, SmolLM2-135M sequence classifier, fp32 weights, {precision().name} "
        f"{'autocast' if precision().bf16 else 'throughout'}, lr {LEARNING_RATE:g}"
    )
    print(f"[reward model] {setting}", flush=True)
    result = take_turns(
        "reward model",
        {
            "afd": lambda d: run_afd(d, batch, pairs, held),
            "baseline": lambda d: run_trl(d, batch, pairs, held),
        },
        runs,
    )
    afd, trl = result["afd"][0], result["baseline"][0]
    return [
        throughput_row(
            "reward-model training (afd reward_model stage vs TRL RewardTrainer script)",
            result,
            3,
            (
                f"{setting}; tokens/s over the steps after each run's first, counting every sequence's "
                f"tokens in full (also the prompt tokens afd encodes once per batch), {runs} run(s) a side; "
                f"mean train loss afd {afd.meter.train_loss():.3f} / TRL "
                f"{trl.meter.train_loss():.3f}; held-out ({len(held)} align pairs) accuracy afd "
                f"{afd.result['accuracy']:.2f} / TRL {trl.result['accuracy']:.2f}, loss afd "
                f"{afd.result['loss']:.3f} / TRL {trl.result['loss']:.3f}; peak memory includes loading"
            ),
        )
    ]
