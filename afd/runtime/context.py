"""What every stage of a run shares: its typed config, where it writes, the stage cache, the tracker,
and the device / precision decided once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afd.config.run import RunConfig
from afd.runtime.cache import StageCache
from afd.runtime.tracking import Tracker

if TYPE_CHECKING:
    import torch


@dataclass
class RunContext:
    cfg: RunConfig
    output_dir: Path
    cache: StageCache
    tracker: Tracker
    device: torch.device
    dtype: torch.dtype
    """Weight dtype of loaded policies."""
    bf16: bool
    """bf16 autocast in trainers."""
    policies: list[Any] = field(default_factory=list)
    """Every PolicyHandle of the run (afd/models/policies.py), so that a training stage can drop the
    loaded ones while it trains: they load again, lazily, if a later stage needs them."""
