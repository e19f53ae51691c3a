"""reward: an i.i.d. uniform score, a sanity baseline for Best-of-N (paper ablation A12): its curve must
stay flat at pi_SFT's level, since BoN then picks a uniformly random sample."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from afd.rewards import BuiltReward
from afd.rewards.reward import check_pairs

if TYPE_CHECKING:
    from afd.runtime.context import RunContext
    from afd.stages.prepare import Prepared


@dataclass
class RandomConfig:
    """No settings: seeded by the run's seed."""


CONFIG = RandomConfig


class RandomReward:
    name = "random"

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def score(self, prompts, responses):
        check_pairs(prompts, responses)
        return self.rng.random(len(responses))


def build(ctx: RunContext, prep: Prepared, cfg: RandomConfig) -> BuiltReward:
    return BuiltReward(RandomReward(ctx.cfg.seed), {}, {"random": ctx.cfg.seed})
