"""TRL's fused LM head sized for a CPU while a stage trains (afd/stages/fused_head.py): small tiles and
only the labelled positions projected, learning exactly what TRL's own settings learn."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
import trl.kernels.chunked_logprob as kernel
import trl.trainer.utils as trl_utils
from trl.kernels import ChunkedLogProbFunction

import afd.stages.fused_head as fused_head
import afd.stages.policy_training as policy_training
from afd.data import load_splits
from afd.models.policies import init_policy
from afd.stages.sft import train_sft

from conftest import tiny_overrides


def test_cpu_tiles_and_labelled_positions_train_what_trl_trains(
    make_context, tiny_model_dir, tmp_path, monkeypatch
):
    """Three SFT steps on the tiny model with TRL's settings and with afd's CPU ones (tiles shrunk
    further here so that the 300-token vocabulary spans several): the same per-step losses and weights;
    afd's projects fewer rows (the prompt's positions are skipped) in tiles of the size it set; TRL's
    settings are back afterwards. Catches tiles that drop or double-count vocabulary columns, a compact
    path that scores the wrong positions, and a setting that never reaches TRL or leaks out of the stage."""
    monkeypatch.setattr(fused_head, "CPU_TOKENS_PER_TILE", 16)
    monkeypatch.setattr(fused_head, "CPU_VOCAB_PER_TILE", 64)
    installed = (kernel.TOKEN_CHUNK_SIZE, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, trl_utils._use_triton)
    forward = ChunkedLogProbFunction.forward
    calls: list[tuple[int, int, int]] = []

    def spy(ctx, hidden, weight, bias, targets, temperature, chunk_size, *args, **kwargs):
        calls.append((hidden.shape[0], kernel.TOKEN_CHUNK_SIZE, chunk_size))
        return forward(ctx, hidden, weight, bias, targets, temperature, chunk_size, *args, **kwargs)

    monkeypatch.setattr(ChunkedLogProbFunction, "forward", staticmethod(spy))
    runs = {}
    for sized in (False, True):
        if not sized:
            monkeypatch.setattr(policy_training, "fused_head_for", lambda device: contextlib.nullcontext())
        else:
            monkeypatch.setattr(policy_training, "fused_head_for", fused_head.fused_head_for)
        calls.clear()
        ctx = make_context(
            [
                *tiny_overrides(tiny_model_dir, tmp_path / str(sized) / "cache"),
                "objective=sft",
                "objective.sft.trainer.max_steps=3",
                "objective.sft.trainer.logging_steps=1",
            ]
        )
        sft = train_sft(ctx, init_policy(ctx), load_splits(ctx.cfg.dataset)["train"], ctx.cfg.objective.sft)
        losses = [h["loss"] for h in json.loads((sft.path / "train_log.json").read_text()) if "loss" in h]
        runs[sized] = (losses, sft.get()[0].state_dict(), list(calls))
    plain, sized = runs[False], runs[True]
    assert len(plain[0]) == 3
    assert sized[0] == pytest.approx(plain[0], rel=1e-5)
    for name, value in plain[1].items():
        torch.testing.assert_close(sized[1][name], value, rtol=1e-5, atol=1e-6)
    assert len(sized[2]) == len(plain[2]) == 3
    assert all(rows < all_rows for (rows, _, _), (all_rows, _, _) in zip(sized[2], plain[2]))
    assert {(tokens, vocab) for _, tokens, vocab in sized[2]} == {(16, 64)}
    assert {(tokens, vocab) for _, tokens, vocab in plain[2]} == {installed[:2]}
    after = (kernel.TOKEN_CHUNK_SIZE, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, trl_utils._use_triton)
    assert after == installed, "TRL's settings are restored after the stage"
