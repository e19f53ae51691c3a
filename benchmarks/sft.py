"""SFT: the step time of afd's objective=sft training stage against a minimal TRL SFTTrainer script on
the same data, model, batch and precision (afd should add no overhead: ratio <= 1.05)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from benchmarks.common import CACHE_DIR, PeakRSS, Row, load_smollm2, timed

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (forward, backward, optimizer), as the trainer loop sees it."""

    def __init__(self):
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def afd_context(tmp: Path, steps: int, batch: int):
    from hydra import compose, initialize_config_dir

    from afd.config import register_configs, to_run_config
    from afd.models.loading import resolve_device, resolve_dtype, use_bf16_autocast
    from afd.runtime.cache import StageCache
    from afd.runtime.context import RunContext
    from afd.runtime.tracking import NullTracker

    # A fresh stage cache (so the SFT stage trains rather than hits an entry) that finds the
    # de-quantised model.
    cache = tmp / "cache"
    cache.mkdir(parents=True)
    (cache / "models").symlink_to(CACHE_DIR / "models")
    register_configs()
    overrides = [
        "objective=sft",
        "logger=none",
        f"paths.cache_dir={cache}",
        f"paths.output_dir={tmp / 'out'}",
        f"sft.max_steps={steps}",
        f"sft.per_device_train_batch_size={batch}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_run_config(compose(config_name="config", overrides=overrides))
    device = resolve_device(cfg.compute)
    return RunContext(
        cfg=cfg,
        output_dir=tmp / "out",
        cache=StageCache(cfg.paths.cache_dir),
        tracker=NullTracker(),
        device=device,
        dtype=resolve_dtype(cfg.compute, device),
        bf16=use_bf16_autocast(cfg.compute, device),
    )


def run_afd(ctx, train, timer: StepTimer) -> None:
    import afd.stages.sft as sft_stage
    from afd.models.policies import init_policy

    original = sft_stage.SFTTrainer

    class TimedSFTTrainer(original):  # only adds the timer callback; afd builds everything else
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(timer)

    sft_stage.SFTTrainer = TimedSFTTrainer
    try:
        sft_stage.train_sft(ctx, init_policy(ctx), train)
    finally:
        sft_stage.SFTTrainer = original


def run_trl(train, out: Path, steps: int, batch: int, bf16: bool, timer: StepTimer) -> None:
    """The minimal TRL script a user would write: the model, the data, SFTTrainer with CPU-safe flags."""
    from trl import SFTConfig, SFTTrainer

    from afd.stages.sft import sft_dataset

    model, tok = load_smollm2(torch.float32)
    args = SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=5e-5,
        logging_steps=5,  # afd's default
        max_length=512,
        use_cpu=True,
        bf16=bf16,
        gradient_checkpointing=None,
        activation_checkpointing=False,
        report_to="none",
        save_strategy="no",
        seed=0,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=sft_dataset(train), processing_class=tok, callbacks=[timer]
    )
    trainer.train()


def run(steps: int = 5, batch: int = 8) -> list[Row]:
    from afd.data import load_splits

    # Runs in the order TRL, afd, afd, TRL: a later run in one process is a few % slower, and this order
    # gives both sides the same share of early and late runs.
    order = ["trl", "afd", "afd", "trl"]
    times: dict[str, list[float]] = {"afd": [], "trl": []}
    walls: dict[str, list[float]] = {"afd": [], "trl": []}
    peaks: dict[str, list[float]] = {"afd": [], "trl": []}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        setting = ""
        for i, who in enumerate(order):
            run_dir = tmp / f"{i}_{who}"
            run_dir.mkdir()
            # A fresh stage cache per afd run: the stage must train, not hit the previous run's entry.
            ctx = afd_context(run_dir, steps, batch)
            train = load_splits(ctx.cfg.dataset)["train"]
            if not setting:
                setting = (
                    f"{steps} steps x batch {batch} of the chitchat train split (prompt/completion, loss on "
                    f"the completion), SmolLM2-135M fp32 weights, bf16 autocast={ctx.bf16}; mean step time "
                    f"after each run's first, over runs in the order {', '.join(order)}"
                )
                print(f"[sft] {setting}", flush=True)
            timer = StepTimer()
            with PeakRSS() as mem:
                if who == "afd":
                    wall, _ = timed(lambda c=ctx, tr=train, t=timer: run_afd(c, tr, t), 1)
                else:
                    wall, _ = timed(
                        lambda tr=train, d=run_dir, b=ctx.bf16, t=timer: run_trl(
                            tr, d / "trl", steps, batch, b, t
                        ),
                        1,
                    )
            times[who] += timer.times[1:]
            walls[who].append(wall)
            peaks[who].append(mem.mib)
            print(f"[sft] {who}: step times {[round(t, 2) for t in timer.times]}", flush=True)
    afd_s, trl_s = statistics.mean(times["afd"]), statistics.mean(times["trl"])
    return [
        Row(
            "SFT step time",
            afd_s,
            trl_s,
            "s/step",
            higher_is_better=False,
            target="afd/base <= 1.05",
            met=afd_s / trl_s <= 1.05,
            afd_mem=max(peaks["afd"]),
            baseline_mem=max(peaks["trl"]),
            note=(
                f"{setting}; whole run {statistics.mean(walls['afd']):.0f} s (afd stage: load, copy of "
                f"pi_init, train, save) vs {statistics.mean(walls['trl']):.0f} s (TRL script: load, train); "
                "peak memory includes loading the model; afd's stage keeps pi_init beside the trained copy"
            ),
        )
    ]
