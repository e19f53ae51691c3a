"""reward: the response's length in tokens, a sanity baseline for Best-of-N (paper ablation A12): what
pure length-hacking buys."""

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
class LengthConfig:
    """No settings: the length in pi_SFT's tokens."""


CONFIG = LengthConfig


class LengthReward:
    name = "length"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def score(self, prompts, responses):
        check_pairs(prompts, responses)
        return np.array(
            [len(self.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses],
            dtype=np.float64,
        )


def build(ctx: RunContext, prep: Prepared, cfg: LengthConfig) -> BuiltReward:
    from transformers import AutoTokenizer

    # Only pi_SFT's tokenizer is needed: no reason to load its weights.
    return BuiltReward(
        LengthReward(AutoTokenizer.from_pretrained(prep.sft.path)), {}, {"length": prep.sft.spec}
    )
