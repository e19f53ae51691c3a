"""objective: forward KL (paper section 2): SFT on the demonstrations, then the golden evaluation of
pi_init, pi_SFT and the demonstrations on the test prompts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from omegaconf import MISSING

from afd.config.checks import Problem
from afd.config.stages import SFTSettings

if TYPE_CHECKING:
    from afd.runtime.context import RunContext


@dataclass
class SFTObjective:
    name: str = MISSING
    """The objective's name: its file in conf/objective/, the W&B job type and run names."""
    sft: SFTSettings = field(default_factory=SFTSettings)
    """The SFT stage."""

    def run_checks(self, run) -> list[Problem]:
        return []


CONFIG = SFTObjective


def run(ctx: RunContext, cfg: SFTObjective) -> dict[str, float]:
    from afd.stages.evaluate import evaluate, format_table
    from afd.stages.prepare import prepare

    prep = prepare(ctx, cfg.sft, ctx.cfg.eval.samples_per_prompt)
    metrics, _ = evaluate(
        ctx,
        prep.goldens,
        prep.splits["test"],
        {"init": prep.init_test, "sft": prep.sft_test},
        final_policy="sft",
    )
    print(format_table(metrics, list(prep.goldens), ["init", "sft", "demo"]))
    metrics.update(prep.metrics)
    return metrics
