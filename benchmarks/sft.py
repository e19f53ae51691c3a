"""SFT: the training tokens/s of afd's SFT stage (objective=sft: TRL's SFTTrainer on length-grouped
batches, as a run calls it) against a minimal TRL SFTTrainer script, both one epoch over the same chitchat
demonstrations with the same model, batch, learning rate and precision; and afd's training FLOP/s
(6 x parameters x tokens/s) as a share of the matmul peak. Both trained models are scored on the same
held-out demonstrations: afd must learn what the script learns."""

from __future__ import annotations

import tempfile
from pathlib import Path
from unittest import mock

from benchmarks.common import Row, load_smollm2, matmul_peak_flops, peak_share_row, precision
from benchmarks.training import (
    Meter,
    afd_context,
    baseline_args,
    mask_tokens,
    metered,
    take_turns,
    throughput_row,
    tokens_per_s,
)


def overrides(batch: int) -> list[str]:
    # One epoch (max_steps=-1) over the examples given; a loss logged every step; no checkpoints.
    return [
        "objective=sft",
        f"objective.sft.trainer.per_device_train_batch_size={batch}",
        "objective.sft.trainer.max_steps=-1",
        "objective.sft.trainer.num_train_epochs=1",
        "objective.sft.trainer.logging_steps=1",
        "objective.sft.trainer.save_steps=0",
    ]


def run_afd(run_dir: Path, batch: int, train, heldout) -> tuple[Meter, dict]:
    import afd.stages.sft as sft_stage
    from afd.models.policies import init_policy

    ctx = afd_context(run_dir, overrides(batch))
    meter = Meter(mask_tokens)
    # Only the meter is added; afd builds the trainer, its data and its arguments as in a run.
    with mock.patch.object(sft_stage, "SFTTrainer", metered(sft_stage.SFTTrainer, meter)):
        sft_stage.train_sft(ctx, init_policy(ctx), train, ctx.cfg.objective.sft)
    return meter, {"heldout": meter.trainer.evaluate(heldout)["eval_loss"]}


def run_trl(run_dir: Path, batch: int, learning_rate: float, train, heldout) -> tuple[Meter, dict]:
    """The minimal TRL script a user would write: the model, the data, SFTTrainer with CPU-safe flags."""
    from trl import SFTConfig, SFTTrainer

    model, tok = load_smollm2()
    meter = Meter(mask_tokens)
    args = SFTConfig(**baseline_args(run_dir / "trl", batch, learning_rate))
    trainer = metered(SFTTrainer, meter)(model=model, args=args, train_dataset=train, processing_class=tok)
    before = trainer.evaluate(heldout)["eval_loss"]  # pi_init's, for scale
    trainer.train()
    return meter, {"before": before, "heldout": trainer.evaluate(heldout)["eval_loss"]}


def run(steps: int = 6, batch: int = 8, runs: int = 1, heldout: int = 16) -> list[Row]:
    from afd.data import cached_splits
    from afd.stages.sft import sft_dataset

    with tempfile.TemporaryDirectory() as tmp:
        cfg = afd_context(Path(tmp), overrides(batch)).cfg  # the data and settings a run would use
    splits = cached_splits(cfg.dataset)
    train = splits["train"].select(range(steps * batch))
    held = sft_dataset(splits["align"].select(range(heldout)))
    learning_rate = cfg.objective.sft.trainer.learning_rate
    prec = precision()
    setting = (
        f"one epoch ({steps} steps x batch {batch}) over the first {steps * batch} chitchat train "
        f"demonstrations (loss on the completion), SmolLM2-135M fp32 weights, {prec.name} "
        f"{'autocast' if prec.bf16 else 'throughout'}, lr {learning_rate:g}"
    )
    print(f"[sft] {setting}", flush=True)
    result = take_turns(
        "sft",
        {
            "afd": lambda d: run_afd(d, batch, train, held),
            "baseline": lambda d: run_trl(d, batch, learning_rate, sft_dataset(train), held),
        },
        runs,
    )
    afd, trl = result["afd"][0], result["baseline"][0]
    wall = {who: sum(r.wall_s for r in rs) / len(rs) for who, rs in result.items()}
    params = sum(p.numel() for p in afd.meter.trainer.model.parameters())
    peak = matmul_peak_flops(prec.dtype)
    return [
        throughput_row(
            "SFT training (afd sft stage vs TRL SFTTrainer script)",
            result,
            3,
            (
                f"{setting}; tokens/s over the steps after each run's first, {runs} run(s) a side in turns; "
                f"mean train loss afd {afd.meter.train_loss():.3f} / TRL {trl.meter.train_loss():.3f}; "
                f"held-out loss ({heldout} align demonstrations) pi_init {trl.result['before']:.3f} -> afd "
                f"{afd.result['heldout']:.3f} / TRL {trl.result['heldout']:.3f}; whole run "
                f"{wall['afd']:.0f} s (afd stage: load, copy of pi_init, train, save) vs "
                f"{wall['baseline']:.0f} s (script: load, train, 2 evaluations); peak memory includes "
                "loading the model"
            ),
        ),
        peak_share_row(
            "SFT training",
            6 * params * tokens_per_s(result["afd"]),
            6 * params * tokens_per_s(result["baseline"]),
            peak,
            30,
            f"6 x {params / 1e6:.1f}M params per trained token",
        ),
    ]
