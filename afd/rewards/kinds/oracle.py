"""reward: the primary golden reward itself, as an oracle proxy. Best-of-N by it is the ceiling any
learned reward's curve can reach with the same pool: how much of it a reward recovers, and where the
demonstrations' golden level lies on it (paper claim 4, super-demonstration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from afd.rewards import BuiltReward

if TYPE_CHECKING:
    from afd.runtime.context import RunContext
    from afd.stages.prepare import Prepared


@dataclass
class OracleConfig:
    """No settings: the primary (first-listed) golden reward."""


CONFIG = OracleConfig


def build(ctx: RunContext, prep: Prepared, cfg: OracleConfig) -> BuiltReward:
    name, golden = next(iter(prep.goldens.items()))
    return BuiltReward(golden, {}, {"oracle": {"golden": name, **vars(ctx.cfg.golden[name])}})
