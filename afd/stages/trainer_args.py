"""Arguments every afd stage passes to a TRL trainer config, on top of the user's `trl_args`.

They encode the trl 1.16 / transformers 5.23 pitfalls (shared/offline.md): TRL's bf16 and gradient
checkpointing defaults, CPU use, and logging into the run's tracker.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from afd.config.stages import TrainerSettings
from afd.runtime.context import RunContext

log = logging.getLogger(__name__)


def common_trainer_args(
    ctx: RunContext, out: Path, trainer: TrainerSettings, report_to: str | None = None
) -> dict[str, Any]:
    """`out` is the stage's partial cache directory: checkpoints written into its trainer folder every
    `trainer.save_steps` (0: none) let a killed run resume (resume_from_checkpoint), and go when the
    entry is published. `report_to` defaults to the run's tracker."""
    save_steps = trainer.save_steps
    return {
        "output_dir": str(out / "trainer"),
        "seed": ctx.cfg.seed,
        "data_seed": ctx.cfg.seed,
        "use_cpu": ctx.device.type == "cpu",
        "bf16": ctx.bf16,
        "fp16": False,
        # The deprecated alias left unset: transformers 5.23 warns on TRL's default for it.
        "gradient_checkpointing": None,
        "activation_checkpointing": trainer.activation_checkpointing,
        "report_to": ctx.tracker.report_to if report_to is None else report_to,
        # Stages save their result into the cache themselves; checkpoints are for resuming only.
        "save_strategy": "steps" if save_steps > 0 else "no",
        "save_steps": max(save_steps, 1),
        "save_total_limit": 1,
        "disable_tqdm": False,
        "dataloader_num_workers": 0,
    }


def last_checkpoint(out: Path) -> str | None:
    """The latest checkpoint a killed run of this stage left in its partial directory, to resume from."""
    # transformers writes trainer_state.json last: a checkpoint without it was cut short by the kill.
    complete = [p for p in (out / "trainer").glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    checkpoints = sorted(complete, key=lambda p: int(p.name.rsplit("-", 1)[1]))
    if checkpoints:
        log.info("resuming training from %s", checkpoints[-1])
    return str(checkpoints[-1]) if checkpoints else None
