"""objective=irl_init_sft | irl_init_demo | irl_sft_demo: IRL reward models from demonstrations
(paper section 3, "RM choice" table), then Best-of-N. The variant is data: afd/rm_data.IRL_VARIANTS."""

from __future__ import annotations

from afd.config import Objective
from afd.context import RunContext
from afd.objectives.pipeline import Prepared, finish, prepare, trained_reward, variant_rm_pairs
from afd.rewards import Reward
from afd.rm_data import IRL_VARIANTS


def build_reward(ctx: RunContext, prep: Prepared, variant: Objective) -> tuple[Reward, dict[str, float]]:
    """The variant's reward model (trained once, then cached) and its held-out accuracy."""
    pairs = variant_rm_pairs(ctx, prep, *IRL_VARIANTS[variant])
    return trained_reward(ctx, prep, pairs, ctx.cfg.rm.loss, {}, f"{variant.value} RM")


def run(ctx: RunContext) -> dict[str, float]:
    prep = prepare(ctx)
    return finish(ctx, prep, *build_reward(ctx, prep, ctx.cfg.objective.name))
