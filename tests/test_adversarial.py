"""adversarial: the divergence rewards, the discriminator data, and the adversarial rounds end to end."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from afd.config import to_run_config
from afd.main import run
from afd.rewards.transforms import TRANSFORMS, DiscriminatorReward, Divergence

from conftest import tiny_overrides


@pytest.mark.parametrize("logit", [-30.0, -2.0, 0.0, 1.5, 30.0])
def test_divergence_rewards_are_the_transforms_of_d(logit):
    d = 1 / (1 + math.exp(-logit))
    z = np.array([logit])
    assert TRANSFORMS["reverse_kl"](z)[0] == pytest.approx(logit)  # log D - log(1 - D)
    if 1e-12 < d < 1 - 1e-12:
        assert TRANSFORMS["js"](z)[0] == pytest.approx(math.log(d))
        assert TRANSFORMS["gail"](z)[0] == pytest.approx(-math.log(1 - d))
    assert all(np.isfinite(f(z)[0]) for f in TRANSFORMS.values()), "stable at extreme logits"


def test_discriminator_reward_wraps_the_logit():
    class Logit:
        name, path = "d", None

        def score(self, prompts, responses):
            return np.array([0.0, 2.0])

    r = DiscriminatorReward(Logit(), Divergence.js)
    assert np.allclose(r.score([[], []], ["a", "b"]), np.log(1 / (1 + np.exp(-np.array([0.0, 2.0])))))


def test_adversarial_rounds_end_to_end(compose, tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    cfg = compose(
        [
            *tiny_overrides(tiny_model_dir, cache),
            "objective=adversarial",
            "objective.adversarial.rounds=2",
            "objective.adversarial.divergence=js",
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
    specs = [json.loads(p.read_text()) for p in (cache / "reward_model").glob("*/spec.json")]
    assert len(specs) == 2 and sum("reward_model" in s["init"] for s in specs) == 1


def test_lora_rounds_regularise_towards_the_start_policy(compose, tiny_model_dir, tmp_path, monkeypatch):
    """With LoRA, TRL's reference is the model under the adapters: round 2 keeps the adapters on pi_SFT and
    continues round 1's, so its reference is pi_SFT, not round 1's policy (checked on the trainer's model)."""
    import torch
    import trl
    from safetensors.torch import load_file

    seen = []

    def spy(self, *args, _train=trl.GRPOTrainer.train, **kwargs):
        under = {
            k.replace("base_model.model.", "").replace(".base_layer", ""): v.detach().clone()
            for k, v in self.model.state_dict().items()
            if "lora_" not in k
        }
        seen.append(under)
        return _train(self, *args, **kwargs)

    monkeypatch.setattr(trl.GRPOTrainer, "train", spy)
    cache = tmp_path / "cache"
    overrides = [
        *tiny_overrides(tiny_model_dir, cache),
        "objective=adversarial",
        "objective.adversarial.rounds=2",
        "objective.sft.trainer.learning_rate=3e-2",
        "model.lora.enabled=true",
        "model.lora.r=4",
        "objective.rl.trainer.learning_rate=1e-2",
        "golden=[harmless]",
        "logger=none",
        f"paths.output_dir={tmp_path / 'out'}",
    ]
    cfg = compose(overrides)
    run(to_run_config(cfg), OmegaConf.to_container(cfg, resolve=True))
    (sft,) = [p for p in (cache / "sft").iterdir() if not p.name.startswith(".")]
    sft_weights = load_file(str(sft / "model.safetensors"))
    assert len(seen) == 2
    for under in seen:
        for key, value in sft_weights.items():
            assert torch.equal(under[key], value), key
    (round1,) = [
        p
        for p in (cache / "rl").iterdir()
        if (p / "spec.json").is_file() and "sft" in json.loads((p / "spec.json").read_text())["policy"]
    ]
    round1_weights = load_file(str(round1 / "model.safetensors"))
    assert any(not torch.equal(round1_weights[k], v) for k, v in sft_weights.items()), (
        "round 1 moved the policy"
    )
