"""objective: adversarial imitation from demonstrations (paper section 2, GAIL/AIRL-style).

Each round samples the current policy on the align prompts, updates a discriminator (demonstrations = 1,
policy samples = 0; warm-started from the previous round's) and then the policy with GRPO/RLOO on the
divergence's transform of the discriminator's logit. Every round's KL penalty (rl.beta) is to the policy
the rounds started from (adversarial.start, pi_SFT by default), not to the previous round's policy: the
regulariser stays fixed while the discriminator moves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import MISSING

from afd.config.checks import Problem, at_least
from afd.config.run import Choice
from afd.config.stages import (
    PolicyEvalSettings,
    RewardModelConfig,
    RLSettings,
    RMWeights,
    SFTSettings,
    Source,
    StabilitySettings,
)
from afd.rewards.transforms import DiscriminatorReward, Divergence

if TYPE_CHECKING:
    from afd.models.policies import PolicyHandle
    from afd.runtime.context import RunContext
    from afd.stages.prepare import Prepared


class PolicyStart(Choice):
    sft = "sft"
    """pi_SFT."""
    init = "init"
    """pi_init."""


@dataclass
class AdversarialSettings:
    rounds: int = at_least(1, 2)
    """Rounds of (sample the policy, update the discriminator, update the policy)."""
    start: PolicyStart = PolicyStart.sft
    """The policy the rounds start from; every round's KL penalty is to it."""
    divergence: Divergence = Divergence.reverse_kl
    """Which divergence, through the reward transform of the discriminator's output."""
    probe_prompts: int = at_least(1, 16)
    """Test prompts whose golden reward is logged after every round (adv/golden_probe)."""


@dataclass
class AdversarialObjective:
    name: str = MISSING
    """The objective's name: its file in conf/objective/, the W&B job type and run names."""
    sft: SFTSettings = field(default_factory=SFTSettings)
    """The SFT stage."""
    discriminator: RewardModelConfig = field(default_factory=RewardModelConfig)
    """The discriminator: a reward model on (policy sample, demonstration) pairs; its trainer settings
    are each round's budget, round 1 starts from its `weights`, later rounds from the previous round's."""
    rl: RLSettings = field(default_factory=RLSettings)
    """Each round's policy update (its trainer settings are the round's budget)."""
    adversarial: AdversarialSettings = field(default_factory=AdversarialSettings)
    """The rounds."""
    stability: StabilitySettings = field(default_factory=StabilitySettings)
    """When training counts as diverged."""
    evaluation: PolicyEvalSettings = field(default_factory=PolicyEvalSettings)
    """How the final policy is judged against pi_SFT."""

    def run_checks(self, run) -> list[Problem]:
        pairs = self.discriminator.pairs
        return [
            ("dataset.align_size", run.dataset.align_size >= 1, ">= 1: the rounds learn on the align split"),
            (
                "objective.discriminator.pairs.negatives",
                (pairs.negatives, pairs.positives) == (Source.policy, Source.demo),
                "policy, with positives=demo: the discriminator tells the policy from the demonstrations",
            ),
        ]


CONFIG = AdversarialObjective


def probe_golden(ctx: RunContext, prep: Prepared, policy: PolicyHandle, n_prompts: int) -> float:
    """Mean primary golden reward of one sample per probe prompt (the first test prompts)."""
    from afd.stages.sample import sample_split

    test = prep.splits["test"]
    probe = test.select(range(min(n_prompts, len(test))))
    samples = sample_split(ctx, policy, "probe", probe, 1)
    return float(np.mean(prep.primary_golden.score(list(probe["prompt"]), [s[0] for s in samples])))


def run(ctx: RunContext, cfg: AdversarialObjective) -> dict[str, float]:
    from afd.data.pairs import split_heldout
    from afd.runtime.tracking import write_csv
    from afd.stages.pairs import build_pairs
    from afd.stages.policy_eval import evaluate_policy, print_policy
    from afd.stages.policy_training import train_log
    from afd.stages.prepare import prepare
    from afd.stages.reward_model import heldout_accuracy, train_reward_model
    from afd.stages.rl import train_rl

    adv = cfg.adversarial
    prep = prepare(ctx, cfg.sft, cfg.evaluation.sft_samples_per_prompt, "align")
    split = prep.splits["align"]
    policy = prep.sft if adv.start is PolicyStart.sft else prep.init
    reference = policy
    first = prep.init if cfg.discriminator.weights is RMWeights.init else prep.sft
    init_dir, init_spec = first.weights_dir(), first.spec
    rounds = []
    for r in range(1, adv.rounds + 1):
        pairs = build_pairs(ctx, prep, cfg.discriminator.pairs, policy=policy)
        train, heldout = split_heldout(pairs.pairs, cfg.discriminator.heldout_fraction, ctx.cfg.seed)
        disc = train_reward_model(ctx, init_dir, init_spec, train, cfg.discriminator, f"discriminator r{r}")
        # Warm start: the next round's discriminator continues from this one.
        init_dir, init_spec = str(disc.path), {"reward_model": disc.path.name}
        reward = DiscriminatorReward(disc, adv.divergence)
        policy = train_rl(
            ctx,
            policy,
            reward,
            {"reward_model": disc.path.name, "divergence": adv.divergence},
            list(split["prompt"]),
            list(split["prompt_id"]),
            cfg.rl,
            cfg.stability,
            f"adv_r{r}",
            reference=reference,
        )
        log = train_log(policy)
        # The last logged loss, or the run's average when training was shorter than a logging interval.
        disc_log = [
            h.get("loss", h.get("train_loss")) for h in json.loads((disc.path / "train_log.json").read_text())
        ]
        disc_log = [x for x in disc_log if x is not None]
        row = {
            "round": r,
            "disc_accuracy": heldout_accuracy(disc, heldout, pointwise=True).get(
                "reward/accuracy", float("nan")
            ),
            "disc_loss": disc_log[-1] if disc_log else float("nan"),
            "mean_reward": float(np.mean([h["reward"] for h in log])) if log else float("nan"),
            "kl": log[-1].get("kl", float("nan")) if log else float("nan"),
            "golden_probe": probe_golden(ctx, prep, policy, adv.probe_prompts),
        }
        rounds.append(row)
        ctx.tracker.log({f"adv/{k}": v for k, v in row.items()})
        print(f"round {r}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "round"))
    write_csv(
        ctx.output_dir / "adversarial_rounds.csv", list(rounds[0]), [list(row.values()) for row in rounds]
    )
    metrics = evaluate_policy(ctx, prep, policy, cfg.evaluation)
    for row in rounds:
        metrics.update({f"adv/round{row['round']}/{k}": v for k, v in row.items() if k != "round"})
    metrics["adv/rounds"] = adv.rounds
    print_policy(policy.name, metrics)
    metrics.update(prep.metrics)
    return metrics
