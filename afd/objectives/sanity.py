"""objective=length | random: sanity rewards for Best-of-N (paper ablation A12). A random reward's
curve must stay flat at pi_SFT's level; a length reward shows what pure length-hacking buys."""

from __future__ import annotations

from typing import Callable

from transformers import AutoTokenizer

from afd.config import Objective
from afd.context import RunContext
from afd.objectives.pipeline import Prepared, finish, prepare
from afd.rewards import LengthReward, RandomReward, Reward

SANITY_REWARDS: dict[Objective, Callable[[RunContext, Prepared], Reward]] = {
    # Only pi_SFT's tokenizer is needed: no reason to load its weights.
    Objective.length: lambda ctx, prep: LengthReward(AutoTokenizer.from_pretrained(prep.sft.path)),
    Objective.random: lambda ctx, prep: RandomReward(ctx.cfg.seed),
}


def build_reward(ctx: RunContext, prep: Prepared, kind: Objective) -> tuple[Reward, dict[str, float]]:
    return SANITY_REWARDS[kind](ctx, prep), {}


def run(ctx: RunContext) -> dict[str, float]:
    prep = prepare(ctx)
    return finish(ctx, prep, *build_reward(ctx, prep, ctx.cfg.objective.name))
