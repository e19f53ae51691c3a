"""objective=length | random: sanity rewards for Best-of-N (paper ablation A12). A random reward's
curve must stay flat at pi_SFT's level; a length reward shows what pure length-hacking buys."""

from __future__ import annotations

from transformers import AutoTokenizer

from afd.config import Objective
from afd.context import RunContext
from afd.objectives.pipeline import finish, prepare
from afd.rewards import LengthReward, RandomReward


def run(ctx: RunContext) -> dict[str, float]:
    prep = prepare(ctx)
    if ctx.cfg.objective.name is Objective.length:
        # Only the tokenizer is needed: no reason to load pi_SFT's weights.
        reward = LengthReward(AutoTokenizer.from_pretrained(prep.sft.path))
    else:
        reward = RandomReward(ctx.cfg.seed)
    return finish(ctx, prep, reward, {})
