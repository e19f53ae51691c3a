"""objective=sft: forward KL (paper section 2). SFT on the demonstrations, then golden evaluation of
pi_init, pi_SFT and the demonstrations on the test prompts."""

from __future__ import annotations

from afd.context import RunContext
from afd.data import load_splits, require_examples
from afd.policies import base_policy
from afd.stages.evaluate import build_goldens, evaluate, format_table
from afd.stages.sample import sample_split
from afd.stages.sft import train_sft


def run(ctx: RunContext) -> dict[str, float]:
    splits = load_splits(ctx.cfg.dataset)
    require_examples(splits, ctx.cfg.dataset, "train", "test")
    n = ctx.cfg.eval.samples_per_prompt
    base = base_policy(ctx)
    # pi_init is sampled before training so one load serves both stages.
    base_samples = sample_split(ctx, base, "test", splits["test"], n)
    sft = train_sft(ctx, base, splits["train"])
    base.release()
    sft_samples = sample_split(ctx, sft, "test", splits["test"], n)
    goldens = build_goldens(ctx)
    metrics, _ = evaluate(
        ctx, goldens, splits["test"], {"base": base_samples, "sft": sft_samples}, final_policy="sft"
    )
    print(format_table(metrics, list(goldens), ["base", "sft", "demo"]))
    return metrics
