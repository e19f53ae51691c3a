"""DPO objectives (dpo_demo, dpo_pref), the policy evaluation they end with, and the divergence guard."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from afd.config import to_run_config
from afd.config.stages import StabilitySettings
from afd.data.pairs import Pair
from afd.main import run
from afd.models.policies import init_policy
from afd.stages.dpo import train_dpo
from afd.stages.policy_eval import kl_to_reference, win_rate_against_pool
from afd.stages.stability import DivergenceError, check_logs

from conftest import tiny_overrides

GOOD = ["that sounds wonderful i love it", "we went hiking and it was amazing"]
BAD = ["i feel tired and sad today", "oh no i hope you feel better"]


def pairs(n: int = 8) -> list[Pair]:
    return [
        Pair(f"p{i}", [{"role": "user", "content": f"hello there {i}"}], GOOD[i % 2], BAD[i % 2])
        for i in range(n)
    ]


def test_dpo_trains_from_a_policy_and_keeps_it_as_reference(make_context, tiny_model_dir, tmp_path):
    ctx = make_context(
        [
            *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
            "objective=dpo_demo",
            "objective.dpo.trainer.max_steps=4",
            "objective.dpo.trainer.learning_rate=1e-3",
        ]
    )
    start = init_policy(ctx)
    before = {k: v.clone() for k, v in start.get()[0].state_dict().items()}
    objective = ctx.cfg.objective
    trained = train_dpo(ctx, start, pairs(), objective.dpo, objective.stability, "dpo_test")
    log = json.loads((trained.path / "train_log.json").read_text())
    assert all(math.isfinite(h["loss"]) for h in log if "loss" in h)
    after = trained.get()[0].state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before), "every parameter trains"
    assert all(torch.equal(v, start.get()[0].state_dict()[k]) for k, v in before.items()), "start untouched"
    # DPO raised the chosen responses' likelihood relative to the rejected ones.
    margins = [h["rewards/margins"] for h in log if "rewards/margins" in h]
    assert margins and margins[-1] > 0


def test_divergence_guard_stops_training_and_caches_nothing(make_context, tiny_model_dir, tmp_path):
    ctx = make_context(
        [
            *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
            "objective=dpo_demo",
            "objective.dpo.trainer.max_steps=3",
            "objective.dpo.trainer.logging_steps=1",
            "objective.dpo.trainer.learning_rate=1e-2",
            "objective.stability.max_abs_reward=1e-9",
        ]
    )
    with pytest.raises(DivergenceError, match=r"stability.max_abs_reward.*last good policy is init"):
        train_dpo(
            ctx, init_policy(ctx), pairs(), ctx.cfg.objective.dpo, ctx.cfg.objective.stability, "dpo_test"
        )
    assert not any(p for p in (tmp_path / "cache" / "dpo").iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize(
    "logs,why",
    [
        ({"loss": float("nan")}, "loss = nan"),
        ({"rewards/margins": 5e3}, "max_abs_reward"),
        ({"kl": 2e3}, "max_kl"),
        ({"reward": float("inf")}, "reward = inf"),
        ({"loss": 0.5, "rewards/margins": 3.0, "kl": 0.1, "learning_rate": 1e9}, None),
    ],
)
def test_check_logs(logs, why):
    reason = check_logs(logs, StabilitySettings())
    assert (reason is None) if why is None else (why in reason)


def test_win_rate_against_pool_matches_brute_force():
    rng = np.random.default_rng(0)
    g, pool = rng.integers(0, 3, (4, 3)).astype(float), rng.integers(0, 3, (4, 5)).astype(float)
    brute = [np.mean([1 if a > b else 0.5 if a == b else 0 for a in g[p] for b in pool[p]]) for p in range(4)]
    assert np.allclose(win_rate_against_pool(g, pool), brute)


def test_kl_of_a_policy_to_itself_is_zero(make_context, tiny_model_dir, tmp_path):
    ctx = make_context(tiny_overrides(tiny_model_dir, tmp_path / "cache"))
    policy = init_policy(ctx)
    prompts = [[{"role": "user", "content": "hello there"}], [{"role": "user", "content": "hi"}]]
    kl = kl_to_reference(ctx, policy, policy, prompts, [["i am doing great", "ok"], ["sad", "the weather"]])
    assert kl.shape == (2,) and np.allclose(kl, 0.0)


@pytest.mark.parametrize("objective", ["spin", "dpo_pref"])
def test_dpo_objectives_end_with_the_policy_evaluation(compose, tiny_model_dir, tmp_path, objective):
    overrides = [
        *tiny_overrides(tiny_model_dir, tmp_path / "cache"),
        f"objective={objective}",
        "golden=[harmless]",
        "logger=none",
        f"paths.output_dir={tmp_path / 'out'}",
    ]
    cfg = compose(overrides)
    metrics = run(to_run_config(cfg), OmegaConf.to_container(cfg, resolve=True))
    name = "spin_it2" if objective == "spin" else "dpo_pref"
    assert metrics["eval/golden_mean"] == metrics[f"eval/harmless/{name}/mean"]
    assert metrics[f"eval/harmless/{name}/n"] == 8
    assert 0 <= metrics["policy/winrate_vs_sft/mean"] <= 1
    assert math.isfinite(metrics["policy/kl_to_sft/mean"])
    assert (
        metrics["policy/kl_to_sft/ci_low"]
        <= metrics["policy/kl_to_sft/mean"]
        <= metrics["policy/kl_to_sft/ci_high"]
    )
