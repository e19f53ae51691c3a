"""The Reward protocol every reward speaks: golden rewards, learned reward models, the closed-form
log-ratio reward, sanity baselines and discriminator transforms."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from afd.generation.prompts import check_pairs
from afd.runtime.distributed import sharded

__all__ = ["Messages", "Reward", "check_pairs", "score_pool"]

Messages = list[dict]


@runtime_checkable
class Reward(Protocol):
    """Scores (prompt, response) pairs; prompts are chat message lists of {"role", "content"}.
    Golden rewards (afd/rewards/golden.py) and proxy rewards share it."""

    name: str

    def score(self, prompts: list[Messages], responses: list[str]) -> np.ndarray:
        """One float64 score per (prompt, response) pair, in input order."""
        ...


def score_pool(reward: Reward, prompts: Sequence[list], pool: Sequence[Sequence[str]]) -> np.ndarray:
    """(prompts x M) scores of every pool sample; under accelerate the ranks share the work (every rank
    calls this with the same pool and gets all the scores)."""
    with sharded():
        flat = reward.score([p for p, rs in zip(prompts, pool) for _ in rs], [r for rs in pool for r in rs])
    return flat.reshape(len(pool), -1)
