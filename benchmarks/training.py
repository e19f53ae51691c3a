"""What the training benchmarks (sft.py, reward_model.py) share: afd's stages called as a run calls them,
one per-step meter that afd's trainer and the baseline's both carry, and runs of the two taken in turns.

Throughput is trained tokens per second of optimizer steps (forward, backward, optimizer), the first step
of each run left out: it allocates the optimizer state and warms the allocator. A trained token is a
non-padding token of a training sequence, counted as the trainer receives it, so a side that computes
fewer tokens for the same sequences (afd's shared prompts) gets the credit.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from transformers import TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from benchmarks.common import CACHE_DIR, PeakRSS, Row, precision

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class Meter(TrainerCallback):
    """Wall time and trained tokens of every optimizer step, as the trainer loop sees them; `trainer` is
    the trainer that carried it (to read its log and evaluate its model afterwards)."""

    def __init__(self, count_tokens: Callable[[dict[str, Any]], int]):
        self.count_tokens = count_tokens
        self.steps: list[tuple[float, int]] = []  # (seconds, tokens)
        self.trainer = None
        self.tokens = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.tokens = 0
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append((time.perf_counter() - self.start, self.tokens))

    def train_loss(self) -> float:
        """The mean training loss over the run (the Trainer's own summary)."""
        return next(h["train_loss"] for h in self.trainer.state.log_history if "train_loss" in h)


def metered(trainer_cls: type, meter: Meter) -> type:
    """`trainer_cls` carrying `meter`: it counts the tokens of every batch trained on. It also prints no
    progress bar or per-step log dict (the benchmark prints one line per run instead)."""

    class Metered(trainer_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.remove_callback(ProgressCallback)
            self.remove_callback(PrinterCallback)
            self.add_callback(meter)
            meter.trainer = self

        def training_step(self, model, inputs, *args, **kwargs):
            meter.tokens += meter.count_tokens(inputs)
            return super().training_step(model, inputs, *args, **kwargs)

    return Metered


def mask_tokens(inputs: dict[str, Any]) -> int:
    """Non-padding tokens of a TRL batch (SFT and reward collators both give an attention mask)."""
    return int(inputs["attention_mask"].sum())


def afd_context(run_dir: Path, overrides: Sequence[str] = ()):
    """A RunContext as `afd` builds it for `overrides`, on the CPU, with a fresh stage cache in `run_dir`
    (the stage must train, not find a previous run's entry) that finds the de-quantised model."""
    from hydra import compose, initialize_config_dir

    from afd.config import register_configs, to_run_config
    from afd.models.devices import resolve_device, resolve_dtype, use_bf16_autocast
    from afd.runtime.cache import StageCache
    from afd.runtime.context import RunContext
    from afd.runtime.tracking import NullTracker

    cache = run_dir / "cache"
    cache.mkdir(parents=True)
    (cache / "models").symlink_to(CACHE_DIR / "models")
    register_configs()
    overrides = [
        *overrides,
        "logger=none",
        "compute.device=cpu",  # the baselines run on the CPU too
        f"paths.cache_dir={cache}",
        f"paths.output_dir={run_dir / 'out'}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_run_config(compose(config_name="config", overrides=overrides))
    device = resolve_device(cfg.compute)
    ctx = RunContext(
        cfg=cfg,
        output_dir=run_dir / "out",
        cache=StageCache(cfg.paths.cache_dir),
        tracker=NullTracker(),
        device=device,
        dtype=resolve_dtype(cfg.compute, device),
        bf16=use_bf16_autocast(cfg.compute, device),
    )
    assert ctx.bf16 == precision().bf16, "afd and the benchmark disagree on the precision"
    return ctx


def baseline_args(out: Path, batch: int, learning_rate: float) -> dict[str, Any]:
    """What a minimal CPU script passes to a TRL config besides the data: afd's batch, learning rate and
    maximum length, one epoch, and the run's precision (TRL's default bf16=True would be emulated on a CPU
    without bf16). Gradient checkpointing is off as in afd, so that only the training paths differ."""
    return {
        "output_dir": str(out),
        "num_train_epochs": 1,
        "per_device_train_batch_size": batch,
        "per_device_eval_batch_size": batch,
        "learning_rate": learning_rate,
        "logging_steps": 1,
        "max_length": 512,
        "use_cpu": True,
        "bf16": precision().bf16,
        "gradient_checkpointing": None,
        "activation_checkpointing": False,
        "report_to": "none",
        "save_strategy": "no",
        "seed": 0,
    }


@dataclass
class Run:
    meter: Meter
    peak_mib: float
    wall_s: float
    result: Any
    """What the side reports of the model it trained (held-out losses ...)."""


def take_turns(
    label: str, sides: dict[str, Callable[[Path], tuple[Meter, Any]]], runs: int
) -> dict[str, list[Run]]:
    """Each side of {"afd": ..., "baseline": ...} `runs` times, each run in a directory of its own, in the
    order baseline, afd, afd, baseline, ...: a later run in one process is a few % slower, and this order
    gives both sides the same share of early and late runs (with one run each, the order errs against
    afd)."""
    order = [who for i in range(runs) for who in (("baseline", "afd") if i % 2 == 0 else ("afd", "baseline"))]
    out: dict[str, list[Run]] = {who: [] for who in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for i, who in enumerate(order):
            run_dir = Path(tmp) / f"{i}_{who}"
            run_dir.mkdir()
            set_seed(0)  # as `afd` does before its stages, and a script would: seeds the fresh score head
            start = time.perf_counter()
            with PeakRSS() as mem:
                meter, result = sides[who](run_dir)
            run = Run(meter, mem.mib, time.perf_counter() - start, result)
            out[who].append(run)
            steps = ", ".join(f"{s:.2f}" for s, _ in meter.steps)
            print(
                f"[{label}] {who}: {sum(t for _, t in meter.steps)} tokens in {len(meter.steps)} steps, "
                f"{tokens_per_s([run]):.0f} tokens/s after the first; step seconds [{steps}]; whole run "
                f"{run.wall_s:.0f} s",
                flush=True,
            )
    return out


def tokens_per_s(runs: list[Run]) -> float:
    """Trained tokens per second over the runs' steps after their first."""
    steps = [step for run in runs for step in run.meter.steps[1:]]
    return sum(tokens for _, tokens in steps) / sum(seconds for seconds, _ in steps)


def throughput_row(name: str, runs: dict[str, list[Run]], goal: float, note: str) -> Row:
    afd, base = tokens_per_s(runs["afd"]), tokens_per_s(runs["baseline"])
    return Row(
        name,
        afd,
        base,
        "tokens/s",
        target=f"afd/base >= {goal:g}",
        met=afd / base >= goal,
        afd_mem=max(r.peak_mib for r in runs["afd"]),
        baseline_mem=max(r.peak_mib for r in runs["baseline"]),
        note=note,
    )
