"""objective=log_ratio: Best-of-N by log pi_SFT(y|x) - log pi_init(y|x), the closed-form optimum of
the Init-SFT discriminator under a logistic loss (paper ablation A8): no reward-model training."""

from __future__ import annotations

from afd.config import Objective
from afd.context import RunContext
from afd.objectives.pipeline import Prepared, finish, prepare, variant_rm_pairs
from afd.rewards import LogRatioReward, Reward
from afd.rm_data import Source, split_heldout
from afd.stages.train_rm import heldout_accuracy


def build_reward(ctx: RunContext, prep: Prepared, _: Objective = Objective.log_ratio) -> tuple[Reward, dict]:
    """The closed-form reward and its accuracy on the held-out Init-SFT pairs."""
    cfg = ctx.cfg
    # Judged on the same held-out Init-SFT pairs as the learned discriminator (irl_init_sft).
    pairs = variant_rm_pairs(ctx, prep, Source.init, Source.sft)
    heldout = split_heldout(pairs, cfg.rm.heldout_fraction, cfg.seed)[1]
    base, tokenizer = prep.base.get()
    sft, _ = prep.sft.get()
    # fp32 on purpose: the reward is a difference of two sums of log-probs, where bf16 rounding of
    # the logits would be of the same order as the signal.
    reward = LogRatioReward(sft, base, tokenizer, cfg.sampling.max_prompt_tokens, cfg.rm.batch_size)
    return reward, heldout_accuracy(reward, heldout, pointwise=False)


def run(ctx: RunContext) -> dict[str, float]:
    prep = prepare(ctx)
    return finish(ctx, prep, *build_reward(ctx, prep))
