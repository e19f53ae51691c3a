"""Rewards: what scores a (prompt, response) pair. Golden rewards evaluate; the kinds an objective can
select by its `reward` node (a learned reward model, the closed-form log-ratio, the sanity baselines, the
golden oracle) are the modules of afd/rewards/kinds/, found by `reward_kinds()` (called from
afd.config.register_configs and when a reward is built, never at import).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

from afd.rewards.reward import Reward


@dataclass
class BuiltReward:
    reward: Reward
    metrics: dict[str, float]
    """What building it measured (a reward model's held-out accuracy, its training pairs, ...)."""
    spec: dict[str, Any]
    """What determines its scores: part of the cache key of a policy trained on it."""


@lru_cache(maxsize=1)
def reward_kinds() -> dict[type, ModuleType]:
    """{schema class: module} of every reward kind (afd/rewards/kinds/)."""
    from afd.rewards import kinds as package

    modules = [
        importlib.import_module(f"{package.__name__}.{m.name}")
        for m in pkgutil.iter_modules(package.__path__)
    ]
    return {module.CONFIG: module for module in modules}


def build_reward(ctx, prep, cfg: Any) -> BuiltReward:
    """The reward `cfg` (one reward kind's config) describes, built (or read from the cache)."""
    return reward_kinds()[type(cfg)].build(ctx, prep, cfg)
