"""reward: a learned reward model, the paper's IRL reward (section 3): a classifier trained on the pairs
its config names (Init-SFT, Init-Demo, SFT-Demo, or preferences for the Bradley-Terry baseline); the
reward is its logit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from afd.config.stages import RewardModelConfig, RMWeights
from afd.rewards import BuiltReward

if TYPE_CHECKING:
    from afd.runtime.context import RunContext
    from afd.stages.prepare import Prepared

CONFIG = RewardModelConfig


def describe(cfg: RewardModelConfig) -> str:
    return f"reward model ({cfg.pairs.negatives} < {cfg.pairs.positives}, {cfg.loss})"


def build(ctx: RunContext, prep: Prepared, cfg: RewardModelConfig) -> BuiltReward:
    """Train (or reuse) the reward model; its held-out accuracy (against the true labels when the pairs
    carry noise) and the pairs' own metrics."""
    from afd.stages.pairs import build_pairs
    from afd.stages.reward_model import trained_reward

    pairs = build_pairs(ctx, prep, cfg.pairs)
    start = prep.init if cfg.weights is RMWeights.init else prep.sft
    reward, metrics = trained_reward(
        ctx, start.weights_dir(), start.spec, pairs.pairs, pairs.truth, cfg, describe(cfg)
    )
    return BuiltReward(reward, {**metrics, **pairs.metrics}, {"reward_model": reward.path.name})
