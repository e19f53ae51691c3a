"""objective=irl_init_sft | irl_init_demo | irl_sft_demo: IRL reward models from demonstrations
(paper section 3, "RM choice" table), then Best-of-N. The variant is data: afd/rm_data.IRL_VARIANTS."""

from __future__ import annotations

from afd.context import RunContext
from afd.objectives.pipeline import prepare, reward_model_bon, rm_responses
from afd.rm_data import IRL_VARIANTS, variant_pairs


def run(ctx: RunContext) -> dict[str, float]:
    prep = prepare(ctx)
    negative, positive = IRL_VARIANTS[ctx.cfg.objective.name]
    split = prep.splits["rm"]
    responses = {s: rm_responses(ctx, prep, s) for s in (negative, positive)}
    pairs = variant_pairs(list(split["prompt_id"]), list(split["prompt"]), responses, negative, positive)
    return reward_model_bon(ctx, prep, pairs, ctx.cfg.rm.loss, {})
