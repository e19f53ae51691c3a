"""Policy optimisation on a learned reward (rl_rm) with GRPO and RLOO on the tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from afd.config import to_run_config
from afd.main import run
from afd.models.policies import init_policy
from afd.stages.rl import reward_function, train_rl

from conftest import tiny_overrides


class PrefersShort:
    """A reward with a clear optimum (short responses), for checking that training moves the policy."""

    name = "prefers short"

    def score(self, prompts, responses):
        return -np.array([len(r) for r in responses], dtype=np.float64)


def test_reward_function_speaks_trls_protocol():
    fn = reward_function(PrefersShort())
    completions = [[{"role": "assistant", "content": "abc"}], [{"role": "assistant", "content": "a"}]]
    assert fn(prompts=[[{"role": "user", "content": "x"}]] * 2, completions=completions) == [-3.0, -1.0]
    assert fn.__name__ == "prefers_short"


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_rl_trains_every_parameter_with_finite_losses(make_context, tiny_model_dir, tmp_path, algorithm):
    ctx = make_context(
        [
            *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
            "objective=rl_rm",
            f"objective.rl.algorithm={algorithm}",
            "objective.rl.trainer.max_steps=3",
            "objective.rl.trainer.learning_rate=1e-2",
            "objective.rl.num_generations=4",
            "objective.rl.trainer.per_device_train_batch_size=4",
        ]
    )
    start = init_policy(ctx)
    before = {k: v.clone() for k, v in start.get()[0].state_dict().items()}
    prompts = [[{"role": "user", "content": f"hello there {i}"}] for i in range(6)]
    objective = ctx.cfg.objective
    ids = [str(i) for i in range(6)]
    trained = train_rl(
        ctx,
        start,
        PrefersShort(),
        {"reward": "short"},
        prompts,
        ids,
        objective.rl,
        objective.stability,
        "rl_t",
    )
    log = [h for h in json.loads((trained.path / "train_log.json").read_text()) if "loss" in h]
    assert log and all(math.isfinite(h["loss"]) and math.isfinite(h["reward"]) for h in log)
    after = trained.get()[0].state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) >= len(before) - 1, "(all but possibly an unused embedding row block) train"
    assert all(torch.equal(v, start.get()[0].state_dict()[k]) for k, v in before.items()), "start untouched"


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_rl_rm_objective_end_to_end(compose, tiny_model_dir, tmp_path, algorithm):
    cfg = compose(
        [
            *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
            "objective=rl_rm",
            f"objective.rl.algorithm={algorithm}",
            "golden=[harmless]",
            "logger=none",
            f"paths.output_dir={tmp_path / 'out'}",
        ]
    )
    metrics = run(to_run_config(cfg), OmegaConf.to_container(cfg, resolve=True))
    assert metrics["eval/golden_mean"] == metrics["eval/harmless/rl_rm/mean"]
    assert 0 <= metrics["reward/accuracy"] <= 1, "the Init-SFT reward model's own held-out accuracy"
    assert math.isfinite(metrics["policy/kl_to_sft/mean"]) and 0 <= metrics["policy/winrate_vs_sft/mean"] <= 1
