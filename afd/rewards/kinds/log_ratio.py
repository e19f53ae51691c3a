"""reward: log pi_SFT(y|x) - log pi_init(y|x), the closed-form optimum of the Init-SFT discriminator
under a logistic loss (a reviewer's remark; paper ablation A8): no training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from afd.config.checks import at_least, ruled
from afd.config.stages import PairsConfig, Source
from afd.rewards import BuiltReward

if TYPE_CHECKING:
    from afd.runtime.context import RunContext
    from afd.stages.prepare import Prepared


@dataclass
class LogRatioConfig:
    """The closed-form reward; judged on the same held-out Init-SFT pairs as the learned one."""

    samples_per_prompt: int = at_least(1, 2)
    """Samples of pi_init and of pi_SFT per align prompt in the Init-SFT pairs its accuracy is measured
    on (the same pairs irl_init_sft learns from)."""
    heldout_fraction: float = ruled(0.2, lambda v: 0 < v < 1, "in (0, 1)")
    """Fraction of align prompts whose pairs measure its accuracy (irl_init_sft's held-out share)."""


CONFIG = LogRatioConfig


class LogRatioReward:
    """r(y|x) = log pi_SFT(y|x) - log pi_init(y|x), in fp32: a difference of two sums of log-probs, where
    bf16 rounding of the logits would be of the same order as the signal."""

    name = "log_ratio"

    def __init__(self, sft, init, max_prompt_tokens: int, batch_size: int):
        # The policies' handles, not their models: a training stage may drop the loaded models while it
        # trains (afd.models.policies.release_policies), and they load again when this scores.
        self.sft, self.init = sft, init
        self.max_prompt_tokens, self.batch_size = max_prompt_tokens, batch_size

    def score(self, prompts, responses):
        from afd.generation.scoring import response_logprobs

        sft, tokenizer = self.sft.get()
        args = (tokenizer, prompts, responses, self.max_prompt_tokens, self.batch_size)
        sft_logprobs = response_logprobs(sft, *args, desc="log pi_SFT")
        return sft_logprobs - response_logprobs(self.init.get()[0], *args, desc="log pi_init")


def build(ctx: RunContext, prep: Prepared, cfg: LogRatioConfig) -> BuiltReward:
    from afd.data.pairs import split_heldout
    from afd.stages.pairs import build_pairs
    from afd.stages.reward_model import heldout_accuracy

    init_sft = PairsConfig(
        negatives=Source.init, positives=Source.sft, samples_per_prompt=cfg.samples_per_prompt
    )
    heldout = split_heldout(build_pairs(ctx, prep, init_sft).pairs, cfg.heldout_fraction, ctx.cfg.seed)[1]
    reward = LogRatioReward(
        prep.sft, prep.init, ctx.cfg.sampling.max_prompt_tokens, ctx.cfg.scoring.batch_size
    )
    spec = {"log_ratio": {"sft": prep.sft.spec, "init": prep.init.spec}}
    return BuiltReward(reward, heldout_accuracy(reward, heldout, pointwise=False), spec)
