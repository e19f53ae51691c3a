"""Arguments every afd stage passes to a TRL trainer config, on top of the user's `trl_args`.

They encode the trl 1.16 / transformers 5.23 pitfalls (shared/offline.md): TRL's bf16 and gradient
checkpointing defaults, CPU use, and logging into the run's tracker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def common_trainer_args(
    seed: int, output_dir: Path, device: torch.device, bf16: bool, report_to: str
) -> dict[str, Any]:
    return {
        "output_dir": str(output_dir),
        "seed": seed,
        "data_seed": seed,
        "use_cpu": device.type == "cpu",
        "bf16": bf16,
        "fp16": False,
        # Small models do not need it, and transformers 5.23 warns on TRL's default.
        "gradient_checkpointing": None,
        "activation_checkpointing": False,
        "report_to": report_to,
        # Stages save their result into the cache themselves; intermediate checkpoints are not needed.
        "save_strategy": "no",
        "disable_tqdm": False,
        "dataloader_num_workers": 0,
    }
