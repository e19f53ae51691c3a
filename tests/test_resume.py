"""A run killed inside a training stage (SIGKILL right after a checkpoint, nothing cleaned up) is re-run
and continues from that checkpoint: model, optimizer, scheduler and RNG state, ending with the weights an
uninterrupted run ends with. Slow tier: three real `afd objective=sft` runs on the tiny model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_launch import AFD, ENV

from conftest import tiny_overrides

KILLER = str(Path(__file__).parent / "fixtures" / "killed_at_step.py")
# 12 steps with a checkpoint every 4; the killed run dies once checkpoint-8 is written.
STEPS = ["objective=sft", "objective.sft.trainer.max_steps=12", "objective.sft.trainer.save_steps=4"]


def _afd(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_a_killed_sft_resumes_from_its_last_checkpoint_and_ends_with_the_same_weights(
    tiny_model_dir, tmp_path
):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = _afd([AFD, *STEPS, *tiny_overrides(tiny_model_dir, whole), f"hydra.run.dir={tmp_path / 'r1'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]

    overrides = [*STEPS, *tiny_overrides(tiny_model_dir, killed)]
    proc = _afd([sys.executable, KILLER, "8", *overrides, f"hydra.run.dir={tmp_path / 'r2'}"])
    assert proc.returncode == -9, proc.stderr[-3000:]
    (partial,) = killed.glob("sft/.*.partial")
    assert sorted(p.name for p in (partial / "trainer").glob("checkpoint-*")) == ["checkpoint-8"]
    assert not list(killed.glob("sft/*/spec.json")), "nothing published by the killed run"

    proc = _afd([AFD, *overrides, f"hydra.run.dir={tmp_path / 'r3'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "resuming training from" in log and "checkpoint-8" in log
    # The trainer ran steps 9-12 only: its progress bar jumps from 0 to 9 of 12.
    assert "9/12 [" in log and not re.search(r"\| [1-8]/12 \[", log)

    (entry,) = [p.parent for p in killed.glob("sft/*/spec.json")]
    (reference,) = [p.parent for p in whole.glob("sft/*/spec.json")]
    assert entry.name == reference.name, "the same key: save_steps does not change what is built"
    assert not list(killed.glob("sft/.*.partial")) and not (entry / "trainer").exists(), "checkpoints deleted"
    resumed, uninterrupted = (
        load_file(str(entry / "model.safetensors")),
        load_file(str(reference / "model.safetensors")),
    )
    start = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(uninterrupted[k], start[k]) for k in start), "SFT moved the weights"
    # fp32 on CPU, same batches, restored optimizer and RNG: equal up to float reassociation.
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)
