"""reverse_kl: the divergence rewards, the discriminator data, and the adversarial rounds end to end."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from afd.config import to_run_config
from afd.main import run
from afd.rewards import DIVERGENCE_REWARDS, DiscriminatorReward

from conftest import tiny_overrides


@pytest.mark.parametrize("logit", [-30.0, -2.0, 0.0, 1.5, 30.0])
def test_divergence_rewards_are_the_transforms_of_d(logit):
    d = 1 / (1 + math.exp(-logit))
    z = np.array([logit])
    assert DIVERGENCE_REWARDS["reverse_kl"](z)[0] == pytest.approx(logit)  # log D - log(1 - D)
    if 1e-12 < d < 1 - 1e-12:
        assert DIVERGENCE_REWARDS["js"](z)[0] == pytest.approx(math.log(d))
        assert DIVERGENCE_REWARDS["gail"](z)[0] == pytest.approx(-math.log(1 - d))
    assert all(np.isfinite(f(z)[0]) for f in DIVERGENCE_REWARDS.values()), "stable at extreme logits"


def test_discriminator_reward_wraps_the_logit():
    class Logit:
        name, path = "d", None

        def score(self, prompts, responses):
            return np.array([0.0, 2.0])

    r = DiscriminatorReward(Logit(), "js")
    assert np.allclose(r.score([[], []], ["a", "b"]), np.log(1 / (1 + np.exp(-np.array([0.0, 2.0])))))


def test_reverse_kl_rounds_end_to_end(compose, tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    cfg = compose(
        [
            *tiny_overrides(tiny_model_dir, cache),
            "objective=reverse_kl",
            "adversarial.rounds=2",
            "adversarial.divergence=js",
            "golden=[harmless]",
            "logger=none",
            f"paths.output_dir={tmp_path / 'out'}",
        ]
    )
    metrics = run(to_run_config(cfg), OmegaConf.to_container(cfg, resolve=True))
    for r in (1, 2):
        assert 0 <= metrics[f"adv/round{r}/disc_accuracy"] <= 1
        assert math.isfinite(metrics[f"adv/round{r}/mean_reward"]) and math.isfinite(
            metrics[f"adv/round{r}/disc_loss"]
        )
        assert math.isfinite(metrics[f"adv/round{r}/golden_probe"])
    assert metrics["eval/golden_mean"] == metrics["eval/harmless/adv_r2/mean"]
    assert math.isfinite(metrics["policy/kl_to_sft/mean"])
    with (tmp_path / "out" / "adversarial_rounds.csv").open() as f:
        assert [row["round"] for row in csv.DictReader(f)] == ["1", "2"]
    # The second discriminator is warm-started from the first.
    specs = [json.loads(p.read_text()) for p in (cache / "train_rm").glob("*/spec.json")]
    assert len(specs) == 2 and sum("discriminator" in s["init"] for s in specs) == 1
