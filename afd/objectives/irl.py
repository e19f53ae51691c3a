"""objective=irl_init_sft | irl_init_demo | irl_sft_demo: IRL reward models from demonstrations
(paper section 3, "RM choice" table), then Best-of-N. The variant is data: afd/rm_data.IRL_VARIANTS."""

from __future__ import annotations

from afd.context import RunContext
from afd.objectives.pipeline import prepare, reward_model_bon, variant_rm_pairs
from afd.rm_data import IRL_VARIANTS


def run(ctx: RunContext) -> dict[str, float]:
    prep = prepare(ctx)
    pairs = variant_rm_pairs(ctx, prep, *IRL_VARIANTS[ctx.cfg.objective.name])
    return reward_model_bon(ctx, prep, pairs, ctx.cfg.rm.loss, {})
